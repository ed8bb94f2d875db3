//! `nodehealer import-magnum-config`: turns a magnum-auto-healer configuration (the
//! `config.yaml` of its ConfigMap) into the equivalent NodeHealthChecks, RemediationTemplates
//! and clouds.yaml Secret. A pure function from text to manifests and notes.
//!
//! It accepts what magnum-auto-healer accepts. magnum-auto-healer reads its file with viper
//! and mapstructure, which match keys case-insensitively and *ignore* every key they do not
//! know: a configuration written with `okCodes` or `unhealthyDuration` (camelCase, as some
//! published examples are) ran with the defaults, and `repair-delay-after-add` (a key it never
//! had) changed nothing. Such keys are not refused: each becomes a [`Note`] that says what
//! magnum-auto-healer did with it and what was probably meant, and
//! [`IgnoredKeys`] chooses which of the two is converted. Keys it reads that mean nothing for
//! an operator running in the cluster (the `kubernetes` section, `leader-elect`) are notes as
//! well. Errors are left for what magnum-auto-healer itself would not run with (no
//! `cluster-name`, a duration that does not parse, a check type it has no plugin for) and for
//! what nodehealer cannot do (Keystone trusts), each naming the key.
//!
//! The mapping:
//!
//! | magnum-auto-healer | nodehealer |
//! |---|---|
//! | `healthcheck.master[]` / `.worker[]` | NodeHealthCheck `<cluster>-masters` / `-workers`, selecting `magnum.openstack.org/role` `master` / `worker` |
//! | `NodeCondition` `{types, ok-values, error-values, unhealthy-duration}` | `unhealthyConditions`: each type with every status not in `ok-values` (or each in `error-values`) |
//! | `Endpoint` `{protocol, port, endpoints, ok-codes, unhealthy-duration}` | `endpointChecks`, one per path, probed every `monitor-interval` |
//! | `check-delay-after-add` (default 10m) | `nodeStartupTimeout` |
//! | `dry-run` | `dryRun` |
//! | `master-monitor-enabled` / `worker-monitor-enabled: false` | no NodeHealthCheck for that group |
//! | `cluster-name` | the templates' `openstack.magnum.cluster`, with `reportHealthStatus: true` |
//! | masters are rebuilt, workers replaced through Magnum | RemediationTemplates `rebuild` and `replace` |
//! | `openstack` (auth-url, user-id / username, password, project-id / project-name, domains, region, ca-file, tls-insecure, os-endpoint-type, application credential) | a Secret with a clouds.yaml |
//! | `leader-elect`, `cloud-provider`, `kubernetes`, `rebuild-delay-after-reboot` | nothing (a note says why) |

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::api::Duration;

/// What to convert for a key magnum-auto-healer ignored but whose meaning is clear
/// (`okCodes` for `ok-codes`, `repair-delay-after-add` for `check-delay-after-add`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IgnoredKeys {
    /// What magnum-auto-healer ran with: the key is left out, its default applies. Converting
    /// this way keeps the cluster's behaviour exactly as it was.
    #[default]
    AsRun,
    /// What the key was probably meant to say: its value is used under the key it resembles.
    AsMeant,
}

/// Options of the conversion.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Namespace of the RemediationTemplates and the Secret.
    pub namespace: String,
    /// Name of the clouds.yaml Secret (and the cloud in it: `openstack`).
    pub secret_name: String,
    /// What to do with the keys magnum-auto-healer ignored.
    pub ignored_keys: IgnoredKeys,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            namespace: "nodehealer".into(),
            secret_name: "openstack-cloud".into(),
            ignored_keys: IgnoredKeys::default(),
        }
    }
}

/// The manifests, in the order to apply them, and what the person converting should know.
#[derive(Clone, Debug)]
pub struct Conversion {
    pub manifests: Vec<Value>,
    pub notes: Vec<Note>,
}

/// Something about one key of the configuration that the output alone does not show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Where in the configuration, e.g. `healthcheck.master[0].params.okCodes`.
    pub path: String,
    pub kind: NoteKind,
    pub message: String,
}

/// The kinds of [`Note`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// magnum-auto-healer ignored the key. `meant` is the key it probably stood for, if any,
    /// and `converted` says whether its value was used under that key.
    Ignored {
        meant: Option<String>,
        converted: bool,
    },
    /// magnum-auto-healer reads the key, but it means nothing for nodehealer.
    NoMeaningHere,
    /// Converted, but nodehealer behaves differently in the way the message says.
    Differs,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
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

