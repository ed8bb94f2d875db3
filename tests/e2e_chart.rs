//! The Helm chart on the real test bed: lint, render, schema, install; then the operator runs
//! with the chart's ServiceAccount token (RBAC on) through a whole remediation, so a missing
//! permission in the chart's roles fails the test.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use nodehealer_testbed::workloads::running_on;
use nodehealer_testbed::{
    CLUSTER_LABEL, ClusterSpec, MAGNUM_ROLE_LABEL, TestBed, is_ready, report_timing, taint_strings,
    wait_for,
};
use serde_json::json;
use support::Operator;
use support::chart::{alerts, chart, dashboard_queries, documents, run_helm};

/// `helm template` with one `--set`: Ok(manifests) or Err(helm's message).
fn render_with(chart: &str, set: &str) -> Result<Result<String, String>> {
    run_helm(
        &[
            "template",
            "nh",
            chart,
            "--kube-version",
            "1.36.3",
            "--set",
            set,
        ],
        None,
    )
}

const ALL_ON: &str = r#"
replicaCount: 3
dryRun: true
watchNamespace: nodehealer
nhcSelector: pool=workers
metrics:
  serviceMonitor: {enabled: true, labels: {release: prometheus}}
  prometheusRule: {enabled: true, labels: {release: prometheus}, for: {nodesUnhealthy: 1h}}
  grafanaDashboard: {enabled: true, labels: {grafana_dashboard: "1"}, annotations: {grafana_folder: Kubernetes}}
cloudSecret: {create: true, cloudsYaml: "clouds: {}", cacert: "-----BEGIN CERTIFICATE-----"}
cloudSecretNamespaces: [tenant-a]
thirdPartyRemediations:
  - apiGroup: self-node-remediation.medik8s.io
    resources: [selfnoderemediationtemplates, selfnoderemediations]
remediationTemplates:
  - name: power-cycle
    spec: {template: {spec: {action: PowerCycle, openstack: {cloudSecretRef: {name: openstack-cloud}}}}}
nodeHealthChecks:
  - name: workers
    spec:
      selector: {matchLabels: {pool: workers}}
      remediationTemplate: {apiVersion: nodehealer.io/v1alpha1, kind: RemediationTemplate, name: power-cycle, namespace: nodehealer}
"#;

