//! Safety on real clusters and real clouds (issue 16): each scenario is a way the operator once
//! released a running VM's workloads or sent a wrong action, on the test bed with the
//! simulator behaving as Nova does.
//!
//! - a 404 for a server we never deleted (a Secret of another project) is no fence;
//! - a Replace on a lost hypervisor, which Nova deletes locally, replaces the capacity but
//!   releases nothing until a person confirms;
//! - an escalation reboot → power cycle with both controllers: the timed-out Reboot stops (no
//!   hard reboot of the fenced server, no stripped taints);
//! - a Remediation deleted while its `os-stop` runs powers the server on once it is off.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use nodehealer::api::{FenceEvidence, Remediation, RemediationPhase};
use nodehealer_testbed::objects::create;
use nodehealer_testbed::workloads::running_on;
use nodehealer_testbed::{
    CLUSTER_LABEL, ClusterSpec, MAGNUM_ROLE_LABEL, TestBed, TestCluster, ready_status, wait_for,
};
use openstack_sim::{Fault, Service};
use serde_json::{Value, json};
use support::{Operator, SCOPE_LABEL};

const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

struct Bed {
    tb: &'static TestBed,
    ns: String,
    cluster: TestCluster,
    client: kube::Client,
}

impl Bed {
    async fn new(prefix: &str, workers: u32) -> Result<Bed> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let cluster = tb
            .create_cluster(ClusterSpec::magnum(&ns, 0, workers))
            .await?;
        let client = tb.client().await?;
        support::cloud_secret(tb, &client, &ns, "cloud-credentials").await?;
        Ok(Bed {
            tb,
            ns,
            cluster,
            client,
        })
    }

    fn workers(&self) -> Vec<String> {
        self.cluster.nodes_with_role("worker")
    }

    fn server(&self, node: &str) -> String {
        self.cluster.servers[node].clone()
    }

    fn remediations(&self) -> Api<Remediation> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn db_placed(&self) -> Result<String> {
        support::db_placed(
            &self.client,
            &self.ns,
            &[(CLUSTER_LABEL, self.cluster.name.as_str())],
        )
        .await
    }

    async fn remediate(&self, node: &str, secret: &str, spec: Value) -> Result<()> {
        let mut spec = spec;
        let mut openstack = json!({"cloudSecretRef": {"name": secret}, "cloud": "openstack"});
        if let Some(extra) = spec.get("openstack").and_then(|v| v.as_object()) {
            for (k, v) in extra {
                openstack[k] = v.clone();
            }
        }
        spec["openstack"] = openstack;
        support::remediate(&self.client, &self.ns, node, spec).await
    }

    async fn wait_not_ready(&self, node: &str) -> Result<()> {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        wait_for(
            Duration::from_secs(30),
            &format!("{node} not Ready"),
            || async {
                Ok(nodes
                    .get(node)
                    .await
                    .ok()
                    .and_then(|n| ready_status(&n))
                    .as_deref()
                    != Some("True"))
            },
        )
        .await?;
        Ok(())
    }

    async fn taints(&self, node: &str) -> Result<Vec<String>> {
        support::node_taints(&self.client, node).await
    }

    async fn events(&self, reason: &str) -> Result<Vec<String>> {
        Ok(support::events(&self.client, &self.ns)
            .await?
            .into_iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, m)| m)
            .collect())
    }

    async fn status(&self, name: &str) -> Result<nodehealer::api::RemediationStatus> {
        Ok(self
            .remediations()
            .get(name)
            .await?
            .status
            .unwrap_or_default())
    }
}

/// Nova answers 404 for a server we never deleted: what a providerID of another region, a
/// Secret scoped to another project or a misrouted endpoint all look like. Before, that 404
/// confirmed the fence and the pods and volume of a running VM were released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_nova_does_not_know_is_no_fence() -> Result<()> {
    let bed = Bed::new("unknownserver", 2).await?;
    let op = Operator::start(bed.tb, &bed.ns, &["--controllers=remediation"])?;
    let home = bed.db_placed().await?;
    // The kubelet hangs: the VM still runs (ACTIVE) and writes to its volume.
    bed.tb.kubelet_hang(&home).await?;
    bed.wait_not_ready(&home).await?;
    // This Nova has no such server (every call for it answers 404).
    let fault = bed.tb.sim.add_fault(Fault {
        path_contains: Some(bed.server(&home)),
        ..Fault::error(Service::Nova, 404)
    });
    bed.remediate(
        &home,
        "cloud-credentials",
        json!({"action": "PowerCycle", "timeouts": {"fence": "20s"}}),
    )
    .await?;
    support::wait_phase(
        &bed.remediations(),
        &home,
        RemediationPhase::Failed,
        Duration::from_secs(60),
    )
    .await
    .with_context(|| {
        format!(
            "{:#?}\n{}",
            bed.tb.sim.server(&bed.server(&home)),
            op.log_tail()
        )
    })?;
    let status = bed.status(&home).await?;
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("404") && error.contains("no workload was released"),
        "{error}"
    );
    assert_eq!(status.fence_evidence, None);
    assert!(
        !bed.events("FenceNotProven").await?.is_empty(),
        "a Warning event says why"
    );
    assert!(
        !bed.events("ReleasingWorkloads").await?.iter().any(|_| true),
        "nothing was released"
    );
    assert_eq!(
        running_on(&bed.client, &bed.ns, "db-0").await?.as_deref(),
        Some(home.as_str()),
        "the pod stays with its running VM"
    );
    assert!(
        !bed.taints(&home)
            .await?
            .iter()
            .any(|t| t.starts_with(OUT_OF_SERVICE))
    );
    assert!(
        support::accepted_actions(bed.tb, &bed.server(&home)).is_empty(),
        "nothing reached the server"
    );
    bed.tb.sim.remove_fault(fault);
    Ok(())
}

