//! The Remediation controller on the real test bed with the OpenStack simulator: each action
//! end to end, the safety invariants (no out-of-service taint without a confirmed SHUTOFF, no
//! action sent twice across operator crashes), and failures that must not release anything.
//!
//! Remediations are created here exactly as a NodeHealthCheck creates them (the contract's
//! name and annotations), with `--controllers=remediation`, so each scenario controls when
//! the remediation starts; the full NodeHealthCheck → Remediation story is in `e2e_failover.rs`.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use nodehealer::api::{Remediation, RemediationPhase, RemediationStatus};
use nodehealer_testbed::workloads::running_on;
use nodehealer_testbed::{
    ClusterSpec, MAGNUM_ROLE_LABEL, TestBed, TestCluster, ready_status, report_timing, wait_for,
};
use serde_json::json;
use support::Operator;

const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute";

struct Scenario {
    tb: &'static TestBed,
    ns: String,
    cluster: TestCluster,
    client: kube::Client,
    op: Operator,
}

impl Scenario {
    async fn new(prefix: &str, masters: u32, workers: u32) -> Result<Scenario> {
        Self::with_cluster(prefix, |ns| ClusterSpec::magnum(ns, masters, workers)).await
    }

    /// A scenario on the cluster `spec` describes for the test's namespace.
    async fn with_cluster(prefix: &str, spec: impl Fn(&str) -> ClusterSpec) -> Result<Scenario> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let cluster = tb.create_cluster(spec(&ns)).await?;
        let client = tb.client().await?;
        support::cloud_secret(tb, &client, &ns, "cloud-credentials").await?;
        let op = Operator::start(tb, &ns, &["--controllers=remediation"])?;
        Ok(Scenario {
            tb,
            ns,
            cluster,
            client,
            op,
        })
    }

    fn worker(&self, i: usize) -> String {
        self.cluster.nodes_with_role("worker")[i].clone()
    }

    /// Runs the StatefulSet `db` on the cluster's nodes (those `extra` labels select, too);
    /// returns the node its pod runs on.
    async fn db_placed(&self, extra: &[(&str, &str)]) -> Result<String> {
        let mut selector = vec![(
            nodehealer_testbed::CLUSTER_LABEL,
            self.cluster.name.as_str(),
        )];
        selector.extend_from_slice(extra);
        support::db_placed(&self.client, &self.ns, &selector).await
    }

    fn server(&self, node: &str) -> String {
        self.cluster.servers[node].clone()
    }

    /// Creates the Remediation for `node` as the NodeHealthCheck would.
    async fn remediate(&self, node: &str, spec: serde_json::Value) -> Result<()> {
        let mut spec = spec;
        let mut openstack =
            json!({"cloudSecretRef": {"name": "cloud-credentials"}, "cloud": "openstack"});
        if let Some(extra) = spec.get("openstack").and_then(|v| v.as_object()) {
            for (k, v) in extra {
                openstack[k] = v.clone();
            }
        }
        spec["openstack"] = openstack;
        support::remediate(&self.client, &self.ns, node, spec).await
    }

    fn remediations(&self) -> Api<Remediation> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn phase(&self, node: &str) -> Result<Option<RemediationPhase>> {
        Ok(self
            .remediations()
            .get(node)
            .await?
            .status
            .and_then(|s| s.phase))
    }

    async fn wait_phase(
        &self,
        node: &str,
        phase: RemediationPhase,
        timeout: Duration,
    ) -> Result<Duration> {
        let took = support::wait_phase(&self.remediations(), node, phase, timeout).await;
        took.with_context(|| format!("operator log:\n{}", self.op.log_tail()))
    }

    /// Waits until the node is no longer Ready: a Remediation of a Ready node ends at once
    /// without doing anything, so each scenario starts from a node that is really down.
    async fn wait_not_ready(&self, node: &str) -> Result<()> {
        wait_for(
            Duration::from_secs(30),
            &format!("{node} not Ready"),
            || async {
                Ok(self
                    .node(node)
                    .await?
                    .and_then(|n| ready_status(&n))
                    .as_deref()
                    != Some("True"))
            },
        )
        .await?;
        Ok(())
    }

    /// Waits until none of our taints (nor the out-of-service one) is left on the node: they
    /// go right after the final phase is written.
    async fn wait_taints_gone(&self, node: &str) -> Result<Vec<String>> {
        wait_for(
            Duration::from_secs(10),
            &format!("our taints gone from {node}"),
            || async {
                let taints = self.taints(node).await?;
                Ok(!taints
                    .iter()
                    .any(|t| t.starts_with("nodehealer.io/") || t == OUT_OF_SERVICE))
            },
        )
        .await?;
        self.taints(node).await
    }

    async fn node(&self, name: &str) -> Result<Option<Node>> {
        Ok(Api::<Node>::all(self.client.clone()).get_opt(name).await?)
    }

    async fn taints(&self, name: &str) -> Result<Vec<String>> {
        support::node_taints(&self.client, name).await
    }

    /// Accepted OpenStack actions on a server, from the simulator's request log.
    fn accepted_actions(&self, server: &str) -> Vec<String> {
        support::accepted_actions(self.tb, server)
    }

    async fn events(&self, reason: &str) -> Result<Vec<String>> {
        Ok(support::events(&self.client, &self.ns)
            .await?
            .into_iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, message)| message)
            .collect())
    }
}

