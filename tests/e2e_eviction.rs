//! The out-of-service taint frees a fenced node's workloads without waiting for the pod
//! garbage collector. This binary's test bed runs kube-controller-manager *without* that
//! collector: the taint manager still evicts the pods and the attach-detach controller still
//! detaches the volume, but nothing in Kubernetes force-deletes the evicted pods any more, so
//! the StatefulSet pod could only move because the operator completed the evictions itself.
//! (Everywhere else the collector does it too, on its 20 s period; the operator is sooner.)

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use kube::api::Api;
use nodehealer_testbed::workloads::{attached_nodes, pv_name, running_on};
use nodehealer_testbed::{CLUSTER_LABEL, ClusterSpec, TestBedOptions, wait_for};
use serde_json::json;
use support::Operator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evicted_pods_of_a_fenced_node_are_deleted_without_pod_gc() -> Result<()> {
    let tb = support::testbed_with(TestBedOptions {
        disabled_controllers: vec!["pod-garbage-collector-controller".into()],
    })
    .await?;
    let ns = tb.namespace("evict").await?;
    let client = tb.client().await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 3)).await?;
    support::cloud_secret(tb, &client, &ns, "cloud-credentials").await?;
    let op = Operator::start(tb, &ns, &["--controllers=remediation"])?;

    let home = support::db_placed(&client, &ns, &[(CLUSTER_LABEL, &cluster.name)]).await?;
    let pv = pv_name(&ns, "db");
    wait_for(Duration::from_secs(30), "the volume attached", || async {
        Ok(attached_nodes(&client, &pv).await? == vec![home.clone()])
    })
    .await?;

    tb.fail_node(&home).await?;
    wait_for(Duration::from_secs(30), "the node NotReady", || async {
        Ok(!nodehealer_testbed::is_ready(
            &Api::all(client.clone()).get(&home).await?,
        ))
    })
    .await?;
    support::remediate(
        &client,
        &ns,
        &home,
        json!({
            "action": "PowerCycle",
            "workloadEviction": "OutOfServiceTaint",
            "openstack": {"cloudSecretRef": {"name": "cloud-credentials"}, "cloud": "openstack"}
        }),
    )
    .await?;

    let moved = wait_for(
        Duration::from_secs(60),
        "db-0 running elsewhere, its volume attached there",
        || async {
            let on = running_on(&client, &ns, "db-0").await?;
            Ok(match on {
                Some(n) if n != home => attached_nodes(&client, &pv).await? == vec![n],
                _ => false,
            })
        },
    )
    .await;
    moved.with_context(|| format!("operator log:\n{}", op.log_tail()))?;

    // The event follows the deletes; the new pod may run before it is written.
    wait_for(
        Duration::from_secs(10),
        "an EvictionsCompleted event naming the node",
        || async {
            Ok(support::events(&client, &ns)
                .await?
                .iter()
                .any(|(reason, message)| reason == "EvictionsCompleted" && message.contains(&home)))
        },
    )
    .await?;
    Ok(())
}