/// A lost hypervisor and a Replace: `os-stop` never completes. Before, the server was deleted
/// (Nova deletes it locally while its compute service is down, with the guest perhaps still
/// running) and that 404 released the pods and the volume. Now nothing is removed or released
/// until a person confirms; then the workloads move and the server is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hypervisor_releases_nothing_until_a_person_confirms() -> Result<()> {
    let bed = Bed::new("localdelete", 2).await?;
    let op = Operator::start(bed.tb, &bed.ns, &["--controllers=remediation"])?;
    let home = bed.db_placed().await?;
    let server = bed.server(&home);
    bed.tb.host_down(&home).await?;
    bed.wait_not_ready(&home).await?;
    bed.remediate(
        &home,
        "cloud-credentials",
        json!({"action": "Replace", "timeouts": {"fence": "20s"}}),
    )
    .await?;
    support::wait_phase(
        &bed.remediations(),
        &home,
        RemediationPhase::FenceUnproven,
        Duration::from_secs(60),
    )
    .await
    .with_context(|| op.log_tail())?;
    assert!(
        bed.tb.sim.server(&server).is_some(),
        "the server is not removed without evidence"
    );
    assert_eq!(support::accepted_actions(bed.tb, &server), vec!["os-stop"]);
    // Well past the fence timeout: still waiting, nothing released, the Node still there.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let status = bed.status(&home).await?;
    assert_eq!(status.phase, Some(RemediationPhase::FenceUnproven));
    assert_eq!(status.fence_evidence, None);
    assert_eq!(
        running_on(&bed.client, &bed.ns, "db-0").await?.as_deref(),
        Some(home.as_str()),
        "the pod is not released"
    );
    let taints = bed.taints(&home).await?;
    assert!(
        !taints.iter().any(|t| t.starts_with(OUT_OF_SERVICE)),
        "{taints:?}"
    );
    assert!(
        taints
            .iter()
            .any(|t| t.starts_with("nodehealer.io/remediating"))
    );
    let warnings = bed.events("FenceUnproven").await?;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("nodehealer.io/fence-confirmed"));

    // A person checked the hypervisor and confirms.
    let patch = json!({"metadata": {"annotations": {"nodehealer.io/fence-confirmed": "alice: hypervisor powered off via IPMI"}}});
    bed.remediations()
        .patch(&home, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    support::wait_phase(
        &bed.remediations(),
        &home,
        RemediationPhase::Succeeded,
        Duration::from_secs(60),
    )
    .await
    .with_context(|| op.log_tail())?;
    let status = bed.status(&home).await?;
    assert_eq!(
        status.fence_evidence,
        Some(FenceEvidence::ConfirmedByPerson)
    );
    assert_eq!(
        support::accepted_actions(bed.tb, &server),
        vec!["os-stop", "delete"],
        "removed only after the confirmation"
    );
    wait_for(
        Duration::from_secs(60),
        "db-0 running elsewhere",
        || async {
            Ok(running_on(&bed.client, &bed.ns, "db-0")
                .await?
                .is_some_and(|n| n != home))
        },
    )
    .await?;
    Ok(())
}

