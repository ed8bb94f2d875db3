//! The test bed itself, on the real control plane: a server's death is seen by the real
//! kube-controller-manager, and the out-of-service taint frees a StatefulSet pod and its
//! volume — the floor our operator's failover is measured against.

use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use nodehealer_testbed::workloads::{attached_nodes, pv_name, running_on, stateful_app};
use nodehealer_testbed::{
    ClusterSpec, MAGNUM_ROLE_LABEL, OS_REGION, OS_SECOND_REGION, TestBed, ready_status,
    report_timing, taint_strings, wait_for,
};
use serde_json::json;

const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute";

async fn node(client: &kube::Client, name: &str) -> Result<Node> {
    Ok(Api::<Node>::all(client.clone()).get(name).await?)
}

/// Starts a StatefulSet on the cluster's workers; returns the node its pod runs on.
async fn app_on_workers(tb: &TestBed, ns: &str, cluster: &str) -> Result<String> {
    let client = tb.client().await?;
    stateful_app(
        &client,
        ns,
        "db",
        &[
            ("nodehealer.io/testbed-cluster", cluster),
            (MAGNUM_ROLE_LABEL, "worker"),
        ],
    )
    .await?;
    wait_for(Duration::from_secs(60), "db-0 to run", || async {
        Ok(running_on(&client, ns, "db-0").await?.is_some())
    })
    .await?;
    Ok(running_on(&client, ns, "db-0")
        .await?
        .expect("db-0 running"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_makes_its_node_unknown_and_tainted_unreachable() -> Result<()> {
    let tb = TestBed::shared();
    let ns = tb.namespace("unreachable").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 1, 3)).await?;
    let client = tb.client().await?;
    let victim = app_on_workers(tb, &ns, &cluster.name).await?;

    let died = Instant::now();
    tb.fail_node(&victim).await?;
    let server = tb.power_state(&victim).await?;
    assert!(
        !server.running,
        "the crashed server's guest must not run: {server:?}"
    );

    wait_for(Duration::from_secs(40), "Ready=Unknown", || async {
        Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("Unknown"))
    })
    .await?;
    let unknown_after = died.elapsed();
    wait_for(
        Duration::from_secs(20),
        "the unreachable taints",
        || async {
            let taints = taint_strings(&node(&client, &victim).await?);
            Ok(
                taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
                    && taints.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string()),
            )
        },
    )
    .await?;
    report_timing(
        "test bed: server crash -> node Ready=Unknown",
        unknown_after,
    );
    report_timing(
        "test bed: server crash -> unreachable taints",
        died.elapsed(),
    );

    // The other nodes are untouched.
    for other in cluster.servers.keys().filter(|n| **n != victim) {
        assert_eq!(
            ready_status(&node(&client, other).await?).as_deref(),
            Some("True"),
            "{other}"
        );
    }
    // The pod still claims to run on the dead node: nothing frees it without a fence.
    assert_eq!(
        running_on(&client, &ns, "db-0").await?.as_deref(),
        Some(victim.as_str())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_out_of_service_taint_moves_the_pod_and_its_volume() -> Result<()> {
    let tb = TestBed::shared();
    let ns = tb.namespace("oos").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 1, 3)).await?;
    let client = tb.client().await?;
    let victim = app_on_workers(tb, &ns, &cluster.name).await?;
    let pv = pv_name(&ns, "db");
    wait_for(
        Duration::from_secs(30),
        "the volume attached to the pod's node",
        || async { Ok(attached_nodes(&client, &pv).await? == vec![victim.clone()]) },
    )
    .await?;

    tb.fail_node(&victim).await?;
    wait_for(Duration::from_secs(40), "Ready=Unknown", || async {
        Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("Unknown"))
    })
    .await?;

    // What our operator does once the cloud confirms the server is off.
    let tainted = Instant::now();
    let mut taints = node(&client, &victim)
        .await?
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default();
    taints.push(serde_json::from_value(json!({"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}))?);
    Api::<Node>::all(client.clone())
        .patch(
            &victim,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"taints": taints}})),
        )
        .await?;
    assert!(taint_strings(&node(&client, &victim).await?).contains(&OUT_OF_SERVICE.to_string()));

    let moved = wait_for(
        Duration::from_secs(60),
        "db-0 running on another node",
        || async { Ok(matches!(running_on(&client, &ns, "db-0").await?, Some(n) if n != victim)) },
    )
    .await?;
    let new_node = running_on(&client, &ns, "db-0")
        .await?
        .expect("db-0 running");
    let volume = wait_for(
        Duration::from_secs(60),
        "the volume attached to the new node only",
        || async { Ok(attached_nodes(&client, &pv).await? == vec![new_node.clone()]) },
    )
    .await?;
    report_timing(
        "test bed: out-of-service taint -> StatefulSet pod Running on another node",
        moved,
    );
    report_timing(
        "test bed: out-of-service taint -> volume attached to the new node",
        moved + volume,
    );
    assert_ne!(new_node, victim);
    assert!(tainted.elapsed() < Duration::from_secs(120));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kubelet_is_not_ready_while_its_server_stays_active() -> Result<()> {
    let tb = TestBed::shared();
    let ns = tb.namespace("hang").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 2)).await?;
    let client = tb.client().await?;
    let victim = cluster.nodes_with_role("worker")[0].clone();

    let hung_at = jiff::Timestamp::now();
    tb.kubelet_hang(&victim).await?;
    wait_for(Duration::from_secs(20), "Ready=False", || async {
        Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("False"))
    })
    .await?;
    let n = node(&client, &victim).await?;
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .cloned()
        .expect("Ready condition");
    // The flip is stamped like a real kubelet stamps it, not with the node's creation time.
    let since = ready.last_transition_time.expect("lastTransitionTime").0;
    assert!(
        since >= hung_at - jiff::SignedDuration::from_secs(1),
        "lastTransitionTime {since} before the hang at {hung_at}"
    );
    assert_eq!(tb.power_state(&victim).await?.status, "ACTIVE");
    wait_for(Duration::from_secs(20), "the not-ready taint", || async {
        Ok(taint_strings(&node(&client, &victim).await?)
            .contains(&"node.kubernetes.io/not-ready:NoExecute".to_string()))
    })
    .await?;

    tb.recover_node(&victim).await?;
    wait_for(Duration::from_secs(20), "Ready=True again", || async {
        Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("True"))
    })
    .await?;

    // A reboot restarts a hung kubelet, as on a real machine.
    let other = cluster.nodes_with_role("worker")[1].clone();
    tb.kubelet_hang(&other).await?;
    wait_for(
        Duration::from_secs(20),
        "the second node Ready=False",
        || async { Ok(ready_status(&node(&client, &other).await?).as_deref() == Some("False")) },
    )
    .await?;
    tb.nova_action(
        &cluster.servers[&other],
        json!({"reboot": {"type": "SOFT"}}),
    )
    .await?;
    wait_for(
        Duration::from_secs(20),
        "Ready=True after a soft reboot",
        || async { Ok(ready_status(&node(&client, &other).await?).as_deref() == Some("True")) },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_power_actions_drive_the_kubelet() -> Result<()> {
    let tb = TestBed::shared();
    let ns = tb.namespace("power").await?;
    let cluster = tb
        .create_cluster(ClusterSpec {
            magnum: false,
            ..ClusterSpec::magnum(&ns, 0, 2)
        })
        .await?;
    let client = tb.client().await?;
    let victim = cluster.nodes_with_role("worker")[0].clone();
    let server = cluster.servers[&victim].clone();

    tb.nova_action(&server, json!({"os-stop": null})).await?;
    wait_for(Duration::from_secs(10), "SHUTOFF", || async {
        Ok(tb.power_state(&victim).await?.status == "SHUTOFF")
    })
    .await?;
    wait_for(
        Duration::from_secs(40),
        "Ready=Unknown after os-stop",
        || async { Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("Unknown")) },
    )
    .await?;

    tb.nova_action(&server, json!({"os-start": null})).await?;
    wait_for(
        Duration::from_secs(30),
        "Ready=True after os-start",
        || async { Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("True")) },
    )
    .await?;

    tb.nova_action(
        &server,
        json!({"rebuild": {"imageRef": nodehealer_testbed::TESTBED_IMAGE}}),
    )
    .await?;
    wait_for(Duration::from_secs(30), "ACTIVE after rebuild", || async {
        Ok(tb.power_state(&victim).await?.status == "ACTIVE")
    })
    .await?;
    wait_for(
        Duration::from_secs(30),
        "Ready=True after rebuild",
        || async { Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("True")) },
    )
    .await?;

    // A hypervisor failure: the kubelet goes silent although Nova still says ACTIVE.
    tb.host_down(&victim).await?;
    wait_for(
        Duration::from_secs(40),
        "Ready=Unknown after the host died",
        || async { Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("Unknown")) },
    )
    .await?;
    assert_eq!(tb.power_state(&victim).await?.status, "ACTIVE");
    tb.recover_node(&victim).await?;
    wait_for(
        Duration::from_secs(30),
        "Ready=True after the host came back",
        || async { Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("True")) },
    )
    .await?;
    Ok(())
}

