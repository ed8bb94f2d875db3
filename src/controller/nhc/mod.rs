//! The NodeHealthCheck controller: thin. Each reconcile gathers plain data from the caches
//! (the pool's Nodes, the medik8s node leases, the templates and the remediation objects of
//! any kind the NodeHealthCheck uses, the endpoint check results), evaluates each node's
//! health and decides with the pure functions of `crate::health` and `crate::decide`, carries
//! out the outcomes through the remediation contract, writes the status when it changed, and
//! asks to be woken exactly when the passing of time changes a decision.
//!
//! Nothing is listed from the API server during a reconcile: Nodes, Leases, templates and
//! remediations come from watch caches, so a steady cluster costs only the watches.

mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Affinity, Node, NodeAffinity, Pod, PodSpec, Taint};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

use super::Settings;
use super::clouds::Clouds;
use super::dynamic::{DynamicStores, KindError, Wake, Watched};
use super::endpoints::Prober;
use crate::api::contract::{
    self, CONTROL_PLANE_REMEDIATION_LABEL, HEALTHY_DELAY_ANNOTATION, LEASE_NAMESPACE, LeaseState,
    MANUALLY_CONFIRMED_HEALTHY_ANNOTATION, NHC_TIMED_OUT_ANNOTATION, ObservedRemediation, OwnerNhc,
    TemplateInfo, is_control_plane, is_excluded, lease_holder_identity, lease_state,
    observe_remediation, remediation_kind, remediation_object, supports_multiple_templates,
};
use crate::api::{
    NodeHealthCheck, NodeHealthCheckStatus, OpenStackSpec, RecoveryMethod, TemplateReference,
    parse_selector,
};
use crate::decide::recovery::{
    IN_SERVICE, MAINTENANCE_LABEL, PROMOTED_AT_ANNOTATION, REPLACED_NODE_ANNOTATION,
    RESERVED_HOST_LABEL, RESERVED_TAINT_KEY, STANDBY,
};
use crate::decide::{
    self, BlockReason, Decision, EscalationCause, Outcome, PendingPod, Policy, Pool, PoolNode,
    RemediationId, Reserved, ReservedRole, StormState,
    placement::{NodeTraits, Placement},
};
use crate::error::{Error, Result};
use crate::health::{Health, HealthRules, NodeState, evaluate};
use crate::server::Readiness;

/// The field manager of everything this controller writes.
const MANAGER: &str = "nodehealer-nhc";
/// Without any event, look again this often (a lease held by a maintenance tool may expire).
const RESYNC: Duration = Duration::from_secs(300);
/// At most this many remediation objects are created at once.
const MAX_CONCURRENT_WRITES: usize = 16;
/// While a Magnum cluster blocks new remediations, it is looked at again this often.
const MAGNUM_RECHECK: Duration = Duration::from_secs(10);
/// A NodeHealthCheck that cannot work is looked at again this often (a CRD may get installed).
const DISABLED_RETRY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeStateLabels {
    nodehealthcheck: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabels {
    nodehealthcheck: String,
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndedLabels {
    nodehealthcheck: String,
    template: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NhcLabels {
    nodehealthcheck: String,
}

#[derive(Clone)]
struct Metrics {
    nodes: Family<NodeStateLabels, Gauge>,
    started: Family<TemplateLabels, Counter>,
    ended: Family<EndedLabels, Counter>,
    recovery: Family<NhcLabels, Histogram>,
    standbys: Family<NodeStateLabels, Gauge>,
    promotions: Family<NhcLabels, Counter>,
    /// NodeHealthChecks with gauge series, so those of a deleted one can be removed (a gauge
    /// left at "1 unhealthy" would keep an alert firing for a pool that no longer exists).
    gauged: Arc<Mutex<BTreeSet<String>>>,
}

/// The `state` values of `nodehealthcheck_nodes`.
const NODE_STATES: [&str; 5] = [
    "healthy",
    "unhealthy",
    "soon-unhealthy",
    "starting",
    "recovering",
];
/// The `state` values of `standby_nodes`.
const STANDBY_STATES: [&str; 3] = ["available", "unavailable", "in-service"];
/// How often the gauges of deleted NodeHealthChecks are looked for (in the cache).
const METRICS_PRUNE_PERIOD: Duration = Duration::from_secs(15);

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            nodes: Family::default(),
            started: Family::default(),
            ended: Family::default(),
            // 10 s .. ~11 h.
            recovery: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(10.0, 2.0, 13))
            }),
            standbys: Family::default(),
            promotions: Family::default(),
            gauged: Arc::default(),
        };
        registry.register(
            "nodehealthcheck_nodes",
            "Nodes selected by a NodeHealthCheck, by state (healthy, unhealthy, soon-unhealthy, starting, recovering)",
            m.nodes.clone(),
        );
        registry.register(
            "remediations_started",
            "Remediation objects created by a NodeHealthCheck, by template",
            m.started.clone(),
        );
        registry.register(
            "remediations_ended",
            "Remediation objects a NodeHealthCheck finished with, by template and outcome (recovered, timed-out, failed, node-deleted)",
            m.ended.clone(),
        );
        registry.register(
            "node_recovery_seconds",
            "Time from a node becoming unhealthy to its remediation being removed because it is healthy again",
            m.recovery.clone(),
        );
        registry.register(
            "standby_nodes",
            "Standby nodes of a NodeHealthCheck's pool with a recovery method, by state (available, unavailable, in-service); alert when none is available",
            m.standbys.clone(),
        );
        registry.register(
            "standby_promotions",
            "Standby nodes a NodeHealthCheck brought into service in place of a failed node",
            m.promotions.clone(),
        );
        m
    }

    fn labels(nhc: &str, state: &str) -> NodeStateLabels {
        NodeStateLabels {
            nodehealthcheck: nhc.to_string(),
            state: state.to_string(),
        }
    }

    fn remove_standby_series(&self, nhc: &str) {
        for state in STANDBY_STATES {
            self.standbys.remove(&Self::labels(nhc, state));
        }
    }

    /// Removes the gauge series of NodeHealthChecks that are not in `present`.
    fn forget_missing(&self, present: &BTreeSet<String>) {
        let mut gauged = self.gauged.lock().expect("lock");
        for nhc in gauged.iter().filter(|n| !present.contains(*n)) {
            for state in NODE_STATES {
                self.nodes.remove(&Self::labels(nhc, state));
            }
            self.remove_standby_series(nhc);
        }
        gauged.retain(|n| present.contains(n));
    }
}

