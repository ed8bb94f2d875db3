//! The NodeHealthCheck controller alone (`--controllers=nhc`) on the real test bed: the
//! remediation contract, escalation, the safety limits and every reason to hold back. No
//! remediator acts: the tests play it by writing the remediation objects' conditions, as
//! medik8s Self Node Remediation or any third-party remediator would.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use nodehealer::api::{NodeHealthCheck, NodeHealthCheckPhase, NodeHealthCheckStatus};
use nodehealer_testbed::objects::{create, resource};
use nodehealer_testbed::{ClusterSpec, TestBed, TestCluster, is_ready, wait_for};
use serde_json::{Value, json};
use support::{Operator, SCOPE_LABEL, blocked};

fn remediation_resource() -> ApiResource {
    nodehealer_testbed::objects::nodehealer_resource("Remediation")
}
use tokio::sync::OnceCell;

const CONTRACT: &str = "remediation.medik8s.io";

struct Pool {
    tb: &'static TestBed,
    ns: String,
    cluster: TestCluster,
    client: kube::Client,
    op: Operator,
    nhc: String,
}

impl Pool {
    /// A cluster, a RemediationTemplate `reboot` (and `power-cycle`), and a NodeHealthCheck
    /// over the role's nodes built from `spec` (selector and template namespaces filled in).
    async fn new(
        prefix: &str,
        masters: u32,
        workers: u32,
        role: &str,
        spec: Value,
    ) -> Result<Pool> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let cluster = tb
            .create_cluster(ClusterSpec::magnum(&ns, masters, workers))
            .await?;
        let client = tb.client().await?;
        for (name, action) in [("reboot", "Reboot"), ("power-cycle", "PowerCycle")] {
            create(
                &client,
                &json!({
                    "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"template": {"spec": {"action": action,
                        "openstack": {"cloudSecretRef": {"name": "openstack-cloud"}}}}}
                }),
            )
            .await?;
        }
        let nhc = format!("{ns}-{role}");
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {
            nodehealer_testbed::CLUSTER_LABEL: cluster.name,
            nodehealer_testbed::MAGNUM_ROLE_LABEL: role}});
        if spec.get("unhealthyConditions").is_none() && spec.get("endpointChecks").is_none() {
            spec["unhealthyConditions"] = json!([
                {"type": "Ready", "status": "False", "duration": "2s"},
                {"type": "Ready", "status": "Unknown", "duration": "2s"}]);
        }
        if spec.get("remediationTemplate").is_none() && spec.get("escalatingRemediations").is_none()
        {
            spec["remediationTemplate"] = template_ref("reboot");
        }
        fill_namespaces(&mut spec, &ns);
        create(
            &client,
            &json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
                "metadata": {"name": nhc, "labels": {SCOPE_LABEL: ns}}, "spec": spec}),
        )
        .await?;
        let op = Operator::start(tb, &ns, &["--controllers=nhc"])?;
        Ok(Pool {
            tb,
            ns,
            cluster,
            client,
            op,
            nhc,
        })
    }

    fn nodes(&self, role: &str) -> Vec<String> {
        self.cluster.nodes_with_role(role)
    }

    async fn list(&self, ar: &ApiResource) -> Result<Vec<DynamicObject>> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, ar);
        Ok(api.list(&ListParams::default()).await?.items)
    }

    async fn status(&self) -> Result<NodeHealthCheckStatus> {
        self.status_of(&self.nhc).await
    }

    async fn status_of(&self, nhc: &str) -> Result<NodeHealthCheckStatus> {
        let api: Api<NodeHealthCheck> = Api::all(self.client.clone());
        Ok(api.get(nhc).await?.status.unwrap_or_default())
    }

    async fn patch_spec(&self, patch: Value) -> Result<()> {
        let api: Api<NodeHealthCheck> = Api::all(self.client.clone());
        api.patch(
            &self.nhc,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": patch})),
        )
        .await?;
        Ok(())
    }

    /// Waits until the status satisfies `check`; the error shows the status and the log.
    async fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&NodeHealthCheckStatus) -> bool,
    ) -> Result<NodeHealthCheckStatus> {
        let check = &check;
        let waited = wait_for(timeout, what, || async { Ok(check(&self.status().await?)) }).await;
        if let Err(e) = waited {
            bail!(
                "{e:#}\nstatus: {}\noperator log:\n{}",
                serde_json::to_string_pretty(&self.status().await?)?,
                self.op.log_tail()
            );
        }
        self.status().await
    }

    async fn wait_remediations(
        &self,
        ar: &ApiResource,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<DynamicObject>> {
        let waited = wait_for(timeout, &format!("{count} remediation objects"), || async {
            Ok(self.list(ar).await?.len() == count)
        })
        .await;
        if let Err(e) = waited {
            bail!(
                "{e:#}\nstatus: {}\noperator log:\n{}",
                serde_json::to_string_pretty(&self.status().await?)?,
                self.op.log_tail()
            );
        }
        self.list(ar).await
    }

    /// Plays the remediator: sets a condition on a remediation object's status.
    async fn set_condition(
        &self,
        ar: &ApiResource,
        name: &str,
        type_: &str,
        status: &str,
    ) -> Result<()> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, ar);
        let patch = json!({"status": {"conditions": [{
            "type": type_, "status": status, "reason": "Test", "message": "set by the test",
            "lastTransitionTime": jiff::Timestamp::now().to_string()}]}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Stays true for `for_` (polling): nothing appears that should not.
    async fn stays(
        &self,
        for_: Duration,
        mut check: impl AsyncFnMut() -> Result<bool>,
    ) -> Result<()> {
        let end = Instant::now() + for_;
        while Instant::now() < end {
            if !check().await? {
                bail!(
                    "the condition did not hold; operator log:\n{}",
                    self.op.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
}

fn template_ref(name: &str) -> Value {
    json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate", "name": name})
}

fn fill_namespaces(spec: &mut Value, ns: &str) {
    if let Some(t) = spec.get_mut("remediationTemplate") {
        t["namespace"] = json!(ns);
    }
    if let Some(list) = spec
        .get_mut("escalatingRemediations")
        .and_then(Value::as_array_mut)
    {
        for e in list {
            e["remediationTemplate"]["namespace"] = json!(ns);
        }
    }
}

/// Answers 200 to every HTTP request on the node's InternalIP and `port` (a passing endpoint
/// check), for as long as the test runs.
async fn serve_ok(client: &kube::Client, node: &str, port: u16) -> Result<()> {
    let node = Api::<Node>::all(client.clone()).get(node).await?;
    let ip = node
        .status
        .and_then(|s| s.addresses)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .context("InternalIP")?
        .address;
    let listener = tokio::net::TcpListener::bind((ip.as_str(), port)).await?;
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok(())
}

fn annotations(o: &DynamicObject) -> BTreeMap<String, String> {
    o.metadata.annotations.clone().unwrap_or_default()
}

/// A worker fails: after the duration exactly one Remediation exists, made as the contract
/// says; the status lists the node and why; it recovers: after healthyDelay the Remediation is
/// removed and the status is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_worker_gets_one_remediation_per_the_contract_until_it_recovers() -> Result<()>
{
    let p = Pool::new("contract", 0, 3, "worker", json!({"healthyDelay": "3s"})).await?;
    let node = p.nodes("worker")[0].clone();
    let failed = Instant::now();
    p.tb.kubelet_hang(&node).await?;
    let rems = p
        .wait_remediations(&remediation_resource(), 1, Duration::from_secs(30))
        .await?;
    // Condition times have a resolution of one second.
    assert!(
        failed.elapsed() >= Duration::from_secs(1),
        "not before the 2s duration"
    );
    let rem = &rems[0];
    assert_eq!(
        rem.metadata.name.as_deref(),
        Some(node.as_str()),
        "named after the node"
    );
    let a = annotations(rem);
    assert_eq!(a.get(&format!("{CONTRACT}/node-name")), Some(&node));
    assert_eq!(
        a.get(&format!("{CONTRACT}/template-name"))
            .map(String::as_str),
        Some("reboot")
    );
    assert!(
        !rem.metadata
            .labels
            .clone()
            .unwrap_or_default()
            .contains_key(&format!("{CONTRACT}/isControlPlaneNode"))
    );
    let owner = &rem.metadata.owner_references.as_ref().context("owner")?[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("NodeHealthCheck", p.nhc.as_str())
    );
    assert_eq!(rem.data["spec"]["action"], "Reboot", "the template's spec");

    let status = p
        .wait_status("the node in status", Duration::from_secs(10), |s| {
            s.unhealthy_nodes
                .iter()
                .any(|u| u.name == node && !u.remediations.is_empty())
        })
        .await?;
    let entry = status
        .unhealthy_nodes
        .iter()
        .find(|u| u.name == node)
        .unwrap();
    assert!(
        entry
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("Ready=False"),
        "{:?}",
        entry.reason
    );
    assert_eq!(status.phase, Some(NodeHealthCheckPhase::Remediating));
    assert_eq!((status.observed_nodes, status.unhealthy_count), (3, 1));

    // Only one, however long we wait.
    p.stays(Duration::from_secs(3), async || {
        Ok(p.list(&remediation_resource()).await?.len() == 1)
    })
    .await?;

    p.tb.recover_node(&node).await?;
    let nodes: Api<Node> = Api::all(p.client.clone());
    wait_for(Duration::from_secs(20), "node Ready", || async {
        Ok(is_ready(&nodes.get(&node).await?))
    })
    .await?;
    let ready = Instant::now();
    p.wait_remediations(&remediation_resource(), 0, Duration::from_secs(30))
        .await?;
    assert!(
        ready.elapsed() >= Duration::from_secs(2),
        "kept for healthyDelay, removed after {:?}",
        ready.elapsed()
    );
    let status = p
        .wait_status("a clean status", Duration::from_secs(10), |s| {
            s.unhealthy_nodes.is_empty() && s.healthy_nodes == 3
        })
        .await?;
    assert_eq!(status.phase, Some(NodeHealthCheckPhase::Enabled));
    assert_eq!(status.healthy_nodes, 3);
    Ok(())
}

/// Escalation: `Succeeded=False` escalates at once, a timeout escalates when it runs out; the
/// given-up object is annotated `nhc-timed-out` and the next template's object is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_or_timed_out_remediations_escalate_to_the_next_template() -> Result<()> {
    let p = Pool::new(
        "escalate",
        0,
        3,
        "worker",
        json!({"maxUnhealthy": 2, "escalatingRemediations": [
            {"remediationTemplate": template_ref("reboot"), "order": 1, "timeout": "60s"},
            {"remediationTemplate": template_ref("power-cycle"), "order": 2, "timeout": "60s"}]}),
    )
    .await?;
    // Two templates of one kind: without multiple-templates support both objects would be
    // named after the node, so the NodeHealthCheck refuses to work and says why.
    let status = p
        .wait_status("disabled", Duration::from_secs(20), |s| {
            s.phase == Some(NodeHealthCheckPhase::Disabled)
        })
        .await?;
    assert!(
        status
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("multiple-templates-support"),
        "{status:?}"
    );
    let templates: Api<DynamicObject> = Api::namespaced_with(
        p.client.clone(),
        &p.ns,
        &resource("nodehealer.io/v1alpha1", "RemediationTemplate"),
    );
    for t in ["reboot", "power-cycle"] {
        let patch = json!({"metadata": {"annotations": {"remediation.medik8s.io/multiple-templates-support": "true"}}});
        templates
            .patch(t, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    p.wait_status("enabled", Duration::from_secs(40), |s| {
        s.phase == Some(NodeHealthCheckPhase::Enabled)
    })
    .await?;
    let rem = remediation_resource();
    let [a, b] = [p.nodes("worker")[0].clone(), p.nodes("worker")[1].clone()];
    p.tb.kubelet_hang(&a).await?;
    let first = p
        .wait_remediations(&rem, 1, Duration::from_secs(30))
        .await?;
    assert_eq!(
        annotations(&first[0])
            .get(&format!("{CONTRACT}/template-name"))
            .map(String::as_str),
        Some("reboot")
    );

    // The remediator gives up: Succeeded=False. The next template takes over at once.
    let first_name = first[0].metadata.name.clone().unwrap();
    assert!(
        first_name.starts_with(&format!("{a}-")),
        "a generated name: {first_name}"
    );
    p.set_condition(&rem, &first_name, "Succeeded", "False")
        .await?;
    let status = p
        .wait_status(
            "the first remediation marked timed out",
            Duration::from_secs(20),
            |s| {
                s.unhealthy_nodes
                    .iter()
                    .any(|u| u.name == a && u.remediations.iter().any(|r| r.timed_out.is_some()))
            },
        )
        .await?;
    let objects = p
        .wait_remediations(&rem, 2, Duration::from_secs(20))
        .await?;
    let old = objects
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some(first_name.as_str()))
        .context("the first")?;
    assert!(
        annotations(old).contains_key(&format!("{CONTRACT}/nhc-timed-out")),
        "annotated nhc-timed-out"
    );
    let next = objects
        .iter()
        .find(|o| o.metadata.name.as_deref() != Some(first_name.as_str()))
        .context("the next")?;
    assert_eq!(
        annotations(next)
            .get(&format!("{CONTRACT}/template-name"))
            .map(String::as_str),
        Some("power-cycle")
    );
    assert_eq!(next.data["spec"]["action"], "PowerCycle");
    let entry = status.unhealthy_nodes.iter().find(|u| u.name == a).unwrap();
    assert!(entry.remediations.iter().any(|r| r.timed_out.is_some()));

    // Timeout: node b's first remediation is never answered; after 60s it escalates.
    p.tb.kubelet_hang(&b).await?;
    let created = Instant::now();
    wait_for(
        Duration::from_secs(90),
        "b escalated after its timeout",
        || async {
            let objects = p.list(&rem).await?;
            Ok(objects.iter().any(|o| {
                annotations(o).get(&format!("{CONTRACT}/node-name")) == Some(&b)
                    && annotations(o).contains_key(&format!("{CONTRACT}/nhc-timed-out"))
            }))
        },
    )
    .await
    .with_context(|| p.op.log_tail())?;
    assert!(
        created.elapsed() >= Duration::from_secs(55),
        "not before the timeout: {:?}",
        created.elapsed()
    );
    Ok(())
}

/// A third-party template kind, defined only here, is driven through the contract: with the
/// multiple-templates-support annotation the object gets a generated name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_template_kind_is_driven_through_the_contract() -> Result<()> {
    install_fake_remediation_crds().await?;
    let tb = support::testbed().await?;
    let client = tb.client().await?;
    let ns = tb.namespace("thirdparty").await?;
    create(
        &client,
        &json!({"apiVersion": "test.nodehealer.io/v1", "kind": "FakeRemediationTemplate",
            "metadata": {"name": "fake", "namespace": ns,
                "annotations": {"remediation.medik8s.io/multiple-templates-support": "true"}},
            "spec": {"template": {"spec": {"strategy": "Anything"}}}}),
    )
    .await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 2)).await?;
    let nhc = format!("{ns}-workers");
    create(
        &client,
        &json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
            "metadata": {"name": nhc, "labels": {SCOPE_LABEL: ns}},
            "spec": {
                "selector": {"matchLabels": {nodehealer_testbed::CLUSTER_LABEL: cluster.name}},
                "unhealthyConditions": [{"type": "Ready", "status": "False", "duration": "2s"}],
                "maxUnhealthy": 1,
                "remediationTemplate": {"apiVersion": "test.nodehealer.io/v1",
                    "kind": "FakeRemediationTemplate", "name": "fake", "namespace": ns}}}),
    )
    .await?;
    let op = Operator::start(tb, &ns, &["--controllers=nhc"])?;
    let node = cluster.nodes_with_role("worker")[0].clone();
    tb.kubelet_hang(&node).await?;
    let fake = resource("test.nodehealer.io/v1", "FakeRemediation");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &fake);
    let nhcs: Api<NodeHealthCheck> = Api::all(client.clone());
    let found = wait_for(Duration::from_secs(30), "a FakeRemediation", || async {
        Ok(api.list(&ListParams::default()).await?.items.len() == 1)
    })
    .await;
    if let Err(e) = found {
        bail!(
            "{e:#}\n{:?}\n{}",
            nhcs.get_opt(&nhc).await?.and_then(|n| n.status),
            op.log_tail()
        );
    }
    let obj = api.list(&ListParams::default()).await?.items.remove(0);
    let name = obj.metadata.name.clone().unwrap();
    assert!(
        name.starts_with(&format!("{node}-")) && name.len() > node.len() + 1,
        "generated name {name}"
    );
    assert_eq!(obj.data["spec"]["strategy"], "Anything");
    assert_eq!(
        annotations(&obj).get(&format!("{CONTRACT}/node-name")),
        Some(&node)
    );
    // The node recovers: the object goes.
    tb.recover_node(&node).await?;
    wait_for(
        Duration::from_secs(30),
        "the FakeRemediation removed",
        || async { Ok(api.list(&ListParams::default()).await?.items.is_empty()) },
    )
    .await
    .with_context(|| op.log_tail())?;
    Ok(())
}

