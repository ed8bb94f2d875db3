//! `nodehealer import-magnum-config`: turns a magnum-auto-healer configuration (the
//! `config.yaml` of its ConfigMap, in the format its documentation uses) into the equivalent
//! NodeHealthChecks, RemediationTemplates and clouds.yaml Secret. A pure function from text to
//! manifests; anything it cannot map is an error that names the key, never a silent drop.
//!
//! The mapping:
//!
//! | magnum-auto-healer | nodehealer |
//! |---|---|
//! | `healthcheck.master[]` / `.worker[]` | NodeHealthCheck `<cluster>-masters` / `-workers`, selecting `magnum.openstack.org/role` `master` / `worker` |
//! | `NodeCondition` `{types, ok-values, unhealthy-duration}` | `unhealthyConditions`: each type with every status not in `ok-values` |
//! | `Endpoint` `{protocol, port, endpoints, ok-codes, unhealthy-duration}` | `endpointChecks`, one per path, probed every `monitor-interval` |
//! | `check-delay-after-add` | `nodeStartupTimeout` |
//! | `dry-run` | `dryRun` |
//! | `cluster-name` | the templates' `openstack.magnum.cluster`, with `reportHealthStatus: true` |
//! | masters are rebuilt, workers replaced through Magnum | RemediationTemplates `rebuild` and `replace` |
//! | `openstack` (auth-url, user-id / username, password, project-id / project-name, domains, region, ca-file) | a Secret with a clouds.yaml |
//! | `leader-elect`, `cloud-provider`, `kubeconfig`, `repair-interval` | nothing: the chart and the operator's flags handle these |

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::Duration;

/// Options of the conversion.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Namespace of the RemediationTemplates and the Secret.
    pub namespace: String,
    /// Name of the clouds.yaml Secret (and the cloud in it: `openstack`).
    pub secret_name: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            namespace: "nodehealer".into(),
            secret_name: "openstack-cloud".into(),
        }
    }
}

/// Why a configuration cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ImportError {
    /// Where in the configuration, e.g. `healthcheck.worker[0].params.port`.
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ImportError {
    ImportError {
        path: path.into(),
        message: message.into(),
    }
}

const TOP_KEYS: &[&str] = &[
    "cluster-name",
    "dry-run",
    "monitor-interval",
    "check-delay-after-add",
    "leader-elect",
    "healthcheck",
    "openstack",
    "cloud-provider",
    "kubeconfig",
    "repair-interval",
];
const OPENSTACK_KEYS: &[&str] = &[
    "auth-url",
    "user-id",
    "username",
    "password",
    "project-id",
    "project-name",
    "tenant-id",
    "tenant-name",
    "domain-id",
    "domain-name",
    "user-domain-id",
    "user-domain-name",
    "project-domain-id",
    "project-domain-name",
    "region",
    "ca-file",
    "application-credential-id",
    "application-credential-secret",
];

/// Converts a magnum-auto-healer `config.yaml` into manifests, in the order to apply them.
pub fn convert(yaml: &str, options: &ImportOptions) -> Result<Vec<Value>, ImportError> {
    let config: Value =
        serde_yaml::from_str(yaml).map_err(|e| err("config.yaml", format!("not YAML: {e}")))?;
    let top = config
        .as_object()
        .ok_or_else(|| err("config.yaml", "must be a mapping"))?;
    for key in top.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            return Err(err(
                key.clone(),
                "unknown key: nodehealer has no equivalent",
            ));
        }
    }
    let cluster = text(&config, "cluster-name")?
        .ok_or_else(|| err("cluster-name", "required: the Magnum cluster to repair"))?;
    let dry_run = match config.get("dry-run") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| err("dry-run", "must be true or false"))?,
    };
    let interval = duration(&config, "monitor-interval")?.unwrap_or_else(|| go("30s"));
    let startup = duration(&config, "check-delay-after-add")?;
    let health = config
        .get("healthcheck")
        .ok_or_else(|| err("healthcheck", "required: the master and worker checks"))?;
    let health = health
        .as_object()
        .ok_or_else(|| err("healthcheck", "must be a mapping"))?;
    for key in health.keys() {
        if key != "master" && key != "worker" {
            return Err(err(
                format!("healthcheck.{key}"),
                "unknown node group: only master and worker",
            ));
        }
    }

    let mut out = Vec::new();
    out.push(secret(&config, options)?);
    let ns = &options.namespace;
    let openstack = json!({
        "cloudSecretRef": {"name": options.secret_name, "key": "clouds.yaml"},
        "cloud": "openstack",
        "magnum": {"cluster": cluster, "reportHealthStatus": true}
    });
    out.push(json!({
        "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
        "metadata": {"name": "rebuild", "namespace": ns},
        "spec": {"template": {"spec": {"action": "Rebuild", "openstack": openstack}}}
    }));
    out.push(json!({
        "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
        "metadata": {"name": "replace", "namespace": ns},
        "spec": {"template": {"spec": {"action": "Replace", "openstack": openstack}}}
    }));
    for (group, role, template, name) in [
        ("master", "master", "rebuild", "masters"),
        ("worker", "worker", "replace", "workers"),
    ] {
        let Some(checks) = health.get(group) else {
            continue;
        };
        let path = format!("healthcheck.{group}");
        let checks = checks
            .as_array()
            .ok_or_else(|| err(&path, "must be a list of checks"))?;
        let (conditions, endpoints) = map_checks(checks, &path, &interval)?;
        if conditions.is_empty() && endpoints.is_empty() {
            return Err(err(
                &path,
                "no check: nothing would detect an unhealthy node",
            ));
        }
        let mut spec = json!({
            "selector": {"matchLabels": {"magnum.openstack.org/role": role}},
            "unhealthyConditions": conditions,
            "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1",
                "kind": "RemediationTemplate", "name": template, "namespace": ns},
            "dryRun": dry_run,
        });
        if !endpoints.is_empty() {
            spec["endpointChecks"] = Value::Array(endpoints);
        }
        if let Some(d) = &startup {
            spec["nodeStartupTimeout"] = json!(d.to_string());
        }
        if group == "master" {
            // Control-plane nodes one at a time: the etcd quorum guard applies as well.
            spec["maxUnhealthy"] = json!(1);
        }
        out.push(json!({
            "apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
            "metadata": {"name": format!("{cluster}-{name}")},
            "spec": spec
        }));
    }
    Ok(out)
}

