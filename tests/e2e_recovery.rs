//! Pool policies on the test bed: `ReservedHost` brings a standby into service before the
//! failed node's workloads are freed and makes the repaired node the new standby;
//! `AutoPriority` promotes a standby only when freed pods find no room; maintenance, pause and
//! the Magnum cluster's `auto_healing_enabled` label (and a busy cluster) block with their
//! reason in status and nothing is done.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use nodehealer::api::{NodeHealthCheck, NodeHealthCheckStatus, RecoveryMethod};
use nodehealer_testbed::objects::{create, nodehealer_resource as resource};
use nodehealer_testbed::timeline::{Scope, Snapshot, Timeline, snapshot};
use nodehealer_testbed::workloads::{filler_pod, running_on, stateful_app_requesting};
use nodehealer_testbed::{
    CLUSTER_LABEL, ClusterSpec, MAGNUM_ROLE_LABEL, TestBed, TestCluster, report_timing, wait_for,
};
use openstack_sim::{Fault, Service};
use serde_json::{Value, json};
use support::{Operator, SCOPE_LABEL, blocked};

const STANDBY_SELECTOR_LABEL: &str = "pool.example.com/standby";
const RESERVED_TAINT: &str = "nodehealer.io/reserved";
const ROLE_LABEL: &str = "nodehealer.io/reserved-host";
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// Each node has 32 CPUs; the workload asks for 20, so a node with a filler has no room.
const BIG: &str = "20";

struct PoolStory {
    tb: &'static TestBed,
    ns: String,
    client: kube::Client,
    cluster: TestCluster,
    op: Operator,
    nhc: String,
    workers: Vec<String>,
}

impl PoolStory {
    /// A Magnum cluster with `workers` workers, the credentials Secret, a PowerCycle template
    /// (naming the Magnum cluster when `magnum`), and a NodeHealthCheck for the workers with
    /// `extra` merged into its spec.
    async fn new(prefix: &str, workers: u32, magnum: bool, extra: Value) -> Result<Self> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let cluster = tb
            .create_cluster(ClusterSpec::magnum(&ns, 1, workers))
            .await?;
        let client = tb.client().await?;
        support::cloud_secret(tb, &client, &ns, "openstack-cloud").await?;
        let mut openstack =
            json!({"cloudSecretRef": {"name": "openstack-cloud"}, "cloud": "openstack"});
        if magnum {
            openstack["magnum"] = json!({"cluster": cluster.magnum_id.clone().context("magnum")?});
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
        let mut spec = json!({
            "selector": {"matchLabels": {CLUSTER_LABEL: cluster.name, MAGNUM_ROLE_LABEL: "worker"}},
            "unhealthyConditions": [
                {"type": "Ready", "status": "False", "duration": "3s"},
                {"type": "Ready", "status": "Unknown", "duration": "3s"}
            ],
            "maxUnhealthy": 3,
            "healthyDelay": "0s",
            "remediationTemplate": {
                "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
                "name": "power-cycle", "namespace": ns
            }
        });
        for (k, v) in extra.as_object().context("object")? {
            spec[k] = v.clone();
        }
        let nhc = format!("{ns}-workers");
        create(
            &client,
            &json!({
                "apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
                "metadata": {"name": nhc, "labels": {SCOPE_LABEL: ns}},
                "spec": spec
            }),
        )
        .await?;
        let op = Operator::start(tb, &ns, &[])?;
        let workers = cluster.nodes_with_role("worker");
        Ok(Self {
            tb,
            ns,
            client,
            cluster,
            op,
            nhc,
            workers,
        })
    }

    fn recovery(method: RecoveryMethod, extra: Value) -> Value {
        let mut recovery = json!({
            "method": method,
            "reservedNodeSelector": {"matchLabels": {STANDBY_SELECTOR_LABEL: "true"}}
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            recovery[k] = v.clone();
        }
        json!({"recovery": recovery})
    }

    async fn label(&self, node: &str, key: &str, value: Option<&str>) -> Result<()> {
        Api::<Node>::all(self.client.clone())
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": {key: value}}})),
            )
            .await?;
        Ok(())
    }

    async fn node(&self, name: &str) -> Result<Node> {
        Ok(Api::<Node>::all(self.client.clone()).get(name).await?)
    }

    async fn status(&self) -> Result<NodeHealthCheckStatus> {
        let api: Api<NodeHealthCheck> = Api::all(self.client.clone());
        Ok(api.get(&self.nhc).await?.status.unwrap_or_default())
    }