/// The shipped escalation, Reboot then PowerCycle, with both controllers: the kernel hangs, the
/// soft reboot is ignored, the NodeHealthCheck times the Reboot out and creates the PowerCycle.
/// The timed-out Reboot must stop: before, it kept running, stripped the PowerCycle's taints
/// (it wanted none) and sent its hard reboot at half its recover timeout, powering on the
/// server the PowerCycle had just fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_never_has_two_remediators_on_one_node() -> Result<()> {
    let bed = Bed::new("escalation", 3).await?;
    let templates = [
        (
            "reboot",
            json!({"action": "Reboot", "timeouts": {"recover": "180s"}}),
        ),
        (
            "power-cycle",
            json!({"action": "PowerCycle", "timeouts": {"fence": "60s"}}),
        ),
    ];
    for (name, mut spec) in templates {
        spec["openstack"] =
            json!({"cloudSecretRef": {"name": "cloud-credentials"}, "cloud": "openstack"});
        create(
            &bed.client,
            &json!({
                "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
                "metadata": {"name": name, "namespace": bed.ns, "annotations": {
                    "remediation.medik8s.io/multiple-templates-support": "true"}},
                "spec": {"template": {"spec": spec}}
            }),
        )
        .await?;
    }
    let template_ref = |name: &str| {
        json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
               "name": name, "namespace": bed.ns})
    };
    create(
        &bed.client,
        &json!({
            "apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
            "metadata": {"name": format!("{}-workers", bed.ns), "labels": {SCOPE_LABEL: bed.ns}},
            "spec": {
                "selector": {"matchLabels": {CLUSTER_LABEL: bed.cluster.name, MAGNUM_ROLE_LABEL: "worker"}},
                "unhealthyConditions": [
                    {"type": "Ready", "status": "False", "duration": "2s"},
                    {"type": "Ready", "status": "Unknown", "duration": "2s"}],
                "maxUnhealthy": "50%",
                "healthyDelay": "0s",
                "escalatingRemediations": [
                    {"remediationTemplate": template_ref("reboot"), "order": 1, "timeout": "60s"},
                    {"remediationTemplate": template_ref("power-cycle"), "order": 2, "timeout": "120s"}]
            }
        }),
    )
    .await?;
    let op = Operator::start(bed.tb, &bed.ns, &[])?;
    let home = bed.db_placed().await?;
    let server = bed.server(&home);
    bed.tb.kernel_hang(&home).await?;
    let hung_at = std::time::Instant::now();
    // The PowerCycle fences, releases, powers on; the node comes back; everything is removed.
    let power_cycled = wait_for(
        Duration::from_secs(180),
        "the node power cycled and healthy again",
        || async {
            let actions = support::accepted_actions(bed.tb, &server);
            let ready = Api::<k8s_openapi::api::core::v1::Node>::all(bed.client.clone())
                .get(&home)
                .await
                .ok()
                .and_then(|n| ready_status(&n));
            Ok(actions.iter().any(|a| a == "os-start") && ready.as_deref() == Some("True"))
        },
    )
    .await;
    power_cycled.with_context(|| op.log_tail())?;
    // Half the Reboot's recover timeout (90 s after it began, a few seconds after the hang)
    // must have passed, with a margin: no hard reboot ever.
    let hard_reboot_due = Duration::from_secs(105);
    if let Some(left) = hard_reboot_due.checked_sub(hung_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let requests: Vec<String> = bed
        .tb
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.server_id.as_deref() == Some(server.as_str()) && r.method == "POST")
        .filter_map(|r| r.action.map(|a| format!("{a} {}", r.status)))
        .collect();
    assert_eq!(
        support::accepted_actions(bed.tb, &server),
        vec!["reboot", "os-stop", "os-start"],
        "one soft reboot, then the power cycle: {requests:?}\n{}",
        op.log_tail()
    );
    let stops = bed.events("RemediationFailed").await?;
    assert!(
        stops.iter().any(|m| m.contains("nhc-timed-out")),
        "the Reboot says it stopped: {stops:?}"
    );
    Ok(())
}

/// A Remediation deleted while its `os-stop` is still being carried out (the host is slow)
/// waits for `SHUTOFF` and powers the server on again. Before, the finalizer looked once, saw
/// the server still powering off, and left it off for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remediation_deleted_while_its_stop_runs_powers_the_server_back_on() -> Result<()> {
    let bed = Bed::new("stopping", 2).await?;
    let op = Operator::start(bed.tb, &bed.ns, &["--controllers=remediation"])?;
    let victim = bed.workers()[0].clone();
    let server = bed.server(&victim);
    bed.tb.kubelet_hang(&victim).await?;
    bed.wait_not_ready(&victim).await?;
    // The hypervisor stalls: the os-stop is accepted and stays `powering-off`.
    bed.tb.sim.host_down(&server);
    bed.remediate(
        &victim,
        "cloud-credentials",
        json!({"action": "PowerCycle"}),
    )
    .await?;
    wait_for(Duration::from_secs(30), "os-stop accepted", || async {
        Ok(support::accepted_actions(bed.tb, &server) == vec!["os-stop"])
    })
    .await
    .with_context(|| op.log_tail())?;
    assert_eq!(
        bed.tb.sim.server(&server).unwrap().task_state.as_deref(),
        Some("powering-off")
    );
    bed.remediations()
        .delete(&victim, &DeleteParams::default())
        .await?;
    // The deletion waits: the finalizer holds it while the stop is still running.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        bed.remediations().get_opt(&victim).await?.is_some(),
        "held by its finalizer while the server powers off"
    );
    // The host is back; the stop completes; the finalizer powers the server on and lets go.
    bed.tb.sim.host_up(&server);
    wait_for(
        Duration::from_secs(60),
        "server ACTIVE again and the Remediation gone",
        || async {
            let active = bed
                .tb
                .sim
                .server(&server)
                .is_some_and(|s| s.status == "ACTIVE" && s.task_state.is_none());
            Ok(active && bed.remediations().get_opt(&victim).await?.is_none())
        },
    )
    .await
    .with_context(|| op.log_tail())?;
    assert_eq!(
        support::accepted_actions(bed.tb, &server),
        vec!["os-stop", "os-start"]
    );
    assert_eq!(bed.events("PowerRestored").await?.len(), 1);
    Ok(())
}