fn go(text: &str) -> Duration {
    Duration::parse(text).expect("a valid literal")
}

fn text(v: &Value, key: &str) -> Result<Option<String>, ImportError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(err(key, "must be a non-empty string")),
    }
}

fn duration(v: &Value, key: &str) -> Result<Option<Duration>, ImportError> {
    match text(v, key)? {
        None => Ok(None),
        Some(s) => Duration::parse(&s)
            .map(Some)
            .map_err(|e| err(key, format!("not a duration: {e}"))),
    }
}

/// The unhealthy conditions and endpoint checks of one node group's checks.
fn map_checks(
    checks: &[Value],
    path: &str,
    interval: &Duration,
) -> Result<(Vec<Value>, Vec<Value>), ImportError> {
    let mut conditions = Vec::new();
    let mut endpoints = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let kind = text(check, "type")
            .map_err(|e| err(format!("{at}.type"), e.message))?
            .ok_or_else(|| err(format!("{at}.type"), "required"))?;
        let params = check
            .get("params")
            .and_then(Value::as_object)
            .ok_or_else(|| err(format!("{at}.params"), "required mapping"))?;
        let params_value = Value::Object(params.clone());
        let p = |key: &str| format!("{at}.params.{key}");
        let unhealthy = duration(&params_value, "unhealthy-duration")
            .map_err(|e| err(p("unhealthy-duration"), e.message))?
            .unwrap_or_else(|| go("300s"));
        match kind.as_str() {
            "NodeCondition" => {
                for key in params.keys() {
                    if !["types", "ok-values", "unhealthy-duration"].contains(&key.as_str()) {
                        return Err(err(p(key), "unknown NodeCondition parameter"));
                    }
                }
                let types = strings(params.get("types"), &p("types"))?;
                let ok = match params.get("ok-values") {
                    None => vec!["True".to_string()],
                    v => strings(v, &p("ok-values"))?,
                };
                for t in &types {
                    for status in ["True", "False", "Unknown"] {
                        if !ok.iter().any(|o| o == status) {
                            conditions.push(json!({
                                "type": t, "status": status, "duration": unhealthy.to_string()
                            }));
                        }
                    }
                }
            }
            "Endpoint" => {
                for key in params.keys() {
                    if ![
                        "protocol",
                        "port",
                        "endpoints",
                        "ok-codes",
                        "unhealthy-duration",
                    ]
                    .contains(&key.as_str())
                    {
                        return Err(err(p(key), "unknown Endpoint parameter"));
                    }
                }
                let scheme = match params
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("HTTPS")
                    .to_ascii_uppercase()
                    .as_str()
                {
                    "HTTPS" => "HTTPS",
                    "HTTP" => "HTTP",
                    other => {
                        return Err(err(p("protocol"), format!("{other} is not HTTP or HTTPS")));
                    }
                };
                let port = params
                    .get("port")
                    .and_then(Value::as_u64)
                    .filter(|p| (1..=65535).contains(p))
                    .ok_or_else(|| err(p("port"), "required, 1 to 65535"))?;
                let paths = match params.get("endpoints") {
                    None => vec!["/healthz".to_string()],
                    v => strings(v, &p("endpoints"))?,
                };
                let ok_codes: Vec<u64> = match params.get("ok-codes") {
                    None => vec![200],
                    Some(v) => v
                        .as_array()
                        .and_then(|a| a.iter().map(Value::as_u64).collect())
                        .ok_or_else(|| err(p("ok-codes"), "must be a list of HTTP codes"))?,
                };
                // One probe per interval; its timeout must be shorter.
                let timeout = (interval.get() / 2).min(std::time::Duration::from_secs(5));
                let duration = unhealthy.get().max(interval.get());
                for path in paths {
                    if !path.starts_with('/') {
                        return Err(err(
                            p("endpoints"),
                            format!("{path:?} does not start with /"),
                        ));
                    }
                    endpoints.push(json!({
                        "name": endpoint_name(port, &path),
                        "scheme": scheme,
                        "port": port,
                        "path": path,
                        "okCodes": ok_codes,
                        "duration": crate::api::duration::format_go_duration(duration),
                        "timeout": crate::api::duration::format_go_duration(timeout),
                        "interval": interval.to_string(),
                        // magnum-auto-healer does not verify node certificates either.
                        "insecureSkipVerify": true,
                    }));
                }
            }
            other => {
                return Err(err(
                    format!("{at}.type"),
                    format!("unknown check type {other:?}: only NodeCondition and Endpoint"),
                ));
            }
        }
    }
    Ok((conditions, endpoints))
}

