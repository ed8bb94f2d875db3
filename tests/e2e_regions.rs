//! Regions on the test bed (issue 16, item 2): the region in a node's providerID
//! (`openstack://<region>/<id>`) selects that region's endpoints from the Keystone catalog, and
//! a region the catalog does not have is refused before anything is sent. The simulator serves
//! a second region, `RegionTwo`, whose Nova has servers of its own (a RegionTwo server is a 404
//! in RegionOne); the test bed's clouds.yaml says `region_name: RegionOne`.
//!
//! Before, the region was dropped: every request went to the clouds.yaml's region, where a
//! RegionTwo server is a 404 (which even confirmed the fence), and a node naming a region that
//! does not exist was remediated on whatever server of that id the clouds.yaml's region has.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use nodehealer::api::{Remediation, RemediationPhase, RemediationStatus};
use nodehealer_testbed::{
    ClusterSpec, OS_SECOND_REGION, TestBed, TestCluster, ready_status, wait_for,
};
use openstack_sim::LoggedRequest;
use serde_json::json;
use support::Operator;

const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

struct Scenario {
    tb: &'static TestBed,
    ns: String,
    cluster: TestCluster,
    client: kube::Client,
    op: Operator,
}

impl Scenario {
    /// A plain Nova cluster (Magnum is in the first region only) that `spec` shapes, its cloud
    /// Secret (the test bed's clouds.yaml, region RegionOne) and an operator running only the
    /// Remediation controller.
    async fn new(prefix: &str, spec: impl Fn(ClusterSpec) -> ClusterSpec) -> Result<Scenario> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let cluster = tb
            .create_cluster(spec(ClusterSpec {
                magnum: false,
                ..ClusterSpec::magnum(&ns, 0, 2)
            }))
            .await?;
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

    fn worker(&self) -> String {
        self.cluster.nodes_with_role("worker")[0].clone()
    }

    fn server(&self, node: &str) -> String {
        self.cluster.servers[node].clone()
    }

    fn remediations(&self) -> Api<Remediation> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn remediate(&self, node: &str, spec: serde_json::Value) -> Result<()> {
        let mut spec = spec;
        spec["openstack"] =
            json!({"cloudSecretRef": {"name": "cloud-credentials"}, "cloud": "openstack"});
        support::remediate(&self.client, &self.ns, node, spec).await
    }

    async fn status(&self, node: &str) -> Result<RemediationStatus> {
        Ok(self
            .remediations()
            .get(node)
            .await?
            .status
            .unwrap_or_default())
    }

    async fn node(&self, name: &str) -> Result<Node> {
        Ok(Api::<Node>::all(self.client.clone()).get(name).await?)
    }

    async fn wait_not_ready(&self, node: &str) -> Result<()> {
        wait_for(
            Duration::from_secs(30),
            &format!("{node} not Ready"),
            || async { Ok(ready_status(&self.node(node).await?).as_deref() != Some("True")) },
        )
        .await?;
        Ok(())
    }

    async fn wait_phase(&self, node: &str, phase: RemediationPhase) -> Result<()> {
        support::wait_phase(&self.remediations(), node, phase, Duration::from_secs(90))
            .await
            .with_context(|| format!("operator log:\n{}", self.op.log_tail()))?;
        Ok(())
    }

