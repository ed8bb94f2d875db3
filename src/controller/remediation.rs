//! The Remediation controller: thin. Each reconcile observes (the node, the server through
//! Nova, the node's pods and VolumeAttachments while they are released, the Magnum cluster),
//! asks the pure step machine (`crate::remediation::next`) what to do, persists the new
//! status, brings our taints in line, and then — only then — acts. A finalizer removes our
//! taints when the Remediation is deleted, whatever its phase.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::Settings;
use super::clouds::Clouds;
use super::workloads::{count_workloads, delete_workloads, finish_evictions};
use crate::api::conditions::set_condition;
use crate::api::contract::{NODE_NAME_ANNOTATION, PROCESSING_CONDITION};
use crate::api::{Remediation, RemediationPhase, RemediationStatus};
use crate::error::{Error, Result};
use crate::openstack::{self, Cloud, RebootType, ServerRef};
use crate::remediation::{
    self as machine, Action, CloudRequest, NodeObservation, OUT_OF_SERVICE_TAINT_KEY,
    OUTCOME_ACCEPTED, Observed, REMEDIATING_TAINT_KEY, STEP_FENCE, STEP_REBOOT, STEP_RECOVER,
    STEP_RELEASE, ServerObservation, ServerState,
};
use crate::server::Readiness;

/// Our finalizer on Remediations: removes our taints from the node.
pub const FINALIZER: &str = "nodehealer.io/remove-taints";
/// The field manager of everything this controller writes.
const MANAGER: &str = "nodehealer";
/// Magnum's nodegroup label on nodes.
const MAGNUM_NODEGROUP_LABEL: &str = "magnum.openstack.org/nodegroup";

/// What the Remediation controller shares between reconciles.
pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
    recorder: Recorder,
    metrics: Metrics,
    clouds: Arc<Clouds>,
    /// The Remediation cache, for the Magnum health report (which covers a whole cluster).
    store: std::sync::OnceLock<kube::runtime::reflector::Store<Remediation>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeLabels {
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone)]
struct Metrics {
    /// Remediations that reached a final phase, by action and outcome.
    finished: Family<OutcomeLabels, Counter>,
    /// Reconcile failures by error category.
    errors: Family<ErrorLabels, Counter>,
    /// Reconciles of Remediations.
    reconciles: Counter,
}

impl Context {
    pub fn new(
        client: kube::Client,
        settings: Settings,
        clouds: Arc<Clouds>,
        registry: &mut Registry,
    ) -> Self {
        let metrics = Metrics {
            finished: Family::default(),
            errors: Family::default(),
            reconciles: Counter::default(),
        };
        registry.register(
            "remediations_finished",
            "Remediations that reached Succeeded or Failed, by action and outcome",
            metrics.finished.clone(),
        );
        registry.register(
            "remediation_reconcile_errors",
            "Failed reconciles of Remediations, by error category",
            metrics.errors.clone(),
        );
        registry.register(
            "remediation_reconciles",
            "Reconciles of Remediations",
            metrics.reconciles.clone(),
        );
        let recorder = Recorder::new(client.clone(), settings.reporter.clone());
        Self {
            client,
            settings,
            recorder,
            metrics,
            clouds,
            store: std::sync::OnceLock::new(),
        }
    }

    /// Counts a remediation that reached a final phase.
    fn finished(&self, spec: &crate::api::RemediationSpec, outcome: &str) {
        self.metrics
            .finished
            .get_or_create(&OutcomeLabels {
                action: format!("{:?}", spec.action),
                outcome: outcome.into(),
            })
            .inc();
    }

