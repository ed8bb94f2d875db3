//! Readiness before the bad day (issue 17, item 4), on the test bed: each NodeHealthCheck's
//! `CloudReady` condition says, while every node is healthy, whether its remediation path
//! works, and turns back to True once the problem is fixed; `nodehealer check` prints the same
//! and exits non-zero while something is not ready; a gauge says it to an alert.
//!
//! Before, nothing looked at the cloud until a node failed: an expired application credential,
//! a node whose server does not exist or a wrong region showed only as a failed remediation.

mod support;

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use nodehealer::api::nodehealthcheck::{CLOUD_READY_CONDITION, CloudReadinessStatus};
use nodehealer::api::{NodeHealthCheck, NodeHealthCheckStatus};
use nodehealer_testbed::objects::create;
use nodehealer_testbed::{
    CLUSTER_LABEL, ClusterSpec, MAGNUM_ROLE_LABEL, OS_DOMAIN, OS_PROJECT, OS_REGION, TestBed,
    TestCluster, wait_for,
};
use serde_json::json;
use support::{Operator, SCOPE_LABEL};

const SECRET: &str = "openstack-cloud";

struct Pool {
    tb: &'static TestBed,
    ns: String,
    cluster: TestCluster,
    client: kube::Client,
    op: Operator,
    nhc: String,
}

impl Pool {
    /// A cluster `spec` shapes, the Secret `SECRET` holding `clouds_yaml` (the test bed's when
    /// None), a PowerCycle template (naming the Magnum cluster, if any), a NodeHealthCheck over
    /// the workers, and the NodeHealthCheck controller with a readiness round every 2 s.
    async fn new(
        prefix: &str,
        spec: impl Fn(ClusterSpec) -> ClusterSpec,
        clouds_yaml: impl Fn(&TestBed, &str) -> Option<String>,
    ) -> Result<Pool> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let cluster = tb
            .create_cluster(spec(ClusterSpec {
                realistic: false,
                ..ClusterSpec::magnum(&ns, 0, 2)
            }))
            .await?;
        let client = tb.client().await?;
        match clouds_yaml(tb, &ns) {
            None => support::cloud_secret(tb, &client, &ns, SECRET).await?,
            Some(yaml) => put_secret(&client, &ns, &yaml).await?,
        }
        let mut openstack = json!({"cloudSecretRef": {"name": SECRET}, "cloud": "openstack"});
        if let Some(id) = &cluster.magnum_id {
            openstack["magnum"] = json!({"cluster": id});
        }
        create(
            &client,
            &json!({
                "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
                "metadata": {"name": "power-cycle", "namespace": ns},
                "spec": {"template": {"spec": {"action": "PowerCycle", "openstack": openstack}}}
            }),
        )
        .await?;
        let nhc = format!("{ns}-workers");
        create(
            &client,
            &json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
                "metadata": {"name": nhc, "labels": {SCOPE_LABEL: ns}},
                "spec": {
                    "selector": {"matchLabels": {CLUSTER_LABEL: cluster.name, MAGNUM_ROLE_LABEL: "worker"}},
                    "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1",
                        "kind": "RemediationTemplate", "name": "power-cycle", "namespace": ns}}}),
        )
        .await?;
        let op = Operator::start(
            tb,
            &ns,
            &["--controllers=nhc", "--cloud-check-interval-seconds=2"],
        )?;
        Ok(Pool {
            tb,
            ns,
            cluster,
            client,
            op,
            nhc,
        })
    }

    async fn status(&self) -> Result<NodeHealthCheckStatus> {
        Ok(Api::<NodeHealthCheck>::all(self.client.clone())
            .get(&self.nhc)
            .await?
            .status
            .unwrap_or_default())
    }

    /// Waits until `CloudReady` has `status` and `reason`; returns the status that showed it.
    async fn wait_cloud_ready(&self, status: &str, reason: &str) -> Result<NodeHealthCheckStatus> {
        let shown = std::sync::Mutex::new(None);
        let seen = wait_for(
            Duration::from_secs(60),
            &format!("CloudReady={status} with reason {reason}"),
            || async {
                let s = self.status().await?;
                let found = s.conditions.iter().any(|c| {
                    c.type_ == CLOUD_READY_CONDITION && c.status == status && c.reason == reason
                });
                if found {
                    *shown.lock().unwrap() = Some(s);
                }
                Ok(found)
            },
        )
        .await;
        if let Err(e) = seen {
            let s = self.status().await.ok();
            return Err(e.context(format!("{s:#?}\n{}", self.op.log_tail())));
        }
        shown.into_inner().unwrap().context("the status seen")
    }

    /// `nodehealer check` for this test's NodeHealthChecks: exit code and standard output.
    fn check(&self) -> Result<(i32, String)> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nodehealer"))
            .arg("check")
            .arg(format!("--kubeconfig={}", self.tb.cp.kubeconfig.display()))
            .arg(format!("--nhc-selector={SCOPE_LABEL}={}", self.ns))
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let code = out.status.code().context("nodehealer check was killed")?;
        Ok((code, stdout))
    }

    /// The operator's gauges for this pool.
    async fn gauges(&self) -> Result<(String, String)> {
        let metrics = self.op.metrics().await?;
        let line = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(&format!("{name}{{nodehealthcheck=\"{}\"}}", self.nhc)))
                .unwrap_or_default()
                .to_string()
        };
        Ok((
            line("nodehealer_nodehealthcheck_cloud_ready"),
            line("nodehealer_nodehealthcheck_cloud_unmapped_nodes"),
        ))
    }

    fn condition_message(status: &NodeHealthCheckStatus) -> String {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == CLOUD_READY_CONDITION)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    }
}