/// Every `METRICS_PRUNE_PERIOD`, removes the gauges of NodeHealthChecks no longer in the cache
/// (a deleted object is never reconciled, so nothing else would).
async fn prune_metrics(metrics: Metrics, nhcs: Store<NodeHealthCheck>) {
    loop {
        tokio::time::sleep(METRICS_PRUNE_PERIOD).await;
        let present: BTreeSet<String> = nhcs.state().iter().map(|n| n.name_any()).collect();
        metrics.forget_missing(&present);
    }
}

/// What the NodeHealthCheck controller shares between reconciles.
pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
    recorder: Recorder,
    metrics: Metrics,
    nodes: Store<Node>,
    leases: Store<Lease>,
    /// Pods the scheduler has not placed (only those: the cache stays small).
    pending_pods: Store<Pod>,
    clouds: Arc<Clouds>,
    dynamic: DynamicStores,
    prober: Prober,
    wake_tx: mpsc::UnboundedSender<Wake>,
    inputs: Mutex<Option<Inputs>>,
    /// The NodeHealthChecks this controller serves (set once it runs): their template kinds
    /// are where control-plane remediations are looked for.
    nhcs: OnceLock<Store<NodeHealthCheck>>,
    /// Held from counting control-plane remediations to creating one, so two NodeHealthChecks
    /// over the control plane never both count none and each create one.
    one_control_plane: tokio::sync::Mutex<()>,
}

/// The halves of the caches and channels that `run` consumes.
struct Inputs {
    nodes: reflector::store::Writer<Node>,
    leases: reflector::store::Writer<Lease>,
    pending_pods: reflector::store::Writer<Pod>,
    wake_rx: mpsc::UnboundedReceiver<Wake>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        settings: Settings,
        clouds: Arc<Clouds>,
        registry: &mut Registry,
    ) -> Self {
        let (nodes, nodes_writer) = reflector::store();
        let (leases, leases_writer) = reflector::store();
        let (pending_pods, pending_pods_writer) = reflector::store();
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        let recorder = Recorder::new(client.clone(), settings.reporter.clone());
        let dynamic = DynamicStores::new(
            client.clone(),
            settings.watch_namespace.clone(),
            wake_tx.clone(),
        );
        let prober = Prober::new(nodes.clone(), wake_tx.clone());
        Self {
            metrics: Metrics::register(registry),
            client,
            settings,
            recorder,
            nodes,
            leases,
            pending_pods,
            clouds,
            dynamic,
            prober,
            wake_tx,
            inputs: Mutex::new(Some(Inputs {
                nodes: nodes_writer,
                leases: leases_writer,
                pending_pods: pending_pods_writer,
                wake_rx,
            })),
            nhcs: OnceLock::new(),
            one_control_plane: tokio::sync::Mutex::new(()),
        }
    }

    async fn event(&self, nhc: &NodeHealthCheck, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: "HealthCheck".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &nhc.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }
}

/// Runs the controller until `stop` turns true.
pub async fn run(ctx: Arc<Context>, readiness: Readiness, stop: watch::Receiver<bool>) {
    let Some(inputs) = ctx.inputs.lock().expect("inputs lock").take() else {
        tracing::error!("the NodeHealthCheck controller can run only once");
        return;
    };
    tokio::spawn(watch_nodes(
        ctx.client.clone(),
        inputs.nodes,
        ctx.wake_tx.clone(),
    ));
    tokio::spawn(watch_leases(
        ctx.client.clone(),
        inputs.leases,
        ctx.wake_tx.clone(),
    ));
    tokio::spawn(watch_pending_pods(
        ctx.client.clone(),
        inputs.pending_pods,
        ctx.wake_tx.clone(),
    ));

    // Every wake reconciles every NodeHealthCheck: there are few of them, a reconcile reads
    // only caches, and the controller merges wakes that arrive while one is queued.
    let wakes = receiver_stream(inputs.wake_rx).map(|_: Wake| ());

    // Decide nothing before the caches hold the whole cluster: with a partial node list, the
    // remediations of nodes not yet seen would look like those of deleted nodes and be
    // removed (and their servers powered back on) by the first reconcile after a restart.
    super::wait_synced(&ctx.nodes).await;
    super::wait_synced(&ctx.leases).await;
    super::wait_synced(&ctx.pending_pods).await;

    let api: Api<NodeHealthCheck> = Api::all(ctx.client.clone());
    let mut config = watcher::Config::default();
    if let Some(selector) = &ctx.settings.nhc_selector {
        config = config.labels(selector);
    }
    let controller = Controller::new(api, config).reconcile_all_on(wakes);
    let nhcs = controller.store();
    ctx.prober.set_nhc_store(nhcs.clone());
    let _ = ctx.nhcs.set(nhcs.clone());
    tokio::spawn(prune_metrics(ctx.metrics.clone(), nhcs.clone()));
    {
        let (nodes, leases, pods) = (
            ctx.nodes.clone(),
            ctx.leases.clone(),
            ctx.pending_pods.clone(),
        );
        tokio::spawn(async move {
            super::wait_synced(&nodes).await;
            super::wait_synced(&nhcs).await;
            super::wait_synced(&leases).await;
            super::wait_synced(&pods).await;
            tracing::debug!("NodeHealthCheck caches synced");
            readiness.cache_synced();
        });
    }
    let mut stop_signal = stop.clone();
    controller
        .graceful_shutdown_on(async move {
            let _ = stop_signal.wait_for(|s| *s).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "nodehealthcheck reconcile");
            }
        })
        .await;
}

/// A channel's receiving end as a stream.
fn receiver_stream<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

/// What about a node matters to health checks; a Node update that changes none of it (a
/// heartbeat) wakes nothing.
fn node_fingerprint(node: &Node) -> String {
    let conditions: Vec<String> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={}@{:?}",
                c.type_,
                c.status,
                c.last_transition_time.as_ref().map(|t| t.0)
            )
        })
        .collect();
    let addresses: Vec<String> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .map(|a| format!("{}={}", a.type_, a.address))
        .collect();
    let taints: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    let annotation = |key: &str| {
        node.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{taints:?}|{conditions:?}|{addresses:?}",
        node.metadata.labels,
        annotation(MANUALLY_CONFIRMED_HEALTHY_ANNOTATION),
        annotation(REPLACED_NODE_ANNOTATION),
        annotation(PROMOTED_AT_ANNOTATION),
        node.spec.as_ref().and_then(|s| s.unschedulable),
        node.metadata.deletion_timestamp
    )
}