static FAKE_CRDS: OnceCell<()> = OnceCell::const_new();

async fn install_fake_remediation_crds() -> Result<()> {
    FAKE_CRDS
        .get_or_try_init(|| async {
            let tb = support::testbed().await?;
            let client = tb.client().await?;
            for kind in ["FakeRemediationTemplate", "FakeRemediation"] {
                let plural = format!("{}s", kind.to_lowercase());
                let crd: CustomResourceDefinition = serde_json::from_value(json!({
                    "metadata": {"name": format!("{plural}.test.nodehealer.io")},
                    "spec": {
                        "group": "test.nodehealer.io", "scope": "Namespaced",
                        "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                            "subresources": {"status": {}},
                            "schema": {"openAPIV3Schema": {"type": "object",
                                "x-kubernetes-preserve-unknown-fields": true}}}]
                    }
                }))?;
                nodehealer_testbed::objects::install_crd(&client, &crd, "nodehealer-tests").await?;
            }
            anyhow::Ok(())
        })
        .await?;
    Ok(())
}

/// maxUnhealthy exceeded: nothing is created and the status says why; the storm ends when
/// nodes come back, then the cooldown holds new remediations until it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_creates_nothing_beyond_the_limit_and_cools_down() -> Result<()> {
    let p = Pool::new(
        "storm",
        0,
        3,
        "worker",
        json!({"maxUnhealthy": 1, "stormCooldownDuration": "8s"}),
    )
    .await?;
    let rem = remediation_resource();
    let w = p.nodes("worker");
    p.tb.kubelet_hang(&w[0]).await?;
    p.tb.kubelet_hang(&w[1]).await?;
    let status = p
        .wait_status("both blocked", Duration::from_secs(30), |s| {
            blocked(s, &w[0]).is_some() && blocked(s, &w[1]).is_some()
        })
        .await?;
    let why = blocked(&status, &w[0]).unwrap();
    assert!(why.contains("above maxUnhealthy 1"), "{why}");
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "StormActive" && c.status == "True")
    );
    p.stays(Duration::from_secs(3), async || {
        Ok(p.list(&rem).await?.is_empty())
    })
    .await?;

    // One comes back: the storm is over, the cooldown starts and holds the other.
    p.tb.recover_node(&w[1]).await?;
    let status = p
        .wait_status("cooldown", Duration::from_secs(30), |s| {
            blocked(s, &w[0]).is_some_and(|b| b.contains("storm cooldown"))
        })
        .await?;
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "StormCooldownActive" && c.status == "True")
    );
    let cooling = Instant::now();
    p.wait_remediations(&rem, 1, Duration::from_secs(30))
        .await?;
    assert!(
        cooling.elapsed() >= Duration::from_secs(4),
        "the cooldown was honoured ({:?})",
        cooling.elapsed()
    );
    Ok(())
}