/// The status of the Remediation's `Succeeded` condition, as medik8s NodeHealthCheck reads it.
fn succeeded(status: &RemediationStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Succeeded")
        .map(|c| c.status.as_str())
}

/// PowerCycle: the server dies, the step machine confirms SHUTOFF, the out-of-service taint
/// frees the StatefulSet pod, the taint goes, the server is powered on, the node is Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cycle_frees_the_workload_only_after_shutoff_and_brings_the_node_back() -> Result<()>
{
    let s = Scenario::new("powercycle", 1, 3).await?;
    let victim = s.db_placed(&[(MAGNUM_ROLE_LABEL, "worker")]).await?;
    let server = s.server(&victim);

    // The kubelet hangs: Nova still says ACTIVE, so fencing must power the server off first.
    s.tb.kubelet_hang(&victim).await?;
    wait_for(Duration::from_secs(20), "Ready=False", || async {
        Ok(s.node(&victim)
            .await?
            .and_then(|n| ready_status(&n))
            .as_deref()
            == Some("False"))
    })
    .await?;
    let started = Instant::now();
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    wait_for(
        Duration::from_secs(90),
        "the workload running elsewhere",
        || async {
            Ok(matches!(running_on(&s.client, &s.ns, "db-0").await?, Some(n) if n != victim))
        },
    )
    .await
    .with_context(|| format!("operator log:\n{}", s.op.log_tail()))?;
    let moved = started.elapsed();
    report_timing(
        "remediation: PowerCycle created -> StatefulSet pod Running elsewhere",
        moved,
    );

    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(s.tb.power_state(&victim).await?.status, "ACTIVE");
    assert_eq!(
        ready_status(&s.node(&victim).await?.expect("node")).as_deref(),
        Some("True")
    );
    s.wait_taints_gone(&victim).await?;
    assert_eq!(s.accepted_actions(&server), vec!["os-stop", "os-start"]);
    let rem = s.remediations().get(&victim).await?;
    let steps: Vec<String> = rem
        .status
        .unwrap()
        .steps
        .into_iter()
        .map(|st| st.name.to_string())
        .collect();
    assert_eq!(
        steps,
        vec!["Fence", "ReleaseWorkloads", "Recover", "WaitForNode"]
    );
    Ok(())
}

/// The out-of-service taint appears only while Nova reports the server SHUTOFF: sampled
/// continuously through a whole PowerCycle whose server is slow to power off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_out_of_service_taint_never_precedes_a_confirmed_shutoff() -> Result<()> {
    let s = Scenario::new("invariant", 0, 3).await?;
    // A pod on the node keeps the release step (and so the taint) long enough to be seen.
    let victim = s.db_placed(&[]).await?;
    let server_id = s.server(&victim);
    s.tb.kubelet_hang(&victim).await?;
    wait_for(Duration::from_secs(20), "Ready=False", || async {
        Ok(s.node(&victim)
            .await?
            .and_then(|n| ready_status(&n))
            .as_deref()
            == Some("False"))
    })
    .await?;
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_taint = false;
    while Instant::now() < deadline {
        let taints = s.taints(&victim).await?;
        if taints.iter().any(|t| t == OUT_OF_SERVICE) {
            saw_taint = true;
            // Read after the taints: the server must still be off, unless recovery began in
            // between — and os-start is only ever sent once the taint is gone.
            let server = s.tb.power_state(&victim).await?;
            let started = s
                .accepted_actions(&server_id)
                .iter()
                .any(|a| a == "os-start");
            assert!(
                server.status == "SHUTOFF" || started,
                "out-of-service taint while the server is {} ({:?}) and was never started again",
                server.status,
                server.task_state
            );
        }
        if s.phase(&victim).await? == Some(RemediationPhase::Succeeded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        saw_taint,
        "the taint was applied at some point; log:\n{}",
        s.op.log_tail()
    );
    assert_eq!(s.phase(&victim).await?, Some(RemediationPhase::Succeeded));
    Ok(())
}

/// A server that refuses to power off: nothing is released, a Warning says why, and the
/// Remediation fails (Succeeded=False) after the fence timeout so the NodeHealthCheck escalates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_to_power_off_releases_nothing() -> Result<()> {
    let s = Scenario::new("refuse", 0, 3).await?;
    let victim = s.db_placed(&[]).await?;
    s.tb.sim.refuse_power_off(&s.server(&victim), true);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "PowerCycle", "timeouts": {"fence": "10s"}}),
    )
    .await?;

    let deadline = Instant::now() + Duration::from_secs(40);
    while s.phase(&victim).await? != Some(RemediationPhase::Failed) {
        assert!(
            Instant::now() < deadline,
            "never failed; log:\n{}",
            s.op.log_tail()
        );
        assert!(
            !s.taints(&victim).await?.iter().any(|t| t == OUT_OF_SERVICE),
            "out-of-service taint on a server that is still ACTIVE"
        );
        assert_eq!(
            running_on(&s.client, &s.ns, "db-0").await?.as_deref(),
            Some(victim.as_str()),
            "the pod must stay where it is"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rem = s.remediations().get(&victim).await?;
    let status = rem.status.expect("status");
    assert_eq!(succeeded(&status), Some("False"));
    assert!(
        status
            .last_error
            .unwrap_or_default()
            .contains("no workload was released")
    );
    assert!(
        !s.events("RemediationFailed").await?.is_empty(),
        "a Warning event says why"
    );
    assert_eq!(
        s.accepted_actions(&s.server(&victim)),
        vec!["os-stop"],
        "one stop, never repeated"
    );
    Ok(())
}

/// Rebuild: fence, release, rebuild with the server's own image, power on (Nova leaves a
/// server rebuilt while off, off), node Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_uses_the_servers_image_and_brings_the_node_back() -> Result<()> {
    let s = Scenario::new("rebuild", 0, 2).await?;
    let victim = s.worker(0);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "Rebuild"})).await?;
    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(60),
    )
    .await?;
    let server = s.tb.power_state(&victim).await?;
    assert_eq!(server.status, "ACTIVE");
    assert_eq!(server.image_id, nodehealer_testbed::TESTBED_IMAGE);
    assert_eq!(server.rebuilds, 1);
    assert_eq!(
        s.accepted_actions(&s.server(&victim)),
        vec!["os-stop", "rebuild", "os-start"]
    );
    assert_eq!(
        ready_status(&s.node(&victim).await?.expect("node")).as_deref(),
        Some("True")
    );
    Ok(())
}