/// Keeps the Node cache (without the fields nothing here reads) and wakes every
/// NodeHealthCheck when a node changes in a way that matters.
async fn watch_nodes(
    client: kube::Client,
    writer: reflector::store::Writer<Node>,
    wake: mpsc::UnboundedSender<Wake>,
) {
    let api: Api<Node> = Api::all(client);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|n: &mut Node| {
                // Memory: a node's image list and managed fields are most of its size.
                n.metadata.managed_fields = None;
                if let Some(status) = n.status.as_mut() {
                    status.images = None;
                }
            }),
    );
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(watcher::Event::Apply(node)) | Ok(watcher::Event::InitApply(node)) => {
                let fp = node_fingerprint(&node);
                seen.insert(node.name_any(), fp.clone()) != Some(fp)
            }
            Ok(watcher::Event::Delete(node)) => {
                seen.remove(&node.name_any());
                true
            }
            Ok(watcher::Event::InitDone) => true,
            Ok(watcher::Event::Init) => false,
            Err(e) => {
                tracing::warn!(error = %e, "node watch");
                false
            }
        };
        if changed && wake.send(Wake::All).is_err() {
            return;
        }
    }
}

/// Keeps the cache of node leases in `medik8s-leases` (held by node maintenance tools).
async fn watch_leases(
    client: kube::Client,
    writer: reflector::store::Writer<Lease>,
    wake: mpsc::UnboundedSender<Wake>,
) {
    let api: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|l: &mut Lease| l.metadata.managed_fields = None),
    );
    let mut holders: HashMap<String, Option<String>> = HashMap::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(watcher::Event::Apply(l)) | Ok(watcher::Event::InitApply(l)) => {
                let holder = l.spec.as_ref().and_then(|s| s.holder_identity.clone());
                holders.insert(l.name_any(), holder.clone()) != Some(holder)
            }
            Ok(watcher::Event::Delete(l)) => holders.remove(&l.name_any()).is_some(),
            Ok(watcher::Event::InitDone) => true,
            _ => false,
        };
        if changed && wake.send(Wake::All).is_err() {
            return;
        }
    }
}

/// Keeps the cache of pods not yet bound to a node (for `AutoPriority`: freed pods that find
/// no room). Only what is read is kept: when it was created, its PodScheduled condition and
/// where it may run (node selector, required node affinity, tolerations).
async fn watch_pending_pods(
    client: kube::Client,
    writer: reflector::store::Writer<Pod>,
    wake: mpsc::UnboundedSender<Wake>,
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields("spec.nodeName=,status.phase=Pending");
    let stream = reflector::reflector(
        writer,
        watcher(api, config)
            .default_backoff()
            .modify(|p: &mut Pod| {
                p.metadata.managed_fields = None;
                p.metadata.annotations = None;
                p.metadata.labels = None;
                p.metadata.owner_references = None;
                p.spec = p.spec.take().map(|spec| PodSpec {
                    node_selector: spec.node_selector,
                    affinity: spec
                        .affinity
                        .and_then(|a| a.node_affinity)
                        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
                        .map(|required| Affinity {
                            node_affinity: Some(NodeAffinity {
                                required_during_scheduling_ignored_during_execution: Some(required),
                                ..NodeAffinity::default()
                            }),
                            ..Affinity::default()
                        }),
                    tolerations: spec.tolerations,
                    ..PodSpec::default()
                });
                if let Some(status) = p.status.as_mut() {
                    let conditions = status.conditions.take();
                    *status = Default::default();
                    status.conditions = conditions;
                }
            }),
    );
    let mut seen: HashMap<String, Option<Timestamp>> = HashMap::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let key = |p: &Pod| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
        let changed = match event {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                let since = unschedulable_since(&p);
                seen.insert(key(&p), since) != Some(since)
            }
            Ok(watcher::Event::Delete(p)) => seen.remove(&key(&p)).is_some(),
            Ok(watcher::Event::InitDone) => true,
            _ => false,
        };
        if changed && wake.send(Wake::All).is_err() {
            return;
        }
    }
}

/// When the scheduler first found no room for the pod, if it did.
fn unschedulable_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn error_policy(nhc: Arc<NodeHealthCheck>, error: &Error, _ctx: Arc<Context>) -> Requeue {
    tracing::warn!(nodehealthcheck = %nhc.name_any(), error = %error, "reconcile failed");
    Requeue::requeue(error.requeue_after())
}

/// The templates of a NodeHealthCheck, read from their caches; or why it cannot work.
struct Templates {
    /// Template reference → the template object.
    objects: Vec<(TemplateReference, DynamicObject)>,
    /// The caches of the remediation kinds made from them.
    remediation_kinds: Vec<Watched>,
}

async fn templates(ctx: &Context, nhc: &NodeHealthCheck) -> Result<Templates, String> {
    let mut objects = Vec::new();
    let mut remediation_kinds: Vec<Watched> = Vec::new();
    for step in nhc.spec.template_steps() {
        let t = step.template;
        if let Some(ns) = &ctx.settings.watch_namespace
            && &t.namespace != ns
        {
            return Err(format!(
                "template {}/{} is outside the namespace this operator watches ({ns})",
                t.namespace, t.name
            ));
        }
        let kind_error = |e: KindError| match e {
            KindError::NotServed(m) | KindError::Discovery(m) => m,
        };
        let templates = ctx
            .dynamic
            .watch(&t.api_version, &t.kind, false)
            .await
            .map_err(kind_error)?;
        let object = templates
            .store
            .get(&ObjectRef::new_with(&t.name, templates.resource.clone()).within(&t.namespace))
            .ok_or_else(|| format!("{} {}/{} not found", t.kind, t.namespace, t.name))?;
        if object
            .data
            .pointer("/spec/template/spec")
            .is_none_or(|s| !s.is_object())
        {
            return Err(format!(
                "{} {}/{} has no spec.template.spec",
                t.kind, t.namespace, t.name
            ));
        }
        let kind = remediation_kind(&t.kind)
            .ok_or_else(|| format!("template kind {} does not end with Template", t.kind))?;
        let remediations = ctx
            .dynamic
            .watch(&t.api_version, kind, true)
            .await
            .map_err(kind_error)?;
        if !remediation_kinds
            .iter()
            .any(|w| w.resource == remediations.resource)
        {
            remediation_kinds.push(remediations);
        }
        objects.push((t, (*object).clone()));
    }
    // Objects of one kind are named after the node unless the template supports several per
    // node: escalating between templates of one kind needs that support (as medik8s requires).
    for (i, (a, object)) in objects.iter().enumerate() {
        let same_kind = objects
            .iter()
            .skip(i + 1)
            .any(|(b, _)| a.api_version == b.api_version && a.kind == b.kind);
        if same_kind && !supports_multiple_templates(object.annotations()) {
            return Err(format!(
                "templates {} {}/{} and another of the same kind are escalated between, but {} lacks the annotation remediation.medik8s.io/multiple-templates-support: \"true\" (both remediation objects would be named after the node)",
                a.kind, a.namespace, a.name, a.name
            ));
        }
    }
    Ok(Templates {
        objects,
        remediation_kinds,
    })
}