/// Control plane: with 5 members two failing nodes are remediated one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_nodes_are_remediated_one_at_a_time() -> Result<()> {
    let p = Pool::new("cp", 5, 0, "master", json!({"maxUnhealthy": "60%"})).await?;
    let rem = remediation_resource();
    let m = p.nodes("master");
    p.tb.kubelet_hang(&m[0]).await?;
    p.tb.kubelet_hang(&m[1]).await?;
    let objects = p
        .wait_remediations(&rem, 1, Duration::from_secs(30))
        .await?;
    let first = objects[0].metadata.name.clone().unwrap();
    assert!(
        objects[0]
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .contains_key(&format!("{CONTRACT}/isControlPlaneNode"))
    );
    let other = if first == m[0] { &m[1] } else { &m[0] };
    let status = p
        .wait_status("the other blocked", Duration::from_secs(20), |s| {
            blocked(s, other).is_some()
        })
        .await?;
    let why = blocked(&status, other).unwrap();
    assert!(why.contains("one control-plane node at a time"), "{why}");
    p.stays(Duration::from_secs(3), async || {
        Ok(p.list(&rem).await?.len() == 1)
    })
    .await?;
    Ok(())
}

/// Control plane, two NodeHealthChecks over the same five members (one on Ready, one on an
/// endpoint check): each sees a different node fail, yet only one is remediated at a time; when
/// the first recovers, the other NodeHealthCheck takes its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodehealthchecks_over_the_control_plane_remediate_one_node_at_a_time() -> Result<()> {
    let p = Pool::new("cp2nhc", 5, 0, "master", json!({"maxUnhealthy": "60%"})).await?;
    let rem = remediation_resource();
    let m = p.nodes("master");
    p.tb.kubelet_hang(&m[0]).await?;
    let objects = p
        .wait_remediations(&rem, 1, Duration::from_secs(30))
        .await?;
    assert_eq!(objects[0].metadata.name.as_deref(), Some(m[0].as_str()));

    // The second NodeHealthCheck probes an endpoint that every member but m[1] serves.
    let port = nodehealer_testbed::procs::free_port()?;
    for name in m.iter().filter(|n| **n != m[1]) {
        serve_ok(&p.client, name, port).await?;
    }
    let endpoints = format!("{}-endpoints", p.nhc);
    let mut spec = json!({
        "selector": {"matchLabels": {
            nodehealer_testbed::CLUSTER_LABEL: p.cluster.name,
            nodehealer_testbed::MAGNUM_ROLE_LABEL: "master"}},
        "endpointChecks": [{"name": "api", "scheme": "HTTP", "port": port, "path": "/healthz",
            "duration": "3s", "interval": "1s", "timeout": "500ms"}],
        "maxUnhealthy": "60%",
        "remediationTemplate": template_ref("reboot")});
    fill_namespaces(&mut spec, &p.ns);
    create(
        &p.client,
        &json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
            "metadata": {"name": endpoints, "labels": {SCOPE_LABEL: p.ns}}, "spec": spec}),
    )
    .await?;
    let waited = wait_for(
        Duration::from_secs(30),
        "m[1] blocked by the other NodeHealthCheck's remediation",
        || async { Ok(blocked(&p.status_of(&endpoints).await?, &m[1]).is_some()) },
    )
    .await;
    if let Err(e) = waited {
        bail!(
            "{e:#}
remediations: {:?}
status: {:?}
operator log:
{}",
            p.list(&rem)
                .await?
                .iter()
                .map(|o| o.metadata.name.clone())
                .collect::<Vec<_>>(),
            p.status_of(&endpoints).await?,
            p.op.log_tail()
        );
    }
    let why = blocked(&p.status_of(&endpoints).await?, &m[1]).unwrap();
    assert!(
        why.contains(&format!("control-plane node {} is being remediated", m[0])),
        "{why}"
    );
    p.stays(Duration::from_secs(3), async || {
        Ok(p.list(&rem).await?.len() == 1)
    })
    .await?;

    // m[0] recovers: its Remediation goes, and the endpoint NodeHealthCheck takes the slot.
    p.tb.recover_node(&m[0]).await?;
    wait_for(
        Duration::from_secs(30),
        "only m[1]'s Remediation",
        || async {
            let names: Vec<Option<String>> = p
                .list(&rem)
                .await?
                .into_iter()
                .map(|o| o.metadata.name)
                .collect();
            Ok(names == [Some(m[1].clone())])
        },
    )
    .await
    .with_context(|| p.op.log_tail())?;
    Ok(())
}