    fn remediations(&self) -> Api<Remediation> {
        match &self.settings.watch_namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    async fn event(&self, rem: &Remediation, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: "Remediate".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &rem.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }

    /// The OpenStack client for a Remediation, from the Secret its spec names.
    async fn cloud_for(&self, rem: &Remediation) -> Result<Arc<dyn Cloud>> {
        self.clouds
            .for_spec(&rem.namespace().unwrap_or_default(), &rem.spec.openstack)
            .await
    }
}

/// Runs the controller until `stop` turns true.
pub async fn run(ctx: Arc<Context>, readiness: Readiness, stop: watch::Receiver<bool>) {
    let remediations = ctx.remediations();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let controller = Controller::new(remediations, watcher::Config::default());
    let store = controller.store();
    let _ = ctx.store.set(store.clone());
    // A node's change (Ready again, say) wakes the Remediations of that node.
    let by_node = store.clone();
    let controller = controller.watches(nodes, watcher::Config::default(), move |node: Node| {
        let name = node.name_any();
        by_node
            .state()
            .into_iter()
            .filter(|r| node_name_of(r) == name)
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect::<Vec<_>>()
    });
    {
        let store = store.clone();
        tokio::spawn(async move {
            super::wait_synced(&store).await;
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
                tracing::debug!(error = %e, "remediation reconcile");
            }
        })
        .await;
}

fn error_policy(rem: Arc<Remediation>, error: &Error, ctx: Arc<Context>) -> Requeue {
    tracing::warn!(remediation = %rem.name_any(), error = %error, "reconcile failed");
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabels {
            error: error.category().to_string(),
        })
        .inc();
    Requeue::requeue(error.requeue_after())
}

/// The node a Remediation is for: the contract's annotation, else its name.
pub fn node_name_of(rem: &Remediation) -> String {
    rem.annotations()
        .get(NODE_NAME_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| rem.name_any())
}