/// A server someone shelved is already off: fenced without a request, its StatefulSet pod
/// freed, and brought back with `unshelve` (Nova refuses `os-start` for a shelved server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shelved_server_is_fenced_as_it_is_and_unshelved() -> Result<()> {
    let s = Scenario::new("shelved", 0, 2).await?;
    let victim = s.db_placed(&[]).await?;
    s.tb.shelve_node(&victim).await?;
    s.wait_not_ready(&victim).await?;
    assert_eq!(s.tb.power_state(&victim).await?.status, "SHELVED_OFFLOADED");
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(60),
    )
    .await?;
    let elsewhere = running_on(&s.client, &s.ns, "db-0").await?;
    assert!(
        elsewhere.as_ref().is_some_and(|n| n != &victim),
        "db-0 moved off the shelved node: {elsewhere:?}"
    );
    assert_eq!(s.accepted_actions(&s.server(&victim)), vec!["unshelve"]);
    let server = s.tb.power_state(&victim).await?;
    assert_eq!((server.status.as_str(), server.unshelves), ("ACTIVE", 1));
    let fenced = s.events("Fenced").await?;
    assert!(
        fenced.iter().any(|m| m.contains("shelved")),
        "the Fenced event says why: {fenced:?}"
    );
    s.wait_taints_gone(&victim).await?;
    Ok(())
}

/// Replace through Magnum: the server is removed by a resize that keeps the node count, the
/// old Node is deleted, a new server and node join, PermanentNodeDeletionExpected is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_through_magnum_removes_the_server_and_deletes_the_node() -> Result<()> {
    let s = Scenario::new("replace", 1, 2).await?;
    let victim = s.worker(0);
    let server = s.server(&victim);
    s.tb.fail_node(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "Replace", "openstack": {"magnum": {"cluster": s.cluster.magnum_id.clone().unwrap()}}})).await?;
    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(90),
    )
    .await?;
    assert!(s.tb.sim.server(&server).is_none(), "the old server is gone");
    assert!(s.node(&victim).await?.is_none(), "the old Node is deleted");
    let rem = s.remediations().get(&victim).await?;
    let conditions = rem.status.unwrap().conditions;
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "PermanentNodeDeletionExpected" && c.status == "True")
    );
    let resizes: Vec<_> =
        s.tb.sim
            .request_log()
            .into_iter()
            .filter(|r| {
                // This test's cluster only: others of the binary share the simulator.
                r.path.ends_with(&format!(
                    "/clusters/{}/actions/resize",
                    s.cluster.magnum_id.as_deref().unwrap_or_default()
                )) && (200..300).contains(&r.status)
            })
            .collect();
    assert_eq!(resizes.len(), 1, "exactly one resize");
    // The replacement joins the pool.
    let nodes: Api<Node> = Api::all(s.client.clone());
    wait_for(
        Duration::from_secs(60),
        "a replacement worker Ready",
        || async {
            let list = nodes
                .list(&ListParams::default().labels(&s.cluster.worker_selector()))
                .await?;
            Ok(list
                .items
                .iter()
                .filter(|n| nodehealer_testbed::is_ready(n))
                .count()
                == 2)
        },
    )
    .await?;
    Ok(())
}

/// Reboot for a hung kernel: a soft reboot is ignored, so after half the recover timeout a
/// hard one follows; the node comes back with no fencing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_goes_from_soft_to_hard_for_a_hung_kernel() -> Result<()> {
    let s = Scenario::new("reboot", 0, 2).await?;
    let victim = s.worker(0);
    s.tb.kernel_hang(&victim).await?;
    wait_for(Duration::from_secs(20), "Ready=False", || async {
        Ok(s.node(&victim)
            .await?
            .and_then(|n| ready_status(&n))
            .as_deref()
            == Some("False"))
    })
    .await?;
    s.remediate(
        &victim,
        json!({"action": "Reboot", "timeouts": {"recover": "10s"}}),
    )
    .await?;
    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(40),
    )
    .await?;
    assert_eq!(
        s.accepted_actions(&s.server(&victim)),
        vec!["reboot", "reboot"]
    );
    let server = s.tb.power_state(&victim).await?;
    assert_eq!((server.soft_reboots, server.hard_reboots), (1, 1));
    assert!(
        !s.taints(&victim)
            .await?
            .iter()
            .any(|t| t.starts_with("nodehealer.io/")),
        "a reboot does not fence"
    );
    Ok(())
}