/// Control plane: a Replace deleted its Node but has not succeeded yet; its Remediation, known
/// as a control-plane one by its label alone, still holds the slot until it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_remediation_whose_node_was_deleted_holds_the_slot() -> Result<()> {
    let p = Pool::new("cpgone", 5, 0, "master", json!({"maxUnhealthy": "60%"})).await?;
    let rem = remediation_resource();
    let m = p.nodes("master");
    p.tb.kubelet_hang(&m[0]).await?;
    p.wait_remediations(&rem, 1, Duration::from_secs(30))
        .await?;
    // Play a Replace: the node will be deleted for good, then it is.
    p.set_condition(&rem, &m[0], "PermanentNodeDeletionExpected", "True")
        .await?;
    // The operator must see the condition before the Node goes (else it removes the
    // Remediation of a deleted node at once, as it should); nothing shows when its cache has
    // it, so give the watch a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Api::<Node>::all(p.client.clone())
        .delete(&m[0], &Default::default())
        .await?;
    p.tb.kubelet_hang(&m[1]).await?;
    let status = p
        .wait_status("m[1] blocked", Duration::from_secs(30), |s| {
            blocked(s, &m[1]).is_some()
        })
        .await?;
    let why = blocked(&status, &m[1]).unwrap();
    assert!(
        why.contains(&format!("control-plane node {} is being remediated", m[0])),
        "{why}"
    );
    p.stays(Duration::from_secs(3), async || {
        let names: Vec<Option<String>> = p
            .list(&rem)
            .await?
            .into_iter()
            .map(|o| o.metadata.name)
            .collect();
        Ok(names == [Some(m[0].clone())])
    })
    .await?;

    // The Replace succeeds: its Remediation is removed and m[1] gets the slot.
    p.set_condition(&rem, &m[0], "Succeeded", "True").await?;
    wait_for(
        Duration::from_secs(30),
        "only m[1]'s Remediation",
        || async {
            let names: Vec<Option<String>> = p
                .list(&rem)
                .await?
                .into_iter()
                .map(|o| o.metadata.name)
                .collect();
            Ok(names == [Some(m[1].clone())])
        },
    )
    .await
    .with_context(|| p.op.log_tail())?;
    Ok(())
}