async fn put_secret(client: &kube::Client, ns: &str, clouds_yaml: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": ns},
        "stringData": {"clouds.yaml": clouds_yaml}
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            SECRET,
            &PatchParams::apply("e2e-readiness").force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// A clouds.yaml with an application credential of the test bed's project.
fn app_credential_yaml(tb: &TestBed, id: &str, secret: &str) -> String {
    format!(
        "clouds:
  openstack:
    auth_type: v3applicationcredential
    auth:
      auth_url: {}
      application_credential_id: {id}
      application_credential_secret: {secret}
    region_name: {OS_REGION}
    interface: public
    identity_api_version: 3
",
        tb.sim.auth_url()
    )
}

/// A new user of the test bed's project and an application credential of it.
fn new_app_credential(tb: &TestBed, ns: &str, name: &str) -> (String, String) {
    let project = tb.sim.add_project(OS_PROJECT, OS_DOMAIN);
    let user = tb
        .sim
        .add_user(&format!("{ns}-{name}"), "unused", OS_DOMAIN, &project);
    let secret = format!("{name}-secret");
    (
        tb.sim.add_application_credential(&user, name, &secret),
        secret,
    )
}

/// The application credential in the Secret expires: CloudReady turns False with
/// `AuthFailed` (checked again at the next round: the check's token is new each time, so a
/// token cached before the expiry hides nothing), the gauge and `nodehealer check` say so;
/// a new credential in the Secret makes it True again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_application_credential_is_auth_failed_until_the_secret_has_a_new_one()
-> Result<()> {
    let creds = std::sync::Mutex::new(None);
    let p = Pool::new(
        "ready-appcred",
        |s| s,
        |tb, ns| {
            let (id, secret) = new_app_credential(tb, ns, "first");
            *creds.lock().unwrap() = Some(id.clone());
            Some(app_credential_yaml(tb, &id, &secret))
        },
    )
    .await?;
    let first = creds.lock().unwrap().clone().context("a credential")?;
    let status = p.wait_cloud_ready("True", "Ready").await?;
    assert_eq!(
        status.cloud_readiness.as_ref().map(|r| r.unmapped_count),
        Some(0)
    );
    assert!(
        p.cluster.magnum_id.is_some(),
        "the Magnum cluster is checked too"
    );
    let (code, out) = p.check()?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ok    {}: Ready", p.nhc)), "{out}");

    p.tb.sim.expire_application_credential(&first);
    let status = p.wait_cloud_ready("False", "AuthFailed").await?;
    let message = Pool::condition_message(&status);
    assert!(
        message.contains("application_credential") && message.contains(SECRET),
        "{message}"
    );
    let (ready, _) = p.gauges().await?;
    assert!(ready.ends_with(" 0"), "{ready}");
    let metrics = p.op.metrics().await?;
    assert!(
        metrics.contains(r#"nodehealer_nodehealthchecks_not_cloud_ready{reason="AuthFailed"} 1"#),
        "{metrics}"
    );
    let (code, out) = p.check()?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL  {}: AuthFailed:", p.nhc)) && out.contains("0 of 1"),
        "{out}"
    );
    assert!(
        !out.contains("first-secret"),
        "no credential is printed: {out}"
    );

    let (id, secret) = new_app_credential(p.tb, &p.ns, "second");
    put_secret(&p.client, &p.ns, &app_credential_yaml(p.tb, &id, &secret)).await?;
    p.wait_cloud_ready("True", "Ready").await?;
    let (ready, _) = p.gauges().await?;
    assert!(ready.ends_with(" 1"), "{ready}");
    let (code, out) = p.check()?;
    assert_eq!(code, 0, "{out}");
    Ok(())
}

/// A node of the pool whose providerID names a server Nova does not have: CloudReady turns
/// False with `NodesUnmapped`, the node is listed with why and counted (gauge too), `nodehealer
/// check` names it; the check sent no action to any server. Without the node, True again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_server_does_not_exist_is_unmapped() -> Result<()> {
    let p = Pool::new("ready-unmapped", |s| s, |_, _| None).await?;
    p.wait_cloud_ready("True", "Ready").await?;

    const MISSING: &str = "00000000-0000-4000-8000-00000000dead";
    let ghost = format!("{}-ghost", p.ns);
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": ghost, "labels": {CLUSTER_LABEL: p.cluster.name, MAGNUM_ROLE_LABEL: "worker"}},
        "spec": {"providerID": format!("openstack:///{MISSING}")}
    }))?;
    let nodes: Api<Node> = Api::all(p.client.clone());
    nodes.create(&Default::default(), &node).await?;

    let status = p.wait_cloud_ready("False", "NodesUnmapped").await?;
    let readiness: CloudReadinessStatus = status.cloud_readiness.clone().unwrap_or_default();
    assert_eq!(readiness.unmapped_count, 1, "{readiness:?}");
    assert_eq!(readiness.unmapped_nodes.len(), 1);
    assert_eq!(readiness.unmapped_nodes[0].name, ghost);
    assert!(
        readiness.unmapped_nodes[0].reason.contains(MISSING),
        "{readiness:?}"
    );
    assert!(Pool::condition_message(&status).contains(&ghost));
    let (_, unmapped) = p.gauges().await?;
    assert!(unmapped.ends_with(" 1"), "{unmapped}");
    let (code, out) = p.check()?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL  {}: NodesUnmapped: node {ghost}:", p.nhc)),
        "{out}"
    );
    for server in p.cluster.servers.values() {
        assert_eq!(
            support::accepted_actions(p.tb, server),
            Vec::<String>::new(),
            "the check only reads"
        );
    }

    nodes.delete(&ghost, &DeleteParams::default()).await?;
    let status = p.wait_cloud_ready("True", "Ready").await?;
    assert_eq!(status.cloud_readiness.map(|r| r.unmapped_count), Some(0));
    Ok(())
}

