//! The step machine end to end for each action, against the simulator and a real OpenStack,
//! with the same test bodies (`mod sim`, `mod real`; the real ones fail, never skip, without
//! `NODEHEALER_OPENSTACK`). The test bed's kwok nodes have "kubelets" that follow their
//! server: on the simulator through its change feed, on the real cloud through a poll of its
//! Nova's server list (`nodehealer_testbed::link::run_real`); the real cloud's clusters are
//! plain Nova servers booted through its API.
//!
//! Each test: a small cluster, a broken node, a Remediation as a NodeHealthCheck would create
//! it, the operator; then what the user sees: phase Succeeded, the node Ready again, the
//! server ACTIVE, and the requests Nova recorded (its instance actions, identical on both).

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, PostParams};
use nodehealer::api::{Remediation, RemediationPhase};
use nodehealer_testbed::realcloud::{CloudJson, RealCloud};
use nodehealer_testbed::{ClusterSpec, TestBed, TestCluster, ready_status, wait_for};
use openstack_sim::ServerView;
use serde_json::{Value, json};
use support::Operator;
use support::target::real_cloud_json;

/// Which cloud a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum On {
    Sim,
    Real,
}

/// How long a remediation may take (the real cloud's actions take seconds each).
const PHASE_WAIT: Duration = Duration::from_secs(180);

struct Scenario {
    tb: &'static TestBed,
    on: On,
    ns: String,
    cluster: TestCluster,
    client: kube::Client,
    op: Operator,
}

impl Scenario {
    async fn new(on: On, prefix: &str, workers: u32) -> Result<Scenario> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let spec = ClusterSpec {
            magnum: false,
            // Only the action is under test here; the realistic workloads have suites of
            // their own and would slow every scenario down.
            realistic: false,
            ..ClusterSpec::magnum(&ns, 0, workers)
        };
        let client = tb.client().await?;
        let (cluster, clouds_yaml) = match on {
            On::Sim => (tb.create_cluster(spec).await?, tb.clouds_yaml("openstack")),
            On::Real => {
                let cloud: CloudJson = real_cloud_json()?;
                let yaml = cloud.clouds_yaml("openstack");
                tb.attach_real_cloud(cloud)?;
                (tb.create_real_cluster(spec).await?, yaml)
            }
        };
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "cloud-credentials"},
            "stringData": {"clouds.yaml": clouds_yaml}
        }))?;
        Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await?;
        let op = Operator::start(tb, &ns, &["--controllers=remediation"])?;
        Ok(Scenario {
            tb,
            on,
            ns,
            cluster,
            client,
            op,
        })
    }

    fn real(&self) -> Result<&RealCloud> {
        self.tb.real_cloud()
    }

    fn worker(&self, i: usize) -> String {
        self.cluster.nodes_with_role("worker")[i].clone()
    }

    fn server_id(&self, node: &str) -> String {
        self.cluster.servers[node].clone()
    }

    /// The node's server as Nova shows it; None once it is deleted.
    async fn server(&self, node: &str) -> Result<Option<ServerView>> {
        let id = self.server_id(node);
        match self.on {
            On::Sim => Ok(self.tb.sim.server(&id)),
            On::Real => self.real()?.server(&id).await,
        }
    }

    /// The server's instance actions after its `create`, oldest first: every request Nova
    /// accepted for it (nodehealer's and the test's own).
    async fn actions(&self, node: &str) -> Result<Vec<String>> {
        let id = self.server_id(node);
        let all = match self.on {
            On::Sim => self
                .tb
                .sim
                .instance_actions(&id)
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.action)
                .collect(),
            On::Real => self.real()?.instance_actions(&id).await?,
        };
        Ok(all.into_iter().filter(|a| a != "create").collect())
    }

    /// Someone (not nodehealer) sends a server action.
    async fn someone_sends(&self, node: &str, body: Value) -> Result<()> {
        let id = self.server_id(node);
        match self.on {
            On::Sim => self.tb.nova_action(&id, body).await,
            On::Real => self.real()?.action(&id, body).await,
        }
    }

    async fn remediate(&self, node: &str, spec: Value) -> Result<()> {
        let mut spec = spec;
        spec["openstack"] =
            json!({"cloudSecretRef": {"name": "cloud-credentials"}, "cloud": "openstack"});
        support::remediate(&self.client, &self.ns, node, spec).await
    }

    async fn wait_phase(&self, node: &str, phase: RemediationPhase) -> Result<()> {
        let remediations: Api<Remediation> = Api::namespaced(self.client.clone(), &self.ns);
        support::wait_phase(&remediations, node, phase, PHASE_WAIT)
            .await
            .with_context(|| format!("operator log:\n{}", self.op.log_tail()))
            .map(drop)
    }

    async fn node(&self, name: &str) -> Result<Option<Node>> {
        Ok(Api::<Node>::all(self.client.clone()).get_opt(name).await?)
    }

    async fn ready(&self, node: &str) -> Result<Option<String>> {
        Ok(self.node(node).await?.and_then(|n| ready_status(&n)))
    }

    async fn wait_not_ready(&self, node: &str) -> Result<()> {
        wait_for(
            Duration::from_secs(60),
            &format!("{node} not Ready"),
            || async { Ok(self.ready(node).await?.as_deref() != Some("True")) },
        )
        .await
        .map(drop)
    }

    /// The node is Ready again and its server ACTIVE with nothing in progress.
    async fn assert_back(&self, node: &str) -> Result<ServerView> {
        wait_for(
            Duration::from_secs(60),
            &format!("{node} Ready"),
            || async { Ok(self.ready(node).await?.as_deref() == Some("True")) },
        )
        .await?;
        let server = self.server(node).await?.context("the server")?;
        assert_eq!(
            (server.status.as_str(), server.task_state.as_deref()),
            ("ACTIVE", None),
            "{server:?}"
        );
        Ok(server)
    }

    async fn cleanup(&self) -> Result<()> {
        match self.on {
            On::Sim => Ok(()),
            On::Real => self.tb.delete_real_cluster(&self.cluster).await,
        }
    }
}