/// A node that is Ready when its Remediation starts is never fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_node_is_never_fenced() -> Result<()> {
    let s = Scenario::new("ready", 0, 2).await?;
    let node = s.worker(0);
    s.remediate(&node, json!({"action": "PowerCycle"})).await?;
    s.wait_phase(&node, RemediationPhase::Succeeded, Duration::from_secs(30))
        .await?;
    assert!(s.accepted_actions(&s.server(&node)).is_empty());
    Ok(())
}

/// The operator is killed (SIGKILL) again and again during a Rebuild; each time it restarts
/// and resumes from the status. The simulator's log shows every action accepted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_at_every_step_resumes_without_repeating_an_action() -> Result<()> {
    let mut s = Scenario::new("crash", 0, 2).await?;
    let victim = s.worker(0);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "Rebuild"})).await?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let phase = s.phase(&victim).await?;
        if phase == Some(RemediationPhase::Succeeded) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stuck in {phase:?}; log:\n{}",
            s.op.log_tail()
        );
        if let Some(p) = phase
            && !seen.contains(&p)
        {
            // A new step began: kill the operator right there, then start it again.
            seen.push(p);
            s.op.restart(s.tb)?;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(seen.len() >= 3, "killed in several phases: {seen:?}");
    assert_eq!(
        s.accepted_actions(&s.server(&victim)),
        vec!["os-stop", "rebuild", "os-start"]
    );
    s.wait_taints_gone(&victim).await?;
    Ok(())
}

/// Deleting a Remediation in the middle removes our taints (the finalizer), whatever the phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_remediation_removes_our_taints() -> Result<()> {
    let s = Scenario::new("finalizer", 0, 2).await?;
    let victim = s.worker(0);
    s.tb.sim.refuse_power_off(&s.server(&victim), true);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "PowerCycle", "timeouts": {"fence": "60s"}}),
    )
    .await?;
    wait_for(Duration::from_secs(30), "our NoSchedule taint", || async {
        Ok(s.taints(&victim)
            .await?
            .iter()
            .any(|t| t.starts_with("nodehealer.io/remediating")))
    })
    .await?;
    s.remediations()
        .delete(&victim, &Default::default())
        .await?;
    wait_for(
        Duration::from_secs(30),
        "the Remediation gone and our taint with it",
        || async {
            let gone = s.remediations().get_opt(&victim).await?.is_none();
            Ok(gone
                && !s
                    .taints(&victim)
                    .await?
                    .iter()
                    .any(|t| t.starts_with("nodehealer.io/")))
        },
    )
    .await?;
    Ok(())
}

/// Bad input: a missing Secret and a broken clouds.yaml give a clear condition and a Warning,
/// never an action and never a crash loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_or_broken_clouds_yaml_is_reported_and_nothing_is_done() -> Result<()> {
    let s = Scenario::new("badcloud", 0, 2).await?;
    let a = s.worker(0);
    let b = s.worker(1);
    s.tb.kubelet_hang(&a).await?;
    s.tb.kubelet_hang(&b).await?;
    s.wait_not_ready(&a).await?;
    s.wait_not_ready(&b).await?;
    let mut spec = json!({"action": "PowerCycle"});
    spec["openstack"] = json!({"cloudSecretRef": {"name": "no-such-secret"}, "cloud": "openstack"});
    s.remediate(&a, spec).await?;
    // Broken after a password: a parser error that quoted its input would leak it.
    let canary = format!("s3cr3t-canary-{}", s.ns);
    let broken: Secret = serde_json::from_value(json!({
        "metadata": {"name": "broken"},
        "stringData": {"clouds.yaml": format!(
            "clouds:\n  openstack:\n    auth:\n      username: demo\n      password: {canary}\n      auth_url: [not, closed\n"
        )}
    }))?;
    Api::<Secret>::namespaced(s.client.clone(), &s.ns)
        .create(&PostParams::default(), &broken)
        .await?;
    let mut spec = json!({"action": "PowerCycle"});
    spec["openstack"] = json!({"cloudSecretRef": {"name": "broken"}, "cloud": "openstack"});
    s.remediate(&b, spec).await?;
    for node in [&a, &b] {
        wait_for(
            Duration::from_secs(30),
            "an error in the status",
            || async {
                let rem = s.remediations().get(node).await?;
                Ok(rem.status.and_then(|st| st.last_error).is_some())
            },
        )
        .await?;
        let rem = s.remediations().get(node).await?;
        let status = serde_json::to_string(&rem.status)?;
        assert!(
            !status.contains(&canary),
            "no credentials in status: {status}"
        );
        assert!(s.accepted_actions(&s.server(node)).is_empty());
        assert!(!s.taints(node).await?.iter().any(|t| t == OUT_OF_SERVICE));
    }
    assert!(!s.events("CloudSecretError").await?.is_empty());
    let events = support::events(&s.client, &s.ns).await?;
    assert!(
        !events.iter().any(|(_, m)| m.contains(&canary)),
        "no credentials in events: {events:?}"
    );
    assert!(
        !s.op.log_tail().contains(&canary),
        "no credentials in the log"
    );
    assert!(s.op.proc.is_running(), "the operator keeps running");
    Ok(())
}

