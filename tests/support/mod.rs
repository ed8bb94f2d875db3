//! Shared by the operator's end-to-end tests: installs the CRDs into the shared test bed and
//! runs the `nodehealer` binary as a process of its own, scoped to one test.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use nodehealer::api::{NodeHealthCheckStatus, Remediation, RemediationPhase};
use nodehealer_testbed::procs::{Proc, free_port};
use nodehealer_testbed::{TestBed, wait_for};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

pub mod chart;
pub mod target;

/// The label every test's NodeHealthChecks carry, with the test's namespace as the value; the
/// test's operator only reconciles its own (`--nhc-selector`).
pub const SCOPE_LABEL: &str = "nodehealer.io/test-scope";

static CRDS: OnceCell<()> = OnceCell::const_new();

/// The shared test bed with our CRDs installed and established.
pub async fn testbed() -> Result<&'static TestBed> {
    testbed_with(nodehealer_testbed::TestBedOptions::default()).await
}

/// [`testbed`] with options (the first call of the binary decides them).
pub async fn testbed_with(options: nodehealer_testbed::TestBedOptions) -> Result<&'static TestBed> {
    let tb = TestBed::shared_with(options);
    CRDS.get_or_try_init(|| async {
        let client = tb.client().await?;
        for crd in nodehealer::api::crds() {
            nodehealer_testbed::objects::install_crd(&client, &crd, "nodehealer-tests").await?;
        }
        anyhow::Ok(())
    })
    .await?;
    Ok(tb)
}

/// A running operator process.
pub struct Operator {
    pub proc: Proc,
    pub http_port: u16,
    pub args: Vec<String>,
    name: String,
    /// The process name of the first start; restarts are numbered after it.
    base: String,
    restarts: u32,
}

impl Operator {
    /// Starts the operator for the test whose namespace is `ns`: Remediations in `ns`, the
    /// NodeHealthChecks labelled with `SCOPE_LABEL=ns`, its leader Lease in `ns`.
    pub fn start(tb: &TestBed, ns: &str, extra: &[&str]) -> Result<Operator> {
        Self::start_named(tb, ns, "operator", extra)
    }

    /// Like `start`, with a name for the process (two replicas of one test, say).
    pub fn start_named(tb: &TestBed, ns: &str, name: &str, extra: &[&str]) -> Result<Operator> {
        let mut args = vec![
            format!("--watch-namespace={ns}"),
            format!("--nhc-selector={SCOPE_LABEL}={ns}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(tb, ns, name, &tb.cp.kubeconfig, args)
    }

    /// Runs the operator with another identity's kubeconfig (a ServiceAccount token, say) and
    /// only the given scoping flags.
    pub fn start_with_kubeconfig(
        tb: &TestBed,
        ns: &str,
        kubeconfig: &std::path::Path,
        extra: &[&str],
    ) -> Result<Operator> {
        let args = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(tb, ns, "operator", kubeconfig, args)
    }

    fn spawn(
        tb: &TestBed,
        ns: &str,
        name: &str,
        kubeconfig: &std::path::Path,
        extra: Vec<String>,
    ) -> Result<Operator> {
        let http_port = free_port()?;
        let mut args: Vec<String> = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--namespace={ns}"),
            format!("--http-address=127.0.0.1:{http_port}"),
            format!("--identity={ns}-{name}"),
            "--log=info,nodehealer=debug".into(),
        ];
        args.extend(extra);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodehealer"));
        cmd.args(&args);
        let base = format!("{ns}-{name}");
        let proc = tb.spawn_process(&base, cmd)?;
        Ok(Operator {
            proc,
            http_port,
            args,
            name: name.to_string(),
            base,
            restarts: 0,
        })
    }

    /// Starts the same operator again (after a kill, say).
    pub fn restart(&mut self, tb: &TestBed) -> Result<()> {
        self.proc.kill();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodehealer"));
        cmd.args(&self.args);
        self.restarts += 1;
        self.proc = tb.spawn_process(&format!("{}-{}", self.base, self.restarts), cmd)?;
        Ok(())
    }

    /// Waits until `/readyz` answers 200 (caches synced, leader election settled).
    pub async fn wait_ready(&self) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        let ready = wait_for(Duration::from_secs(30), "the operator ready", || async {
            Ok(reqwest::get(&url).await?.status().is_success())
        })
        .await;
        ready.with_context(|| self.log_tail()).map(|_| ())
    }