    /// Every request the simulator logged that names `server`, whatever its answer.
    fn requests_for(&self, server: &str) -> Vec<LoggedRequest> {
        self.tb
            .sim
            .request_log()
            .into_iter()
            .filter(|r| r.server_id.as_deref() == Some(server))
            .collect()
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

fn provider_id(node: &Node) -> String {
    node.spec
        .as_ref()
        .and_then(|s| s.provider_id.clone())
        .unwrap_or_default()
}

/// A RegionTwo node whose server crashed: the PowerCycle reads and starts the server in
/// RegionTwo's Nova (the clouds.yaml says RegionOne), keeps the region in its status, and
/// brings the node back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cycle_of_a_second_region_node_goes_to_that_regions_nova() -> Result<()> {
    let s = Scenario::new("regiontwo", |spec| ClusterSpec {
        region: Some(OS_SECOND_REGION.into()),
        ..spec
    })
    .await?;
    let victim = s.worker();
    let server = s.server(&victim);
    assert_eq!(
        provider_id(&s.node(&victim).await?),
        format!("openstack://{OS_SECOND_REGION}/{server}")
    );
    s.tb.fail_node(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(&victim, json!({"action": "PowerCycle"}))
        .await?;
    s.wait_phase(&victim, RemediationPhase::Succeeded).await?;

    let status = s.status(&victim).await?;
    assert_eq!(status.region.as_deref(), Some(OS_SECOND_REGION));
    assert_eq!(status.server_id.as_deref(), Some(server.as_str()));
    // A crashed server is SHUTOFF already: the fence needs no stop, the recovery starts it.
    assert_eq!(support::accepted_actions(s.tb, &server), vec!["os-start"]);
    let requests = s.requests_for(&server);
    let elsewhere: Vec<_> = requests
        .iter()
        .filter(|r| r.region.as_deref() != Some(OS_SECOND_REGION))
        .map(|r| format!("{} {} -> {} in {:?}", r.method, r.path, r.status, r.region))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "every request for the server went to {OS_SECOND_REGION}'s Nova: {elsewhere:?}"
    );
    assert!(
        requests.iter().all(|r| r
            .path
            .starts_with(&format!("/regions/{OS_SECOND_REGION}/compute/"))),
        "{requests:#?}"
    );
    assert_eq!(s.tb.power_state(&victim).await?.status, "ACTIVE");
    wait_for(Duration::from_secs(30), "the node Ready", || async {
        Ok(ready_status(&s.node(&victim).await?).as_deref() == Some("True"))
    })
    .await?;
    Ok(())
}

/// A node whose providerID names a region the catalog does not have: the Remediation says so
/// (`CloudEndpointMissing`, naming the region), sends nothing — not even to the clouds.yaml's
/// region, whose Nova has a running server of that very id — releases nothing, and fails after
/// its fence timeout so the NodeHealthCheck can escalate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_the_catalog_does_not_have_is_refused_and_nothing_is_done() -> Result<()> {
    const NOWHERE: &str = "RegionNowhere";
    let s = Scenario::new("regionnowhere", |spec| ClusterSpec {
        provider_id_region: Some(NOWHERE.into()),
        ..spec
    })
    .await?;
    let victim = s.worker();
    let server = s.server(&victim);
    assert_eq!(
        provider_id(&s.node(&victim).await?),
        format!("openstack://{NOWHERE}/{server}")
    );
    // The kubelet hangs: the VM keeps running, so a wrong fence would release a live VM's pods.
    s.tb.kubelet_hang(&victim).await?;
    s.wait_not_ready(&victim).await?;
    s.remediate(
        &victim,
        json!({"action": "PowerCycle", "timeouts": {"fence": "10s"}}),
    )
    .await?;

    let reported = wait_for(
        Duration::from_secs(30),
        "the Processing condition to say CloudEndpointMissing",
        || async {
            let status = s.status(&victim).await?;
            let processing = status.conditions.iter().find(|c| c.type_ == "Processing");
            Ok(
                processing.is_some_and(|c| c.reason == "CloudEndpointMissing")
                    && status.last_error.is_some_and(|e| e.contains(NOWHERE)),
            )
        },
    )
    .await;
    if let Err(e) = reported {
        let status = s.status(&victim).await.ok();
        return Err(e.context(format!("{status:#?}\n{}", s.op.log_tail())));
    }
    s.wait_phase(&victim, RemediationPhase::Failed).await?;

    let status = s.status(&victim).await?;
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(NOWHERE) && error.contains("no workload was released"),
        "{error}"
    );
    assert!(
        !status
            .steps
            .iter()
            .any(|st| st.name.to_string() == "ReleaseWorkloads"),
        "{:?}",
        status.steps
    );
    assert!(
        !s.events("CloudEndpointMissing").await?.is_empty(),
        "a Warning event says why"
    );
    assert!(s.events("ReleasingWorkloads").await?.is_empty());
    let requests = s.requests_for(&server);
    assert!(requests.is_empty(), "nothing was sent: {requests:#?}");
    let taints = support::node_taints(&s.client, &victim).await?;
    assert!(
        !taints.iter().any(|t| t.starts_with(OUT_OF_SERVICE)),
        "{taints:?}"
    );
    let vm = s.tb.power_state(&victim).await?;
    assert!(vm.status == "ACTIVE" && vm.running, "{vm:?}");
    Ok(())
}