    async fn wait_status(
        &self,
        what: &str,
        check: impl Fn(&NodeHealthCheckStatus) -> bool,
    ) -> Result<NodeHealthCheckStatus> {
        let found = wait_for(Duration::from_secs(45), what, || async {
            Ok(check(&self.status().await?))
        })
        .await;
        if let Err(e) = found {
            bail!(
                "{e}\nstatus: {:#?}\noperator log:\n{}",
                self.status().await?,
                self.op.log_tail()
            );
        }
        self.status().await
    }

    async fn blocked_reason(&self, node: &str) -> Result<Option<String>> {
        Ok(blocked(&self.status().await?, node))
    }

    async fn remediations(&self) -> Result<Vec<String>> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns, &resource("Remediation"));
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect())
    }

    /// Makes `node` the pool's standby through the selector label, and waits until the
    /// operator has marked it (role label and reserved taint).
    async fn make_standby(&self, node: &str) -> Result<()> {
        self.label(node, STANDBY_SELECTOR_LABEL, Some("true"))
            .await?;
        wait_for(Duration::from_secs(30), "the standby marked", || async {
            let n = self.node(node).await?;
            Ok(is_standby(&n))
        })
        .await
        .with_context(|| self.op.log_tail())?;
        Ok(())
    }

    /// Takes the room of every worker but `home` and `standby`, then starts the workload, which
    /// can only land on `home`.
    async fn fill_and_run(&self, home: &str, standby: &str) -> Result<()> {
        for (i, w) in self.workers.iter().enumerate() {
            if w != home && w != standby {
                filler_pod(&self.client, &self.ns, &format!("filler-{i}"), w, BIG).await?;
            }
        }
        stateful_app_requesting(
            &self.client,
            &self.ns,
            "db",
            &[
                (CLUSTER_LABEL, &self.cluster.name),
                (MAGNUM_ROLE_LABEL, "worker"),
            ],
            Some(BIG),
        )
        .await?;
        wait_for(Duration::from_secs(60), "db-0 running", || async {
            Ok(running_on(&self.client, &self.ns, "db-0").await?.is_some())
        })
        .await?;
        let on = running_on(&self.client, &self.ns, "db-0").await?;
        if on.as_deref() != Some(home) {
            bail!("db-0 runs on {on:?}, not on {home}");
        }
        Ok(())
    }

    fn scope(&self) -> Scope {
        Scope {
            cluster: self.cluster.name.clone(),
            remediation_namespace: self.ns.clone(),
            pod: Some((self.ns.clone(), "db-0".into())),
        }
    }

    /// Samples every 100 ms, marking milestones with `mark`, until `done` or `timeout`.
    async fn follow(
        &self,
        timeline: &mut Timeline,
        timeout: Duration,
        mut mark: impl FnMut(&mut Timeline, &Snapshot),
        done: impl Fn(&Timeline) -> bool,
    ) -> Result<()> {
        let scope = self.scope();
        loop {
            let snap = snapshot(&self.client, &self.tb.sim, &scope).await?;
            timeline.observe(snap.clone());
            mark(timeline, &snap);
            if done(timeline) {
                return Ok(());
            }
            if timeline.elapsed() > timeout {
                bail!(
                    "the story did not end within {timeout:?}\ntimeline:\n{}\nstatus: {:#?}\noperator log:\n{}",
                    timeline.render(),
                    self.status().await?,
                    self.op.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn is_standby(n: &Node) -> bool {
    let label = n
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ROLE_LABEL))
        .map(String::as_str);
    let tainted = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .any(|t| t.key == RESERVED_TAINT);
    label == Some("standby") && tainted
}

fn has_taint(snap: &Snapshot, node: &str, prefix: &str) -> bool {
    snap.nodes
        .get(node)
        .is_some_and(|n| n.taints.iter().any(|t| t.starts_with(prefix)))
}

fn ready(snap: &Snapshot, node: &str) -> bool {
    snap.nodes.get(node).is_some_and(|n| n.ready == "True")
}

/// ReservedHost: 3 workers without spare room and 1 standby. A worker dies → the standby is in
/// service before the out-of-service taint frees the workload → the StatefulSet pod runs on the
/// former standby → the repaired node is the pool's new standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_host_takes_the_workload_and_the_repaired_node_becomes_the_standby() -> Result<()>
{
    let s = PoolStory::new(
        "reserved",
        4,
        false,
        PoolStory::recovery(RecoveryMethod::ReservedHost, json!({})),
    )
    .await?;
    let (home, standby) = (s.workers[0].clone(), s.workers[3].clone());
    s.make_standby(&standby).await?;
    s.fill_and_run(&home, &standby).await?;

    let mut timeline = Timeline::new("db-0", false);
    timeline.restart_clock();
    s.tb.fail_node(&home).await?;
    timeline.say(format!("the server of {home} crashes"));
    let mut freed_before_standby = false;
    s.follow(
        &mut timeline,
        Duration::from_secs(120),
        |t, snap| {
            let standby_in_service =
                ready(snap, &standby) && !has_taint(snap, &standby, RESERVED_TAINT);
            if standby_in_service {
                t.milestone("standby in service");
            }
            if !snap.remediations.is_empty() {
                t.milestone("remediation created");
            }
            if has_taint(snap, &home, OUT_OF_SERVICE) {
                t.milestone("out-of-service taint");
                freed_before_standby |= !standby_in_service;
            }
            if snap.pod_running_on() == Some(standby.as_str()) {
                t.milestone("pod running on the former standby");
            }
            if t.at("pod running on the former standby").is_some()
                && ready(snap, &home)
                && has_taint(snap, &home, RESERVED_TAINT)
                && snap.remediations.is_empty()
            {
                t.milestone("repaired node is the standby");
            }
        },
        |t| t.at("repaired node is the standby").is_some(),
    )
    .await?;
    nodehealer_testbed::report_timeline(
        "reserved_host_takes_the_workload_and_the_repaired_node_becomes_the_standby",
        &timeline.render(),
    );
    let at = |m: &str| timeline.at(m).with_context(|| format!("milestone {m}"));
    let (promoted, created, freed, moved) = (
        at("standby in service")?,
        at("remediation created")?,
        at("out-of-service taint")?,
        at("pod running on the former standby")?,
    );
    assert!(
        !freed_before_standby,
        "the workload was freed before the standby was in service"
    );
    assert!(promoted <= created && created <= freed && freed <= moved);
    assert!(
        is_standby(&s.node(&home).await?),
        "the repaired node is labelled and tainted"
    );

    let status = s
        .wait_status("the status lists the new standby", |st| {
            st.recovery.as_ref().is_some_and(|r| {
                r.standbys.iter().any(|b| b.name == home && b.available)
                    && r.in_service
                        .iter()
                        .any(|i| i.name == standby && i.replaced.as_deref() == Some(home.as_str()))
            })
        })
        .await?;
    assert_eq!(
        status.recovery.map(|r| r.method),
        Some(RecoveryMethod::ReservedHost)
    );
    // What an alert on "no standby left" reads.
    let nhc = &s.nhc;
    let metrics = s.op.metrics().await?;
    for series in [
        format!("nodehealer_standby_promotions_total{{nodehealthcheck=\"{nhc}\"}} 1"),
        format!("nodehealer_standby_nodes{{nodehealthcheck=\"{nhc}\",state=\"available\"}} 1"),
        format!("nodehealer_standby_nodes{{nodehealthcheck=\"{nhc}\",state=\"unavailable\"}} 0"),
        format!("nodehealer_standby_nodes{{nodehealthcheck=\"{nhc}\",state=\"in-service\"}} 1"),
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} in\n{metrics}"
        );
    }
    // Every metric the chart's alerts read is one this operator exports (this pool has
    // standbys, a remediation and OpenStack requests: every family has a series).
    for (alert, expr, _) in
        support::chart::alerts(&["--set", "metrics.prometheusRule.enabled=true"])?
    {
        let read = support::chart::families(&expr);
        assert!(!read.is_empty(), "{alert} reads our metrics: {expr}");
        for family in read {
            assert!(
                metrics.contains(&format!("# TYPE {family} ")),
                "{alert} reads {family}, which the operator does not export:\n{metrics}"
            );
        }
    }
    // And so is every metric the chart's Grafana dashboard reads.
    for (panel, expr) in
        support::chart::dashboard_queries(&["--set", "metrics.grafanaDashboard.enabled=true"])?
    {
        let read = support::chart::families(&expr);
        assert!(!read.is_empty(), "{panel} reads our metrics: {expr}");
        for family in read {
            assert!(
                metrics.contains(&format!("# TYPE {family} ")),
                "the dashboard's {panel} reads {family}, which the operator does not export:\n{metrics}"
            );
        }
    }
    report_timing(
        "ReservedHost: node death -> StatefulSet pod Running on the standby",
        moved,
    );
    Ok(())
}