/// A Rebuild of a server booted from a volume (Nova shows no image) fails at once, before any
/// request: nothing is fenced or released, the status and a Warning say why, and
/// `Succeeded=False` lets the NodeHealthCheck escalate to its next template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_backed_server_is_not_rebuilt_and_nothing_is_done() -> Result<()> {
    let s = Scenario::with_cluster("bfv", |ns| ClusterSpec {
        magnum: false,
        volume_backed: true,
        ..ClusterSpec::magnum(ns, 0, 1)
    })
    .await?;
    let victim = s.worker(0);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "Rebuild"})).await?;
    s.wait_phase(&victim, RemediationPhase::Failed, Duration::from_secs(30))
        .await?;
    let status = s.remediations().get(&victim).await?.status.expect("status");
    let error = status.last_error.clone().unwrap_or_default();
    assert!(error.contains("boots from a volume"), "{error}");
    assert_eq!(succeeded(&status), Some("False"));
    assert!(status.steps.is_empty(), "no step began: {:?}", status.steps);
    assert!(s.accepted_actions(&s.server(&victim)).is_empty());
    assert_eq!(s.tb.power_state(&victim).await?.status, "ACTIVE");
    assert!(!s.events("RemediationFailed").await?.is_empty());
    Ok(())
}

/// Keystone cannot be reached: nothing is fenced or released, the status and a Warning say
/// why, and the Remediation fails after the fence timeout so the NodeHealthCheck escalates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_keystone_fails_the_remediation_without_releasing_anything() -> Result<()> {
    let s = Scenario::new("nokeystone", 0, 2).await?;
    let victim = s.worker(0);
    // A clouds.yaml whose auth_url points at a port nobody listens on.
    let dead = format!(
        "http://127.0.0.1:{}/v3",
        nodehealer_testbed::procs::free_port()?
    );
    let yaml =
        s.tb.clouds_yaml("openstack")
            .replace(&s.tb.sim.auth_url(), &dead);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "unreachable"},
        "stringData": {"clouds.yaml": yaml}
    }))?;
    Api::<Secret>::namespaced(s.client.clone(), &s.ns)
        .create(&PostParams::default(), &secret)
        .await?;
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    let mut spec = json!({"action": "PowerCycle", "timeouts": {"fence": "10s"}});
    spec["openstack"] = json!({"cloudSecretRef": {"name": "unreachable"}, "cloud": "openstack"});
    s.remediate(&victim, spec).await?;
    wait_for(
        Duration::from_secs(30),
        "the reason in the status",
        || async {
            let rem = s.remediations().get(&victim).await?;
            let status = rem.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .any(|c| c.type_ == "Processing" && c.reason == "CloudUnavailable"))
        },
    )
    .await
    .with_context(|| s.op.log_tail())?;
    s.wait_phase(&victim, RemediationPhase::Failed, Duration::from_secs(30))
        .await?;
    let status = s.remediations().get(&victim).await?.status.unwrap();
    let error = status.last_error.clone().unwrap_or_default();
    assert!(error.contains("no workload was released"), "{error}");
    assert!(
        !error.contains(&s.tb.os_password),
        "no password in the status"
    );
    assert_eq!(succeeded(&status), Some("False"));
    assert!(
        !s.events("CloudUnavailable").await?.is_empty(),
        "a Warning event says why"
    );
    assert!(s.accepted_actions(&s.server(&victim)).is_empty());
    // Nothing was released at any point: no ReleaseWorkloads step, no evidence, no event.
    assert!(
        !status
            .steps
            .iter()
            .any(|st| st.name.to_string() == "ReleaseWorkloads"),
        "{:?}",
        status.steps
    );
    assert_eq!(status.fence_evidence, None);
    assert!(s.events("ReleasingWorkloads").await?.is_empty());
    s.wait_taints_gone(&victim).await?;
    assert_eq!(s.tb.power_state(&victim).await?.status, "ACTIVE");
    Ok(())
}

/// Nova answers the `os-stop` with a 500 and GETs with 503s for a while: the stop's outcome is
/// unknown, so it is sent again only once the server shows it never arrived; nothing is
/// released before SHUTOFF, and every action is accepted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_errors_delay_the_remediation_but_never_duplicate_or_skip_a_step() -> Result<()> {
    let s = Scenario::new("nova5xx", 0, 2).await?;
    let victim = s.worker(0);
    let server = s.server(&victim);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    let action_path = format!("/servers/{server}/action");
    s.tb.sim.add_fault(
        openstack_sim::Fault::error(openstack_sim::Service::Nova, 500)
            .on_path(&action_path)
            .times(1),
    );
    s.tb.sim.add_fault(
        openstack_sim::Fault::error(openstack_sim::Service::Nova, 503)
            .on_path(&format!("/servers/{server}"))
            .times(3),
    );
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let phase = s.phase(&victim).await?;
        if phase == Some(RemediationPhase::Succeeded) {
            break;
        }
        assert!(
            phase != Some(RemediationPhase::Failed) && Instant::now() < deadline,
            "ended {phase:?}; log:\n{}",
            s.op.log_tail()
        );
        if s.taints(&victim).await?.iter().any(|t| t == OUT_OF_SERVICE) {
            let state = s.tb.power_state(&victim).await?;
            let started = s.accepted_actions(&server).iter().any(|a| a == "os-start");
            assert!(
                state.status == "SHUTOFF" || started,
                "out-of-service taint while the server is {}",
                state.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed: Vec<_> =
        s.tb.sim
            .request_log()
            .into_iter()
            .filter(|r| r.path.ends_with(&action_path) && r.status >= 500)
            .collect();
    assert_eq!(failed.len(), 1, "the injected failure happened");
    assert_eq!(s.accepted_actions(&server), vec!["os-stop", "os-start"]);
    let status = s.remediations().get(&victim).await?.status.unwrap();
    assert_eq!(
        status.last_error, None,
        "the error of the lost request is cleared once all went well"
    );
    s.wait_taints_gone(&victim).await?;
    Ok(())
}

/// Every example RemediationTemplate (and the Secret beside them) is accepted by the real
/// apiserver's schema and validation, and reads back as our type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_templates_are_accepted_by_the_apiserver() -> Result<()> {
    let tb = support::testbed().await?;
    let ns = tb.namespace("examples").await?;
    let client = tb.client().await?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("remediationtemplate-") || name == "cloud-secret.yaml") {
            continue;
        }
        let mut doc: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
        doc["metadata"]["namespace"] = json!(ns);
        if name == "cloud-secret.yaml" {
            let secret: Secret = serde_json::from_value(doc)?;
            Api::<Secret>::namespaced(client.clone(), &ns)
                .create(&PostParams::default(), &secret)
                .await?;
        } else {
            let template: nodehealer::api::RemediationTemplate = serde_json::from_value(doc)
                .with_context(|| format!("{name} reads as a RemediationTemplate"))?;
            let api: Api<nodehealer::api::RemediationTemplate> =
                Api::namespaced(client.clone(), &ns);
            api.create(&PostParams::default(), &template)
                .await
                .with_context(|| format!("{name} accepted"))?;
        }
        applied += 1;
    }
    assert_eq!(applied, 6, "every example was applied");
    Ok(())
}