/// Runs a body, then the scenario's clean-up whatever the body's outcome.
async fn run<F, Fut>(on: On, prefix: &str, workers: u32, body: F) -> Result<()>
where
    F: FnOnce(&'static Scenario) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::FutureExt;
    let s: &'static Scenario = Box::leak(Box::new(Scenario::new(on, prefix, workers).await?));
    let outcome = std::panic::AssertUnwindSafe(body(s)).catch_unwind().await;
    let cleaned = s.cleanup().await;
    match outcome {
        Ok(result) => result.and(cleaned),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

macro_rules! conformance {
    ($($name:ident: $prefix:literal, $workers:literal;)*) => {
        mod sim {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::run(super::On::Sim, $prefix, $workers, super::$name).await
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    // Fails with the reason when the real cloud is not given.
                    super::real_cloud_json()?;
                    super::run(super::On::Real, $prefix, $workers, super::$name).await
                }
            )*
        }
    };
}

conformance! {
    reboot_soft: "rsoft", 1;
    reboot_soft_then_hard_for_a_hung_kernel: "rhard", 1;
    power_cycle: "pcycle", 1;
    rebuild_of_a_running_server: "rbrun", 1;
    rebuild_of_a_stopped_server_starts_it: "rbstop", 1;
    replace_by_nova_delete: "replace", 2;
    a_shelved_server_is_unshelved: "shelved", 1;
}

/// A hung kubelet: one soft reboot cures it; nothing is fenced.
async fn reboot_soft(s: &Scenario) -> Result<()> {
    let victim = s.worker(0);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "Reboot"})).await?;
    s.wait_phase(&victim, RemediationPhase::Succeeded).await?;
    let server = s.assert_back(&victim).await?;
    assert_eq!(s.actions(&victim).await?, ["reboot"]);
    assert_eq!((server.soft_reboots, server.hard_reboots), (1, 0));
    Ok(())
}

/// A hung kernel ignores the soft reboot: after half the recover timeout a hard one follows.
async fn reboot_soft_then_hard_for_a_hung_kernel(s: &Scenario) -> Result<()> {
    let victim = s.worker(0);
    s.tb.kernel_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "Reboot", "timeouts": {"recover": "20s"}}),
    )
    .await?;
    s.wait_phase(&victim, RemediationPhase::Succeeded).await?;
    let server = s.assert_back(&victim).await?;
    assert_eq!(s.actions(&victim).await?, ["reboot", "reboot"]);
    assert_eq!((server.soft_reboots, server.hard_reboots), (1, 1));
    Ok(())
}