/// The top-level keys magnum-auto-healer reads (its `config.Config`).
const TOP_KEYS: &[&str] = &[
    "cluster-name",
    "dry-run",
    "cloud-provider",
    "monitor-interval",
    "master-monitor-enabled",
    "worker-monitor-enabled",
    "kubernetes",
    "openstack",
    "healthcheck",
    "leader-elect",
    "check-delay-after-add",
    "rebuild-delay-after-reboot",
];
/// The keys of its `openstack` section (cloud-provider-openstack's `AuthOpts`, by their
/// mapstructure names; `username`, `password` and `region` match by field name).
const OPENSTACK_KEYS: &[&str] = &[
    "auth-url",
    "user-id",
    "username",
    "password",
    "project-id",
    "project-name",
    "trust-id",
    "trustee-id",
    "trustee-password",
    "domain-id",
    "domain-name",
    "project-domain-id",
    "project-domain-name",
    "user-domain-id",
    "user-domain-name",
    "region",
    "os-endpoint-type",
    "ca-file",
    "tls-insecure",
    "cert-file",
    "key-file",
    "use-clouds",
    "clouds-file",
    "cloud",
    "application-credential-id",
    "application-credential-name",
    "application-credential-secret",
];
const KUBERNETES_KEYS: &[&str] = &["api-host", "kubeconfig"];
const NODE_CONDITION_KEYS: &[&str] = &["types", "unhealthy-duration", "ok-values", "error-values"];
const ENDPOINT_KEYS: &[&str] = &[
    "protocol",
    "port",
    "endpoints",
    "unhealthy-duration",
    "unhealthy-annotation",
    "ok-codes",
    "require-token",
    "token",
    "ca-file",
    "insecure-skip-verify",
];
/// Keys that resemble no known key by spelling but whose intent is plain. `tenant-*` are the
/// names of the INI cloud config that magnum-auto-healer's YAML does not read.
const PROBABLY_MEANT: &[(&str, &str)] = &[
    ("repair-delay-after-add", "check-delay-after-add"),
    ("tenant-id", "project-id"),
    ("tenant-name", "project-name"),
    ("tenant-domain-id", "project-domain-id"),
    ("tenant-domain-name", "project-domain-name"),
];

/// What a key was probably meant to be: the known key it spells differently (case, `-`, `_`),
/// or one from [`PROBABLY_MEANT`].
fn probably_meant(key: &str, known: &[&str]) -> Option<&'static str> {
    let squash = |k: &str| -> String {
        k.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = squash(key);
    PROBABLY_MEANT
        .iter()
        .find(|(from, to)| *from == key.to_ascii_lowercase() && known.contains(to))
        .map(|(_, to)| *to)
        .or_else(|| {
            TOP_KEYS
                .iter()
                .chain(OPENSTACK_KEYS)
                .chain(NODE_CONDITION_KEYS)
                .chain(ENDPOINT_KEYS)
                .find(|k| known.contains(k) && squash(k) == wanted)
                .copied()
        })
}