/// Two replicas with leader election: the leader is killed (SIGKILL) right after it sent the
/// `os-stop`; the standby takes the Lease once it expires and finishes the remediation from
/// the status, without sending anything a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_change_mid_remediation_finishes_without_repeating_an_action() -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let s = Scenario::new("leader", 0, 2).await?;
    let standby = Operator::start_named(s.tb, &s.ns, "standby", &["--controllers=remediation"])?;
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.ns);
    let holder = || async {
        let lease = leases.get_opt("nodehealer-leader").await?;
        anyhow::Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
    };
    wait_for(Duration::from_secs(30), "a leader", || async {
        Ok(holder().await?.is_some())
    })
    .await?;
    // Whichever replica won the Lease leads; the other stands by, and both are ready.
    let first = holder().await?.unwrap();
    let operator_leads = first == format!("{}-operator", s.ns);
    let (leader, other, other_name) = if operator_leads {
        (&s.op, &standby, "standby")
    } else {
        (&standby, &s.op, "operator")
    };
    leader.wait_ready().await?;
    other.wait_ready().await?;

    let victim = s.worker(0);
    let server = s.server(&victim);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    wait_for(Duration::from_secs(30), "the os-stop accepted", || async {
        Ok(s.accepted_actions(&server).iter().any(|a| a == "os-stop"))
    })
    .await?;
    leader.proc.kill();
    let killed = Instant::now();
    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(60),
    )
    .await
    .with_context(|| format!("standby log:\n{}", other.log_tail()))?;
    report_timing(
        "leader killed -> remediation finished by the standby",
        killed.elapsed(),
    );
    assert_eq!(holder().await?, Some(format!("{}-{other_name}", s.ns)));
    assert_eq!(s.accepted_actions(&server), vec!["os-stop", "os-start"]);
    s.wait_taints_gone(&victim).await?;
    Ok(())
}

/// A Remediation deleted half-way (its node looked healthy again, or a person stopped it)
/// after it powered the server off: the finalizer powers the server back on and removes the
/// taints, so stopping a remediation never leaves a machine down that we took down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remediation_deleted_after_the_fence_powers_the_server_back_on() -> Result<()> {
    let s = Scenario::new("restore", 0, 3).await?;
    let victim = s.db_placed(&[]).await?;
    let server = s.server(&victim);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    s.wait_phase(
        &victim,
        RemediationPhase::ReleasingWorkloads,
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(s.tb.power_state(&victim).await?.status, "SHUTOFF");
    s.remediations()
        .delete(&victim, &Default::default())
        .await?;
    wait_for(
        Duration::from_secs(30),
        "the Remediation gone and the server running",
        || async {
            let gone = s.remediations().get_opt(&victim).await?.is_none();
            Ok(gone && s.tb.power_state(&victim).await?.status == "ACTIVE")
        },
    )
    .await
    .with_context(|| s.op.log_tail())?;
    s.wait_taints_gone(&victim).await?;
    assert_eq!(s.accepted_actions(&server), vec!["os-stop", "os-start"]);
    assert!(!s.events("PowerRestored").await?.is_empty());
    Ok(())
}

/// With `magnum.reportHealthStatus`, Magnum hears about it as from magnum-auto-healer: the
/// cluster is UNHEALTHY with the node's check while it is remediated, HEALTHY afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magnum_hears_the_clusters_health_while_a_node_is_remediated() -> Result<()> {
    let s = Scenario::new("health", 1, 2).await?;
    let victim = s.worker(0);
    let cluster = s.cluster.magnum_id.clone().expect("a Magnum cluster");
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "PowerCycle", "openstack": {"magnum": {"cluster": cluster, "reportHealthStatus": true}}}),
    )
    .await?;
    let health = || {
        let c = s.tb.sim.cluster(&cluster).expect("cluster");
        (c.health_status, c.health_status_reason)
    };
    wait_for(Duration::from_secs(30), "UNHEALTHY reported", || async {
        let (status, reason) = health();
        Ok(status.as_deref() == Some("UNHEALTHY")
            && reason.get(&format!("{victim}.Ready")).map(String::as_str) == Some("error"))
    })
    .await
    .with_context(|| format!("{:?}\n{}", health(), s.op.log_tail()))?;
    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(60),
    )
    .await?;
    wait_for(Duration::from_secs(10), "HEALTHY reported", || async {
        let (status, reason) = health();
        Ok(status.as_deref() == Some("HEALTHY")
            && reason.get("nodes").map(String::as_str) == Some("ok"))
    })
    .await
    .with_context(|| format!("{:?}", health()))?;
    Ok(())
}