#[tracing::instrument(skip_all, fields(nodehealthcheck = %nhc.name_any()))]
async fn reconcile(nhc: Arc<NodeHealthCheck>, ctx: Arc<Context>) -> Result<Requeue> {
    let now = Timestamp::now();
    let name = nhc.name_any();
    let owner = OwnerNhc {
        name: name.clone(),
        uid: nhc.uid().unwrap_or_default(),
    };
    let previous = nhc.status.clone().unwrap_or_default();
    let selector: std::result::Result<Selector, String> =
        parse_selector(&nhc.spec.selector).map_err(|e| format!("invalid selector: {e}"));
    let reserved_selector: std::result::Result<Option<Selector>, String> = nhc
        .spec
        .recovery
        .as_ref()
        .and_then(|r| r.reserved_node_selector.as_ref())
        .map(parse_selector)
        .transpose()
        .map_err(|e| format!("invalid recovery.reservedNodeSelector: {e}"));
    let selector = selector.and_then(|s| Ok((s, reserved_selector?)));
    let templates = match &selector {
        Ok(_) => templates(&ctx, &nhc).await,
        Err(e) => Err(e.clone()),
    };
    let ((selector, reserved_selector), templates) = match (selector, templates) {
        (Ok(s), Ok(t)) => (s, t),
        (_, Err(why)) => {
            let input = report::ReportInput {
                previous: &previous,
                disabled: Some(&why),
                pause_requests: &nhc.spec.pause_requests,
                created: &[],
                generation: nhc.metadata.generation,
                now,
            };
            let status = report::status(&input, &Pool::default(), None);
            write_status(&ctx, &nhc, &previous, status).await?;
            return Ok(Requeue::requeue(DISABLED_RETRY));
        }
        (Err(_), Ok(_)) => unreachable!("templates are read only with a valid selector"),
    };
    ctx.prober
        .ensure(&name, &nhc.spec.endpoint_checks, &selector);

    let mut pool = gather(
        &ctx,
        &nhc,
        &owner,
        &selector,
        reserved_selector.as_ref(),
        &templates,
        now,
    );
    let mut policy = Policy::from_spec(&nhc.spec);
    policy.dry_run |= ctx.settings.dry_run;
    policy.template_blocks = magnum_gates(&ctx, &templates, &pool).await;
    // The cloud sends no events: while it blocks, look again soon.
    let cloud_recheck = (!policy.template_blocks.is_empty()).then_some(MAGNUM_RECHECK);
    // Held until the remediations decided here are in the caches (see `create`), so the next
    // NodeHealthCheck over the control plane counts them.
    let _one_control_plane = if pool.nodes.iter().any(|n| n.control_plane) {
        let held = ctx.one_control_plane.lock().await;
        (pool.control_plane_remediations, pool.control_plane_unseen) =
            control_plane_remediations(&ctx).await;
        Some(held)
    } else {
        None
    };
    let decision = decide::decide(&policy, &pool, now);
    let created = match carry_out(&ctx, &nhc, &owner, &pool, &decision, &templates, now).await {
        Ok(created) => created,
        Err(e) => {
            // Said where a person looks, then retried (see error_policy).
            ctx.event(
                &nhc,
                true,
                e.category(),
                format!("carrying out the decision failed: {e}"),
            )
            .await;
            return Err(e);
        }
    };
    record_node_states(&ctx, &name, &pool);
    record_standbys(&ctx, &name, &decision.recovery);

    let input = report::ReportInput {
        previous: &previous,
        disabled: None,
        pause_requests: &nhc.spec.pause_requests,
        created: &created,
        generation: nhc.metadata.generation,
        now,
    };
    let status = report::status(&input, &pool, Some(&decision));
    if let Some(transition) = decision.storm.transition {
        ctx.event(
            &nhc,
            true,
            transition.reason(),
            format!(
                "{} of {} nodes healthy (minimum {})",
                decision.healthy, decision.observed, decision.min_healthy
            ),
        )
        .await;
    }
    write_status(&ctx, &nhc, &previous, status).await?;

    let next = decision
        .requeue_at
        .and_then(|at| {
            let wait = at.duration_since(Timestamp::now());
            // Wake a hair after the expiry, so the next round sees it expired.
            Duration::try_from(wait)
                .ok()
                .map(|d| d + Duration::from_millis(10))
        })
        .map(|d| d.min(RESYNC))
        .unwrap_or(RESYNC)
        .min(cloud_recheck.unwrap_or(RESYNC));
    Ok(Requeue::requeue(next.max(Duration::from_millis(10))))
}