/// A clouds.yaml whose `region_name` the catalog does not have: `EndpointMissing`, naming the
/// region, every node unmapped; the right region in the Secret makes it True.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_region_in_the_clouds_yaml_is_endpoint_missing_until_fixed() -> Result<()> {
    let wrong = |tb: &TestBed| {
        tb.clouds_yaml("openstack").replace(
            &format!("region_name: {OS_REGION}"),
            "region_name: RegionThree",
        )
    };
    let p = Pool::new(
        "ready-region",
        |s| ClusterSpec { magnum: false, ..s },
        |tb, _| Some(wrong(tb)),
    )
    .await?;
    let status = p.wait_cloud_ready("False", "EndpointMissing").await?;
    let message = Pool::condition_message(&status);
    assert!(message.contains("RegionThree"), "{message}");
    assert_eq!(status.cloud_readiness.map(|r| r.unmapped_count), Some(2));
    let (code, out) = p.check()?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL  {}: EndpointMissing:", p.nhc)) && out.contains("RegionThree"),
        "{out}"
    );

    put_secret(&p.client, &p.ns, &p.tb.clouds_yaml("openstack")).await?;
    p.wait_cloud_ready("True", "Ready").await?;
    Ok(())
}

/// Nodes whose providerIDs name a region the catalog does not have (`openstack://RegionNowhere/
/// <id>`): `EndpointMissing` and each node unmapped, saying the region; nodes of a second
/// region the catalog has (RegionTwo, while the clouds.yaml says RegionOne) are ready, their
/// servers listed in their own region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providerid_region_is_checked_where_the_node_says() -> Result<()> {
    let nowhere = Pool::new(
        "ready-nowhere",
        |s| ClusterSpec {
            magnum: false,
            provider_id_region: Some("RegionNowhere".into()),
            ..s
        },
        |_, _| None,
    )
    .await?;
    let two = Pool::new(
        "ready-regiontwo",
        |s| ClusterSpec {
            magnum: false,
            region: Some(nodehealer_testbed::OS_SECOND_REGION.into()),
            ..s
        },
        |_, _| None,
    )
    .await?;
    let status = nowhere.wait_cloud_ready("False", "EndpointMissing").await?;
    let readiness = status.cloud_readiness.unwrap_or_default();
    assert_eq!(readiness.unmapped_count, 2, "{readiness:?}");
    assert!(
        readiness
            .unmapped_nodes
            .iter()
            .all(|u| u.reason.contains("RegionNowhere")),
        "{readiness:?}"
    );
    two.wait_cloud_ready("True", "Ready").await?;
    let listed_in_two = two.tb.sim.request_log().into_iter().any(|r| {
        r.path
            .starts_with("/regions/RegionTwo/compute/v2.1/servers/detail")
            && r.status == 200
    });
    assert!(listed_in_two, "RegionTwo's Nova was listed");
    Ok(())
}

