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
use crate::api::contract::{NHC_TIMED_OUT_ANNOTATION, NODE_NAME_ANNOTATION, PROCESSING_CONDITION};
use crate::api::{Remediation, RemediationPhase, RemediationStatus, StepName};
use crate::error::{Error, Result};
use crate::openstack::{self, Cloud, RebootType, ServerRef};
use crate::remediation::{
    self as machine, Action, CloudRequest, FENCE_CONFIRMED_ANNOTATION, NodeObservation, Observed,
    OurTaint, PowerRestore, SendResult, ServerObservation, ServerState,
};
use crate::server::Readiness;

/// Our finalizer on Remediations: removes our taints from the node.
pub const FINALIZER: &str = "nodehealer.io/remove-taints";
/// The field manager of everything this controller writes.
const MANAGER: &str = "nodehealer";
/// Magnum's nodegroup label on nodes.
const MAGNUM_NODEGROUP_LABEL: &str = "magnum.openstack.org/nodegroup";
/// On a node: the out-of-service taint on it is ours (another remediator, medik8s Fence Agents
/// Remediation say, may put the same taint on; we remove only the one we added).
pub const OUR_OUT_OF_SERVICE_TAINT_ANNOTATION: &str = "nodehealer.io/out-of-service-taint";

/// What the Remediation controller shares between reconciles.
pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
    recorder: Recorder,
    metrics: Metrics,
    clouds: Arc<Clouds>,
    /// The Remediation cache, for the Magnum health report (which covers a whole cluster).
    store: std::sync::OnceLock<kube::runtime::reflector::Store<Remediation>>,
    /// Health reports Magnum accepted, by (namespace, cluster), until a read of the cluster
    /// shows whether it stored them.
    health_reports: std::sync::Mutex<std::collections::HashMap<(String, String), PendingReport>>,
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
    /// Magnum health_status reports by outcome.
    health_reports: Family<OutcomeOnly, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeOnly {
    outcome: String,
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
            health_reports: Family::default(),
        };
        // Every outcome from the start, so an alert on the first `not_stored` fires.
        for outcome in HealthReportOutcome::ALL {
            let _ = metrics.health_reports.get_or_create(&OutcomeOnly {
                outcome: outcome.as_str().into(),
            });
        }
        registry.register(
            "magnum_health_reports",
            "Magnum health_status reports by outcome: stored (read back from the cluster), not_stored (accepted with 202 but not kept by Magnum), failed (refused or unreachable)",
            metrics.health_reports.clone(),
        );
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
            health_reports: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn health_report_outcome(&self, outcome: HealthReportOutcome) {
        self.metrics
            .health_reports
            .get_or_create(&OutcomeOnly {
                outcome: outcome.as_str().into(),
            })
            .inc();
    }

    /// Remembers a report to read back (a newer one of the cluster replaces it).
    fn expect_health_report(&self, key: (String, String), report: PendingReport) {
        self.health_reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, report);
    }

    /// Counts a remediation whose status write `before` → `after` ended it (only that write
    /// counts, so each remediation is counted once however its end races its deletion).
    fn finished_once(
        &self,
        spec: &crate::api::RemediationSpec,
        before: &RemediationStatus,
        after: &RemediationStatus,
        outcome: &str,
    ) {
        let is_final = |s: &RemediationStatus| s.phase.is_some_and(|p| p.is_final());
        if !is_final(before) && is_final(after) {
            self.finished(spec, outcome);
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
        self.event_to(&rem.object_ref(&()), warning, reason, note)
            .await
    }

    async fn event_to(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
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
        if let Err(e) = self.recorder.publish(&event, object).await {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }

    /// The OpenStack client for a Remediation, from the Secret its spec names, for the region
    /// its server is in (None: the clouds.yaml's region).
    async fn cloud_for(&self, rem: &Remediation, region: Option<&str>) -> Result<Arc<dyn Cloud>> {
        self.clouds
            .for_spec_in_region(
                &rem.namespace().unwrap_or_default(),
                &rem.spec.openstack,
                region,
            )
            .await
    }

    fn count_error(&self, error: &Error) {
        self.metrics
            .errors
            .get_or_create(&ErrorLabels {
                error: error.category().to_string(),
            })
            .inc();
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
    ctx.count_error(error);
    // A Remediation has deadlines: even an error nobody fixes by itself is looked at again
    // before one of them could pass unnoticed.
    Requeue::requeue(error.requeue_after().min(machine::BLOCKED_RECHECK))
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
    let name = rem.name_any();
    let result = finalizer(&api, FINALIZER, rem, |event| async {
        match event {
            FinalizerEvent::Apply(rem) => apply(rem, &ctx).await,
            FinalizerEvent::Cleanup(rem) => cleanup(rem, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    match result {
        // A write that raced the deletion of the Remediation (the NodeHealthCheck deletes it as
        // soon as the node is healthy): a 409 because the deletion changed the object, a 404
        // because it is gone. That is the contract working, not a failure: the finalizer's
        // cleanup (which records the end) runs next, or already ran.
        Err(e) if matches!(e.kube_status(), Some(404 | 409)) => match api.get_opt(&name).await {
            Ok(None) => {
                tracing::debug!(error = %e, "the Remediation is gone");
                Ok(Requeue::await_change())
            }
            Ok(Some(r)) if r.metadata.deletion_timestamp.is_some() => {
                tracing::debug!(error = %e, "the Remediation is being deleted");
                Ok(Requeue::requeue(Duration::from_millis(200)))
            }
            _ => Err(e),
        },
        other => other,
    }
}

/// The Remediation is going away: our taints go with it (unless another remediation of the
/// node still wants them), and a server we powered off is powered on again.
async fn cleanup(rem: Arc<Remediation>, ctx: &Context) -> Result<Requeue> {
    sync_taints(ctx, &rem, &[]).await?;
    restore_power(&rem, ctx).await?;
    record_deletion(&rem, ctx).await?;
    Ok(Requeue::await_change())
}

/// The end of a Remediation deleted before it ended (see `machine::deleted_before_end`): its
/// success when the node is Ready again (the NodeHealthCheck's usual reason to delete it), else
/// its failure; written in its status, counted and said in an event, exactly once whichever of
/// this and the step machine gets there first (each counts only the write that ended it). Then
/// Magnum hears the cluster's health without this node, which would otherwise never be said.
async fn record_deletion(cached: &Remediation, ctx: &Context) -> Result<()> {
    let api: Api<Remediation> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(rem) = api.get_opt(&cached.name_any()).await? else {
        return Ok(());
    };
    let status = rem.status.clone().unwrap_or_default();
    if ctx.settings.dry_run || status.steps.is_empty() {
        return Ok(());
    }
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node_ready = nodes
        .get_opt(&node_name_of(&rem))
        .await?
        .as_ref()
        .is_some_and(is_ready);
    let mut ended = status.clone();
    // Magnum heard of this node at the start and has not heard it is back: a remediation that
    // had not ended, or one that failed (its node counted as unhealthy since).
    let report = status.phase != Some(RemediationPhase::Succeeded);
    if let Some(plan) = machine::deleted_before_end(
        &rem.spec,
        &status,
        node_ready,
        timed_out(&rem),
        Timestamp::now(),
        rem.metadata.generation,
    ) {
        let mut version = rem.resource_version().unwrap_or_default();
        patch_status(ctx, &rem, &mut version, &status, &plan.status).await?;
        let outcome = match plan.status.phase {
            Some(RemediationPhase::Succeeded) => "succeeded",
            _ => "deleted",
        };
        ctx.finished_once(&rem.spec, &status, &plan.status, outcome);
        if let Some(notice) = plan.notice {
            ctx.event(&rem, notice.warning, notice.reason, notice.message)
                .await;
        }
        ended = plan.status;
    }
    if report && let Ok(cloud) = ctx.cloud_for(&rem, ended.region.as_deref()).await {
        report_magnum_health(ctx, &rem, cloud.as_ref(), &ended, true).await;
    }
    Ok(())
}

/// How long a deleted Remediation waits for its server to finish powering off (or for the cloud
/// to answer) so that it can power it on again, before it lets go with a Warning event.
const POWER_RESTORE_PATIENCE: Duration = Duration::from_secs(120);

/// A remediation deleted half-way never leaves behind a server we powered off (see
/// `power_restore`): a server still powering off is waited for, and a cloud that cannot be
/// reached is tried again, for [`POWER_RESTORE_PATIENCE`] after the deletion; then the deletion
/// goes on with a Warning event saying the server is left off.
async fn restore_power(cached: &Remediation, ctx: &Context) -> Result<()> {
    // The cache can lag behind the last status write: an os-stop recorded just before the
    // deletion must be seen.
    let api: Api<Remediation> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let fresh = api.get_opt(&cached.name_any()).await?;
    let rem = fresh.as_ref().unwrap_or(cached);
    let status = rem.status.clone().unwrap_or_default();
    let Some(server_id) = status.server_id.clone() else {
        return Ok(());
    };
    if status.phase.is_some_and(|p| p.is_final()) || ctx.settings.dry_run {
        return Ok(());
    }
    let deleted_for = rem
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| Timestamp::now().duration_since(t.0).try_into().ok())
        .unwrap_or(Duration::ZERO);
    let attempt = async {
        let cloud = ctx.cloud_for(rem, status.region.as_deref()).await?;
        let server = look_at(cloud.as_ref(), &server_id).await?;
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let node_out_of_service = nodes
            .get_opt(&node_name_of(rem))
            .await?
            .as_ref()
            .is_some_and(has_out_of_service_taint);
        match machine::power_restore(&rem.spec, &status, &server, node_out_of_service) {
            PowerRestore::Nothing => Ok(false),
            PowerRestore::WaitForStop => Err(Error::PowerRestorePending {
                server: server_id.clone(),
            }),
            PowerRestore::Start => {
                // Only the leader powers anything on (a paused old leader must not).
                let Some(started) = ctx
                    .settings
                    .authority
                    .while_leading(cloud.start(&server_id))
                    .await
                else {
                    return Err(Error::PowerRestorePending {
                        server: server_id.clone(),
                    });
                };
                started?;
                ctx.event(
                    rem,
                    false,
                    reason::POWER_RESTORED,
                    format!("the remediation was deleted after it powered server {server_id} off: powered it on again"),
                )
                .await;
                Ok(true)
            }
        }
    };
    match attempt.await {
        Ok(_) => Ok(()),
        Err(e) if deleted_for < POWER_RESTORE_PATIENCE => {
            if !matches!(e, Error::PowerRestorePending { .. }) {
                ctx.event(
                    rem,
                    true,
                    e.category(),
                    format!("could not power server {server_id} on again yet: {e}"),
                )
                .await;
            }
            Err(e)
        }
        Err(e) => {
            tracing::warn!(remediation = %rem.name_any(), error = %e, "could not power the server on again");
            ctx.event(
                rem,
                true,
                reason::POWER_NOT_RESTORED,
                format!(
                    "gave up powering server {server_id} on again after {}s: {e}; it is left as it is",
                    POWER_RESTORE_PATIENCE.as_secs()
                ),
            )
            .await;
            Ok(())
        }
    }
}

/// The server as the step machine sees it.
async fn look_at(cloud: &dyn Cloud, server_id: &str) -> Result<ServerObservation> {
    Ok(match cloud.server(server_id).await? {
        None => ServerObservation::Gone,
        Some(s) => ServerObservation::Present(server_state(&s)),
    })
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
    if rem.metadata.deletion_timestamp.is_some() {
        // Being deleted: the finalizer's cleanup runs next; nothing more is started.
        return Ok(Requeue::await_change());
    }
    let mut version = rem.resource_version().unwrap_or_default();
    let status = rem.status.clone().unwrap_or_default();
    if status.phase.is_some_and(|p| p.is_final()) {
        // Over: nothing of ours is left on the node that no other remediation wants.
        sync_taints(ctx, &rem, &[]).await?;
        return Ok(Requeue::await_change());
    }
    if timed_out(&rem) {
        // The NodeHealthCheck gave up on this one and may have started the next remediator:
        // from now on this one sends nothing and holds nothing.
        let plan = machine::stop_timed_out(
            &rem.spec,
            &status,
            Timestamp::now(),
            rem.metadata.generation,
        );
        patch_status(ctx, &rem, &mut version, &status, &plan.status).await?;
        if let Some(notice) = plan.notice {
            ctx.event(&rem, notice.warning, notice.reason, notice.message)
                .await;
        }
        ctx.finished_once(&rem.spec, &status, &plan.status, "timed_out");
        report_end(ctx, &rem, &status, &plan.status).await;
        sync_taints(ctx, &rem, &[]).await?;
        return Ok(Requeue::await_change());
    }
    if ctx.settings.dry_run {
        let mut new = status.clone();
        set_condition(
            &mut new.conditions,
            PROCESSING_CONDITION,
            false,
            "DryRun",
            "the operator runs with --dry-run: nothing is done",
            rem.metadata.generation,
            Timestamp::now(),
        );
        patch_status(ctx, &rem, &mut version, &status, &new).await?;
        return Ok(Requeue::await_change());
    }

    match step(&rem, ctx, status, &mut version).await {
        Ok(requeue) => Ok(requeue),
        // A failed Kubernetes request that may succeed again (a conflict with another writer, a
        // 5xx, a broken connection) is retried as it is; anything else (a 403: RBAC; a webhook
        // refusing the taint) is a reason the remediation cannot go on, said in its status.
        Err(e @ Error::Kube(_)) if e.retryable() => Err(e),
        Err(e) => {
            ctx.count_error(&e);
            tracing::warn!(remediation = %rem.name_any(), error = %e, "remediation blocked");
            let wait = record_blocked(ctx, &rem, &e).await;
            Ok(Requeue::requeue(wait))
        }
    }
}

/// Whether the NodeHealthCheck timed this remediation out (the medik8s contract's annotation).
fn timed_out(rem: &Remediation) -> bool {
    rem.annotations().contains_key(NHC_TIMED_OUT_ANNOTATION)
}

/// Says in the status and an event why the remediation cannot go on, and fails it once its
/// step has timed out (the pure `blocked` decides). Reads the object afresh: the failed turn
/// may have written a newer status already, which must not be overwritten. Returns when to
/// look again.
async fn record_blocked(ctx: &Context, rem: &Remediation, error: &Error) -> Duration {
    let api: Api<Remediation> =
        Api::namespaced(ctx.client.clone(), &rem.namespace().unwrap_or_default());
    let Ok(Some(fresh)) = api.get_opt(&rem.name_any()).await else {
        // Never longer than a step's deadline may be away.
        return error.requeue_after().min(machine::BLOCKED_RECHECK);
    };
    let mut version = fresh.resource_version().unwrap_or_default();
    let status = fresh.status.clone().unwrap_or_default();
    let created = fresh.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let message = error.to_string();
    let plan = machine::blocked(
        &fresh.spec,
        &status,
        created,
        &machine::Blocker {
            reason: error.category(),
            message: &message,
            retryable: error.retryable(),
        },
        Timestamp::now(),
        fresh.metadata.generation,
    );
    let wait = match plan.action {
        Action::Wait(d) => d.max(Duration::from_millis(200)),
        _ => error.requeue_after(),
    };
    if plan.status == status {
        return wait;
    }
    if let Err(e) = patch_status(ctx, &fresh, &mut version, &status, &plan.status).await {
        tracing::debug!(error = %e, "recording why the remediation is blocked");
        return FAILED_WRITE_RETRY;
    }
    if status.last_error.as_deref() != Some(message.as_str()) {
        ctx.event(&fresh, true, error.category(), message).await;
    }
    if let Some(notice) = plan.notice {
        ctx.event(&fresh, notice.warning, notice.reason, notice.message)
            .await;
    }
    if plan.action == Action::Done {
        ctx.finished_once(&fresh.spec, &status, &plan.status, "failed");
        report_end(ctx, &fresh, &status, &plan.status).await;
        let _ = sync_taints(ctx, &fresh, &[]).await;
    }
    wait
}

/// After a failed write of the status, look again this soon.
const FAILED_WRITE_RETRY: Duration = Duration::from_secs(1);

/// One turn of the machine: observe, decide, persist, taint, act.
async fn step(
    rem: &Remediation,
    ctx: &Context,
    mut status: RemediationStatus,
    version: &mut String,
) -> Result<Requeue> {
    let node_name = node_name_of(rem);
    let node_name = node_name.as_str();
    let Observation {
        observed,
        node,
        cloud,
    } = observe(rem, ctx, node_name, &mut status).await?;
    // Taken after the reads, which can be slow: a request's `sentAt` must not look older
    // than it is to the next leader, which resends a lost request only once its record is old
    // enough.
    let now = Timestamp::now();
    let before = rem.status.clone().unwrap_or_default();
    let plan = machine::next(&rem.spec, &status, &observed, now, rem.metadata.generation);
    let new = plan.status;
    // Persist first: a request leaves only once it is on record. A conflict here means
    // someone wrote in between; nothing is sent and the next reconcile decides afresh.
    patch_status(ctx, rem, version, &before, &new).await?;
    let outcome = match new.phase {
        Some(RemediationPhase::Succeeded) => "succeeded",
        _ => "failed",
    };
    ctx.finished_once(&rem.spec, &before, &new, outcome);
    // Everything after this write (reports, notices, taints, deletions, OpenStack requests)
    // is the leader's alone: a replica whose Lease ran out while it decided (it was paused,
    // or could not renew) stops here, and the next leader carries on from the status.
    let authority = &ctx.settings.authority;
    if !authority.may_act(authority.margin()) {
        tracing::warn!(
            "this replica no longer holds the leader Lease with margin: it stops after the status write"
        );
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    // Everything after the write is the leader's alone, and only while it holds the Lease:
    // a replica paused in the middle (SIGSTOP, a stalled VM) finds it gone when it resumes and
    // carries out nothing more, neither taints nor deletions nor requests.
    let done = authority.while_leading(carry_out(
        rem,
        ctx,
        &plan.action,
        plan.notice.as_ref(),
        &before,
        new,
        &node,
        &cloud,
        version,
    ));
    match done.await {
        Some(requeue) => requeue,
        None => {
            tracing::warn!(
                "this replica lost the leader Lease while it carried out a step: it stops"
            );
            Ok(Requeue::requeue(Duration::from_secs(1)))
        }
    }
}

/// Carries out what the machine decided, after its status is on record: the Magnum health
/// report, the event, our taints, and the one action.
#[allow(clippy::too_many_arguments)]
async fn carry_out(
    rem: &Remediation,
    ctx: &Context,
    action: &Action,
    notice: Option<&machine::Notice>,
    before: &RemediationStatus,
    mut new: RemediationStatus,
    node: &Option<Node>,
    cloud: &Arc<dyn Cloud>,
    version: &mut String,
) -> Result<Requeue> {
    let node_name = node_name_of(rem);
    let node_name = node_name.as_str();
    let server_id = new.server_id.clone().unwrap_or_default();
    let started = before.steps.is_empty() && !new.steps.is_empty();
    let ended =
        !before.phase.is_some_and(|p| p.is_final()) && new.phase.is_some_and(|p| p.is_final());
    if started || ended {
        report_magnum_health(ctx, rem, cloud.as_ref(), &new, false).await;
    }
    if let Some(notice) = notice {
        ctx.event(rem, notice.warning, notice.reason, notice.message.clone())
            .await;
    }
    sync_taints(ctx, rem, &machine::desired_taints(&rem.spec, &new)).await?;

    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let requeue = match action.clone() {
        Action::Wait(d) if d.is_zero() => Requeue::requeue(Duration::from_millis(50)),
        Action::Wait(d) => Requeue::requeue(d),
        // Counted where its status was written (step).
        Action::Done => Requeue::await_change(),
        Action::DeleteNode => {
            match nodes.delete(node_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            ctx.event(
                rem,
                false,
                reason::NODE_DELETED,
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
                    reason::EVICTIONS_COMPLETED,
                    format!(
                        "force-deleted {deleted} pods the out-of-service taint evicted from {node_name} (its server is confirmed off), as pod GC would on its next pass"
                    ),
                )
                .await;
            }
            Requeue::requeue(Duration::from_millis(500))
        }
        Action::Cloud(request) => {
            let kind = request.kind();
            // Only while this replica holds the Lease with a margin: checked right before the
            // request leaves and at every step of sending it, so a process that was paused
            // (or could not renew) sends nothing once its Lease may be someone else's. The
            // record stays without an outcome; whoever leads follows it up from the server.
            let sending = send(
                &ctx.clouds,
                cloud.as_ref(),
                &request,
                &server_id,
                rem,
                node.as_ref(),
            );
            let Some(sent) = ctx.settings.authority.while_leading(sending).await else {
                tracing::warn!(
                    request = kind.as_str(),
                    "not sent: this replica no longer holds the leader Lease with margin"
                );
                return Ok(Requeue::requeue(Duration::from_secs(1)));
            };
            let result = match sent {
                Ok(()) => SendResult::Accepted,
                // An action whose answer was lost may have reached Nova: its outcome stays
                // open, so the machine looks at the server before it ever sends it again.
                Err(Error::Cloud(e)) if e.outcome_unknown() => SendResult::Unknown {
                    message: e.to_string(),
                },
                Err(e) => SendResult::Failed {
                    category: e.category().to_string(),
                    message: e.to_string(),
                },
            };
            let persisted = new.clone();
            machine::record_result(&mut new, kind, &result);
            match &result {
                SendResult::Accepted => {
                    ctx.event(
                        rem,
                        false,
                        reason::OPENSTACK_REQUEST_SENT,
                        format!("{kind} accepted for server {server_id}"),
                    )
                    .await;
                }
                SendResult::Failed { category, message } => {
                    ctx.event(
                        rem,
                        true,
                        category,
                        format!("{kind} for server {server_id} failed: {message}"),
                    )
                    .await;
                }
                SendResult::Unknown { message } => {
                    ctx.event(
                        rem,
                        true,
                        reason::OPENSTACK_ANSWER_LOST,
                        format!("{kind} for server {server_id}: the answer was lost ({message}); the server will show whether it arrived"),
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

/// What one turn observed, and the handles it read them with (used again to carry out).
struct Observation {
    observed: Observed,
    node: Option<Node>,
    cloud: Arc<dyn Cloud>,
}

/// Everything the machine needs for its next step: the node, the server (and, once it is gone
/// during the fence, how it was deleted), the workloads while they are released, the Magnum
/// cluster while something may be sent to it, and a person's fence confirmation. Maps the node
/// to its server (and region) on the first turn.
async fn observe(
    rem: &Remediation,
    ctx: &Context,
    node_name: &str,
    status: &mut RemediationStatus,
) -> Result<Observation> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node = nodes.get_opt(node_name).await?;
    status
        .node_name
        .get_or_insert_with(|| node_name.to_string());
    if status.server_id.is_none() {
        let (id, region) = resolve_server(rem, ctx, node_name, node.as_ref()).await?;
        status.server_id = Some(id);
        status.region = region;
    }
    let cloud = ctx.cloud_for(rem, status.region.as_deref()).await?;
    let server_id = status.server_id.clone().unwrap_or_default();
    let server = look_at(cloud.as_ref(), &server_id).await?;
    let current = status
        .steps
        .last()
        .filter(|s| s.finished.is_none())
        .map(|s| s.name);
    let deletion = match (&server, current) {
        (ServerObservation::Gone, Some(StepName::Fence)) => {
            Some(cloud.deletion_evidence(&server_id).await?)
        }
        _ => None,
    };
    let workloads = if current == Some(StepName::ReleaseWorkloads) {
        Some(count_workloads(&ctx.client, node_name).await?)
    } else {
        None
    };
    let cluster = match &rem.spec.openstack.magnum {
        Some(m)
            if matches!(
                current,
                Some(StepName::Fence | StepName::Recover | StepName::Reboot)
            ) =>
        {
            // Shared with every pass and remediation of this cluster: at most one read per
            // CLUSTER_TTL (10 s), not one per pass.
            let namespace = rem.namespace().unwrap_or_default();
            let (cluster, read_at) = ctx
                .clouds
                .cluster_through(&namespace, &m.cluster, cloud.as_ref())
                .await?;
            // The read that tells whether Magnum stored our last report (no call of its own).
            read_back_health(ctx, (namespace, m.cluster.clone()), &cluster, read_at).await;
            Some(cluster)
        }
        _ => None,
    };
    let observed = Observed {
        node: node
            .as_ref()
            .map(|n| NodeObservation { ready: is_ready(n) }),
        server,
        deletion,
        workloads,
        cluster_auto_healing: cluster.as_ref().map(|c| c.auto_healing_enabled()),
        cluster_status_reason: cluster.as_ref().and_then(|c| c.status_reason.clone()),
        cluster_status: cluster.map(|c| c.status),
        fence_confirmed_by: rem
            .annotations()
            .get(FENCE_CONFIRMED_ANNOTATION)
            .filter(|v| !v.trim().is_empty())
            .cloned(),
        leading_for: ctx.settings.authority.held_for(),
        node_out_of_service: node.as_ref().is_some_and(has_out_of_service_taint),
    };
    Ok(Observation {
        observed,
        node,
        cloud,
    })
}

/// Sends one OpenStack request.
async fn send(
    clouds: &Clouds,
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
            let resized = cloud
                .resize(
                    &cluster,
                    &nodegroup,
                    group.node_count,
                    &[server_id.to_string()],
                )
                .await;
            // Whatever came back, the next look at the cluster must be Magnum's answer to it.
            clouds
                .forget_cluster(&rem.namespace().unwrap_or_default(), &cluster)
                .await;
            resized?
        }
    }
    Ok(())
}

/// The server behind a node, and its region: the providerID (`openstack:///<id>`, or
/// `openstack://<region>/<id>`, whose region selects that region's endpoints), else its name
/// in Nova. Never a guess.
async fn resolve_server(
    rem: &Remediation,
    ctx: &Context,
    node_name: &str,
    node: Option<&Node>,
) -> Result<(String, Option<String>)> {
    let provider_id = node
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.provider_id.clone());
    let unmappable = |message: String| Error::Unmappable {
        node: node_name.to_string(),
        message,
    };
    let location =
        openstack::server_location(node_name, provider_id.as_deref()).map_err(unmappable)?;
    let (server, region) = (location.server, location.region);
    match server {
        ServerRef::Id(id) => Ok((id, region)),
        ServerRef::Name(name) => {
            let cloud = ctx.cloud_for(rem, None).await?;
            match cloud.server_by_name(&name).await? {
                Some(server) => Ok((server.id, None)),
                None => Err(unmappable(
                    "no OpenStack providerID and no server of that name".into(),
                )),
            }
        }
    }
}

/// Makes the node carry our taints as this remediation wants them (`wanted`, as just decided
/// from its fresh status), except that a taint another live Remediation of the node still wants
/// is kept (one that ended, is being deleted or was timed out wants nothing; the others are read
/// from the cache, so their wishes only keep a taint, never add one). So a remediation that
/// ended never strips a taint the next remediation of the node just applied. Of the out-of-service
/// taint, only the one we added (marked with [`OUR_OUT_OF_SERVICE_TAINT_ANNOTATION`]) is ever
/// removed: another remediator may have put it on. Every other taint is left alone, and the
/// patch carries the resourceVersion read, so a concurrent change by someone else makes it fail
/// and retry rather than lose theirs.
async fn sync_taints(ctx: &Context, rem: &Remediation, wanted: &[OurTaint]) -> Result<()> {
    let node_name = node_name_of(rem);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let Some(node) = nodes.get_opt(&node_name).await? else {
        return Ok(());
    };
    let mut kept_by_others: Vec<OurTaint> = Vec::new();
    let others = ctx.store.get().map(|s| s.state()).unwrap_or_default();
    for other in others {
        let same = other.namespace() == rem.namespace() && other.name_any() == rem.name_any();
        if same || node_name_of(&other) != node_name || other.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if timed_out(&other) {
            continue;
        }
        let status = other.status.clone().unwrap_or_default();
        kept_by_others.extend(machine::desired_taints(&other.spec, &status));
    }
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let owned_oos = node
        .annotations()
        .contains_key(OUR_OUT_OF_SERVICE_TAINT_ANNOTATION);
    let change = machine::taint_change(&current_keys(&current), owned_oos, wanted, &kept_by_others);
    if change.is_none() {
        return Ok(());
    }
    let next: Vec<Taint> = current
        .iter()
        .filter(|t| !change.remove.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .chain(change.add.iter().map(|(key, value, effect)| Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        }))
        .collect();
    let mut metadata = serde_json::json!({"resourceVersion": node.resource_version()});
    if let Some(owned) = change.own_out_of_service {
        metadata["annotations"] = serde_json::json!({
            OUR_OUT_OF_SERVICE_TAINT_ANNOTATION: owned.then_some("true"),
        });
    }
    let patch = serde_json::json!({"metadata": metadata, "spec": {"taints": next}});
    nodes
        .patch(&node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn current_keys(taints: &[Taint]) -> Vec<(&str, &str)> {
    taints
        .iter()
        .map(|t| (t.key.as_str(), t.effect.as_str()))
        .collect()
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

/// Any out-of-service taint, whoever put it on.
fn has_out_of_service_taint(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == machine::OUT_OF_SERVICE_TAINT_KEY)
        })
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
    deleting: bool,
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
    // The nodes of this cluster whose remediation runs, or failed with the node still down
    // (a failed Replace leaves it so: the cluster is not healthy): every Remediation of the
    // cluster but those being deleted (the node is healthy again, or someone gave up), this one
    // as just decided.
    let unhealthy = |status: Option<&RemediationStatus>| {
        status
            .and_then(|s| s.phase)
            .is_none_or(|p| !p.is_final() || p == RemediationPhase::Failed)
    };
    let mut nodes: std::collections::BTreeMap<String, bool> = std::collections::BTreeMap::new();
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
        if same_cluster
            && unhealthy(other.status.as_ref())
            && other.metadata.deletion_timestamp.is_none()
        {
            *nodes.entry(node_name_of(&other)).or_default() |= is_control_plane_remediation(&other);
        }
    }
    if !deleting && unhealthy(Some(status)) {
        *nodes.entry(node_name_of(rem)).or_default() |= is_control_plane_remediation(rem);
    }
    let workers: Vec<(&str, &str)> = nodes
        .iter()
        .filter(|(_, cp)| !**cp)
        .map(|(n, _)| (n.as_str(), "Ready"))
        .collect();
    let control_plane = nodes.values().any(|cp| *cp);
    let (health, reason) = openstack::health_report(&workers, control_plane, Timestamp::now());
    let namespace = rem.namespace().unwrap_or_default();
    match cloud.report_health(&magnum.cluster, health, &reason).await {
        Ok(()) => {
            tracing::debug!(cluster = %magnum.cluster, health = health.as_str(), "reported to Magnum");
            // 202 means Magnum's API passed it on; its conductor may still drop it.
            let known = ctx
                .clouds
                .last_known_cluster(&namespace, &magnum.cluster)
                .await;
            match known.filter(|c| !c.is_complete()) {
                Some(c) => {
                    ctx.health_report_outcome(HealthReportOutcome::NotStored);
                    ctx.event(
                        rem,
                        true,
                        reason::HEALTH_REPORT_NOT_STORED,
                        format!(
                            "Magnum accepted the health_status report {} for cluster {} (202) but \
                             will not store it: the cluster is {} and Magnum's conductor updates a \
                             cluster only in a *_COMPLETE state",
                            health.as_str(),
                            magnum.cluster,
                            c.status
                        ),
                    )
                    .await;
                }
                None => ctx.expect_health_report(
                    (namespace, magnum.cluster.clone()),
                    PendingReport {
                        health: health.as_str().to_string(),
                        updated_at: reason.get("updated_at").cloned().unwrap_or_default(),
                        at: std::time::Instant::now(),
                        remediation: rem.object_ref(&()),
                    },
                ),
            }
        }
        Err(e) => {
            ctx.health_report_outcome(HealthReportOutcome::Failed);
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

/// The Magnum health report at the end of a remediation that ended outside the step machine's
/// turn (it timed out, or stayed blocked past its deadline): best effort, like every report.
async fn report_end(
    ctx: &Context,
    rem: &Remediation,
    before: &RemediationStatus,
    after: &RemediationStatus,
) {
    let is_final = |s: &RemediationStatus| s.phase.is_some_and(|p| p.is_final());
    if is_final(before) || !is_final(after) || after.steps.is_empty() {
        return;
    }
    match ctx.cloud_for(rem, after.region.as_deref()).await {
        Ok(cloud) => report_magnum_health(ctx, rem, cloud.as_ref(), after, false).await,
        Err(e) => tracing::debug!(error = %e, "no health report: no cloud"),
    }
}

/// A health report Magnum accepted, to be read back on the next read of the cluster.
struct PendingReport {
    health: String,
    /// The report's own `updated_at`: tells it from any other report.
    updated_at: String,
    at: std::time::Instant,
    remediation: k8s_openapi::api::core::v1::ObjectReference,
}

/// Magnum's API casts the update to its conductor: a read sooner than this after the report may
/// not show it yet even when it is stored.
const HEALTH_REPORT_SETTLE: Duration = Duration::from_secs(2);

/// What became of a health report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HealthReportOutcome {
    /// Read back from the cluster.
    Stored,
    /// Accepted (202), and not on the cluster afterwards (or not going to be).
    NotStored,
    /// Refused, or Magnum could not be reached.
    Failed,
}

impl HealthReportOutcome {
    const ALL: [HealthReportOutcome; 3] = [
        HealthReportOutcome::Stored,
        HealthReportOutcome::NotStored,
        HealthReportOutcome::Failed,
    ];
    fn as_str(self) -> &'static str {
        match self {
            HealthReportOutcome::Stored => "stored",
            HealthReportOutcome::NotStored => "not_stored",
            HealthReportOutcome::Failed => "failed",
        }
    }
}

/// The read-back of a pending health report against `cluster` as read at `read_at`: stored or
/// not is said once (metric, and a Warning event on the Remediation that reported it when not).
async fn read_back_health(
    ctx: &Context,
    key: (String, String),
    cluster: &openstack::Cluster,
    read_at: std::time::Instant,
) {
    let pending = {
        let mut reports = ctx.health_reports.lock().unwrap_or_else(|e| e.into_inner());
        match reports.get(&key) {
            Some(p) if read_at >= p.at + HEALTH_REPORT_SETTLE => reports.remove(&key),
            _ => None,
        }
    };
    let Some(p) = pending else {
        return;
    };
    let stored = cluster.health_status.as_deref() == Some(p.health.as_str())
        && cluster
            .health_status_reason
            .get("updated_at")
            .is_none_or(|u| *u == p.updated_at);
    if stored {
        ctx.health_report_outcome(HealthReportOutcome::Stored);
        return;
    }
    ctx.health_report_outcome(HealthReportOutcome::NotStored);
    let why = if cluster.is_complete() {
        String::new()
    } else {
        "; Magnum's conductor updates a cluster only in a *_COMPLETE state".to_string()
    };
    let note = format!(
        "Magnum accepted the health_status report {} for cluster {} (202) but did not store it: \
         the cluster is {} and shows health_status {}{why}",
        p.health,
        key.1,
        cluster.status,
        cluster.health_status.as_deref().unwrap_or("none"),
    );
    ctx.event_to(&p.remediation, true, reason::HEALTH_REPORT_NOT_STORED, note)
        .await;
}

fn is_control_plane_remediation(rem: &Remediation) -> bool {
    rem.labels()
        .contains_key(crate::api::contract::CONTROL_PLANE_REMEDIATION_LABEL)
}

/// The reasons of the events this controller writes.
mod reason {
    pub const POWER_RESTORED: &str = "PowerRestored";
    pub const POWER_NOT_RESTORED: &str = "PowerNotRestored";
    pub const NODE_DELETED: &str = "NodeDeleted";
    pub const EVICTIONS_COMPLETED: &str = "EvictionsCompleted";
    pub const OPENSTACK_REQUEST_SENT: &str = "OpenStackRequestSent";
    pub const OPENSTACK_ANSWER_LOST: &str = "OpenStackAnswerLost";
    pub const HEALTH_REPORT_NOT_STORED: &str = "HealthReportNotStored";
}