/// The pool as plain data, from the caches.
fn gather(
    ctx: &Context,
    nhc: &NodeHealthCheck,
    owner: &OwnerNhc,
    selector: &Selector,
    reserved_selector: Option<&Selector>,
    templates: &Templates,
    now: Timestamp,
) -> Pool {
    let rules = HealthRules::from_spec(&nhc.spec);
    let endpoint_results = ctx.prober.results(&owner.name);
    let mut remediations: BTreeMap<String, Vec<ObservedRemediation>> = BTreeMap::new();
    for kind in &templates.remediation_kinds {
        for object in kind.store.state() {
            let observed = observe_remediation(&object, owner);
            if observed.owned {
                remediations
                    .entry(observed.node_name.clone())
                    .or_default()
                    .push(observed);
            }
        }
    }
    let identity = lease_holder_identity(&owner.name);
    let empty = BTreeMap::new();
    let mut nodes = Vec::new();
    for node in ctx.nodes.state() {
        let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
        if !selector.matches(labels) {
            continue;
        }
        let node_name = node.name_any();
        let state = NodeState::from_node(
            &node,
            endpoint_results
                .get(&node_name)
                .cloned()
                .unwrap_or_default(),
        );
        let lease = ctx
            .leases
            .get(&ObjectRef::new(&contract::lease_name(&node_name)).within(LEASE_NAMESPACE))
            .and_then(|l| l.spec.clone())
            .map(|s| {
                lease_state(
                    s.holder_identity.as_deref(),
                    s.renew_time.map(|t| t.0),
                    s.acquire_time.map(|t| t.0),
                    s.lease_duration_seconds,
                    &identity,
                    now,
                )
            })
            .unwrap_or(LeaseState::Free);
        let annotations = node.annotations();
        let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
        let mut reserved = Reserved {
            role: ReservedRole::read(
                labels.get(RESERVED_HOST_LABEL).map(String::as_str),
                annotations
                    .get(REPLACED_NODE_ANNOTATION)
                    .map(String::as_str),
                annotations.get(PROMOTED_AT_ANNOTATION).map(String::as_str),
            ),
            selected: reserved_selector.is_some_and(|s| s.matches(labels)),
            tainted: taints
                .into_iter()
                .flatten()
                .any(|t| t.key == RESERVED_TAINT_KEY),
            traits: NodeTraits::default(),
        };
        if reserved.is_standby() {
            reserved.traits = NodeTraits::of(&node_name, labels, taints);
        }
        nodes.push(PoolNode {
            health: evaluate(&state, &rules, now),
            control_plane: is_control_plane(labels),
            excluded: is_excluded(labels),
            maintenance: labels.get(MAINTENANCE_LABEL).map(String::as_str) == Some("true"),
            cordoned: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            reserved,
            lease,
            manually_confirmed_healthy: node
                .annotations()
                .contains_key(MANUALLY_CONFIRMED_HEALTHY_ANNOTATION),
            remediations: remediations.remove(&node_name).unwrap_or_default(),
            name: node_name,
        });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    // What is left belongs to nodes outside the pool: deleted (or no longer selected).
    let orphans = remediations.into_values().flatten().collect();
    let auto_priority = nhc
        .spec
        .recovery
        .as_ref()
        .is_some_and(|r| r.method == RecoveryMethod::AutoPriority);
    let pending_pods = if auto_priority {
        ctx.pending_pods
            .state()
            .iter()
            .filter_map(|p| {
                Some(PendingPod {
                    created: p.metadata.creation_timestamp.as_ref()?.0,
                    unschedulable_since: unschedulable_since(p)?,
                    placement: p.spec.as_ref().map(Placement::of).unwrap_or_default(),
                })
            })
            .collect()
    } else {
        vec![]
    };
    Pool {
        nodes,
        orphans,
        pending_pods,
        storm: StormState::from_conditions(
            &nhc.status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default(),
        ),
        // Filled in by `reconcile` under the control-plane lock.
        control_plane_remediations: vec![],
        control_plane_unseen: vec![],
    }
}

/// The apiVersion of medik8s' NodeHealthCheck, whose remediation kinds we count too.
const MEDIK8S_NHC_API_VERSION: &str = "remediation.medik8s.io/v1alpha1";

/// The remediation kinds that may hold a control-plane node: ours, those made from the
/// templates of every NodeHealthCheck this controller serves, and those of medik8s'
/// NodeHealthChecks (when that API is served). `unseen` gets why a kind could not be read.
async fn remediation_kinds_in_use(
    ctx: &Context,
    unseen: &mut Vec<String>,
) -> BTreeSet<(String, String)> {
    let mut kinds = BTreeSet::from([(contract::API_VERSION.to_owned(), "Remediation".to_owned())]);
    let mut add = |api_version: &str, template_kind: &str| {
        if let Some(kind) = remediation_kind(template_kind) {
            kinds.insert((api_version.to_owned(), kind.to_owned()));
        }
    };
    // A reconcile may run before the cache holds every NodeHealthCheck (just after a start):
    // the kinds of one not seen yet would be missed.
    let nhcs = match ctx.nhcs.get() {
        Some(nhcs) if wait_a_while(super::wait_synced(nhcs)).await => nhcs.state(),
        _ => {
            unseen.push("the NodeHealthChecks are not all loaded yet".to_owned());
            vec![]
        }
    };
    for nhc in nhcs {
        for step in nhc.spec.template_steps() {
            add(&step.template.api_version, &step.template.kind);
        }
    }
    match ctx
        .dynamic
        .watch(
            MEDIK8S_NHC_API_VERSION,
            contract::NODE_HEALTH_CHECK_KIND,
            false,
        )
        .await
    {
        Ok(medik8s) => {
            for nhc in medik8s.store.state() {
                let spec = &nhc.data["spec"];
                let escalating = spec["escalatingRemediations"].as_array();
                let references = std::iter::once(&spec["remediationTemplate"]).chain(
                    escalating
                        .into_iter()
                        .flatten()
                        .map(|e| &e["remediationTemplate"]),
                );
                for r in references {
                    if let (Some(api_version), Some(kind)) =
                        (r["apiVersion"].as_str(), r["kind"].as_str())
                    {
                        add(api_version, kind);
                    }
                }
            }
        }
        Err(KindError::NotServed(_)) => {}
        Err(KindError::Discovery(why)) => unseen.push(why),
    }
    kinds
}

/// Whether `ready` finished within a few seconds.
async fn wait_a_while(ready: impl Future<Output = ()>) -> bool {
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .is_ok()
}

/// Every remediation object of a control-plane node in the caches, whoever made it: those
/// labelled `remediation.medik8s.io/isControlPlaneNode` (as every NodeHealthCheck labels them;
/// the only evidence left once a Replace deleted the Node), and those whose node has a
/// control-plane role. Also why some kind could not be read.
async fn control_plane_remediations(ctx: &Context) -> (Vec<ObservedRemediation>, Vec<String>) {
    let mut unseen = Vec::new();
    let kinds = remediation_kinds_in_use(ctx, &mut unseen).await;
    let control_plane_nodes: BTreeSet<String> = ctx
        .nodes
        .state()
        .iter()
        .filter(|n| is_control_plane(n.labels()))
        .map(|n| n.name_any())
        .collect();
    // Ownership does not matter here.
    let anyone = OwnerNhc {
        name: String::new(),
        uid: String::new(),
    };
    let mut found = Vec::new();
    for (api_version, kind) in kinds {
        match ctx.dynamic.watch(&api_version, &kind, true).await {
            Ok(watched) => found.extend(
                watched
                    .store
                    .state()
                    .iter()
                    .map(|o| {
                        (
                            o.labels().contains_key(CONTROL_PLANE_REMEDIATION_LABEL),
                            observe_remediation(o, &anyone),
                        )
                    })
                    .filter(|(labelled, r)| *labelled || control_plane_nodes.contains(&r.node_name))
                    .map(|(_, r)| r),
            ),
            // Nothing of a kind that is not served can exist.
            Err(KindError::NotServed(_)) => {}
            Err(KindError::Discovery(why)) => unseen.push(why),
        }
    }
    (found, unseen)
}

/// For each of our templates that names a Magnum cluster: whether the cluster lets a
/// remediation start now (magnum-auto-healer's rules: the `auto_healing_enabled` label, and
/// nothing while the cluster is `*_IN_PROGRESS`). The cloud is asked only while some node of
/// the pool is unhealthy, so a steady cluster sends it nothing.
async fn magnum_gates(
    ctx: &Context,
    templates: &Templates,
    pool: &Pool,
) -> Vec<(TemplateReference, BlockReason)> {
    if !pool.nodes.iter().any(|n| n.health.is_unhealthy()) {
        return vec![];
    }
    let mut blocks = Vec::new();
    for (reference, object) in &templates.objects {
        if reference.api_version != contract::API_VERSION || reference.kind != "RemediationTemplate"
        {
            continue;
        }
        let Some(spec) = object
            .data
            .pointer("/spec/template/spec/openstack")
            .and_then(|o| serde_json::from_value::<OpenStackSpec>(o.clone()).ok())
        else {
            continue;
        };
        let Some(read) = ctx.clouds.cluster(&reference.namespace, &spec).await else {
            continue;
        };
        let cluster = spec
            .magnum
            .as_ref()
            .map(|m| m.cluster.clone())
            .unwrap_or_default();
        let block = match read {
            Err(error) => Some(BlockReason::MagnumUnreachable { cluster, error }),
            Ok(c) if c.in_progress() => Some(BlockReason::MagnumClusterBusy {
                cluster,
                status: c.status,
            }),
            Ok(c) if !c.auto_healing_enabled() => {
                Some(BlockReason::MagnumHealingDisabled { cluster })
            }
            Ok(_) => None,
        };
        if let Some(block) = block {
            blocks.push((reference.clone(), block));
        }
    }
    blocks
}

/// Carries out the decision; returns the remediation objects created, by node.
async fn carry_out(
    ctx: &Context,
    nhc: &NodeHealthCheck,
    owner: &OwnerNhc,
    pool: &Pool,
    decision: &Decision,
    templates: &Templates,
    now: Timestamp,
) -> Result<Vec<(String, ObservedRemediation)>> {
    // Standbys go into service before any remediation that frees workloads is created.
    for p in &decision.recovery.promotions {
        let stamp = now.to_string();
        mark_node(
            ctx,
            &p.standby,
            IN_SERVICE,
            Some((&p.replaces, &stamp)),
            false,
        )
        .await?;
        mark_node(ctx, &p.replaces, STANDBY, None, true).await?;
        ctx.metrics
            .promotions
            .get_or_create(&NhcLabels {
                nodehealthcheck: nhc.name_any(),
            })
            .inc();
        ctx.event(
            nhc,
            false,
            "StandbyPromoted",
            format!(
                "standby node {} brought into service in place of {}: reserved taint removed",
                p.standby, p.replaces
            ),
        )
        .await;
        ctx.event(
            nhc,
            false,
            "NodeDemotedToStandby",
            format!(
                "node {} becomes a standby of the pool once repaired: labelled {RESERVED_HOST_LABEL}={STANDBY}, tainted {RESERVED_TAINT_KEY}:NoSchedule",
                p.replaces
            ),
        )
        .await;
    }
    for name in &decision.recovery.make_standby {
        mark_node(ctx, name, STANDBY, None, true).await?;
        ctx.event(
            nhc,
            false,
            "NodeDemotedToStandby",
            format!(
                "node {name} is a standby of the pool: labelled {RESERVED_HOST_LABEL}={STANDBY}, tainted {RESERVED_TAINT_KEY}:NoSchedule"
            ),
        )
        .await;
    }

    // New remediations are independent of each other: made side by side, so a hundred nodes
    // failing at once do not wait for one another.
    let mut jobs = Vec::new();
    for d in &decision.nodes {
        let Outcome::Create { template } = &d.outcome else {
            continue;
        };
        let node = d.name.clone();
        let template = template.clone();
        let cp = pool.nodes.iter().any(|n| n.name == node && n.control_plane);
        jobs.push(async move {
            let made = create(ctx, owner, templates, &template, &node, cp).await?;
            ctx.event(
                nhc,
                false,
                "RemediationCreated",
                format!(
                    "node {node}: created {} {}/{} from {} {}",
                    made.kind, made.namespace, made.name, template.kind, template.name
                ),
            )
            .await;
            started(ctx, owner, &template);
            Result::<_>::Ok((node, made))
        });
    }
    let made: Vec<Result<(String, ObservedRemediation)>> = futures::stream::iter(jobs)
        .buffer_unordered(MAX_CONCURRENT_WRITES)
        .collect()
        .await;
    let mut created = Vec::new();
    for result in made {
        created.push(result?);
    }
    for d in &decision.nodes {
        let node = pool.nodes.iter().find(|n| n.name == d.name);
        for id in &d.clear_healthy_mark {
            annotate(ctx, templates, id, HEALTHY_DELAY_ANNOTATION, None).await?;
        }
        match &d.outcome {
            Outcome::Create { .. } => {}
            Outcome::Escalate { from, to, cause } => {
                if !already_timed_out(node, from) {
                    let stamp = now.to_string();
                    annotate(ctx, templates, from, NHC_TIMED_OUT_ANNOTATION, Some(&stamp)).await?;
                }
                let outcome = match cause {
                    EscalationCause::TimedOut => "timed-out",
                    EscalationCause::Failed => "failed",
                };
                ended(ctx, owner, template_of(node, from), outcome);
                let message = match to {
                    Some(t) => format!(
                        "node {}: {from} {outcome}; escalating to {} {}",
                        d.name, t.kind, t.name
                    ),
                    None => format!("node {}: {from} {outcome}; no template left", d.name),
                };
                ctx.event(nhc, true, "RemediationEscalated", message).await;
                if let Some(template) = to {
                    let cp = node.is_some_and(|n| n.control_plane);
                    let made = create(ctx, owner, templates, template, &d.name, cp).await?;
                    started(ctx, owner, template);
                    created.push((d.name.clone(), made));
                }
            }
            Outcome::HoldHealthy { mark, .. } => {
                let stamp = now.to_string();
                for id in mark {
                    annotate(ctx, templates, id, HEALTHY_DELAY_ANNOTATION, Some(&stamp)).await?;
                }
            }
            Outcome::Remove { remediations } => {
                if remediations.is_empty() {
                    continue;
                }
                for id in remediations {
                    delete(ctx, templates, id).await?;
                    ended(ctx, owner, template_of(node, id), "recovered");
                }
                if let Some(Health::Healthy) = node.map(|n| &n.health)
                    && let Some(since) = nhc
                        .status
                        .as_ref()
                        .and_then(|s| s.unhealthy_nodes.iter().find(|u| u.name == d.name))
                        .and_then(|u| u.since.as_ref())
                {
                    let took = now.duration_since(since.0).as_secs_f64();
                    ctx.metrics
                        .recovery
                        .get_or_create(&NhcLabels {
                            nodehealthcheck: owner.name.clone(),
                        })
                        .observe(took.max(0.0));
                }
                ctx.event(
                    nhc,
                    false,
                    "RemediationRemoved",
                    format!(
                        "node {} is healthy again: removed {}",
                        d.name,
                        names(remediations)
                    ),
                )
                .await;
            }
            Outcome::Wait { .. } | Outcome::Exhausted | Outcome::Blocked { .. } => {}
        }
    }
    for orphan in &decision.orphans {
        if let Outcome::Remove { remediations } = &orphan.outcome
            && !remediations.is_empty()
        {
            for id in remediations {
                delete(ctx, templates, id).await?;
                let template = pool
                    .orphans
                    .iter()
                    .find(|r| r.name == id.name && r.kind == id.kind)
                    .and_then(|r| r.template_name.as_deref());
                ended(ctx, owner, template, "node-deleted");
            }
            ctx.event(
                nhc,
                false,
                "RemediationRemoved",
                format!(
                    "node {} is gone: removed {}",
                    orphan.node_name,
                    names(remediations)
                ),
            )
            .await;
        }
    }
    Ok(created)
}

/// Writes a node's reserved-host role: the label, the in-service annotations (`replaced`: the
/// failed node and the time) and the reserved taint. The patch carries the resourceVersion read,
/// so a concurrent change by someone else fails it (and the round is retried) rather than being
/// lost; then waits until the cache shows the role, so the next round cannot promote twice.
async fn mark_node(
    ctx: &Context,
    name: &str,
    role: &str,
    replaced: Option<(&str, &str)>,
    reserved_taint: bool,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let Some(node) = nodes.get_opt(name).await? else {
        return Ok(());
    };
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| t.key != RESERVED_TAINT_KEY)
        .cloned()
        .collect();
    if reserved_taint {
        taints.push(Taint {
            key: RESERVED_TAINT_KEY.into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        });
    }
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": node.resource_version(),
            "labels": {RESERVED_HOST_LABEL: role},
            "annotations": {
                REPLACED_NODE_ANNOTATION: replaced.map(|r| r.0),
                PROMOTED_AT_ANNOTATION: replaced.map(|r| r.1),
            },
        },
        "spec": {"taints": taints},
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    nodes.patch(name, &params, &Patch::Merge(&patch)).await?;
    wait_for_cache("a node's reserved-host role", || {
        ctx.nodes.get(&ObjectRef::new(name)).is_none_or(|n| {
            n.labels().get(RESERVED_HOST_LABEL).map(String::as_str) == Some(role)
                && n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|t| t.key == RESERVED_TAINT_KEY)
                    == reserved_taint
        })
    })
    .await;
    Ok(())
}