    /// The operator's /metrics text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(
            reqwest::get(format!("http://127.0.0.1:{}/metrics", self.http_port))
                .await?
                .text()
                .await?,
        )
    }

    /// The tail of the operator's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail(60)
    }
}

/// Creates the Secret `name` in `ns` holding the test bed's clouds.yaml (cloud `openstack`).
pub async fn cloud_secret(tb: &TestBed, client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"clouds.yaml": tb.clouds_yaml("openstack")}
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// Runs the StatefulSet `db` (one replica, one volume) on the nodes `selector` picks;
/// returns the node its pod runs on.
pub async fn db_placed(
    client: &kube::Client,
    ns: &str,
    selector: &[(&str, &str)],
) -> Result<String> {
    nodehealer_testbed::workloads::stateful_app(client, ns, "db", selector).await?;
    let running_on = || nodehealer_testbed::workloads::running_on(client, ns, "db-0");
    wait_for(Duration::from_secs(60), "db-0 running", || async {
        Ok(running_on().await?.is_some())
    })
    .await?;
    running_on().await?.context("db-0 placed")
}

/// Creates a Remediation for `node` in `ns` exactly as a NodeHealthCheck would (the contract's
/// name and annotations), with `spec`.
pub async fn remediate(client: &kube::Client, ns: &str, node: &str, spec: Value) -> Result<()> {
    let rem: Remediation = serde_json::from_value(json!({
        "apiVersion": "nodehealer.io/v1alpha1", "kind": "Remediation",
        "metadata": {"name": node, "annotations": {
            "remediation.medik8s.io/node-name": node,
            "remediation.medik8s.io/template-name": "test"
        }},
        "spec": spec
    }))?;
    Api::<Remediation>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rem)
        .await?;
    Ok(())
}

/// The events of namespace `ns`, as (reason, message).
pub async fn events(client: &kube::Client, ns: &str) -> Result<Vec<(String, String)>> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    Ok(events
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect())
}

/// The taints of node `name` as `key=value:Effect` strings; none when it does not exist.
pub async fn node_taints(client: &kube::Client, name: &str) -> Result<Vec<String>> {
    Ok(Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get_opt(name)
        .await?
        .map(|n| nodehealer_testbed::taint_strings(&n))
        .unwrap_or_default())
}

/// Waits until the Remediation `name` reaches `phase`; fails at once when it ends in another
/// final phase. Returns how long it took.
pub async fn wait_phase(
    remediations: &Api<Remediation>,
    name: &str,
    phase: RemediationPhase,
    timeout: Duration,
) -> Result<Duration> {
    wait_for(
        timeout,
        &format!("Remediation {name} {phase:?}"),
        || async {
            let now = remediations.get(name).await?.status.and_then(|s| s.phase);
            if now.is_some_and(|p| p.is_final()) && now != Some(phase) {
                anyhow::bail!("Remediation ended {now:?}, wanted {phase:?}");
            }
            Ok(now == Some(phase))
        },
    )
    .await
}

/// The OpenStack actions the simulator accepted for `server`, in order (`delete` for a DELETE).
pub fn accepted_actions(tb: &TestBed, server: &str) -> Vec<String> {
    tb.sim
        .request_log()
        .into_iter()
        .filter(|r| r.server_id.as_deref() == Some(server) && (200..300).contains(&r.status))
        .filter_map(|r| match (r.method.as_str(), r.action) {
            ("POST", Some(a)) => Some(a),
            ("DELETE", _) => Some("delete".into()),
            _ => None,
        })
        .collect()
}

/// Why a NodeHealthCheck does nothing for `node`, from its status.
pub fn blocked(status: &NodeHealthCheckStatus, node: &str) -> Option<String> {
    status
        .unhealthy_nodes
        .iter()
        .find(|u| u.name == node)
        .and_then(|u| u.blocked_reason.clone())
}