/// AutoPriority: the scheduler goes first. With no room left on the other workers, the freed
/// pod stays Pending; after `pendingPodTimeout` a standby is brought into service and the pod
/// runs there. The failed node's power-on is held back by a Nova fault so it cannot take the
/// pod back in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_priority_promotes_a_standby_when_freed_pods_find_no_room() -> Result<()> {
    let s = PoolStory::new(
        "autoprio",
        4,
        false,
        PoolStory::recovery(
            RecoveryMethod::AutoPriority,
            json!({"pendingPodTimeout": "3s"}),
        ),
    )
    .await?;
    let (home, standby) = (s.workers[0].clone(), s.workers[3].clone());
    s.make_standby(&standby).await?;
    s.fill_and_run(&home, &standby).await?;
    let server = s.cluster.servers[&home].clone();
    s.tb.sim
        .add_fault(Fault::error(Service::Nova, 503).on_path(&format!("{server}/action")));

    let mut timeline = Timeline::new("db-0", false);
    timeline.restart_clock();
    s.tb.fail_node(&home).await?;
    timeline.say(format!(
        "the server of {home} crashes; Nova refuses to start it again"
    ));
    // As soon as the remediation runs, a pod appears that waits for another pool's nodes: it
    // is unschedulable too, but no standby of this pool could take it, so it must not count.
    let foreign = tokio::spawn({
        let (client, ns, nhc) = (s.client.clone(), s.ns.clone(), s.nhc.clone());
        async move {
            wait_for(Duration::from_secs(60), "a remediation", || async {
                let api: Api<NodeHealthCheck> = Api::all(client.clone());
                let st = api.get(&nhc).await?.status.unwrap_or_default();
                Ok(st
                    .unhealthy_nodes
                    .iter()
                    .any(|n| !n.remediations.is_empty()))
            })
            .await?;
            create(
                &client,
                &json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "gpu-job", "namespace": ns},
                    "spec": {
                        "nodeSelector": {"pool.example.com/gpu": "a100"},
                        "containers": [{"name": "job", "image": "registry.invalid/job:1"}]
                    }
                }),
            )
            .await
            .map(drop)
        }
    });
    let result = s
        .follow(
            &mut timeline,
            Duration::from_secs(120),
            |t, snap| {
                if has_taint(snap, &home, OUT_OF_SERVICE) {
                    t.milestone("out-of-service taint");
                }
                if t.at("out-of-service taint").is_some()
                    && snap
                        .pod
                        .as_ref()
                        .is_some_and(|p| p.phase == "Pending" && !p.terminating && p.node.is_none())
                {
                    t.milestone("db-0 pending again");
                }
                if ready(snap, &standby) && !has_taint(snap, &standby, RESERVED_TAINT) {
                    t.milestone("standby in service");
                }
                if snap.pod_running_on() == Some(standby.as_str()) {
                    t.milestone("pod running on the former standby");
                }
            },
            |t| t.at("pod running on the former standby").is_some(),
        )
        .await;
    let counted = async {
        result?;
        foreign.await??;
        // While the remediation still runs (Nova refuses the start), db-0 is placed and only
        // the foreign pod is unschedulable: nothing is left for this pool to make room for.
        wait_for(Duration::from_secs(30), "gpu-job unschedulable", || async {
            let pod: Pod = Api::namespaced(s.client.clone(), &s.ns)
                .get("gpu-job")
                .await?;
            Ok(pod
                .status
                .and_then(|st| st.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable")))
        })
        .await?;
        s.wait_status("no pending pod counted", |st| {
            st.recovery.as_ref().and_then(|r| r.pending_pods) == Some(0)
                && st
                    .unhealthy_nodes
                    .iter()
                    .any(|n| !n.remediations.is_empty())
        })
        .await
    }
    .await;
    s.tb.sim.clear_faults();
    counted?;
    nodehealer_testbed::report_timeline(
        "auto_priority_promotes_a_standby_when_freed_pods_find_no_room",
        &timeline.render(),
    );
    let at = |m: &str| timeline.at(m).with_context(|| format!("milestone {m}"));
    let (freed, pending, promoted, moved) = (
        at("out-of-service taint")?,
        at("db-0 pending again")?,
        at("standby in service")?,
        at("pod running on the former standby")?,
    );
    // 3 s from the pod's PodScheduled=False lastTransitionTime, which has whole seconds (and
    // the pod is recreated as soon as the taint evicted it).
    assert!(
        promoted >= freed + Duration::from_secs(2),
        "the standby waited for the pod to stay pending {freed:?} -> {promoted:?}"
    );
    // Counted from db-0, not from the foreign pod created earlier (the scheduler's time has
    // whole seconds, and the samples are 100 ms apart: 1.5 s of the 3 s are certain).
    assert!(
        promoted >= pending + Duration::from_millis(1500),
        "the standby waited for db-0, not for the foreign pod: {pending:?} -> {promoted:?}"
    );
    report_timing(
        "AutoPriority (no room, pendingPodTimeout 3s): node death -> StatefulSet pod Running on the standby",
        moved,
    );
    // The cloud is back: the node returns as the pool's standby.
    wait_for(
        Duration::from_secs(90),
        "the repaired node is the standby",
        || async {
            let n = s.node(&home).await?;
            Ok(is_standby(&n)
                && nodehealer_testbed::nodes::is_ready(&n)
                && s.remediations().await?.is_empty())
        },
    )
    .await
    .with_context(|| s.op.log_tail())?;
    let status = s.status().await?;
    let recovery = status.recovery.context("recovery status")?;
    assert_eq!(recovery.method, RecoveryMethod::AutoPriority);
    assert!(
        recovery
            .in_service
            .iter()
            .any(|i| i.name == standby && i.replaced.as_deref() == Some(home.as_str())),
        "{recovery:?}"
    );
    Ok(())
}

/// A node in maintenance, a paused pool, a Magnum cluster with healing off and a busy Magnum
/// cluster each block with their reason in status, and nothing is created until the block
/// goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_pause_and_the_magnum_cluster_block_with_their_reason() -> Result<()> {
    let s = PoolStory::new("blocks", 5, true, json!({})).await?;
    let cluster = s.cluster.magnum_id.clone().context("magnum id")?;
    let (w0, w1) = (s.workers[0].clone(), s.workers[1].clone());

    // Maintenance.
    s.label(&w0, "nodehealer.io/maintenance", Some("true"))
        .await?;
    s.tb.fail_node(&w0).await?;
    s.wait_status("w0 blocked by maintenance", |st| {
        blocked(st, &w0).is_some_and(|r| r.contains("nodehealer.io/maintenance=true"))
    })
    .await?;

    // Magnum healing off.
    s.tb.sim
        .set_cluster_label(&cluster, "auto_healing_enabled", Some("false"));
    s.tb.fail_node(&w1).await?;
    s.wait_status("w1 blocked by the Magnum label", |st| {
        blocked(st, &w1).is_some_and(|r| r.contains("auto_healing_enabled=true"))
    })
    .await?;

    // Paused: checked first, whatever else blocks.
    let nhcs: Api<NodeHealthCheck> = Api::all(s.client.clone());
    let pause = |requests: Value| {
        let nhcs = nhcs.clone();
        let name = s.nhc.clone();
        async move {
            nhcs.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"pauseRequests": requests}})),
            )
            .await
        }
    };
    pause(json!(["upgrade to 1.36"])).await?;
    let st = s
        .wait_status("w1 blocked by the pause", |st| {
            blocked(st, &w1).is_some_and(|r| r.contains("paused: upgrade to 1.36"))
        })
        .await?;
    assert_eq!(st.phase.map(|p| p.as_str()), Some("Paused"));

    // Healing back on, but Magnum is updating the cluster.
    s.tb.sim.set_cluster_status(&cluster, "UPDATE_IN_PROGRESS");
    s.tb.sim
        .set_cluster_label(&cluster, "auto_healing_enabled", Some("true"));
    pause(Value::Null).await?;
    s.wait_status("w1 blocked by the busy cluster", |st| {
        blocked(st, &w1).is_some_and(|r| r.contains("is UPDATE_IN_PROGRESS"))
    })
    .await?;
    assert!(
        s.remediations().await?.is_empty(),
        "nothing is created while blocked"
    );
    assert_eq!(
        blocked(&s.status().await?, &w0).as_deref(),
        Some("node is labelled nodehealer.io/maintenance=true")
    );

    // The cluster settles: w1 is remediated; w0 stays in maintenance until the label goes.
    s.tb.sim.set_cluster_status(&cluster, "UPDATE_COMPLETE");
    wait_for(Duration::from_secs(45), "w1's remediation", || async {
        Ok(s.remediations().await?.contains(&w1))
    })
    .await
    .with_context(|| s.op.log_tail())?;
    assert!(!s.remediations().await?.contains(&w0));
    s.label(&w0, "nodehealer.io/maintenance", None).await?;
    wait_for(Duration::from_secs(45), "w0's remediation", || async {
        Ok(s.remediations().await?.contains(&w0) || s.blocked_reason(&w0).await?.is_none())
    })
    .await
    .with_context(|| s.op.log_tail())?;
    Ok(())
}