fn names(ids: &[RemediationId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn already_timed_out(node: Option<&PoolNode>, id: &RemediationId) -> bool {
    node.into_iter()
        .flat_map(|n| n.remediations.iter())
        .any(|r| r.name == id.name && r.kind == id.kind && r.timed_out.is_some())
}

fn template_of<'a>(node: Option<&'a PoolNode>, id: &RemediationId) -> Option<&'a str> {
    node.into_iter()
        .flat_map(|n| n.remediations.iter())
        .find(|r| r.name == id.name && r.kind == id.kind)
        .and_then(|r| r.template_name.as_deref())
}

/// The outcomes of `remediations_ended`.
const ENDED_OUTCOMES: [&str; 4] = ["recovered", "timed-out", "failed", "node-deleted"];

fn started(ctx: &Context, owner: &OwnerNhc, template: &TemplateReference) {
    ctx.metrics
        .started
        .get_or_create(&TemplateLabels {
            nodehealthcheck: owner.name.clone(),
            template: template.name.clone(),
        })
        .inc();
    // Every outcome's series exists at 0 from the start: Prometheus' increase() sees no
    // increase in a series whose first sample is already 1, and the first failure would
    // never fire an alert.
    for outcome in ENDED_OUTCOMES {
        ctx.metrics
            .ended
            .get_or_create(&EndedLabels {
                nodehealthcheck: owner.name.clone(),
                template: template.name.clone(),
                outcome: outcome.to_string(),
            })
            .inc_by(0);
    }
}