/// A template naming a Magnum cluster that does not exist: `ClusterMissing`, naming it (a
/// Replace through Magnum and health reports would fail); the right cluster makes it True.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnum_cluster_that_does_not_exist_is_cluster_missing_until_fixed() -> Result<()> {
    let p = Pool::new("ready-cluster", |s| s, |_, _| None).await?;
    p.wait_cloud_ready("True", "Ready").await?;
    let templates: Api<nodehealer::api::RemediationTemplate> =
        Api::namespaced(p.client.clone(), &p.ns);
    let set_cluster = |cluster: String| {
        let templates = templates.clone();
        async move {
            let patch = json!({"spec": {"template": {"spec": {"openstack": {"magnum": {"cluster": cluster}}}}}});
            templates
                .patch(
                    "power-cycle",
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
        }
    };
    set_cluster(format!("{}-gone", p.ns)).await?;
    let status = p.wait_cloud_ready("False", "ClusterMissing").await?;
    let message = Pool::condition_message(&status);
    assert!(message.contains(&format!("{}-gone", p.ns)), "{message}");
    let (code, out) = p.check()?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL  {}: ClusterMissing:", p.nhc)),
        "{out}"
    );

    set_cluster(p.cluster.magnum_id.clone().context("a Magnum cluster")?).await?;
    p.wait_cloud_ready("True", "Ready").await?;
    Ok(())
}