#[tracing::instrument(skip_all, fields(remediation = %rem.name_any()))]
async fn reconcile(rem: Arc<Remediation>, ctx: Arc<Context>) -> Result<Requeue> {
    ctx.metrics.reconciles.inc();
    let api: Api<Remediation> =
        Api::namespaced(ctx.client.clone(), &rem.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, rem, |event| async {
        match event {
            FinalizerEvent::Apply(rem) => apply(rem, &ctx).await,
            FinalizerEvent::Cleanup(rem) => cleanup(rem, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The Remediation is going away: our taints go with it.
async fn cleanup(rem: Arc<Remediation>, ctx: &Context) -> Result<Requeue> {
    sync_taints(ctx, &node_name_of(&rem), &[]).await?;
    restore_power(&rem, ctx).await;
    Ok(Requeue::await_change())
}

/// A remediation deleted half-way never leaves behind a server we powered off (see
/// `restore_power_on_delete`). Best effort: a cloud that cannot be reached is logged and the
/// deletion goes on, since holding the Remediation would not bring the server back either.
async fn restore_power(rem: &Remediation, ctx: &Context) {
    let status = rem.status.clone().unwrap_or_default();
    let Some(server_id) = status.server_id.clone() else {
        return;
    };
    if status.phase.is_some_and(|p| p.is_final()) || ctx.settings.dry_run {
        return;
    }
    let attempt = async {
        let cloud = ctx.cloud_for(rem).await?;
        let server = match cloud.server(&server_id).await? {
            None => ServerObservation::Gone,
            Some(s) => ServerObservation::Present(server_state(&s)),
        };
        if machine::restore_power_on_delete(&rem.spec, &status, &server) {
            cloud.start(&server_id).await?;
            ctx.event(
                rem,
                false,
                "PowerRestored",
                format!("the remediation was deleted after it powered server {server_id} off: powered it on again"),
            )
            .await;
        }
        Result::<()>::Ok(())
    };
    if let Err(e) = attempt.await {
        tracing::warn!(remediation = %rem.name_any(), error = %e, "could not power the server on again");
        ctx.event(
            rem,
            true,
            e.category(),
            format!("could not power server {server_id} on again: {e}"),
        )
        .await;
    }
}

fn server_state(s: &openstack::Server) -> ServerState {
    ServerState {
        status: s.status.clone(),
        task_state: s.task_state.clone(),
        image_id: s.image_id.clone().unwrap_or_default(),
        updated: s.updated,
    }
}

async fn apply(cached: Arc<Remediation>, ctx: &Context) -> Result<Requeue> {
    // The cache can lag behind our own last write; deciding on a stale status could send a
    // request twice. Read it fresh, and write only on top of what was read (resourceVersion).
    let api: Api<Remediation> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(rem) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Requeue::await_change());
    };
    let mut version = rem.resource_version().unwrap_or_default();
    let node_name = node_name_of(&rem);
    let status = rem.status.clone().unwrap_or_default();
    if status.phase.is_some_and(|p| p.is_final()) {
        // Over: make sure nothing of ours is left on the node, then wait for deletion.
        sync_taints(ctx, &node_name, &[]).await?;
        return Ok(Requeue::await_change());
    }
    let now = Timestamp::now();
    if ctx.settings.dry_run {
        let mut new = status.clone();
        set_condition(
            &mut new.conditions,
            PROCESSING_CONDITION,
            false,
            "DryRun",
            "the operator runs with --dry-run: nothing is done",
            rem.metadata.generation,
            now,
        );
        patch_status(ctx, &rem, &mut version, &status, &new).await?;
        return Ok(Requeue::await_change());
    }

    match step(&rem, ctx, &node_name, status.clone(), now, &mut version).await {
        Ok(requeue) => Ok(requeue),
        // A refused or failed Kubernetes request (a conflict with another writer, mostly) is
        // retried as it is; anything else is a reason the remediation cannot go on.
        Err(e @ Error::Kube(_)) => Err(e),
        Err(e) => {
            record_blocked(ctx, &rem, &e, now).await;
            Err(e)
        }
    }
}

/// Says in the status and an event why the remediation cannot go on, and fails it once its
/// step has timed out (the pure `blocked` decides). Reads the object afresh: the failed turn
/// may have written a newer status already, which must not be overwritten.
async fn record_blocked(ctx: &Context, rem: &Remediation, error: &Error, now: Timestamp) {
    let api: Api<Remediation> =
        Api::namespaced(ctx.client.clone(), &rem.namespace().unwrap_or_default());
    let Ok(Some(fresh)) = api.get_opt(&rem.name_any()).await else {
        return;
    };
    let mut version = fresh.resource_version().unwrap_or_default();
    let status = fresh.status.clone().unwrap_or_default();
    let created = fresh.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let message = error.to_string();
    let plan = machine::blocked(
        &fresh.spec,
        &status,
        created,
        error.category(),
        &message,
        now,
        fresh.metadata.generation,
    );
    if plan.status == status {
        return;
    }
    if let Err(e) = patch_status(ctx, &fresh, &mut version, &status, &plan.status).await {
        tracing::debug!(error = %e, "recording why the remediation is blocked");
        return;
    }
    ctx.event(&fresh, true, error.category(), message).await;
    if let Some(notice) = plan.notice {
        ctx.event(&fresh, notice.warning, notice.reason, notice.message)
            .await;
    }
    if plan.action == Action::Done {
        ctx.finished(&fresh.spec, "failed");
    }
}

/// One turn of the machine: observe, decide, persist, taint, act.
async fn step(
    rem: &Remediation,
    ctx: &Context,
    node_name: &str,
    mut status: RemediationStatus,
    now: Timestamp,
    version: &mut String,
) -> Result<Requeue> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node = nodes.get_opt(node_name).await?;
    let before = rem.status.clone().unwrap_or_default();
    status
        .node_name
        .get_or_insert_with(|| node_name.to_string());

    let cloud = ctx.cloud_for(rem).await?;
    if status.server_id.is_none() {
        status.server_id = Some(resolve_server(cloud.as_ref(), node_name, node.as_ref()).await?);
    }
    let server_id = status.server_id.clone().unwrap_or_default();
    let server = match cloud.server(&server_id).await? {
        None => ServerObservation::Gone,
        Some(s) => ServerObservation::Present(server_state(&s)),
    };
    let current = status
        .steps
        .last()
        .filter(|s| s.finished.is_none())
        .map(|s| s.name.clone());
    let workloads = if current.as_deref() == Some(STEP_RELEASE) {
        Some(count_workloads(&ctx.client, node_name).await?)
    } else {
        None
    };
    let cluster = match &rem.spec.openstack.magnum {
        Some(m)
            if matches!(
                current.as_deref(),
                Some(STEP_FENCE) | Some(STEP_RECOVER) | Some(STEP_REBOOT)
            ) =>
        {
            Some(cloud.cluster(&m.cluster).await?)
        }
        _ => None,
    };
    let observed = Observed {
        node: node
            .as_ref()
            .map(|n| NodeObservation { ready: is_ready(n) }),
        server,
        workloads,
        cluster_auto_healing: cluster.as_ref().map(|c| c.auto_healing_enabled()),
        cluster_status: cluster.map(|c| c.status),
    };

    let plan = machine::next(&rem.spec, &status, &observed, now, rem.metadata.generation);
    let mut new = plan.status;
    // Persist first: a request leaves only once it is on record. A conflict here means
    // someone wrote in between; nothing is sent and the next reconcile decides afresh.
    patch_status(ctx, rem, version, &before, &new).await?;
    let started = before.steps.is_empty() && !new.steps.is_empty();
    let ended =
        !before.phase.is_some_and(|p| p.is_final()) && new.phase.is_some_and(|p| p.is_final());
    if started || ended {
        report_magnum_health(ctx, rem, cloud.as_ref(), &new).await;
    }
    if let Some(notice) = &plan.notice {
        ctx.event(rem, notice.warning, notice.reason, notice.message.clone())
            .await;
    }
    sync_taints(ctx, node_name, &machine::desired_taints(&rem.spec, &new)).await?;

    let requeue = match plan.action {
        Action::Wait(d) if d.is_zero() => Requeue::requeue(Duration::from_millis(50)),
        Action::Wait(d) => Requeue::requeue(d),
        Action::Done => {
            let outcome = match new.phase {
                Some(RemediationPhase::Succeeded) => "succeeded",
                _ => "failed",
            };
            ctx.finished(&rem.spec, outcome);
            Requeue::await_change()
        }
        Action::DeleteNode => {
            match nodes.delete(node_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            ctx.event(
                rem,
                false,
                "NodeDeleted",
                format!("deleted Node {node_name}: its server is gone for good"),
            )
            .await;
            Requeue::requeue(Duration::from_millis(200))
        }
        Action::DeleteWorkloads => {
            delete_workloads(&ctx.client, node_name).await?;
            Requeue::requeue(Duration::from_secs(1))
        }
        Action::FinishEvictions => {
            let deleted = finish_evictions(&ctx.client, node_name).await?;
            if deleted > 0 {
                ctx.event(
                    rem,
                    false,
                    "EvictionsCompleted",
                    format!(
                        "force-deleted {deleted} pods the out-of-service taint evicted from {node_name} (its server is confirmed off), as pod GC would on its next pass"
                    ),
                )
                .await;
            }
            Requeue::requeue(Duration::from_millis(500))
        }
        Action::Cloud(request) => {
            let name = request.record_name();
            let result = send(cloud.as_ref(), &request, &server_id, rem, node.as_ref()).await;
            // An action whose answer was lost may have reached Nova: leave its outcome open,
            // so the machine looks at the server before it ever sends it again.
            let outcome = match &result {
                Ok(()) => Some(OUTCOME_ACCEPTED.to_string()),
                Err(Error::Cloud(e)) if e.outcome_unknown() => None,
                Err(e) => Some(format!("Failed: {}", e.category())),
            };
            let persisted = new.clone();
            if let Some(req) = new
                .steps
                .last_mut()
                .and_then(|s| s.requests.iter_mut().rev().find(|r| r.action == name))
            {
                req.outcome = outcome;
            }
            match &result {
                Ok(()) => {
                    new.last_error = None;
                    ctx.event(
                        rem,
                        false,
                        "OpenStackRequestSent",
                        format!("{name} accepted for server {server_id}"),
                    )
                    .await;
                }
                Err(e) => {
                    new.last_error = Some(format!("{name}: {e}"));
                    ctx.event(
                        rem,
                        true,
                        e.category(),
                        format!("{name} for server {server_id} failed: {e}"),
                    )
                    .await;
                }
            }
            patch_status(ctx, rem, version, &persisted, &new).await?;
            Requeue::requeue(Duration::from_secs(1))
        }
    };
    Ok(requeue)
}

/// Sends one OpenStack request.
async fn send(
    cloud: &dyn Cloud,
    request: &CloudRequest,
    server_id: &str,
    rem: &Remediation,
    node: Option<&Node>,
) -> Result<()> {
    match request {
        CloudRequest::Stop => cloud.stop(server_id).await?,
        CloudRequest::Start => cloud.start(server_id).await?,
        CloudRequest::Unshelve => cloud.unshelve(server_id).await?,
        CloudRequest::Reboot { hard } => {
            let kind = if *hard {
                RebootType::Hard
            } else {
                RebootType::Soft
            };
            cloud.reboot(server_id, kind).await?
        }
        CloudRequest::Rebuild { image_id } => cloud.rebuild(server_id, image_id).await?,
        CloudRequest::Delete => cloud.delete(server_id).await?,
        CloudRequest::MagnumResize => {
            let cluster = rem
                .spec
                .openstack
                .magnum
                .as_ref()
                .map(|m| m.cluster.clone())
                .unwrap_or_default();
            let nodegroup = node
                .and_then(|n| n.labels().get(MAGNUM_NODEGROUP_LABEL).cloned())
                .ok_or_else(|| Error::Unmappable {
                    node: node_name_of(rem),
                    message: format!("the node has no {MAGNUM_NODEGROUP_LABEL} label: cannot tell which Magnum nodegroup to resize"),
                })?;
            let groups = cloud.nodegroups(&cluster).await?;
            let group =
                groups
                    .iter()
                    .find(|g| g.name == nodegroup)
                    .ok_or_else(|| Error::Unmappable {
                        node: node_name_of(rem),
                        message: format!("Magnum cluster {cluster} has no nodegroup {nodegroup}"),
                    })?;
            // Same count, this server removed: Magnum builds a replacement.
            cloud
                .resize(
                    &cluster,
                    &nodegroup,
                    group.node_count,
                    &[server_id.to_string()],
                )
                .await?
        }
    }
    Ok(())
}

/// The server behind a node: its providerID, else its name in Nova. Never a guess.
async fn resolve_server(cloud: &dyn Cloud, node_name: &str, node: Option<&Node>) -> Result<String> {
    let provider_id = node
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.provider_id.clone());
    let server = openstack::server_ref(node_name, provider_id.as_deref()).map_err(|message| {
        Error::Unmappable {
            node: node_name.to_string(),
            message,
        }
    })?;
    match server {
        ServerRef::Id(id) => Ok(id),
        ServerRef::Name(name) => match cloud.server_by_name(&name).await? {
            Some(server) => Ok(server.id),
            None => Err(Error::Unmappable {
                node: node_name.to_string(),
                message: "no OpenStack providerID and no server of that name".into(),
            }),
        },
    }
}

/// Makes the node carry exactly the wanted ones of our taints, leaving every other taint
/// alone. The patch carries the resourceVersion read, so a concurrent change by someone else
/// (kube-controller-manager adding its own taints) makes it fail and retry rather than lose theirs.
async fn sync_taints(ctx: &Context, node_name: &str, wanted: &[(&str, &str, &str)]) -> Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let Some(node) = nodes.get_opt(node_name).await? else {
        return Ok(());
    };
    let ours = |key: &str| key == REMEDIATING_TAINT_KEY || key == OUT_OF_SERVICE_TAINT_KEY;
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut next: Vec<Taint> = current.iter().filter(|t| !ours(&t.key)).cloned().collect();
    for (key, value, effect) in wanted {
        let existing = current
            .iter()
            .find(|t| t.key == *key && t.effect == *effect)
            .cloned();
        next.push(existing.unwrap_or_else(|| Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        }));
    }
    let same = |a: &[Taint], b: &[Taint]| {
        let keys = |ts: &[Taint]| {
            let mut k: Vec<(String, String)> = ts
                .iter()
                .map(|t| (t.key.clone(), t.effect.clone()))
                .collect();
            k.sort();
            k
        };
        keys(a) == keys(b)
    };
    if same(&current, &next) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"taints": next},
    });
    nodes
        .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Writes the status if it changed, through the status subresource, only on top of the