fn ended(ctx: &Context, owner: &OwnerNhc, template: Option<&str>, outcome: &str) {
    ctx.metrics
        .ended
        .get_or_create(&EndedLabels {
            nodehealthcheck: owner.name.clone(),
            template: template.unwrap_or("").to_string(),
            outcome: outcome.to_string(),
        })
        .inc();
}

/// Standby counts after this round (only for pools with a recovery method other than `Auto`,
/// so pools without standbys add no series).
fn record_standbys(ctx: &Context, nhc: &str, plan: &decide::RecoveryPlan) {
    if plan.method.is_none_or(|m| m == RecoveryMethod::Auto) {
        // A pool switched back to Auto has no standbys to count (or to alert on).
        ctx.metrics.remove_standby_series(nhc);
        return;
    }
    let available = plan
        .standbys
        .iter()
        .filter(|s| s.unavailable.is_none())
        .count();
    for (state, count) in [
        ("available", available),
        ("unavailable", plan.standbys.len() - available),
        ("in-service", plan.in_service.len()),
    ] {
        ctx.metrics
            .standbys
            .get_or_create(&Metrics::labels(nhc, state))
            .set(count as i64);
    }
    // At 0 before the first promotion, so increase() sees the first one.
    ctx.metrics
        .promotions
        .get_or_create(&NhcLabels {
            nodehealthcheck: nhc.to_string(),
        })
        .inc_by(0);
}

fn record_node_states(ctx: &Context, nhc: &str, pool: &Pool) {
    let mut counts: BTreeMap<&str, i64> = NODE_STATES.map(|s| (s, 0)).into();
    for n in &pool.nodes {
        let state = match (&n.health, n.remediations.is_empty()) {
            (Health::Healthy, true) => "healthy",
            (Health::Healthy, false) => "recovering",
            (Health::Unhealthy { .. }, _) => "unhealthy",
            (Health::SoonUnhealthy { .. }, _) => "soon-unhealthy",
            (Health::Starting { .. }, _) => "starting",
        };
        *counts.entry(state).or_default() += 1;
    }
    for (state, count) in counts {
        ctx.metrics
            .nodes
            .get_or_create(&Metrics::labels(nhc, state))
            .set(count);
    }
    ctx.metrics
        .gauged
        .lock()
        .expect("lock")
        .insert(nhc.to_string());
}

