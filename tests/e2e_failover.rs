//! The whole story on the test bed, with both controllers of one operator: a node fails, the
//! NodeHealthCheck creates a Remediation from the pool's template, the Remediation controller
//! fences through the (simulated) OpenStack, frees the workload with the out-of-service taint,
//! brings the capacity back, and the NodeHealthCheck removes the Remediation. Each test prints
//! its timeline and reports its timings.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::{Api, DynamicObject};
use nodehealer_testbed::objects::{create, nodehealer_resource as resource};
use nodehealer_testbed::timeline::{Scope, Snapshot, Timeline, snapshot};
use nodehealer_testbed::workloads::running_on;
use nodehealer_testbed::{
    CLUSTER_LABEL, ClusterSpec, MAGNUM_ROLE_LABEL, TestBed, TestCluster, report_timing,
};
use serde_json::{Value, json};
use support::{Operator, SCOPE_LABEL};

const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

struct Story {
    tb: &'static TestBed,
    ns: String,
    cluster: TestCluster,
    client: kube::Client,
    op: Operator,
    timeline: Timeline,
    scope: Scope,
}

impl Story {
    /// A cluster, the credentials Secret, a template, and a NodeHealthCheck for its workers
    /// with `unhealthy` as the Ready=False/Unknown duration.
    async fn new(
        prefix: &str,
        workers: u32,
        template: Value,
        nhc_remediation: Value,
    ) -> Result<Story> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let cluster = tb
            .create_cluster(ClusterSpec::magnum(&ns, 1, workers))
            .await?;
        let client = tb.client().await?;
        support::cloud_secret(tb, &client, &ns, "openstack-cloud").await?;
        let mut template = template;
        template["metadata"]["namespace"] = json!(ns);
        create(&client, &template).await?;
        let mut spec = json!({
            "selector": {"matchLabels": {CLUSTER_LABEL: cluster.name, MAGNUM_ROLE_LABEL: "worker"}},
            "unhealthyConditions": [
                {"type": "Ready", "status": "False", "duration": "4s"},
                {"type": "Ready", "status": "Unknown", "duration": "4s"}
            ],
            "maxUnhealthy": "50%",
            "healthyDelay": "0s"
        });
        for (k, v) in nhc_remediation.as_object().context("object")? {
            spec[k] = v.clone();
        }
        let nhc = json!({
            "apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
            "metadata": {"name": format!("{ns}-workers"), "labels": {SCOPE_LABEL: ns}},
            "spec": spec
        });
        let nhc = replace_namespace(nhc, &ns);
        create(&client, &nhc).await?;
        let op = Operator::start(tb, &ns, &[])?;
        let scope = Scope {
            cluster: cluster.name.clone(),
            remediation_namespace: ns.clone(),
            pod: Some((ns.clone(), "db-0".into())),
        };
        Ok(Story {
            tb,
            ns,
            cluster,
            client,
            op,
            timeline: Timeline::new("db-0", false),
            scope,
        })
    }

    /// Runs the StatefulSet on the workers; returns where its pod runs.
    async fn workload(&self) -> Result<String> {
        let workers = [
            (CLUSTER_LABEL, self.cluster.name.as_str()),
            (MAGNUM_ROLE_LABEL, "worker"),
        ];
        support::db_placed(&self.client, &self.ns, &workers).await
    }

    async fn sample(&mut self) -> Result<Snapshot> {
        let snap = snapshot(&self.client, &self.tb.sim, &self.scope).await?;
        self.timeline.observe(snap.clone());
        Ok(snap)
    }

    /// Samples every 100 ms, marking milestones with `mark`, until `done` or `timeout`.
    async fn follow(
        &mut self,
        timeout: Duration,
        mut mark: impl FnMut(&mut Timeline, &Snapshot),
        done: impl Fn(&Timeline, &Snapshot) -> bool,
    ) -> Result<Snapshot> {
        loop {
            let snap = self.sample().await?;
            mark(&mut self.timeline, &snap);
            if done(&self.timeline, &snap) {
                return Ok(snap);
            }
            if self.timeline.elapsed() > timeout {
                bail!(
                    "the story did not end within {timeout:?}\ntimeline:\n{}\noperator log:\n{}",
                    self.timeline.render(),
                    self.op.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Accepted OpenStack actions on a server, from the simulator's request log.
    fn accepted_actions(&self, server: &str) -> Vec<String> {
        support::accepted_actions(self.tb, server)
    }
}

/// Puts the test's namespace into every `remediationTemplate.namespace`.
fn replace_namespace(mut nhc: Value, ns: &str) -> Value {
    if let Some(t) = nhc.pointer_mut("/spec/remediationTemplate") {
        t["namespace"] = json!(ns);
    }
    if let Some(list) = nhc
        .pointer_mut("/spec/escalatingRemediations")
        .and_then(Value::as_array_mut)
    {
        for e in list {
            e["remediationTemplate"]["namespace"] = json!(ns);
        }
    }
    nhc
}

fn template(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["openstack"] =
        json!({"cloudSecretRef": {"name": "openstack-cloud"}, "cloud": "openstack"});
    json!({
        "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
        "metadata": {"name": name},
        "spec": {"template": {"spec": spec}}
    })
}

fn template_ref(name: &str) -> Value {
    json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate", "name": name, "namespace": "-"})
}

fn has_out_of_service(snap: &Snapshot, node: &str) -> bool {
    snap.nodes
        .get(node)
        .is_some_and(|n| n.taints.iter().any(|t| t.starts_with(OUT_OF_SERVICE)))
}

/// The whole failover: a worker's server dies → NodeHealthCheck creates a PowerCycle
/// Remediation → SHUTOFF confirmed → out-of-service taint → the StatefulSet pod runs elsewhere
/// → taint removed → server powered on → node Ready → Remediation removed, taints gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_fenced_its_workload_moves_and_it_comes_back() -> Result<()> {
    let mut s = Story::new(
        "failover",
        3,
        template("power-cycle", json!({"action": "PowerCycle"})),
        json!({"remediationTemplate": template_ref("power-cycle")}),
    )
    .await?;
    let home = s.workload().await?;
    let server = s.cluster.servers[&home].clone();
    let nodes = s.cluster.servers.len();
    s.sample().await?;
    s.timeline.restart_clock();
    s.tb.fail_node(&home).await?;
    s.timeline.say(format!("the server of {home} crashes"));
    let mut oos_while_not_shutoff = Vec::new();
    s.follow(
        Duration::from_secs(120),
        |t, snap| {
            if snap.nodes.get(&home).is_some_and(|n| n.ready != "True") {
                t.milestone("node not Ready");
            }
            if !snap.remediations.is_empty() {
                t.milestone("remediation created");
            }
            if has_out_of_service(snap, &home) {
                t.milestone("out-of-service taint");
                let status = snap.server_of(&home).map(|s| s.status.clone());
                if status.as_deref() != Some("SHUTOFF") {
                    oos_while_not_shutoff.push(status);
                }
            }
            if snap.pod_running_on().is_some_and(|n| n != home) {
                t.milestone("pod running elsewhere");
            }
            if t.at("pod running elsewhere").is_some() && snap.whole(nodes) {
                t.milestone("cluster whole");
            }
        },
        |t, _| t.at("cluster whole").is_some(),
    )
    .await?;
    nodehealer_testbed::report_timeline(
        "a_dead_worker_is_fenced_its_workload_moves_and_it_comes_back",
        &s.timeline.render(),
    );
    let at = |m: &str| s.timeline.at(m).with_context(|| format!("milestone {m}"));
    let (not_ready, created, oos, moved, whole) = (
        at("node not Ready")?,
        at("remediation created")?,
        at("out-of-service taint")?,
        at("pod running elsewhere")?,
        at("cluster whole")?,
    );
    assert!(not_ready <= created && created <= oos && oos <= moved && moved <= whole);
    // The 3 s duration counts from the condition's lastTransitionTime, which has whole
    // seconds: up to 1 s of it can pass before the samples see the node NotReady.
    assert!(
        created >= not_ready + Duration::from_secs(2),
        "the Remediation waited for the unhealthy duration: {created:?} vs {not_ready:?}"
    );
    assert!(
        oos_while_not_shutoff.is_empty(),
        "out-of-service taint while the server was {oos_while_not_shutoff:?}"
    );
    // The crashed server is already SHUTOFF (Nova's power-state sync): that confirms the fence,
    // no os-stop is needed; one os-start brings it back.
    assert_eq!(s.accepted_actions(&server), vec!["os-start"]);
    report_timing(
        "failover: node death -> StatefulSet pod Running elsewhere",
        moved,
    );
    report_timing("failover: node death -> cluster whole again", whole);
    Ok(())
}

/// A hypervisor dies: Nova never finishes the stop, and nothing proves the guest stopped, so
/// the pool's Replace template removes and releases nothing: the pod stays where it is, the
/// Remediation waits in FenceUnproven, until a person confirms the fence; then the pod moves,
/// Magnum replaces the server (a new server and Node join) and the old Node is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_hypervisor_is_replaced_through_magnum() -> Result<()> {
    let mut s = Story::new(
        "replace",
        3,
        // A stop that has not completed in 15 s (half the fence timeout) means the host is
        // gone: the removal goes then.
        template(
            "replace",
            json!({"action": "Replace", "timeouts": {"fence": "30s"}}),
        ),
        json!({"remediationTemplate": template_ref("replace")}),
    )
    .await?;
    // The template needs the Magnum cluster: set it now that the cluster exists.
    let templates: Api<DynamicObject> =
        Api::namespaced_with(s.client.clone(), &s.ns, &resource("RemediationTemplate"));
    let patch = json!({"spec": {"template": {"spec": {"openstack": {"magnum": {"cluster": s.cluster.magnum_id.clone().unwrap()}}}}}});
    templates
        .patch(
            "replace",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    let home = s.workload().await?;
    let server = s.cluster.servers[&home].clone();
    let nodes = s.cluster.servers.len();
    s.sample().await?;
    s.timeline.restart_clock();
    s.tb.host_down(&home).await?;
    s.timeline.say(format!("the hypervisor of {home} dies"));
    let unproven = |snap: &Snapshot| {
        snap.remediations
            .values()
            .any(|r| r.phase == "FenceUnproven")
    };
    let held = s
        .follow(
            Duration::from_secs(120),
            |t, snap| {
                if unproven(snap) {
                    t.milestone("fence unproven");
                }
            },
            |_, snap| unproven(snap),
        )
        .await?;
    assert!(
        s.tb.sim.server(&server).is_some(),
        "nothing is removed without evidence"
    );
    assert_eq!(
        held.pod.as_ref().and_then(|p| p.node.as_deref()),
        Some(home.as_str()),
        "nothing proves the old guest stopped: its pod is not released"
    );
    assert!(
        !held.nodes[&home]
            .taints
            .iter()
            .any(|t| t.starts_with(OUT_OF_SERVICE)),
        "no out-of-service taint without evidence"
    );
    s.timeline
        .say("a person checks the hypervisor and confirms it is off");
    let rems: Api<DynamicObject> =
        Api::namespaced_with(s.client.clone(), &s.ns, &resource("Remediation"));
    let name = rems
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(|r| r.data["status"]["phase"] == "FenceUnproven")
        .and_then(|r| r.metadata.name)
        .context("the unproven Remediation")?;
    let patch = json!({"metadata": {"annotations": {"nodehealer.io/fence-confirmed": "test: hypervisor confirmed off"}}});
    rems.patch(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    let last = s
        .follow(
            Duration::from_secs(90),
            |t, snap| {
                if !snap.nodes.contains_key(&home) {
                    t.milestone("old node deleted");
                }
                if snap.pod_running_on().is_some_and(|n| n != home) {
                    t.milestone("pod running elsewhere");
                }
                if t.at("old node deleted").is_some() && snap.whole(nodes) {
                    t.milestone("cluster whole");
                }
            },
            |t, _| t.at("cluster whole").is_some() && t.at("pod running elsewhere").is_some(),
        )
        .await?;
    nodehealer_testbed::report_timeline(
        "a_lost_hypervisor_is_replaced_through_magnum",
        &s.timeline.render(),
    );
    assert!(s.tb.sim.server(&server).is_none(), "the old server is gone");
    assert!(!last.nodes.contains_key(&home));
    assert_eq!(last.nodes.len(), nodes, "a replacement joined");
    let resizes =
        s.tb.sim
            .request_log()
            .into_iter()
            .filter(|r| r.path.ends_with("/actions/resize") && (200..300).contains(&r.status))
            .count();
    assert_eq!(resizes, 1, "exactly one resize");
    report_timing(
        "replace: a person's confirmation -> cluster whole again",
        s.timeline.at("cluster whole").unwrap() - s.timeline.at("fence unproven").unwrap(),
    );
    Ok(())
}

/// A hung kubelet on an ACTIVE server: the first template of the escalation, Reboot, brings
/// it back; the workload never moves and nothing is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kubelet_is_rebooted_without_fencing() -> Result<()> {
    let mut s = Story::new(
        "hang",
        2,
        template("reboot", json!({"action": "Reboot"})),
        json!({"escalatingRemediations": [
            {"remediationTemplate": template_ref("reboot"), "order": 0, "timeout": "60s"}
        ]}),
    )
    .await?;
    let home = s.workload().await?;
    let server = s.cluster.servers[&home].clone();
    let nodes = s.cluster.servers.len();
    s.sample().await?;
    s.timeline.restart_clock();
    s.tb.kubelet_hang(&home).await?;
    let tb = s.tb;
    s.follow(
        Duration::from_secs(90),
        |t, snap| {
            if snap.nodes.get(&home).is_some_and(|n| n.ready != "True") {
                t.milestone("node not Ready");
            }
            // The node is Ready again as soon as the reboot starts, and its Remediation is
            // removed at once (healthyDelay 0s): the whole life of the object can fall between
            // two samples, so its reboot in the simulator's log counts as seeing it.
            if !snap.remediations.is_empty() || !support::accepted_actions(tb, &server).is_empty() {
                t.milestone("remediation created");
            }
            if t.at("remediation created").is_some() && snap.whole(nodes) {
                t.milestone("cluster whole");
            }
        },
        |t, _| t.at("cluster whole").is_some(),
    )
    .await?;
    nodehealer_testbed::report_timeline(
        "a_hung_kubelet_is_rebooted_without_fencing",
        &s.timeline.render(),
    );
    assert_eq!(s.accepted_actions(&server), vec!["reboot"]);
    assert_eq!(
        running_on(&s.client, &s.ns, "db-0").await?.as_deref(),
        Some(home.as_str()),
        "the pod stayed"
    );
    report_timing(
        "kubelet hang: Ready=False -> node Ready after a reboot",
        s.timeline.at("cluster whole").unwrap(),
    );
    Ok(())
}

/// medik8s' contract: the NodeHealthCheck deletes a Remediation as soon as its node is healthy,
/// whatever the Remediation's phase. Here the node comes back (someone powers its server on)
/// while the Remediation still waits for a VolumeAttachment to go: the NodeHealthCheck deletes
/// it before the step machine could see the node Ready. The success is recorded anyway, once
/// (`nodehealer_remediations_finished_total{outcome="succeeded"} 1`, a Normal `NodeReady`
/// event), and the race with the deletion is no failure: no reconcile error, no Warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remediation_the_nodehealthcheck_deletes_early_is_counted_as_succeeded_once() -> Result<()>
{
    let s = Story::new(
        "earlydelete",
        2,
        template(
            "power-cycle",
            json!({"action": "PowerCycle", "workloadEviction": "ResourceDeletion"}),
        ),
        json!({"remediationTemplate": template_ref("power-cycle")}),
    )
    .await?;
    let victim = s.cluster.nodes_with_role("worker")[0].clone();
    // A VolumeAttachment its CSI driver will not let go of (a finalizer): ReleaseWorkloads
    // waits for it.
    let held = format!("{}-held", s.ns);
    let vas: Api<k8s_openapi::api::storage::v1::VolumeAttachment> = Api::all(s.client.clone());
    vas.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": held, "finalizers": ["test.nodehealer.io/hold"]},
            "spec": {"attacher": "test.csi.nodehealer.io", "nodeName": victim,
                     "source": {"persistentVolumeName": format!("{held}-pv")}}
        }))?,
    )
    .await?;
    let rems: Api<DynamicObject> =
        Api::namespaced_with(s.client.clone(), &s.ns, &resource("Remediation"));
    let phase = |o: &DynamicObject| {
        o.data["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    s.tb.fail_node(&victim).await?;
    let releasing = nodehealer_testbed::wait_for(
        Duration::from_secs(90),
        "the Remediation waiting in ReleasingWorkloads",
        || async {
            Ok(rems
                .get_opt(&victim)
                .await?
                .is_some_and(|r| phase(&r) == "ReleasingWorkloads"))
        },
    )
    .await;
    if let Err(e) = releasing {
        bail!("{e}\noperator log:\n{}", s.op.log_tail());
    }
    // The node comes back while the Remediation waits: the NodeHealthCheck removes it.
    s.tb.recover_node(&victim).await?;
    let gone = nodehealer_testbed::wait_for(
        Duration::from_secs(90),
        "the NodeHealthCheck removed the Remediation",
        || async { Ok(rems.get_opt(&victim).await?.is_none()) },
    )
    .await;
    // Let the VolumeAttachment go whatever happened.
    vas.patch(
        &held,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    if let Err(e) = gone {
        bail!("{e}\noperator log:\n{}", s.op.log_tail());
    }
    let metrics = s.op.metrics().await?;
    let succeeded = metrics
        .lines()
        .find(|l| {
            l.starts_with("nodehealer_remediations_finished_total{")
                && l.contains(r#"action="PowerCycle""#)
                && l.contains(r#"outcome="succeeded""#)
        })
        .unwrap_or_default();
    assert!(
        succeeded.ends_with(" 1"),
        "the success counted once: {succeeded:?}\nmetrics:\n{metrics}\nlog:\n{}",
        s.op.log_tail()
    );
    let reconcile_errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("nodehealer_remediation_reconcile_errors_total{"))
        .collect();
    assert!(
        reconcile_errors.is_empty(),
        "the deletion is no reconcile error: {reconcile_errors:?}"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(s.client.clone(), &s.ns);
    let about_it: Vec<_> = events
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Remediation"))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        about_it
            .iter()
            .any(|(t, r, _)| t == "Normal" && r == "NodeReady"),
        "a NodeReady event: {about_it:#?}"
    );
    let warnings: Vec<_> = about_it.iter().filter(|(t, _, _)| t == "Warning").collect();
    assert!(warnings.is_empty(), "no Warning: {warnings:#?}");
    Ok(())
}