/// Control plane: with 3 members, two failing nodes would leave etcd without a quorum of
/// healthy members: neither is fenced, and the status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_that_could_break_etcd_quorum_is_blocked() -> Result<()> {
    let p = Pool::new("quorum", 3, 0, "master", json!({"maxUnhealthy": 2})).await?;
    let m = p.nodes("master");
    p.tb.kubelet_hang(&m[0]).await?;
    p.tb.kubelet_hang(&m[1]).await?;
    let status = p
        .wait_status("both blocked by quorum", Duration::from_secs(30), |s| {
            blocked(s, &m[0]).is_some_and(|b| b.contains("etcd quorum"))
                && blocked(s, &m[1]).is_some_and(|b| b.contains("etcd quorum"))
        })
        .await?;
    assert_eq!(status.unhealthy_count, 2);
    assert!(p.list(&remediation_resource()).await?.is_empty());
    Ok(())
}

/// Each reason to hold back blocks with its own reason in status, and nothing is created:
/// a pause request, the exclude label, a node lease held by a maintenance tool, dryRun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_exclusion_foreign_lease_and_dry_run_each_block_with_their_reason() -> Result<()> {
    let p = Pool::new(
        "holdback",
        0,
        4,
        "worker",
        json!({"maxUnhealthy": "100%", "pauseRequests": ["upgrade by @ops"]}),
    )
    .await?;
    let rem = remediation_resource();
    let w = p.nodes("worker");
    // Paused.
    p.tb.kubelet_hang(&w[0]).await?;
    let status = p
        .wait_status("paused", Duration::from_secs(30), |s| {
            blocked(s, &w[0]).is_some()
        })
        .await?;
    assert!(
        blocked(&status, &w[0])
            .unwrap()
            .contains("paused: upgrade by @ops")
    );
    assert_eq!(status.phase, Some(NodeHealthCheckPhase::Paused));
    // Excluded by label, and a lease held by a maintenance tool.
    let nodes: Api<Node> = Api::all(p.client.clone());
    nodes
        .patch(
            &w[1],
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {
            "remediation.medik8s.io/exclude-from-remediation": "true"}}})),
        )
        .await?;
    let leases_ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "medik8s-leases"}}))?;
    match Api::<Namespace>::all(p.client.clone())
        .create(&PostParams::default(), &leases_ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": format!("node-{}", w[2])},
        "spec": {"holderIdentity": "node-maintenance-operator", "leaseDurationSeconds": 3600,
                 "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
    }))?;
    Api::<Lease>::namespaced(p.client.clone(), "medik8s-leases")
        .create(&PostParams::default(), &lease)
        .await?;
    p.tb.kubelet_hang(&w[1]).await?;
    p.tb.kubelet_hang(&w[2]).await?;
    // Unpause: w[0] gets its remediation, the other two stay blocked for their own reasons.
    p.patch_spec(json!({"pauseRequests": null})).await?;
    let objects = p
        .wait_remediations(&rem, 1, Duration::from_secs(30))
        .await?;
    assert_eq!(objects[0].metadata.name.as_deref(), Some(w[0].as_str()));
    let status = p
        .wait_status("excluded and lease-held", Duration::from_secs(20), |s| {
            blocked(s, &w[1]).is_some() && blocked(s, &w[2]).is_some()
        })
        .await?;
    assert!(
        blocked(&status, &w[1])
            .unwrap()
            .contains("exclude-from-remediation"),
        "{status:?}"
    );
    assert!(
        blocked(&status, &w[2])
            .unwrap()
            .contains("held by node-maintenance-operator"),
        "{status:?}"
    );
    // dryRun: a fourth node would get a remediation, but only the status says so.
    p.patch_spec(json!({"dryRun": true})).await?;
    p.tb.kubelet_hang(&w[3]).await?;
    let status = p
        .wait_status("dry run", Duration::from_secs(20), |s| {
            blocked(s, &w[3]).is_some()
        })
        .await?;
    assert!(
        blocked(&status, &w[3])
            .unwrap()
            .starts_with("dry run: would create"),
        "{status:?}"
    );
    p.stays(Duration::from_secs(2), async || {
        Ok(p.list(&rem).await?.len() == 1)
    })
    .await?;
    Ok(())
}