/// The cache and API of the kind a remediation id names.
fn api_for(
    ctx: &Context,
    templates: &Templates,
    id: &RemediationId,
) -> Option<(Api<DynamicObject>, Store<DynamicObject>)> {
    let kind = templates
        .remediation_kinds
        .iter()
        .find(|w| w.resource.kind == id.kind && w.resource.api_version == id.api_version)?;
    let api = if kind.namespaced {
        Api::namespaced_with(ctx.client.clone(), &id.namespace, &kind.resource)
    } else {
        Api::all_with(ctx.client.clone(), &kind.resource)
    };
    Some((api, kind.store.clone()))
}

/// Creates the remediation object for `node` from `template`, per the contract, and waits
/// until the cache has it (so the next round cannot create it again).
async fn create(
    ctx: &Context,
    owner: &OwnerNhc,
    templates: &Templates,
    template: &TemplateReference,
    node: &str,
    control_plane: bool,
) -> Result<ObservedRemediation> {
    let object = templates
        .objects
        .iter()
        .find(|(t, _)| t.same_template(template))
        .map(|(_, o)| o)
        .ok_or_else(|| Error::InvalidSpec {
            kind: "NodeHealthCheck",
            name: owner.name.clone(),
            message: format!(
                "template {}/{} is not loaded",
                template.namespace, template.name
            ),
        })?;
    let info = TemplateInfo {
        api_version: template.api_version.clone(),
        kind: template.kind.clone(),
        name: template.name.clone(),
        namespace: template.namespace.clone(),
        multiple_templates_support: supports_multiple_templates(object.annotations()),
    };
    let body = serde_json::to_value(object)?;
    let remediation =
        remediation_object(owner, &info, &body, node, control_plane).map_err(|e| {
            Error::InvalidSpec {
                kind: "NodeHealthCheck",
                name: owner.name.clone(),
                message: e.to_string(),
            }
        })?;
    let kind = remediation_kind(&template.kind)
        .unwrap_or_default()
        .to_string();
    let id = RemediationId {
        api_version: template.api_version.clone(),
        kind: kind.clone(),
        namespace: template.namespace.clone(),
        name: node.to_string(),
    };
    let (api, store) = api_for(ctx, templates, &id).ok_or_else(|| Error::InvalidSpec {
        kind: "NodeHealthCheck",
        name: owner.name.clone(),
        message: format!("kind {kind} is not watched"),
    })?;
    let made = match api.create(&PostParams::default(), &remediation).await {
        Ok(made) => made,
        // Already there: a round that did not see it in the cache yet made it (use it), or
        // an object of another template holds the node's name (say so; never adopt it).
        Err(kube::Error::Api(e)) if e.code == 409 && remediation.metadata.name.is_some() => {
            let existing = api.get(node).await?;
            let from = existing
                .annotations()
                .get(contract::TEMPLATE_NAME_ANNOTATION)
                .cloned();
            if from.as_deref().is_some_and(|t| t != template.name) {
                return Err(Error::InvalidSpec {
                    kind: "NodeHealthCheck",
                    name: owner.name.clone(),
                    message: format!(
                        "{kind} {}/{node} already exists, made from template {}; cannot create another from {}",
                        template.namespace,
                        from.unwrap_or_default(),
                        template.name
                    ),
                });
            }
            existing
        }
        Err(e) => return Err(e.into()),
    };
    let uid = made.uid();
    wait_in_cache(&store, |o| o.uid() == uid).await;
    let mut typed = made;
    if typed.types.is_none() {
        typed.types = remediation.types.clone();
    }
    Ok(observe_remediation(&typed, owner))
}

/// Sets (or with None removes) an annotation on a remediation object, and waits until the
/// cache shows it.
async fn annotate(
    ctx: &Context,
    templates: &Templates,
    id: &RemediationId,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    let Some((api, store)) = api_for(ctx, templates, id) else {
        return Ok(());
    };
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api.patch(&id.name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let want = value.map(str::to_string);
    wait_in_cache(&store, |o| {
        o.name_any() == id.name
            && o.metadata.namespace.as_deref() == Some(id.namespace.as_str())
            && o.annotations().get(key) == want.as_ref()
    })
    .await;
    Ok(())
}

async fn delete(ctx: &Context, templates: &Templates, id: &RemediationId) -> Result<()> {
    let Some((api, _)) = api_for(ctx, templates, id) else {
        return Ok(());
    };
    match api.delete(&id.name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits (briefly) until an object matching `found` is in the cache.
async fn wait_in_cache(store: &Store<DynamicObject>, found: impl Fn(&DynamicObject) -> bool) {
    wait_for_cache("a remediation object", || {
        store.state().iter().any(|o| found(o))
    })
    .await;
}

/// Waits (briefly) until `seen` says our write reached the cache, so the next round cannot
/// decide on the state from before it (and create or promote twice).
async fn wait_for_cache(what: &str, seen: impl Fn() -> bool) {
    for _ in 0..250 {
        if seen() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!("{what} written did not reach the cache within 5 s");
}

/// Writes the status, with its events, when it changed.
async fn write_status(
    ctx: &Context,
    nhc: &NodeHealthCheck,
    previous: &NodeHealthCheckStatus,
    status: NodeHealthCheckStatus,
) -> Result<()> {
    if &status == previous {
        return Ok(());
    }
    for notice in report::notices(previous, &status) {
        ctx.event(nhc, notice.warning, &notice.reason, notice.message)
            .await;
    }
    let api: Api<NodeHealthCheck> = Api::all(ctx.client.clone());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    // The readiness check writes CloudReady and cloudReadiness into this status too, and this
    // merge patch replaces the whole conditions list: take them from the object as stored now
    // (the cache may not have the check's last write yet), and write only if it is still
    // stored so (the resourceVersion; a conflict reads again).
    let mut status = status;
    for attempt in 0.. {
        let Some(stored) = api.get_opt(&nhc.name_any()).await? else {
            return Ok(());
        };
        report::keep_readiness(&mut status, &stored.status.clone().unwrap_or_default());
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": stored.resource_version()},
            "status": super::replacing(&serde_json::to_value(previous)?, serde_json::to_value(&status)?),
        });
        match api
            .patch_status(&nhc.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauges_of_a_deleted_nodehealthcheck_are_removed() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        for nhc in ["workers", "gone"] {
            metrics
                .nodes
                .get_or_create(&Metrics::labels(nhc, "unhealthy"))
                .set(1);
            metrics
                .standbys
                .get_or_create(&Metrics::labels(nhc, "available"))
                .set(0);
            metrics.gauged.lock().unwrap().insert(nhc.to_string());
        }
        metrics.forget_missing(&["workers".to_string()].into());
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains(
                r#"nodehealthcheck_nodes{nodehealthcheck="workers",state="unhealthy"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"nodehealthcheck="gone""#), "{text}");
        assert_eq!(
            *metrics.gauged.lock().unwrap(),
            ["workers".to_string()].into()
        );
    }
}
