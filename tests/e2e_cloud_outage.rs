//! The whole cloud API goes away and comes back. A test binary of its own, so the outage
//! (every Keystone request fails) cannot touch the scenarios of other tests.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams};
use nodehealer::api::{Remediation, RemediationPhase};
use nodehealer_testbed::{ClusterSpec, ready_status, taint_strings, wait_for};
use openstack_sim::Fault;
use serde_json::json;
use support::Operator;

/// Keystone answers 503 from before the remediation starts: nothing is sent to Nova and nothing
/// is freed, the status and a Warning say why; when Keystone is back the remediation goes on
/// by itself and every action is accepted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keystone_outage_holds_the_remediation_and_it_resumes_when_keystone_returns() -> Result<()>
{
    let tb = support::testbed().await?;
    let ns = tb.namespace("outage").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 2)).await?;
    let client = tb.client().await?;
    support::cloud_secret(tb, &client, &ns, "openstack-cloud").await?;
    let victim = cluster.nodes_with_role("worker")[0].clone();
    let server = cluster.servers[&victim].clone();
    let nodes: Api<Node> = Api::all(client.clone());
    tb.kubelet_hang(&victim).await?;
    wait_for(Duration::from_secs(30), "not Ready", || async {
        Ok(ready_status(&nodes.get(&victim).await?).as_deref() != Some("True"))
    })
    .await?;

    tb.sim.add_fault(Fault::keystone_down());
    let op = Operator::start(tb, &ns, &["--controllers=remediation"])?;
    let rems: Api<Remediation> = Api::namespaced(client.clone(), &ns);
    support::remediate(
        &client,
        &ns,
        &victim,
        json!({"action": "PowerCycle", "openstack": {
            "cloudSecretRef": {"name": "openstack-cloud"}, "cloud": "openstack"}}),
    )
    .await?;
    let said = wait_for(
        Duration::from_secs(60),
        "the outage in the status",
        || async {
            Ok(rems
                .get(&victim)
                .await?
                .status
                .and_then(|s| s.last_error)
                .is_some())
        },
    )
    .await;
    if let Err(e) = said {
        bail!("{e}\nlog:\n{}", op.log_tail());
    }
    let error = rems.get(&victim).await?.status.unwrap().last_error.unwrap();
    assert!(error.to_lowercase().contains("keystone"), "{error}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        support::accepted_actions(tb, &server).is_empty(),
        "nothing sent during the outage"
    );
    let taints = taint_strings(&nodes.get(&victim).await?);
    assert!(
        !taints
            .iter()
            .any(|t| t.starts_with("node.kubernetes.io/out-of-service")),
        "nothing freed: {taints:?}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warned = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .any(|e| e.type_.as_deref() == Some("Warning"));
    assert!(warned, "a Warning event about the outage");

    // Keystone is back.
    tb.sim.clear_faults();
    let back = Instant::now();
    support::wait_phase(
        &rems,
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(120),
    )
    .await
    .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    assert_eq!(
        support::accepted_actions(tb, &server),
        vec!["os-stop", "os-start"]
    );
    nodehealer_testbed::report_timing(
        "Keystone back -> the held PowerCycle Succeeded",
        back.elapsed(),
    );
    Ok(())
}