fn strings(v: Option<&Value>, path: &str) -> Result<Vec<String>, ImportError> {
    let list = v
        .and_then(Value::as_array)
        .ok_or_else(|| err(path, "must be a list"))?;
    let out: Option<Vec<String>> = list
        .iter()
        .map(|s| s.as_str().map(str::to_string))
        .collect();
    match out {
        Some(l) if !l.is_empty() => Ok(l),
        _ => Err(err(path, "must be a non-empty list of strings")),
    }
}

/// A DNS-label name for an endpoint check: `https-6443-healthz`.
fn endpoint_name(port: u64, path: &str) -> String {
    let cleaned: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("port-{port}-{}", cleaned.trim_matches('-'));
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// The clouds.yaml Secret from the `openstack` section.
fn secret(config: &Value, options: &ImportOptions) -> Result<Value, ImportError> {
    let os = config
        .get("openstack")
        .and_then(Value::as_object)
        .ok_or_else(|| err("openstack", "required: how to reach the cloud"))?;
    for key in os.keys() {
        if !OPENSTACK_KEYS.contains(&key.as_str()) {
            return Err(err(
                format!("openstack.{key}"),
                "unknown key: nodehealer has no equivalent",
            ));
        }
    }
    let get = |k: &str| os.get(k).and_then(Value::as_str).map(str::to_string);
    let mut auth = BTreeMap::new();
    let auth_url = get("auth-url").ok_or_else(|| err("openstack.auth-url", "required"))?;
    auth.insert("auth_url", auth_url);
    let pairs = [
        ("user-id", "user_id"),
        ("username", "username"),
        ("password", "password"),
        ("project-id", "project_id"),
        ("tenant-id", "project_id"),
        ("project-name", "project_name"),
        ("tenant-name", "project_name"),
        ("user-domain-id", "user_domain_id"),
        ("user-domain-name", "user_domain_name"),
        ("project-domain-id", "project_domain_id"),
        ("project-domain-name", "project_domain_name"),
        ("domain-id", "user_domain_id"),
        ("domain-name", "user_domain_name"),
        ("application-credential-id", "application_credential_id"),
        (
            "application-credential-secret",
            "application_credential_secret",
        ),
    ];
    for (from, to) in pairs {
        if let Some(v) = get(from) {
            auth.entry(to).or_insert(v);
        }
    }
    if let (Some(_), None) = (get("domain-id"), get("project-domain-id")) {
        auth.entry("project_domain_id")
            .or_insert(get("domain-id").unwrap_or_default());
    }
    if let (Some(_), None) = (get("domain-name"), get("project-domain-name")) {
        auth.entry("project_domain_name")
            .or_insert(get("domain-name").unwrap_or_default());
    }
    let app_cred = auth.contains_key("application_credential_id");
    if !app_cred && !auth.contains_key("password") {
        return Err(err(
            "openstack.password",
            "required (or application-credential-id and -secret)",
        ));
    }
    let mut cloud = json!({
        "auth": auth,
        "interface": "public",
        "identity_api_version": 3,
    });
    if app_cred {
        cloud["auth_type"] = json!("v3applicationcredential");
    }
    if let Some(region) = get("region") {
        cloud["region_name"] = json!(region);
    }
    let mut data = json!({});
    if let Some(ca) = get("ca-file") {
        // The file is on the old controller's disk: its content goes beside clouds.yaml.
        data["cacert"] = json!(format!("# put the PEM content of {ca} here"));
    }
    let clouds = json!({"clouds": {"openstack": cloud}});
    data["clouds.yaml"] = json!(serde_yaml::to_string(&clouds).unwrap_or_default());
    Ok(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": options.secret_name, "namespace": options.namespace},
        "type": "Opaque",
        "stringData": data
    }))
}

/// The manifests as one YAML stream.
pub fn to_yaml(manifests: &[Value]) -> String {
    manifests
        .iter()
        .map(|m| format!("---\n{}", serde_yaml::to_string(m).unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests;