/// `helm lint` with the defaults and with every option on; the rendered objects are
/// least-privilege and hardened; the values schema rejects a wrong type with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_lints_renders_hardened_and_least_privilege_and_checks_its_values() -> Result<()>
{
    let chart = chart();
    let chart = chart.to_str().context("path")?;
    run_helm(&["lint", chart, "--kube-version", "1.36.3"], None)?.map_err(anyhow::Error::msg)?;
    let values =
        std::env::temp_dir().join(format!("nodehealer-all-on-{}.yaml", std::process::id()));
    std::fs::write(&values, ALL_ON)?;
    let values = values.to_str().context("path")?;
    run_helm(
        &["lint", chart, "--kube-version", "1.36.3", "-f", values],
        None,
    )?
    .map_err(anyhow::Error::msg)?;

    for extra in [vec![], vec!["-f", values]] {
        let mut args = vec![
            "template",
            "nh",
            chart,
            "--namespace",
            "nodehealer",
            "--include-crds",
            "--kube-version",
            "1.36.3",
        ];
        args.extend(extra.iter().copied());
        let rendered = run_helm(&args, None)?.map_err(anyhow::Error::msg)?;
        let docs = documents(&rendered)?;
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in [
            "CustomResourceDefinition",
            "Deployment",
            "ServiceAccount",
            "ClusterRole",
            "Role",
            "Service",
            "PodDisruptionBudget",
        ] {
            assert!(kinds.contains(&kind), "{kind} rendered: {kinds:?}");
        }
        for doc in &docs {
            if let Some(rules) = doc["rules"].as_array() {
                for rule in rules {
                    for field in ["apiGroups", "resources", "verbs"] {
                        let items = rule[field].as_array().context("list")?;
                        assert!(
                            !items.iter().any(|v| v == "*"),
                            "no wildcard in {field}: {rule}"
                        );
                    }
                    let verbs: Vec<&str> = rule["verbs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|v| v.as_str())
                        .collect();
                    if rule["resources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r == "secrets")
                    {
                        assert_eq!(verbs, vec!["get"], "Secrets are only read");
                        assert_eq!(doc["kind"], "Role", "Secrets only in named namespaces");
                    }
                }
            }
            if doc["kind"] == "Deployment" {
                let pod = &doc["spec"]["template"]["spec"];
                assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
                assert_eq!(
                    pod["securityContext"]["seccompProfile"]["type"],
                    "RuntimeDefault"
                );
                let c = &pod["containers"][0];
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true);
                assert_eq!(sc["allowPrivilegeEscalation"], false);
                assert_eq!(sc["capabilities"]["drop"][0], "ALL");
                assert!(c["resources"]["requests"].is_object());
                let args: Vec<&str> = c["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|a| a.as_str())
                    .collect();
                assert!(args.contains(&"--leader-elect=true"), "{args:?}");
                let replicas = doc["spec"]["replicas"].as_i64().unwrap();
                assert!(replicas >= 2, "HA by default");
            }
        }
        if !extra.is_empty() {
            assert!(kinds.contains(&"PrometheusRule"), "{kinds:?}");
        }
        let aggregated = docs.iter().any(|d| {
            d["metadata"]["labels"]["rbac.ext-remediation/aggregate-to-ext-remediation"] == "true"
        });
        assert!(aggregated, "medik8s aggregation ClusterRole");
    }
    let wrong = render_with(chart, "replicaCount=two")?;
    match wrong {
        Ok(_) => bail!("replicaCount=two was accepted"),
        Err(message) => assert!(
            message.contains("replicaCount") && message.contains("want integer"),
            "{message}"
        ),
    }
    let wrong = render_with(chart, "controllers={nhc,fence}")?;
    assert!(wrong.is_err(), "an unknown controller is refused");

    // The alerts: valid PromQL, the `for` durations from the values.
    let rules = alerts(&["-f", values])?;
    let names: Vec<&str> = rules.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "NodehealerNodesUnhealthy",
            "NodehealerRemediationsFailing",
            "NodehealerNoStandbyAvailable",
            "NodehealerOpenStackErrors",
            "NodehealerCloudNotReady"
        ]
    );
    assert_eq!(rules[0].2.as_deref(), Some("1h"));
    assert_eq!(rules[2].2.as_deref(), Some("10m"));
    assert_eq!(rules[4].2.as_deref(), Some("15m"));
    match render_with(chart, "metrics.prometheusRule.for.openStackErrors=soon")? {
        Ok(_) => bail!("a `for` that is no Prometheus duration was accepted"),
        Err(message) => assert!(message.contains("openStackErrors"), "{message}"),
    }

    // The Grafana dashboard: off unless asked for; a ConfigMap with the sidecar's label; every
    // panel query valid PromQL on our metrics, covering what an operator of the pools watches.
    let off = render_with(chart, "metrics.service.enabled=true")?.map_err(anyhow::Error::msg)?;
    assert!(!off.contains("nodehealer.json"), "no dashboard by default");
    let queries = dashboard_queries(&[
        "--set",
        "metrics.grafanaDashboard.enabled=true",
        "--set",
        "metrics.grafanaDashboard.namespace=monitoring",
    ])?;
    let all: Vec<String> = queries
        .iter()
        .flat_map(|(_, q)| support::chart::families(q))
        .collect();
    for family in [
        "nodehealer_nodehealthcheck_nodes",
        "nodehealer_remediations_ended",
        "nodehealer_node_recovery_seconds",
        "nodehealer_standby_nodes",
        "nodehealer_openstack_requests",
    ] {
        assert!(
            all.iter().any(|f| f == family),
            "a panel reads {family}: {queries:?}"
        );
    }
    let rendered = run_helm(
        &[
            "template",
            "nh",
            chart,
            "--kube-version",
            "1.36.3",
            "--set",
            "metrics.grafanaDashboard.enabled=true,metrics.grafanaDashboard.namespace=monitoring",
            "--show-only",
            "templates/grafana-dashboard.yaml",
        ],
        None,
    )?
    .map_err(anyhow::Error::msg)?;
    let cm = &documents(&rendered)?[0];
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    Ok(())
}