/// A restart of the operator (SIGKILL) right after it created a remediation does not create
/// a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_create_a_second_remediation() -> Result<()> {
    let mut p = Pool::new("restart", 0, 3, "worker", json!({})).await?;
    let rem = remediation_resource();
    let node = p.nodes("worker")[0].clone();
    p.tb.kubelet_hang(&node).await?;
    p.wait_remediations(&rem, 1, Duration::from_secs(30))
        .await?;
    p.op.wait_ready().await?;
    p.op.restart(p.tb)?;
    p.wait_status(
        "the restarted operator reports",
        Duration::from_secs(30),
        |s| {
            s.unhealthy_nodes
                .iter()
                .any(|u| u.name == node && u.remediations.len() == 1)
        },
    )
    .await?;
    p.stays(Duration::from_secs(3), async || {
        Ok(p.list(&rem).await?.len() == 1)
    })
    .await?;
    Ok(())
}

/// An endpoint check (HTTP on each node's InternalIP) that fails for its duration makes the
/// node unhealthy while its Ready condition stays True.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_check_makes_a_node_unhealthy() -> Result<()> {
    let port = nodehealer_testbed::procs::free_port()?;
    let p = Pool::new(
        "endpoint",
        0,
        3,
        "worker",
        json!({"endpointChecks": [{"name": "api", "scheme": "HTTP", "port": port, "path": "/healthz",
            "duration": "3s", "interval": "1s", "timeout": "500ms"}]}),
    )
    .await?;
    let nodes: Api<Node> = Api::all(p.client.clone());
    let w = p.nodes("worker");
    // Every node but the first answers 200 on its InternalIP.
    for name in &w[1..] {
        serve_ok(&p.client, name, port).await?;
    }
    let rems = p
        .wait_remediations(&remediation_resource(), 1, Duration::from_secs(30))
        .await?;
    assert_eq!(rems[0].metadata.name.as_deref(), Some(w[0].as_str()));
    assert!(
        is_ready(&nodes.get(&w[0]).await?),
        "Ready stays True: only the check fails"
    );
    let first = w[0].clone();
    let status = p
        .wait_status("the node listed", Duration::from_secs(10), |s| {
            s.unhealthy_nodes.iter().any(|u| u.name == first)
        })
        .await?;
    let entry = status
        .unhealthy_nodes
        .iter()
        .find(|u| u.name == w[0])
        .context("listed")?;
    assert!(
        entry
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("endpoint check api"),
        "{entry:?}"
    );
    Ok(())
}