/// The server still runs (a hung kubelet): stopped, confirmed SHUTOFF, started again.
async fn power_cycle(s: &Scenario) -> Result<()> {
    let victim = s.worker(0);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    s.wait_phase(&victim, RemediationPhase::Succeeded).await?;
    s.assert_back(&victim).await?;
    assert_eq!(s.actions(&victim).await?, ["stop", "start"]);
    Ok(())
}

/// Fenced first (so Nova rebuilds a SHUTOFF server and keeps it stopped), then started.
async fn rebuild_of_a_running_server(s: &Scenario) -> Result<()> {
    let victim = s.worker(0);
    let image = s.server(&victim).await?.context("the server")?.image_id;
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "Rebuild"})).await?;
    s.wait_phase(&victim, RemediationPhase::Succeeded).await?;
    let server = s.assert_back(&victim).await?;
    assert_eq!(server.image_id, image, "rebuilt with its own image");
    assert_eq!(s.actions(&victim).await?, ["stop", "rebuild", "start"]);
    Ok(())
}

/// Someone stopped the server: fenced as it is, rebuilt (Nova keeps it SHUTOFF after a
/// short ACTIVE), started.
async fn rebuild_of_a_stopped_server_starts_it(s: &Scenario) -> Result<()> {
    let victim = s.worker(0);
    s.someone_sends(&victim, json!({"os-stop": null})).await?;
    wait_for(Duration::from_secs(60), "the server SHUTOFF", || async {
        Ok(s.server(&victim)
            .await?
            .is_some_and(|v| v.status == "SHUTOFF" && v.task_state.is_none()))
    })
    .await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "Rebuild"})).await?;
    s.wait_phase(&victim, RemediationPhase::Succeeded).await?;
    s.assert_back(&victim).await?;
    assert_eq!(s.actions(&victim).await?, ["stop", "rebuild", "start"]);
    Ok(())
}

/// Plain Nova servers: Replace fences, then deletes the server (the compute host carries
/// the delete out) and the Node.
async fn replace_by_nova_delete(s: &Scenario) -> Result<()> {
    let victim = s.worker(0);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "Replace"})).await?;
    s.wait_phase(&victim, RemediationPhase::Succeeded).await?;
    assert!(s.server(&victim).await?.is_none(), "the server is deleted");
    wait_for(Duration::from_secs(30), "the old Node deleted", || async {
        Ok(s.node(&victim).await?.is_none())
    })
    .await?;
    assert_eq!(s.actions(&victim).await?, ["stop", "delete"]);
    let rem = Api::<Remediation>::namespaced(s.client.clone(), &s.ns)
        .get(&victim)
        .await?;
    assert!(
        rem.status
            .unwrap_or_default()
            .conditions
            .iter()
            .any(|c| c.type_ == "PermanentNodeDeletionExpected" && c.status == "True")
    );
    // The other worker is untouched.
    let other = s.worker(1);
    assert_eq!(s.ready(&other).await?.as_deref(), Some("True"));
    assert!(s.actions(&other).await?.is_empty());
    Ok(())
}

/// Someone shelved the server: it is off already (no os-stop), and only unshelve boots it.
async fn a_shelved_server_is_unshelved(s: &Scenario) -> Result<()> {
    let victim = s.worker(0);
    s.someone_sends(&victim, json!({"shelve": null})).await?;
    wait_for(
        Duration::from_secs(90),
        "the server SHELVED_OFFLOADED",
        || async {
            Ok(s.server(&victim)
                .await?
                .is_some_and(|v| v.status == "SHELVED_OFFLOADED" && v.task_state.is_none()))
        },
    )
    .await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    s.wait_phase(&victim, RemediationPhase::Succeeded).await?;
    s.assert_back(&victim).await?;
    assert_eq!(s.actions(&victim).await?, ["shelve", "unshelve"]);
    Ok(())
}