/// version read (`version` is updated to the one written).
async fn patch_status(
    ctx: &Context,
    rem: &Remediation,
    version: &mut String,
    old: &RemediationStatus,
    new: &RemediationStatus,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let api: Api<Remediation> =
        Api::namespaced(ctx.client.clone(), &rem.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": version.as_str()},
        "status": super::replacing(&serde_json::to_value(old)?, serde_json::to_value(new)?),
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let written = api
        .patch_status(&rem.name_any(), &params, &Patch::Merge(&patch))
        .await?;
    *version = written.resource_version().unwrap_or_default();
    Ok(())
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// With `magnum.reportHealthStatus`, tells Magnum the cluster's health as magnum-auto-healer
/// does, whenever a remediation of it starts or ends: UNHEALTHY with one `<node>.Ready: error`
/// per worker in remediation (`api: error` for control-plane nodes), HEALTHY once none is left.
/// Best effort: a failed report is a Warning event, never a reason to stop a remediation.
async fn report_magnum_health(
    ctx: &Context,
    rem: &Remediation,
    cloud: &dyn Cloud,
    status: &crate::api::RemediationStatus,
) {
    let Some(magnum) = rem
        .spec
        .openstack
        .magnum
        .as_ref()
        .filter(|m| m.report_health_status)
    else {
        return;
    };
    // Every Remediation of this cluster that is still running, this one as just decided.
    let mut running: Vec<(String, bool)> = Vec::new();
    let this = (rem.namespace(), rem.name_any());
    let others = ctx.store.get().map(|s| s.state()).unwrap_or_default();
    for other in others {
        if (other.namespace(), other.name_any()) == this {
            continue;
        }
        let same_cluster = other
            .spec
            .openstack
            .magnum
            .as_ref()
            .is_some_and(|m| m.cluster == magnum.cluster);
        let live = !other
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_final());
        if same_cluster && live && other.metadata.deletion_timestamp.is_none() {
            running.push((node_name_of(&other), is_control_plane_remediation(&other)));
        }
    }
    if !status.phase.is_some_and(|p| p.is_final()) {
        running.push((node_name_of(rem), is_control_plane_remediation(rem)));
    }
    let workers: Vec<(&str, &str)> = running
        .iter()
        .filter(|(_, cp)| !cp)
        .map(|(n, _)| (n.as_str(), "Ready"))
        .collect();
    let control_plane = running.iter().any(|(_, cp)| *cp);
    let (health, reason) = openstack::health_report(&workers, control_plane, Timestamp::now());
    match cloud.report_health(&magnum.cluster, health, &reason).await {
        Ok(()) => {
            tracing::debug!(cluster = %magnum.cluster, health = health.as_str(), "reported to Magnum")
        }
        Err(e) => {
            ctx.event(
                rem,
                true,
                e.category(),
                format!(
                    "reporting health_status to Magnum cluster {} failed: {e}",
                    magnum.cluster
                ),
            )
            .await
        }
    }
}

fn is_control_plane_remediation(rem: &Remediation) -> bool {
    rem.labels()
        .contains_key(crate::api::contract::CONTROL_PLANE_REMEDIATION_LABEL)
}