/// A real cluster's DaemonSets (kube-proxy, CNI agents, CSI node plugins, log shippers) tolerate
/// every taint, the out-of-service one too: Kubernetes never evicts them. A worker of a 3-node
/// pool crashes; the Remediation moves the StatefulSet's pod, waits neither for the DaemonSet
/// pods nor for a force-deleted pod whose finalizer waits for the node, does not delete the
/// DaemonSet pods (with `ResourceDeletion` either), and brings the server and the node back.
/// On c089897 the step waited for them until `releaseWorkloads` ran out, failed, and left the
/// server SHUTOFF.
async fn daemonsets_never_block_a_remediation(eviction: &str) -> Result<()> {
    let s = Scenario::new(&format!("ds-{}", eviction.to_lowercase()), 0, 3).await?;
    let realistic = s.cluster.realistic.clone().context("a realistic cluster")?;
    let victim = s.db_placed(&[]).await?;
    let server = s.server(&victim);
    let daemons = realistic.daemon_pods_on(&s.client, &victim).await?;
    assert_eq!(
        daemons.len(),
        realistic.daemonsets.len(),
        "one pod of each DaemonSet on {victim}: {daemons:?}"
    );
    // A pod whose finalizer waits for the node to be back: force-deleted, it must not block.
    nodehealer_testbed::workloads::pod_with_finalizer(&s.client, &s.ns, "cleanup", &victim).await?;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    wait_for(
        Duration::from_secs(30),
        "the cleanup pod running",
        || async {
            Ok(pods
                .get("cleanup")
                .await?
                .status
                .and_then(|st| st.phase)
                .as_deref()
                == Some("Running"))
        },
    )
    .await?;

    s.tb.fail_node(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "PowerCycle", "workloadEviction": eviction,
               "timeouts": {"releaseWorkloads": "45s"}}),
    )
    .await?;
    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(120),
    )
    .await?;

    let elsewhere = running_on(&s.client, &s.ns, "db-0").await?;
    assert!(
        elsewhere.as_ref().is_some_and(|n| n != &victim),
        "db-0 moved off {victim}: {elsewhere:?}"
    );
    assert_eq!(s.tb.power_state(&victim).await?.status, "ACTIVE");
    // The crashed server was SHUTOFF already: fenced as it was, then powered on.
    assert_eq!(s.accepted_actions(&server), vec!["os-start"]);
    wait_for(Duration::from_secs(30), "the node Ready", || async {
        Ok(s.node(&victim)
            .await?
            .and_then(|n| ready_status(&n))
            .as_deref()
            == Some("True"))
    })
    .await?;
    // The same pods, by uid: neither the taint nor the operator removed them.
    assert_eq!(
        realistic.daemon_pods_on(&s.client, &victim).await?,
        daemons,
        "the DaemonSet pods of {victim} were left alone"
    );
    s.wait_taints_gone(&victim).await?;
    // Its finalizer's controller finishes once the node is back, and the pod is gone.
    wait_for(Duration::from_secs(30), "the cleanup pod gone", || async {
        Ok(pods.get_opt("cleanup").await?.is_none())
    })
    .await?;
    let running_again = wait_for(
        Duration::from_secs(60),
        "the cluster's workloads running again",
        || realistic.running(&s.client),
    )
    .await;
    if running_again.is_err() {
        let missing = realistic.not_running(&s.client).await?;
        running_again.with_context(|| format!("not running: {missing:?}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_that_tolerate_everything_never_block_the_out_of_service_taint() -> Result<()> {
    daemonsets_never_block_a_remediation("OutOfServiceTaint").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_that_tolerate_everything_are_never_deleted_by_resource_deletion() -> Result<()>
{
    daemonsets_never_block_a_remediation("ResourceDeletion").await
}

/// Magnum accepts the resize of a Replace (202) and its conductor then fails it (Magnum without
/// Heat): the cluster is `UPDATE_FAILED` with Magnum's `status_reason`, and the server is never
/// removed. That is noticed at the next read of the cluster, not when the recover timeout runs
/// out: the Remediation fails with Magnum's reason in its message and its event. Meanwhile the
/// cluster is read at most every 10 s (shared by all passes), not on every pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resize_magnum_fails_fails_the_replace_with_magnums_reason() -> Result<()> {
    let s = Scenario::new("resizefail", 1, 2).await?;
    let victim = s.worker(0);
    let server = s.server(&victim);
    let cluster = s.cluster.magnum_id.clone().expect("a Magnum cluster");
    let reason = "Unable to establish connection to http://127.0.0.1:8004/v1: Heat is down";
    s.tb.sim.fail_cluster_updates(&cluster, Some(reason));
    s.tb.fail_node(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "Replace", "timeouts": {"recover": "10m"},
               "openstack": {"magnum": {"cluster": cluster}}}),
    )
    .await?;
    s.wait_phase(
        &victim,
        RemediationPhase::Failed,
        // Far less than the 10-minute recover timeout it used to wait out.
        Duration::from_secs(90),
    )
    .await?;
    let rem = s.remediations().get(&victim).await?;
    let status = rem.status.unwrap_or_default();
    let error = status.last_error.clone().unwrap_or_default();
    assert!(error.contains("UPDATE_FAILED"), "{error}");
    assert!(error.contains(reason), "Magnum's reason: {error}");
    let failed = s.events("RemediationFailed").await?;
    assert!(
        failed.iter().any(|m| m.contains(reason)),
        "the event says Magnum's reason: {failed:?}"
    );
    assert!(s.tb.sim.server(&server).is_some(), "nothing removed it");
    let log = s.tb.sim.request_log();
    let resizes = log
        .iter()
        .filter(|r| {
            r.path
                .ends_with(&format!("/clusters/{cluster}/actions/resize"))
                && (200..300).contains(&r.status)
        })
        .count();
    assert_eq!(resizes, 1, "one resize, not resent");
    // Every cluster read of the run, against the time it ran: at most one per 10 s (and the
    // one right after the resize, which must see Magnum's answer to it).
    let reads: Vec<jiff::Timestamp> = log
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path.ends_with(&format!("/clusters/{cluster}"))
                && r.status == 200
        })
        .map(|r| r.time)
        .collect();
    let (Some(first), Some(last)) = (reads.first(), reads.last()) else {
        bail!("the cluster was never read");
    };
    let span = last.duration_since(*first).as_secs_f64();
    assert!(
        (reads.len() as f64) <= span / 10.0 + 2.0,
        "{} cluster reads in {span:.0}s",
        reads.len()
    );
    Ok(())
}