/// `helm install` into the real apiserver; then the operator, with the chart's ServiceAccount
/// token and nothing else, runs a whole PowerCycle failover from NodeHealthCheck to healthy
/// node. Any permission the chart lacks shows up as a failure (and a `forbidden` in the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_heals_a_node_with_only_the_charts_permissions() -> Result<()> {
    let tb = support::testbed().await?;
    let ns = tb.namespace("chart").await?;
    let client = tb.client().await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 3)).await?;
    let release = ns.clone();
    let values = std::env::temp_dir().join(format!("nodehealer-{ns}.yaml"));
    let template_ns = ns.clone();
    std::fs::write(
        &values,
        serde_yaml::to_string(&json!({
            "replicaCount": 0,
            "remediationTemplates": [{"name": "power-cycle", "spec": {"template": {"spec": {
                "action": "PowerCycle", "openstack": {"cloudSecretRef": {"name": "openstack-cloud"}}}}}}],
            "nodeHealthChecks": [{"name": format!("{ns}-workers"), "spec": {
                "selector": {"matchLabels": {CLUSTER_LABEL: cluster.name, MAGNUM_ROLE_LABEL: "worker"}},
                "unhealthyConditions": [{"type": "Ready", "status": "Unknown", "duration": "3s"}],
                "maxUnhealthy": 1,
                "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
                    "name": "power-cycle", "namespace": template_ns}}}]
        }))?,
    )?;
    let installed = run_helm(
        &[
            "install",
            &release,
            chart().to_str().unwrap(),
            "--namespace",
            &ns,
            "-f",
            values.to_str().unwrap(),
        ],
        Some(&tb.cp.kubeconfig),
    )?;
    if let Err(e) = installed {
        bail!("helm install: {e}");
    }
    support::cloud_secret(tb, &client, &ns, "openstack-cloud").await?;

    // The chart's ServiceAccount, and a kubeconfig with its token only.
    let sa_name = format!("{release}-nodehealer");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))?;
    let token = sas
        .create_token_request(&sa_name, &PostParams::default(), &request)
        .await?
        .status
        .context("token")?
        .token;
    let kubeconfig = tb.run_dir.join(format!("{ns}-sa.kubeconfig"));
    tb.cp.kubeconfig_for(&kubeconfig, &token, &sa_name)?;
    let op = Operator::start_with_kubeconfig(
        tb,
        &ns,
        &kubeconfig,
        &[
            &format!("--watch-namespace={ns}"),
            &format!("--nhc-selector=app.kubernetes.io/instance={release}"),
        ],
    )?;

    let workers = [
        (CLUSTER_LABEL, cluster.name.as_str()),
        (MAGNUM_ROLE_LABEL, "worker"),
    ];
    let home = support::db_placed(&client, &ns, &workers).await?;
    let started = std::time::Instant::now();
    tb.fail_node(&home).await?;
    let remediations: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "nodehealer.io",
            "v1alpha1",
            "Remediation",
        )),
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let healed = wait_for(
        Duration::from_secs(120),
        "the pod elsewhere, the node back, the Remediation gone",
        || async {
            let moved = running_on(&client, &ns, "db-0")
                .await?
                .is_some_and(|n| n != home);
            let ready = is_ready(&nodes.get(&home).await?);
            let none = remediations
                .list(&ListParams::default())
                .await?
                .items
                .is_empty();
            Ok(moved && ready && none && tb.power_state(&home).await?.status == "ACTIVE")
        },
    )
    .await;
    let log = op.proc.log_tail(400);
    if let Err(e) = healed {
        bail!("{e:#}\noperator log:\n{}", op.log_tail());
    }
    report_timing("chart: failover with the chart's RBAC", started.elapsed());
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );

    // Uninstall as the README says: pause, nothing left running, `helm uninstall`; what the
    // chart created is gone, the cluster as it was.
    let nhcs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "nodehealer.io",
            "v1alpha1",
            "NodeHealthCheck",
        )),
    );
    let nhc = format!("{ns}-workers");
    nhcs.patch(
        &nhc,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"pauseRequests": ["uninstall"]}})),
    )
    .await?;
    if let Err(e) = run_helm(
        &["uninstall", &release, "--namespace", &ns, "--wait"],
        Some(&tb.cp.kubeconfig),
    )? {
        bail!("helm uninstall: {e}");
    }
    wait_for(
        Duration::from_secs(30),
        "the chart's objects gone",
        || async {
            let templates: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                &ns,
                &ApiResource::from_gvk(&GroupVersionKind::gvk(
                    "nodehealer.io",
                    "v1alpha1",
                    "RemediationTemplate",
                )),
            );
            Ok(nhcs.get_opt(&nhc).await?.is_none()
                && templates
                    .list(&ListParams::default())
                    .await?
                    .items
                    .is_empty()
                && sas.get_opt(&sa_name).await?.is_none())
        },
    )
    .await?;
    let taints = taint_strings(&nodes.get(&home).await?);
    assert!(
        !taints
            .iter()
            .any(|t| t.starts_with("nodehealer.io/") || t.contains("out-of-service")),
        "no taint of ours left: {taints:?}"
    );
    let _ = std::fs::remove_file(values);
    let _: &TestBed = tb;
    Ok(())
}