/// A flapping node (Ready and NotReady every second) is never remediated while no unhealthy
/// spell lasts the duration; once it stays down, it gets exactly one remediation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_node_is_remediated_only_once_it_stays_down() -> Result<()> {
    let p = Pool::new(
        "flapping",
        0,
        3,
        "worker",
        json!({"unhealthyConditions": [{"type": "Ready", "status": "False", "duration": "3s"}]}),
    )
    .await?;
    let rem = remediation_resource();
    let node = p.nodes("worker")[0].clone();
    let nodes: Api<Node> = Api::all(p.client.clone());
    let mut flips = 0;
    for _ in 0..6 {
        p.tb.kubelet_hang(&node).await?;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        p.tb.recover_node(&node).await?;
        wait_for(Duration::from_secs(10), "Ready again", || async {
            Ok(is_ready(&nodes.get(&node).await?))
        })
        .await?;
        flips += 1;
        assert!(
            p.list(&rem).await?.is_empty(),
            "no remediation after {flips} short spells"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    p.tb.kubelet_hang(&node).await?;
    let down = Instant::now();
    p.wait_remediations(&rem, 1, Duration::from_secs(30))
        .await?;
    assert!(
        down.elapsed() >= Duration::from_secs(2),
        "only after the duration: {:?}",
        down.elapsed()
    );
    p.stays(Duration::from_secs(3), async || {
        Ok(p.list(&rem).await?.len() == 1)
    })
    .await?;
    Ok(())
}