/// Magnum answers 202 to a health_status update of a cluster in `UPDATE_FAILED`, and its
/// conductor drops it: an accepted report is not a stored one. The operator says so (a Warning
/// `HealthReportNotStored` naming the cluster's state, `outcome="not_stored"`), rather than
/// taking the 202 for a report made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_report_magnum_accepts_but_drops_is_said_not_stored() -> Result<()> {
    let s = Scenario::new("healthdrop", 1, 2).await?;
    let victim = s.worker(0);
    let cluster = s.cluster.magnum_id.clone().expect("a Magnum cluster");
    s.tb.sim.set_cluster_status(&cluster, "UPDATE_FAILED");
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "PowerCycle", "openstack": {"magnum": {"cluster": cluster, "reportHealthStatus": true}}}),
    )
    .await?;
    s.wait_phase(
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(90),
    )
    .await?;
    let said = wait_for(
        Duration::from_secs(30),
        "HealthReportNotStored said",
        || async {
            Ok(s.events("HealthReportNotStored")
                .await?
                .iter()
                .any(|m| m.contains("UPDATE_FAILED")))
        },
    )
    .await;
    if let Err(e) = said {
        bail!("{e}\nlog:\n{}", s.op.log_tail());
    }
    let c = s.tb.sim.cluster(&cluster).expect("cluster");
    assert_eq!(c.health_status, None, "Magnum really dropped it");
    let metrics = s.op.metrics().await?;
    let not_stored = metrics
        .lines()
        .find(|l| l.starts_with(r#"nodehealer_magnum_health_reports_total{outcome="not_stored"}"#))
        .unwrap_or_default();
    assert!(
        !not_stored.is_empty() && !not_stored.ends_with(" 0"),
        "counted: {not_stored:?}"
    );
    Ok(())
}

/// A remediation that fails with its node still down (a server that never powers off) must not
/// end with Magnum hearing `HEALTHY`: the node is still unhealthy, so the report at the end says
/// so (on c409818 it said `HEALTHY` as soon as no remediation was running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remediation_that_fails_with_its_node_down_leaves_magnum_unhealthy() -> Result<()> {
    let s = Scenario::new("healthfail", 1, 2).await?;
    let victim = s.worker(0);
    let server = s.server(&victim);
    let cluster = s.cluster.magnum_id.clone().expect("a Magnum cluster");
    s.tb.sim.refuse_power_off(&server, true);
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "PowerCycle", "timeouts": {"fence": "10s"},
               "openstack": {"magnum": {"cluster": cluster, "reportHealthStatus": true}}}),
    )
    .await?;
    s.wait_phase(&victim, RemediationPhase::Failed, Duration::from_secs(90))
        .await?;
    // The report at the start and the one at the end, both accepted.
    let reports = || {
        s.tb.sim
            .request_log()
            .into_iter()
            .filter(|r| {
                r.method == "PATCH"
                    && r.path.ends_with(&format!("/clusters/{cluster}"))
                    && (200..300).contains(&r.status)
            })
            .count()
    };
    let both = wait_for(Duration::from_secs(30), "two reports", || async {
        Ok(reports() >= 2)
    })
    .await;
    if let Err(e) = both {
        bail!("{e}: {} reports\nlog:\n{}", reports(), s.op.log_tail());
    }
    let c = s.tb.sim.cluster(&cluster).expect("cluster");
    assert_eq!(
        c.health_status.as_deref(),
        Some("UNHEALTHY"),
        "{:?}",
        c.health_status_reason
    );
    assert_eq!(
        c.health_status_reason
            .get(&format!("{victim}.Ready"))
            .map(String::as_str),
        Some("error"),
        "{:?}",
        c.health_status_reason
    );
    s.tb.sim.refuse_power_off(&server, false);
    Ok(())
}