/// A cluster in the second region: its providerIDs name the region, its servers are that
/// region's Nova's (a 404 in the first), and their power drives the kubelets as in the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_region_cluster_is_that_regions_nova_and_its_power_drives_the_kubelet()
-> Result<()> {
    let tb = TestBed::shared();
    let ns = tb.namespace("regiontwo").await?;
    let cluster = tb
        .create_cluster(ClusterSpec {
            magnum: false,
            realistic: false,
            region: Some(OS_SECOND_REGION.into()),
            ..ClusterSpec::magnum(&ns, 0, 1)
        })
        .await?;
    let client = tb.client().await?;
    let victim = cluster.nodes_with_role("worker")[0].clone();
    let server = cluster.servers[&victim].clone();
    let n = node(&client, &victim).await?;
    assert_eq!(
        n.spec.and_then(|s| s.provider_id),
        Some(format!("openstack://{OS_SECOND_REGION}/{server}"))
    );
    assert_eq!(
        n.metadata.labels.unwrap_or_default()["topology.kubernetes.io/region"],
        OS_SECOND_REGION
    );
    assert_eq!(tb.power_state(&victim).await?.region, OS_SECOND_REGION);
    // The first region's Nova does not know the server.
    let token = tb.os_token().await?;
    let in_first = reqwest::Client::new()
        .get(format!("{}/servers/{server}", tb.nova_url(OS_REGION)))
        .header("X-Auth-Token", token)
        .send()
        .await?;
    assert_eq!(in_first.status(), 404);

    tb.fail_node(&victim).await?;
    wait_for(
        Duration::from_secs(40),
        "Ready=Unknown after the crash",
        || async { Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("Unknown")) },
    )
    .await?;
    // Powered on through RegionTwo's Nova, as an operator would.
    tb.recover_node(&victim).await?;
    wait_for(
        Duration::from_secs(30),
        "Ready=True after os-start",
        || async { Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("True")) },
    )
    .await?;
    let starts: Vec<_> = tb
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.server_id.as_deref() == Some(server.as_str()))
        .filter(|r| r.action.as_deref() == Some("os-start"))
        .map(|r| (r.region, r.status))
        .collect();
    assert_eq!(starts, vec![(Some(OS_SECOND_REGION.to_string()), 202)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnum_resize_replaces_a_server_with_a_new_node() -> Result<()> {
    let tb = TestBed::shared();
    let ns = tb.namespace("resize").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 1, 2)).await?;
    let client = tb.client().await?;
    let victim = cluster.nodes_with_role("worker")[0].clone();
    let old_server = cluster.servers[&victim].clone();
    let cluster_id = cluster.magnum_id.clone().expect("magnum cluster");

    tb.magnum_resize(&cluster_id, "default-worker", 2, &[old_server.as_str()])
        .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(
        Duration::from_secs(60),
        "a new worker node Ready",
        || async {
            let list = nodes
                .list(&kube::api::ListParams::default().labels(&cluster.worker_selector()))
                .await?;
            Ok(list.items.iter().any(|n| {
                let name = n.metadata.name.clone().unwrap_or_default();
                !cluster.servers.contains_key(&name) && nodehealer_testbed::is_ready(n)
            }))
        },
    )
    .await?;
    assert!(
        tb.sim.server(&old_server).is_none(),
        "the removed server is deleted"
    );
    wait_for(Duration::from_secs(40), "the old node Unknown", || async {
        Ok(ready_status(&node(&client, &victim).await?).as_deref() == Some("Unknown"))
    })
    .await?;
    nodes.delete(&victim, &Default::default()).await?;
    Ok(())
}