/// One mapping of the configuration as magnum-auto-healer read it: keys lowercased (viper
/// matches case-insensitively), unknown keys left out with a note, or, as the options say, put
/// under the key they were meant to be.
fn read_keys(
    map: &Map<String, Value>,
    known: &[&str],
    at: &str,
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Map<String, Value> {
    let path = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    let mut out = Map::new();
    // Known keys first, so a key written both ways keeps the spelling magnum-auto-healer read.
    for (key, value) in map {
        let lower = key.to_ascii_lowercase();
        if known.contains(&lower.as_str()) {
            out.insert(lower, value.clone());
        }
    }
    for (key, value) in map {
        if known.contains(&key.to_ascii_lowercase().as_str()) {
            continue;
        }
        let meant = probably_meant(key, known);
        let converted = options.ignored_keys == IgnoredKeys::AsMeant
            && meant.is_some_and(|m| !out.contains_key(m));
        let message = match (meant, converted) {
            (None, _) => "magnum-auto-healer does not read this key and ignored it; so does the \
                          conversion"
                .to_string(),
            (Some(m), true) => format!(
                "magnum-auto-healer does not read this key and ran as if it were not there; it \
                 probably meant `{m}`, and is converted as `{m}` (--ignored-keys as-meant)"
            ),
            (Some(m), false) => format!(
                "magnum-auto-healer does not read this key and ran as if it were not there (with \
                 the default of `{m}`), and so does the conversion; it probably meant `{m}`: \
                 --ignored-keys as-meant converts it as `{m}`"
            ),
        };
        notes.push(Note {
            path: path(key),
            kind: NoteKind::Ignored {
                meant: meant.map(str::to_string),
                converted,
            },
            message,
        });
        if converted && let Some(m) = meant {
            out.insert(m.to_string(), value.clone());
        }
    }
    out
}

fn note(
    notes: &mut Vec<Note>,
    path: impl Into<String>,
    kind: NoteKind,
    message: impl Into<String>,
) {
    notes.push(Note {
        path: path.into(),
        kind,
        message: message.into(),
    });
}

/// Converts a magnum-auto-healer `config.yaml` into manifests, in the order to apply them,
/// and the notes the person converting should read.
pub fn convert(yaml: &str, options: &ImportOptions) -> Result<Conversion, ImportError> {
    let parsed: Value =
        serde_yaml::from_str(yaml).map_err(|e| err("config.yaml", format!("not YAML: {e}")))?;
    let top = parsed
        .as_object()
        .ok_or_else(|| err("config.yaml", "must be a mapping"))?;
    let mut notes = Vec::new();
    let config = Value::Object(read_keys(top, TOP_KEYS, "", options, &mut notes));
    let cluster = text(&config, "cluster-name")?
        .ok_or_else(|| err("cluster-name", "required: the Magnum cluster to repair"))?;
    match text(&config, "cloud-provider")?.as_deref() {
        None | Some("openstack") => {}
        Some(other) => {
            return Err(err(
                "cloud-provider",
                format!("magnum-auto-healer has only the openstack provider, not {other:?}"),
            ));
        }
    }
    let dry_run = flag(&config, "dry-run")?.unwrap_or(false);
    // magnum-auto-healer's defaults (its config.NewConfig).
    let interval = duration(&config, "monitor-interval")?.unwrap_or_else(|| go("60s"));
    let startup = duration(&config, "check-delay-after-add")?.unwrap_or_else(|| go("10m"));
    if let Some(kube) = config.get("kubernetes") {
        let kube = kube
            .as_object()
            .ok_or_else(|| err("kubernetes", "must be a mapping"))?;
        read_keys(kube, KUBERNETES_KEYS, "kubernetes", options, &mut notes);
        note(
            &mut notes,
            "kubernetes",
            NoteKind::NoMeaningHere,
            "how magnum-auto-healer reached the apiserver (api-host, kubeconfig): nodehealer runs \
             in the cluster with its own ServiceAccount, so the section is not converted",
        );
    }
    if config.get("leader-elect").is_some() {
        note(
            &mut notes,
            "leader-elect",
            NoteKind::NoMeaningHere,
            "the chart runs nodehealer with leader election (leaderElection.enabled)",
        );
    }
    if config.get("rebuild-delay-after-reboot").is_some() {
        note(
            &mut notes,
            "rebuild-delay-after-reboot",
            NoteKind::NoMeaningHere,
            "the templates rebuild and replace without a reboot first; to try a reboot first, \
             list it in the NodeHealthCheck's escalatingRemediations with this delay as its \
             timeout",
        );
    }
    let health = config
        .get("healthcheck")
        .ok_or_else(|| err("healthcheck", "required: the master and worker checks"))?
        .as_object()
        .ok_or_else(|| err("healthcheck", "must be a mapping"))?;
    let health = read_keys(
        health,
        &["master", "worker"],
        "healthcheck",
        options,
        &mut notes,
    );

    let mut out = Vec::new();
    out.push(secret(&config, options, &mut notes)?);
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
    for (group, template, name) in [
        ("master", "rebuild", "masters"),
        ("worker", "replace", "workers"),
    ] {
        let Some(checks) = health.get(group) else {
            continue;
        };
        let path = format!("healthcheck.{group}");
        let enabled_key = format!("{group}-monitor-enabled");
        if flag(&config, &enabled_key)? == Some(false) {
            note(
                &mut notes,
                &path,
                NoteKind::NoMeaningHere,
                format!(
                    "{enabled_key} is false: magnum-auto-healer did not monitor these nodes, so \
                     no NodeHealthCheck is made for them"
                ),
            );
            continue;
        }
        let checks = checks
            .as_array()
            .ok_or_else(|| err(&path, "must be a list of checks"))?;
        let (conditions, endpoints) = map_checks(checks, &path, &interval, options, &mut notes)?;
        if conditions.is_empty() && endpoints.is_empty() {
            return Err(err(
                &path,
                "no check: nothing would detect an unhealthy node",
            ));
        }
        let mut spec = json!({
            "selector": {"matchLabels": {"magnum.openstack.org/role": group}},
            "unhealthyConditions": conditions,
            "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1",
                "kind": "RemediationTemplate", "name": template, "namespace": ns},
            "dryRun": dry_run,
            "nodeStartupTimeout": startup.to_string(),
        });
        if !endpoints.is_empty() {
            spec["endpointChecks"] = Value::Array(endpoints);
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
    Ok(Conversion {
        manifests: out,
        notes,
    })
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

/// A boolean as viper decodes one: YAML's true/false, or the strings "true"/"false".
fn flag(v: &Value, key: &str) -> Result<Option<bool>, ImportError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(err(key, "must be true or false")),
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
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Result<(Vec<Value>, Vec<Value>), ImportError> {
    let mut conditions = Vec::new();
    let mut endpoints = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let kind = text(check, "type")
            .map_err(|e| err(format!("{at}.type"), e.message))?
            .ok_or_else(|| err(format!("{at}.type"), "required"))?;
        let raw = match check.get("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(err(format!("{at}.params"), "must be a mapping")),
        };
        let p = |key: &str| format!("{at}.params.{key}");
        let known = match kind.as_str() {
            "NodeCondition" => NODE_CONDITION_KEYS,
            "Endpoint" => ENDPOINT_KEYS,
            other => {
                return Err(err(
                    format!("{at}.type"),
                    format!("unknown check type {other:?}: only NodeCondition and Endpoint"),
                ));
            }
        };
        let params = Value::Object(read_keys(
            &raw,
            known,
            &format!("{at}.params"),
            options,
            notes,
        ));
        // Both plugins' default.
        let unhealthy = duration(&params, "unhealthy-duration")
            .map_err(|e| err(p("unhealthy-duration"), e.message))?
            .unwrap_or_else(|| go("300s"));
        if kind == "NodeCondition" {
            let types = match params.get("types") {
                None => vec!["Ready".to_string()],
                v => strings(v, &p("types"))?,
            };
            // magnum-auto-healer looks at error-values first; ok-values only without them.
            let unhealthy_statuses: Vec<&str> = match params.get("error-values") {
                Some(v) if v.as_array().is_some_and(|a| !a.is_empty()) => {
                    let bad = strings(Some(v), &p("error-values"))?;
                    if params.get("ok-values").is_some() {
                        note(
                            notes,
                            p("ok-values"),
                            NoteKind::Differs,
                            "magnum-auto-healer uses error-values when both are given, and so \
                             does the conversion",
                        );
                    }
                    ["True", "False", "Unknown"]
                        .into_iter()
                        .filter(|s| bad.iter().any(|b| b == s))
                        .collect()
                }
                _ => {
                    let ok = match params.get("ok-values") {
                        None => vec!["True".to_string()],
                        v => strings(v, &p("ok-values"))?,
                    };
                    ["True", "False", "Unknown"]
                        .into_iter()
                        .filter(|s| !ok.iter().any(|o| o == s))
                        .collect()
                }
            };
            for t in &types {
                for status in &unhealthy_statuses {
                    conditions.push(json!({
                        "type": t, "status": status, "duration": unhealthy.to_string()
                    }));
                }
            }
            continue;
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
        let port = match params.get("port") {
            None => 6443,
            Some(v) => v
                .as_u64()
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| err(p("port"), "must be a port, 1 to 65535"))?,
        };
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
        for key in ["unhealthy-annotation", "require-token", "token"] {
            if params.get(key).is_some() {
                note(
                    notes,
                    p(key),
                    NoteKind::NoMeaningHere,
                    match key {
                        "unhealthy-annotation" => {
                            "nodehealer keeps how long a node has been unhealthy itself, not in \
                             a node annotation"
                        }
                        _ => {
                            "nodehealer probes without a bearer token: the apiserver's /healthz, \
                             /livez and /readyz are readable anonymously by default"
                        }
                    },
                );
            }
        }
        if flag(&params, "insecure-skip-verify")? != Some(true) {
            note(
                notes,
                p("insecure-skip-verify"),
                NoteKind::Differs,
                "magnum-auto-healer verifies the endpoint's certificate against the cluster CA \
                 (or ca-file); nodehealer's endpoint check does not verify it \
                 (insecureSkipVerify: true): it asks whether the endpoint answers, and sends no \
                 credential",
            );
        }
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
                "insecureSkipVerify": true,
            }));
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
fn secret(
    config: &Value,
    options: &ImportOptions,
    notes: &mut Vec<Note>,
) -> Result<Value, ImportError> {
    let raw = config
        .get("openstack")
        .and_then(Value::as_object)
        .ok_or_else(|| err("openstack", "required: how to reach the cloud"))?;
    let os = read_keys(raw, OPENSTACK_KEYS, "openstack", options, notes);
    let get = |k: &str| match os.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        // viper reads an unquoted number or boolean as one; the field is a string.
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    };
    if get("trust-id").is_some() {
        return Err(err(
            "openstack.trust-id",
            "nodehealer does not authenticate with a Keystone trust (Magnum's own deployment of \
             magnum-auto-healer does): create an application credential for the cluster's \
             project (`openstack application credential create nodehealer`) and give its id and \
             secret as application-credential-id and application-credential-secret",
        ));
    }
    if get("use-clouds").as_deref() == Some("true") || get("clouds-file").is_some() {
        return Err(err(
            "openstack.use-clouds",
            "magnum-auto-healer read its credentials from a clouds.yaml file on its node; put that \
             file into the Secret instead (`kubectl create secret generic openstack-cloud \
             --from-file=clouds.yaml`) and point the RemediationTemplates at its cloud",
        ));
    }
    for key in ["cert-file", "key-file"] {
        if get(key).is_some() {
            return Err(err(
                format!("openstack.{key}"),
                "nodehealer does not authenticate to Keystone with a TLS client certificate: use \
                 a password or an application credential",
            ));
        }
    }
    if get("application-credential-name").is_some() && get("application-credential-id").is_none() {
        return Err(err(
            "openstack.application-credential-name",
            "give the application credential's id (application-credential-id): nodehealer looks \
             application credentials up by id",
        ));
    }
    let mut auth = BTreeMap::new();
    let auth_url = get("auth-url").ok_or_else(|| err("openstack.auth-url", "required"))?;
    auth.insert("auth_url", auth_url);
    let pairs = [
        ("user-id", "user_id"),
        ("username", "username"),
        ("password", "password"),
        ("project-id", "project_id"),
        ("project-name", "project_name"),
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
    // gophercloud takes domain-id / domain-name for both the user's and the project's domain.
    if let Some(d) = get("domain-id") {
        auth.entry("project_domain_id").or_insert(d);
    }
    if let Some(d) = get("domain-name") {
        auth.entry("project_domain_name").or_insert(d);
    }
    let app_cred = auth.contains_key("application_credential_id");
    if !app_cred && !auth.contains_key("password") {
        return Err(err(
            "openstack.password",
            "required (or application-credential-id and -secret)",
        ));
    }
    let interface = match get("os-endpoint-type").as_deref() {
        None => "public",
        Some(t) => match t.trim_end_matches("URL").to_ascii_lowercase().as_str() {
            "public" => "public",
            "internal" => "internal",
            "admin" => "admin",
            other => {
                return Err(err(
                    "openstack.os-endpoint-type",
                    format!("{other:?} is not public, internal or admin"),
                ));
            }
        },
    };
    let mut cloud = json!({
        "auth": auth,
        "interface": interface,
        "identity_api_version": 3,
    });
    if app_cred {
        cloud["auth_type"] = json!("v3applicationcredential");
    }
    if let Some(region) = get("region") {
        cloud["region_name"] = json!(region);
    }
    if get("tls-insecure").as_deref() == Some("true") {
        cloud["verify"] = json!(false);
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

/// The conversion as one YAML stream: the notes first, as comments, then the manifests.
pub fn to_yaml(conversion: &Conversion) -> String {
    let mut out = String::new();
    if !conversion.notes.is_empty() {
        out.push_str("# Converted from a magnum-auto-healer configuration. Read these notes:\n");
        for n in &conversion.notes {
            out.push_str(&format!("# - {n}\n"));
        }
    }
    for m in &conversion.manifests {
        out.push_str(&format!(
            "---\n{}",
            serde_yaml::to_string(m).unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests;
