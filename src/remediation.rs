//! The Remediation step machine: a pure function from (spec, status, what was observed, now) to
//! the next status and the one action to take. The controller persists the status *before* it
//! acts, so every OpenStack request is on record before it leaves; after a crash or a leader
//! change the new controller reads the record and checks the server instead of sending again.
//!
//! Steps, requests and outcomes are closed sets of types ([`StepName`], [`RequestKind`],
//! [`RequestOutcome`]); [`allowed_requests`] lists, per action and step, the only requests the
//! machine may send, and every send goes through one check of that list.
//!
//! | action | steps (requests) |
//! |---|---|
//! | `Reboot` | Reboot (`reboot-soft`, then `reboot-hard` if the node is not back in half the recover timeout) → node Ready |
//! | `PowerCycle` | Fence (`os-stop`, confirmed `SHUTOFF`) → ReleaseWorkloads → Recover (`os-start`, or `unshelve`) → WaitForNode |
//! | `Rebuild` | Fence (`os-stop`) → ReleaseWorkloads → Recover (`unshelve` if shelved, `rebuild` with the server's image, then `os-start`: Nova keeps a stopped server stopped) → WaitForNode |
//! | `Replace` | Fence (`os-stop`, confirmed `SHUTOFF`; if that does not happen in half the fence timeout, the removal itself, confirmed only by the compute host's own delete) → ReleaseWorkloads → Recover (the removal — Magnum resize with `nodes_to_remove`, or Nova delete — then the Node object is deleted) |
//!
//! Evidence (design invariant 1): ReleaseWorkloads — the only step that puts the out-of-service
//! taint on a node or deletes its pods — begins only once the Fence step recorded a
//! [`FenceEvidence`]: Nova reported the server `SHUTOFF` or shelved with no task running; or the
//! server is deleted and Nova's instance actions show that its compute host destroyed the guest
//! (not a local delete while the host was down); or a person confirmed it with the annotation
//! [`FENCE_CONFIRMED_ANNOTATION`]. A server that is simply missing (404) is no evidence: a
//! providerID of another region, a Secret of another project or a misrouted endpoint all look
//! like that. A node that is Ready when the remediation starts is never fenced.
//!
//! ReleaseWorkloads with `OutOfServiceTaint` puts the taint on and lets Kubernetes evict the
//! pods (honouring their tolerations) and detach their volumes; the pods it evicted are then
//! force-deleted at once, as kube-controller-manager's pod GC would on its next 20 s pass.

use std::time::Duration as StdDuration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::conditions::set_condition;
use crate::api::contract::{
    PERMANENT_NODE_DELETION_EXPECTED_CONDITION, PROCESSING_CONDITION, SUCCEEDED_CONDITION,
};
pub use crate::api::{FenceEvidence, RequestKind, RequestOutcome, StepName};
use crate::api::{
    OpenStackRequest, RebootType, RemediationAction, RemediationPhase, RemediationSpec,
    RemediationStatus, StepRecord, WorkloadEviction,
};

/// Our taint while a node is being remediated: nothing new is scheduled onto it.
pub const REMEDIATING_TAINT_KEY: &str = "nodehealer.io/remediating";
/// The Kubernetes non-graceful node shutdown taint.
pub const OUT_OF_SERVICE_TAINT_KEY: &str = "node.kubernetes.io/out-of-service";
/// The value Kubernetes documents for the out-of-service taint (only the key is checked).
pub const OUT_OF_SERVICE_TAINT_VALUE: &str = "nodeshutdown";
/// On a Remediation: a person confirms that the node's server is off (its value says who and
/// how). Read only while the Fence step runs; it stands in for the cloud's evidence.
pub const FENCE_CONFIRMED_ANNOTATION: &str = "nodehealer.io/fence-confirmed";

/// A request whose answer never arrived (the controller died in between) is taken as lost only
/// when the server shows no sign of it for this long, and this replica has led for this long
/// (an earlier leader's request may still be on its way); then it may be sent again. It must
/// exceed the OpenStack client's request timeout (10 s): the time a request that already left
/// may take to show on the server.
pub const LOST_REQUEST_GRACE: StdDuration = StdDuration::from_secs(30);
/// After OpenStack refused or failed a request, wait this long before sending it again.
pub const FAILED_REQUEST_BACKOFF: StdDuration = StdDuration::from_secs(5);
/// How often to look again while waiting for something outside our control.
pub const POLL: StdDuration = StdDuration::from_secs(1);
/// A rebuilt server that was stopped shows `ACTIVE` with no task for a fraction of a second on
/// its way back to `SHUTOFF` (Nova keeps a stopped server stopped). A Nova that leaves it
/// running instead shows it `ACTIVE` for good: seen `ACTIVE` this long apart by our own looks,
/// the server is taken as rebuilt and running.
pub const REBUILT_ACTIVE_SETTLE: StdDuration = StdDuration::from_secs(5);
/// A Replace whose `os-stop` did not bring the server to `SHUTOFF` within this long (or half the
/// fence timeout, if that is shorter) has a compute host that is likely down: it waits in
/// `FenceUnproven` for SHUTOFF or a person, instead of failing at the fence timeout. Nova's own
/// clean shutdown waits up to 60 s for the guest.
pub const STOP_PATIENCE: StdDuration = StdDuration::from_secs(90);
/// How often a remediation blocked by a cause that cannot go away by itself (a wrong password,
/// a missing Secret, a broken clouds.yaml) looks again: someone fixing it is noticed within this
/// long, at the cost of one Secret read (and one Keystone attempt) per look.
pub const BLOCKED_RECHECK: StdDuration = StdDuration::from_secs(15);
/// How often to look again while a person must confirm a fence or a cloud answer is missing.
const SLOW_POLL: StdDuration = StdDuration::from_secs(5);

/// The node as observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeObservation {
    /// The Ready condition is `True`.
    pub ready: bool,
}

/// The server as Nova reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerState {
    pub status: String,
    pub task_state: Option<String>,
    pub image_id: String,
    /// Nova's `updated`: changes whenever the server does.
    pub updated: Option<Timestamp>,
}

impl ServerState {
    /// Powered off, with nothing in progress: the guest cannot write anywhere.
    pub fn is_off(&self) -> bool {
        self.status == "SHUTOFF" && self.task_state.is_none()
    }
    /// Shelved (and perhaps offloaded from its host), with nothing in progress: Nova powered
    /// the guest off before shelving it, and only `unshelve` boots it again.
    pub fn is_shelved(&self) -> bool {
        matches!(self.status.as_str(), "SHELVED" | "SHELVED_OFFLOADED") && self.task_state.is_none()
    }
    /// Running, with nothing in progress.
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE" && self.task_state.is_none()
    }
    fn describe(&self) -> String {
        match &self.task_state {
            Some(task) => format!("status {}, task {task}", self.status),
            None => format!("status {}", self.status),
        }
    }
}

/// What the controller learned from Nova this time.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerObservation {
    /// Nova says the server does not exist (404).
    Gone,
    Present(ServerState),
}

/// How a server that is gone was deleted, from Nova's instance actions.
pub use crate::openstack::DeletionEvidence;

/// Pods and VolumeAttachments still bound to the node that keep it from being released.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Workloads {
    pub pods: usize,
    pub volume_attachments: usize,
    /// Of `pods`, those already being deleted (evicted by the out-of-service taint).
    pub evicted_pods: usize,
}

/// Everything the step machine needs to know, gathered by the controller.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// None when the Node object does not exist (any more).
    pub node: Option<NodeObservation>,
    /// The server; the controller always looks before a step that acts on it.
    pub server: ServerObservation,
    /// When the server is gone during the Fence step: what Nova's instance actions say.
    pub deletion: Option<DeletionEvidence>,
    /// Filled in during ReleaseWorkloads.
    pub workloads: Option<Workloads>,
    /// The Magnum cluster's status, when the spec names a cluster.
    pub cluster_status: Option<String>,
    /// Magnum's `status_reason` for it (why an update failed, say).
    pub cluster_status_reason: Option<String>,
    /// Whether the Magnum cluster has healing on (its `auto_healing_enabled` label), when the
    /// spec names a cluster.
    pub cluster_auto_healing: Option<bool>,
    /// The value of [`FENCE_CONFIRMED_ANNOTATION`] on the Remediation, if a person set it.
    pub fence_confirmed_by: Option<String>,
    /// How long this replica has held the leader Lease without a break (its own monotonic
    /// clock); `Duration::MAX` without leader election.
    pub leading_for: StdDuration,
    /// The node carries an out-of-service taint (ours, another remediation's of the node, or
    /// another remediator's): Kubernetes is releasing its workloads as if the guest were off.
    pub node_out_of_service: bool,
}

impl Observed {
    /// Nothing seen: what [`blocked`] decides on.
    fn nothing() -> Observed {
        Observed {
            node: None,
            server: ServerObservation::Gone,
            deletion: None,
            workloads: None,
            cluster_status: None,
            cluster_status_reason: None,
            cluster_auto_healing: None,
            fence_confirmed_by: None,
            leading_for: StdDuration::ZERO,
            node_out_of_service: false,
        }
    }
}

/// The one thing to do after persisting the new status.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing: look again after this long.
    Wait(StdDuration),
    /// Send this OpenStack request (already on record in the status, with no outcome yet).
    Cloud(CloudRequest),
    /// Delete the node's pods (forcefully) and its VolumeAttachments (`ResourceDeletion`).
    DeleteWorkloads,
    /// Force-delete the node's pods that are already being deleted (`OutOfServiceTaint`):
    /// what kube-controller-manager's pod garbage collector does for a node with the
    /// out-of-service taint, only on its 20 s period; done at once it saves up to 20 s.
    FinishEvictions,
    /// Delete the Node object (`Replace`: its server is gone for good).
    DeleteNode,
    /// The remediation is over; nothing more will happen.
    Done,
}

/// An OpenStack request the controller sends for the step machine.
#[derive(Clone, Debug, PartialEq)]
pub enum CloudRequest {
    Stop,
    Start,
    Unshelve,
    Reboot {
        hard: bool,
    },
    Rebuild {
        image_id: String,
    },
    Delete,
    /// Magnum resize of the server's nodegroup, removing the server, keeping the node count.
    MagnumResize,
}

impl CloudRequest {
    /// The kind recorded in the status.
    pub fn kind(&self) -> RequestKind {
        match self {
            CloudRequest::Stop => RequestKind::Stop,
            CloudRequest::Start => RequestKind::Start,
            CloudRequest::Unshelve => RequestKind::Unshelve,
            CloudRequest::Reboot { hard: false } => RequestKind::RebootSoft,
            CloudRequest::Reboot { hard: true } => RequestKind::RebootHard,
            CloudRequest::Rebuild { .. } => RequestKind::Rebuild,
            CloudRequest::Delete => RequestKind::Delete,
            CloudRequest::MagnumResize => RequestKind::MagnumResize,
        }
    }

    /// The request to send (again) for a recorded kind: each kind is exactly one request.
    fn of_kind(kind: RequestKind, server: &ServerState) -> CloudRequest {
        match kind {
            RequestKind::Stop => CloudRequest::Stop,
            RequestKind::Start => CloudRequest::Start,
            RequestKind::Unshelve => CloudRequest::Unshelve,
            RequestKind::RebootSoft => CloudRequest::Reboot { hard: false },
            RequestKind::RebootHard => CloudRequest::Reboot { hard: true },
            RequestKind::Rebuild => CloudRequest::Rebuild {
                image_id: server.image_id.clone(),
            },
            RequestKind::Delete => CloudRequest::Delete,
            RequestKind::MagnumResize => CloudRequest::MagnumResize,
        }
    }
}

/// The requests `action` may send in `step`; `magnum` when the spec names a Magnum cluster
/// (a Replace then removes the server through Magnum, never behind its back).
pub fn allowed_requests(
    action: RemediationAction,
    magnum: bool,
    step: StepName,
) -> &'static [RequestKind] {
    use RequestKind::*;
    let removal: &'static [RequestKind] = if magnum { &[MagnumResize] } else { &[Delete] };
    match (action, step) {
        (RemediationAction::Reboot, StepName::Reboot) => &[RebootSoft, RebootHard],
        (RemediationAction::PowerCycle, StepName::Fence) => &[Stop],
        (RemediationAction::PowerCycle, StepName::Recover) => &[Start, Unshelve],
        (RemediationAction::Rebuild, StepName::Fence) => &[Stop],
        (RemediationAction::Rebuild, StepName::Recover) => &[Unshelve, Rebuild, Start],
        (RemediationAction::Replace, StepName::Fence) => &[Stop],
        (RemediationAction::Replace, StepName::Recover) => removal,
        (
            RemediationAction::Reboot
            | RemediationAction::PowerCycle
            | RemediationAction::Rebuild
            | RemediationAction::Replace,
            StepName::Reboot
            | StepName::Fence
            | StepName::ReleaseWorkloads
            | StepName::Recover
            | StepName::WaitForNode,
        ) => &[],
    }
}

/// What became of a request the controller sent.
#[derive(Clone, Debug, PartialEq)]
pub enum SendResult {
    Accepted,
    /// Refused or failed; the error's category and its message.
    Failed {
        category: String,
        message: String,
    },
    /// The answer was lost (a timeout, a broken connection): it may have been carried out.
    Unknown {
        message: String,
    },
}

/// Records what became of the last request of `kind` in the current step. An unknown outcome
/// stays empty, so the machine looks at the server before it ever sends the request again.
pub fn record_result(status: &mut RemediationStatus, kind: RequestKind, result: &SendResult) {
    let request = status
        .steps
        .last_mut()
        .and_then(|s| s.requests.iter_mut().rev().find(|r| r.action == kind));
    if let Some(request) = request {
        request.outcome = match result {
            SendResult::Accepted => Some(RequestOutcome::Accepted),
            SendResult::Failed { category, .. } => Some(RequestOutcome::Failed(category.clone())),
            SendResult::Unknown { .. } => None,
        };
    }
    status.last_error = match result {
        SendResult::Accepted => None,
        SendResult::Failed { message, .. } | SendResult::Unknown { message } => {
            Some(format!("{kind}: {message}"))
        }
    };
}

/// What happened worth an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The result of one step of the machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub status: RemediationStatus,
    pub action: Action,
    pub notice: Option<Notice>,
}

/// One of our taints: `(key, value, effect)`.
pub type OurTaint = (&'static str, &'static str, &'static str);

/// Our taints the node should carry now, given the (new) status. The out-of-service taint only
/// ever comes with a recorded fence evidence.
pub fn desired_taints(spec: &RemediationSpec, status: &RemediationStatus) -> Vec<OurTaint> {
    let mut taints = Vec::new();
    let phase = status.phase.unwrap_or(RemediationPhase::Pending);
    if phase.is_final() || !spec.action.fences() || status.steps.is_empty() {
        return taints;
    }
    taints.push((REMEDIATING_TAINT_KEY, "", "NoSchedule"));
    let releasing = status
        .steps
        .last()
        .is_some_and(|s| s.name == StepName::ReleaseWorkloads && s.finished.is_none());
    if releasing
        && status.fence_evidence.is_some()
        && spec.workload_eviction == WorkloadEviction::OutOfServiceTaint
    {
        taints.push((
            OUT_OF_SERVICE_TAINT_KEY,
            OUT_OF_SERVICE_TAINT_VALUE,
            "NoExecute",
        ));
    }
    taints
}

/// How to bring a node's taints in line with what the live remediations want.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaintChange {
    pub add: Vec<OurTaint>,
    /// `(key, effect)` of the taints to remove.
    pub remove: Vec<(&'static str, &'static str)>,
    /// Whether the node must (Some(true)) or must no longer (Some(false)) be marked as carrying
    /// our out-of-service taint.
    pub own_out_of_service: Option<bool>,
}

impl TaintChange {
    pub fn is_none(&self) -> bool {
        self == &TaintChange::default()
    }
}

/// The change that makes a node with taints `current` (`(key, effect)`) carry what this
/// remediation `wanted` of ours. The other live remediations of the node only ever keep a taint
/// (`kept_by_others`), never add one: what they want is read from a cache that may be behind,
/// and a stale wish must not put the out-of-service taint back on a node being powered on.
/// `owned_out_of_service`: the node is marked as carrying the out-of-service taint we added;
/// one that someone else added is never removed.
pub fn taint_change(
    current: &[(&str, &str)],
    owned_out_of_service: bool,
    wanted: &[OurTaint],
    kept_by_others: &[OurTaint],
) -> TaintChange {
    let mut change = TaintChange::default();
    let has = |key: &str, effect: &str| current.iter().any(|&(k, e)| k == key && e == effect);
    let wants = |key: &str| wanted.iter().any(|(k, _, _)| *k == key);
    let kept = |key: &str| kept_by_others.iter().any(|(k, _, _)| *k == key);
    let remediating = (REMEDIATING_TAINT_KEY, "", "NoSchedule");
    let out_of_service = (
        OUT_OF_SERVICE_TAINT_KEY,
        OUT_OF_SERVICE_TAINT_VALUE,
        "NoExecute",
    );
    let (key, effect) = (remediating.0, remediating.2);
    if wants(key) && !has(key, effect) {
        change.add.push(remediating);
    } else if !wants(key) && !kept(key) && has(key, effect) {
        change.remove.push((key, effect));
    }
    let (key, effect) = (out_of_service.0, out_of_service.2);
    let present = has(key, effect);
    if wants(key) && !present {
        change.add.push(out_of_service);
        change.own_out_of_service = Some(true);
    } else if !wants(key) && !kept(key) && owned_out_of_service {
        if present {
            change.remove.push((key, effect));
        }
        change.own_out_of_service = Some(false);
    }
    change
}

/// Advances the machine by one step.
pub fn next(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    observed: &Observed,
    now: Timestamp,
    generation: Option<i64>,
) -> Plan {
    let mut m = Machine::new(spec, status, observed, now, generation);
    let action = m.advance();
    m.plan(action)
}

/// The machine, stopped from outside: the NodeHealthCheck timed the remediation out
/// (`remediation.medik8s.io/nhc-timed-out`), and the next remediator may already be working on
/// the node. Nothing more is sent; the remediation ends as Failed, and its taints go (unless
/// another remediation of the node still wants them).
pub fn stop_timed_out(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    now: Timestamp,
    generation: Option<i64>,
) -> Plan {
    let observed = Observed::nothing();
    let mut m = Machine::new(spec, status, &observed, now, generation);
    let action = if m.status.phase.is_some_and(|p| p.is_final()) {
        Action::Done
    } else {
        m.fail(
            "the NodeHealthCheck timed this remediation out (nhc-timed-out): it stopped acting, \
             so that the next remediation has the node to itself"
                .into(),
        )
    };
    m.plan(action)
}

/// How a Remediation deleted before it ended is recorded, by its finalizer. medik8s' contract:
/// the NodeHealthCheck deletes a remediation once its node is healthy again, and it may well do
/// so before the remediator has seen the node Ready and written `Succeeded` (while the
/// remediation is still `WaitingForNode`, `Recovering`, ...). The node being Ready when the
/// deletion is handled is that success: it is recorded as one (once: the caller writes it on
/// top of the status read, and only a write that ends the remediation counts). A deletion with
/// the node not Ready (a person gave up on it) ends it as `Failed`. None: nothing to record (it
/// had ended, never began, or the NodeHealthCheck had timed it out, which is recorded as such).
pub fn deleted_before_end(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    node_ready: bool,
    timed_out: bool,
    now: Timestamp,
    generation: Option<i64>,
) -> Option<Plan> {
    if status.phase.is_some_and(|p| p.is_final()) || status.steps.is_empty() || timed_out {
        return None;
    }
    let phase = status.phase.unwrap_or(RemediationPhase::Pending);
    let observed = Observed::nothing();
    let mut m = Machine::new(spec, status, &observed, now, generation);
    let action = if node_ready {
        m.finish_step("the node is Ready");
        m.succeed(
            "NodeReady",
            format!(
                "the node is Ready again; the remediation was deleted (the NodeHealthCheck \
                 removes it once the node is healthy) in phase {phase:?}, before it had recorded that"
            ),
        )
    } else {
        m.fail(format!(
            "deleted in phase {phase:?}, before it ended, with the node not Ready: nothing more \
             is done"
        ))
    };
    Some(m.plan(action))
}

/// What a Remediation that is being deleted does about its server's power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerRestore {
    /// Nothing: we did not power it off, or something powered it on since.
    Nothing,
    /// Our `os-stop` is still being carried out: wait for `SHUTOFF`, then power on.
    WaitForStop,
    /// We powered it off and it is off: `os-start`.
    Start,
}

/// Whether a Remediation that is being deleted must power its server back on: we powered it
/// off (an `os-stop` that was or may have been accepted), nothing has started it again, and it
/// is off now (or still powering off or being rebuilt: then wait). A remediation stopped
/// half-way (its node came back, or a person deleted it) never leaves behind a server that we
/// turned off. `Replace` removes the server on purpose.
pub fn power_restore(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    server: &ServerObservation,
    node_out_of_service: bool,
) -> PowerRestore {
    if !matches!(
        spec.action,
        RemediationAction::PowerCycle | RemediationAction::Rebuild
    ) || status.phase.is_some_and(|p| p.is_final())
        // Another remediation of the node is releasing its workloads: the guest must stay
        // off, and that remediation powers it on when it is done.
        || node_out_of_service
    {
        return PowerRestore::Nothing;
    }
    let requests = || status.steps.iter().flat_map(|s| s.requests.iter());
    let may_have_left = |kind: RequestKind| {
        requests()
            .any(|r| r.action == kind && r.outcome.as_ref().is_none_or(RequestOutcome::is_accepted))
    };
    // Only an accepted power-on counts: one without an answer may never have left (and if it
    // did, the server shows it).
    let accepted = |kind: RequestKind| {
        requests().any(|r| {
            r.action == kind && r.outcome.as_ref().is_some_and(RequestOutcome::is_accepted)
        })
    };
    if !may_have_left(RequestKind::Stop)
        || accepted(RequestKind::Start)
        || accepted(RequestKind::Unshelve)
    {
        return PowerRestore::Nothing;
    }
    // A rebuild of the stopped server that may have left while its step runs: its moment of
    // ACTIVE with no task comes before Nova stops it again.
    let rebuilding_stopped = status.steps.iter().any(|step| {
        step.finished.is_none()
            && step.requests.iter().any(|r| {
                r.action == RequestKind::Rebuild
                    && r.server_stopped != Some(false)
                    && r.outcome.as_ref().is_none_or(RequestOutcome::is_accepted)
            })
    });
    match server {
        ServerObservation::Present(s) if s.is_off() => PowerRestore::Start,
        // Still stopping, or being rebuilt (Nova keeps a stopped server stopped afterwards).
        ServerObservation::Present(s)
            if s.status == "REBUILD"
                || s.task_state
                    .as_deref()
                    .is_some_and(|t| t == "powering-off" || t.starts_with("rebuild"))
                || (rebuilding_stopped && s.is_active()) =>
        {
            PowerRestore::WaitForStop
        }
        ServerObservation::Present(_) | ServerObservation::Gone => PowerRestore::Nothing,
    }
}

/// Why the controller cannot go on: the error's category (the condition's reason), its message,
/// and whether it may go away by itself.
#[derive(Clone, Copy, Debug)]
pub struct Blocker<'a> {
    pub reason: &'a str,
    pub message: &'a str,
    pub retryable: bool,
}

/// The controller could not observe or reach what the next step needs (the cloud is
/// unreachable, the Secret is missing, the node cannot be mapped): nothing is sent and nothing
/// is released. The reason goes into `lastError` and the `Processing` condition; once the
/// current step (or, before the first step, the remediation since `created`) has run longer
/// than its timeout, the remediation fails so that the NodeHealthCheck escalates. `retryable`
/// says whether the cause may go away by itself: if not, look again every [`BLOCKED_RECHECK`]
/// (someone may fix it) and just after the timeout runs out.
pub fn blocked(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    created: Option<Timestamp>,
    blocker: &Blocker,
    now: Timestamp,
    generation: Option<i64>,
) -> Plan {
    let Blocker {
        reason,
        message,
        retryable,
    } = *blocker;
    let observed = Observed::nothing();
    let mut m = Machine::new(spec, status, &observed, now, generation);
    if m.status.phase.is_some_and(|p| p.is_final()) {
        return Plan {
            status: m.status,
            action: Action::Done,
            notice: None,
        };
    }
    let (since, timeout) = match m.status.steps.last() {
        Some(step) => match &step.finished {
            None => (Some(step.started.0), step_timeout(spec, step.name)),
            // Between two steps: the next one's time, from the end of this one.
            Some(finished) => (Some(finished.0), step_timeout(spec, step_after(step.name))),
        },
        None if spec.action.fences() => (created, spec.timeouts.fence.get()),
        None => (created, spec.timeouts.recover.get()),
    };
    let elapsed = since.map(|at| m.since(at));
    // Waiting for a person has no timeout: a cloud error meanwhile is only said, never fatal.
    let waiting_for_person = m.status.phase == Some(RemediationPhase::FenceUnproven);
    let overdue = !waiting_for_person && elapsed.is_some_and(|e| e > timeout);
    let action = if overdue {
        let released = m
            .status
            .steps
            .iter()
            .any(|s| s.name == StepName::ReleaseWorkloads);
        m.fail(format!(
            "{message}; gave up: the step's timeout of {}s ran out{}",
            timeout.as_secs(),
            if released {
                ""
            } else {
                "; no workload was released"
            }
        ))
    } else {
        m.status.last_error = Some(message.to_string());
        let until_timeout = elapsed.map_or(timeout, |e| timeout.saturating_sub(e));
        Action::Wait(if retryable {
            FAILED_REQUEST_BACKOFF
        } else {
            // Just past the timeout, so the remediation fails when it should and escalates;
            // and meanwhile every BLOCKED_RECHECK, since someone may fix the cause (a Secret
            // with the right password: the operator may only read Secrets, not watch them).
            (until_timeout + POLL).min(BLOCKED_RECHECK)
        })
    };
    m.sync_conditions();
    if !overdue {
        // Still trying: say why in Processing (the phase name would hide it).
        set_condition(
            &mut m.status.conditions,
            PROCESSING_CONDITION,
            true,
            reason,
            message,
            generation,
            now,
        );
    }
    Plan {
        status: m.status,
        action,
        notice: m.notice,
    }
}

/// The step that follows `step` (for the timeout between two steps).
fn step_after(step: StepName) -> StepName {
    match step {
        StepName::Fence => StepName::ReleaseWorkloads,
        StepName::ReleaseWorkloads => StepName::Recover,
        StepName::Recover | StepName::Reboot | StepName::WaitForNode => StepName::WaitForNode,
    }
}

/// The timeout of a step.
fn step_timeout(spec: &RemediationSpec, step: StepName) -> StdDuration {
    match step {
        StepName::Fence => spec.timeouts.fence.get(),
        StepName::ReleaseWorkloads => spec.timeouts.release_workloads.get(),
        StepName::WaitForNode => spec.timeouts.node_ready.get(),
        StepName::Reboot | StepName::Recover => spec.timeouts.recover.get(),
    }
}

struct Machine<'a> {
    spec: &'a RemediationSpec,
    status: RemediationStatus,
    observed: &'a Observed,
    now: Timestamp,
    generation: Option<i64>,
    notice: Option<Notice>,
}

impl<'a> Machine<'a> {
    fn new(
        spec: &'a RemediationSpec,
        status: &RemediationStatus,
        observed: &'a Observed,
        now: Timestamp,
        generation: Option<i64>,
    ) -> Machine<'a> {
        Machine {
            spec,
            status: status.clone(),
            observed,
            now,
            generation,
            notice: None,
        }
    }

    /// The plan: the status as it now is (conditions in line), and the action.
    fn plan(mut self, action: Action) -> Plan {
        self.sync_conditions();
        Plan {
            status: self.status,
            action,
            notice: self.notice,
        }
    }
}

impl Machine<'_> {
    fn advance(&mut self) -> Action {
        if self.status.phase.is_some_and(|p| p.is_final()) {
            return Action::Done;
        }
        let Some(step) = self.status.steps.last().cloned() else {
            return self.start();
        };
        if step.finished.is_some() {
            return self.after(step.name);
        }
        match step.name {
            StepName::Reboot => self.reboot(&step),
            StepName::Fence => self.fence(&step),
            StepName::ReleaseWorkloads => self.release(&step),
            StepName::Recover => self.recover(&step),
            StepName::WaitForNode => self.wait_for_node(&step),
        }
    }

    fn magnum(&self) -> bool {
        self.spec.openstack.magnum.is_some()
    }

    /// How a Replace removes the server.
    fn removal(&self) -> RequestKind {
        if self.magnum() {
            RequestKind::MagnumResize
        } else {
            RequestKind::Delete
        }
    }

    /// The first decision: a Ready node is left alone, whatever the action.
    fn start(&mut self) -> Action {
        if self.observed.node.as_ref().is_some_and(|n| n.ready) {
            return self.succeed("NodeReady", "the node is Ready: nothing to do".into());
        }
        // Found out after the fence, this would leave the server off and the node gone.
        if self.spec.action == RemediationAction::Rebuild
            && let ServerObservation::Present(server) = &self.observed.server
            && server.image_id.is_empty()
        {
            return self.fail(
                "the server boots from a volume and has no image to be rebuilt with: nothing was \
                 done (use PowerCycle or Replace for this pool)"
                    .into(),
            );
        }
        if self.spec.action.fences() {
            self.begin(StepName::Fence, RemediationPhase::Fencing);
            self.note(
                false,
                "Fencing",
                "fencing the node's server through OpenStack".into(),
            );
        } else {
            self.begin(StepName::Reboot, RemediationPhase::Recovering);
            self.note(false, "Rebooting", "rebooting the node's server".into());
        }
        Action::Wait(StdDuration::ZERO)
    }

    /// What follows a finished step.
    fn after(&mut self, finished: StepName) -> Action {
        match finished {
            StepName::Fence if self.spec.workload_eviction == WorkloadEviction::None => {
                self.begin(StepName::Recover, RemediationPhase::Recovering);
            }
            StepName::Fence => {
                self.begin(
                    StepName::ReleaseWorkloads,
                    RemediationPhase::ReleasingWorkloads,
                );
                self.note(
                    false,
                    "ReleasingWorkloads",
                    "the server is confirmed off: releasing the node's pods and volumes".into(),
                );
            }
            StepName::ReleaseWorkloads => {
                self.begin(StepName::Recover, RemediationPhase::Recovering);
                self.note(
                    false,
                    "Recovering",
                    "workloads released: bringing the capacity back".into(),
                );
            }
            StepName::Recover => {
                self.begin(StepName::WaitForNode, RemediationPhase::WaitingForNode)
            }
            StepName::Reboot | StepName::WaitForNode => {
                return self.fail(format!("nothing follows step {finished}"));
            }
        }
        Action::Wait(StdDuration::ZERO)
    }

    fn reboot(&mut self, step: &StepRecord) -> Action {
        if self.observed.node.as_ref().is_some_and(|n| n.ready) {
            self.finish_step("the node is Ready again");
            return self.succeed(
                "NodeReady",
                "the node is Ready again after the reboot".into(),
            );
        }
        let timeout = self.spec.timeouts.recover.get();
        if self.elapsed(step) > timeout {
            return self.fail(format!(
                "the node was not Ready within {} of the reboot",
                self.spec.timeouts.recover
            ));
        }
        let ServerObservation::Present(server) = self.observed.server.clone() else {
            return self.fail("the server is gone: a reboot cannot help".into());
        };
        if server.is_shelved() {
            return self.fail(format!(
                "the server is {}: Nova cannot reboot a shelved server (a PowerCycle unshelves it)",
                server.status
            ));
        }
        let soft_sent = last_request(step, RequestKind::RebootSoft).is_some();
        let hard_now = match self.spec.openstack.reboot_type {
            RebootType::Hard => true,
            RebootType::Soft => false,
            // A soft reboot gets half the time; a hung guest ignores it, so go hard. Nova
            // refuses a soft reboot of a server that is not ACTIVE (SHUTOFF, ERROR): go hard at
            // once then, rather than wait out the timeout having sent nothing.
            RebootType::SoftThenHard => {
                (soft_sent && self.elapsed(step) > timeout / 2)
                    || (!soft_sent && !server.is_active() && server.task_state.is_none())
            }
        };
        let kind = if hard_now {
            RequestKind::RebootHard
        } else {
            RequestKind::RebootSoft
        };
        if last_request(step, kind).is_none() {
            // Nova refuses a soft reboot unless the server is ACTIVE with no task.
            if !hard_now && !server.is_active() {
                return Action::Wait(POLL);
            }
            return self.send(CloudRequest::Reboot { hard: hard_now });
        }
        self.follow_up(kind, &server, |s| {
            matches!(s.status.as_str(), "REBOOT" | "HARD_REBOOT")
                || s.task_state
                    .as_deref()
                    .is_some_and(|t| t.starts_with("reboot"))
        })
        .unwrap_or(Action::Wait(POLL))
    }

    /// The fence: evidence that the guest stopped, or nothing is released.
    fn fence(&mut self, step: &StepRecord) -> Action {
        if let Some(who) = self.observed.fence_confirmed_by.clone() {
            return self.confirm_fence(
                FenceEvidence::ConfirmedByPerson,
                format!(
                    "a person confirmed the server is off ({FENCE_CONFIRMED_ANNOTATION}: {who})"
                ),
            );
        }
        let server_id = self.status.server_id.clone().unwrap_or_default();
        let server = match &self.observed.server {
            ServerObservation::Present(s) if s.is_off() => {
                return self.confirm_fence(
                    FenceEvidence::ServerShutoff,
                    "Nova reports the server SHUTOFF".into(),
                );
            }
            ServerObservation::Present(s) if s.is_shelved() => {
                return self.confirm_fence(
                    FenceEvidence::ServerShelved,
                    "Nova reports the server shelved (powered off)".into(),
                );
            }
            ServerObservation::Present(s) => s.clone(),
            ServerObservation::Gone => {
                return match self.observed.deletion {
                    Some(DeletionEvidence::ComputeTerminated) => self.confirm_fence(
                        FenceEvidence::DeletedByComputeHost,
                        "the server is deleted and Nova's instance actions show its compute host \
                         destroyed the guest (compute_terminate_instance succeeded)"
                            .into(),
                    ),
                    Some(DeletionEvidence::Terminating)
                        if self.elapsed(step) <= self.spec.timeouts.fence.get() =>
                    {
                        self.set_step_message(
                            "the server is gone; its compute host is still finishing the delete"
                                .into(),
                        );
                        Action::Wait(POLL)
                    }
                    deletion => self.no_evidence(
                        step,
                        format!(
                            "Nova answers 404 for server {server_id}, but nothing shows its guest \
                             stopped ({}): a providerID of another region, a Secret of another \
                             project, a misrouted endpoint or a delete while its host was down \
                             look like this; nothing is released (if the guest is off for sure, \
                             annotate this Remediation with {FENCE_CONFIRMED_ANNOTATION}=<who and how>)",
                            match deletion {
                                Some(DeletionEvidence::NotByCompute) => {
                                    "it was deleted without its compute host"
                                }
                                Some(DeletionEvidence::NoDelete) => "no delete on record",
                                Some(DeletionEvidence::Terminating) => {
                                    "its compute host never finished the delete"
                                }
                                _ => "Nova has no record of it",
                            }
                        ),
                    ),
                };
            }
        };
        // A Replace whose server does not stop: its compute host is likely down. Removing the
        // server then would prove nothing (Nova deletes it locally, while the guest may still
        // run) and would release the workloads behind our back (the cloud controller manager
        // deletes a Node whose server is gone; pod GC then deletes its pods). So nothing is
        // removed or released until Nova reports SHUTOFF (the host came back and the stop
        // completed) or a person confirms. No timeout: only that, or the NodeHealthCheck's
        // escalation timeout, ends it.
        let patience = STOP_PATIENCE.min(self.spec.timeouts.fence.get() / 2);
        if self.spec.action == RemediationAction::Replace && self.elapsed(step) > patience {
            self.unproven(format!(
                "os-stop of server {server_id} has not completed in {}s (server {}): its compute \
                 host is likely down. Nothing is removed or released until Nova reports it \
                 SHUTOFF or a person confirms the guest is off (annotate this Remediation with \
                 {FENCE_CONFIRMED_ANNOTATION}=<who and how>); then its workloads are released \
                 and the server is replaced",
                patience.as_secs(),
                server.describe()
            ));
            return match self.stop(step, &server) {
                Action::Wait(_) => Action::Wait(SLOW_POLL),
                other => other,
            };
        }
        if self.elapsed(step) > self.spec.timeouts.fence.get() {
            return self.fail(format!(
                "fencing not confirmed within {} (server {}); no workload was released",
                self.spec.timeouts.fence,
                server.describe()
            ));
        }
        self.stop(step, &server)
    }

    /// `os-stop`, once Nova has no task running, and its follow-up.
    fn stop(&mut self, step: &StepRecord, server: &ServerState) -> Action {
        if last_request(step, RequestKind::Stop).is_none() {
            if server.task_state.is_some() {
                self.set_step_message(format!(
                    "waiting for Nova's task to end before os-stop (server {})",
                    server.describe()
                ));
                return Action::Wait(POLL);
            }
            return self.send(CloudRequest::Stop);
        }
        self.follow_up(RequestKind::Stop, server, |s| {
            s.task_state.as_deref() == Some("powering-off") || s.status == "SHUTOFF"
        })
        .unwrap_or(Action::Wait(POLL))
    }

    fn confirm_fence(&mut self, evidence: FenceEvidence, how: String) -> Action {
        self.finish_step(&how);
        self.status.fence_evidence = Some(evidence);
        self.status.last_error = None;
        self.status.phase = Some(RemediationPhase::Fenced);
        self.note(false, "Fenced", format!("fencing confirmed: {how}"));
        Action::Wait(StdDuration::ZERO)
    }

    /// No proof that the guest stopped, and none to be had from the cloud for now: the
    /// workloads wait for SHUTOFF or a person. The event is written once.
    fn unproven(&mut self, message: String) {
        if self.status.phase != Some(RemediationPhase::FenceUnproven) {
            self.note(true, "FenceUnproven", message.clone());
        }
        self.status.phase = Some(RemediationPhase::FenceUnproven);
        self.status.last_error = Some(message.clone());
        self.set_step_message(message);
    }

    /// Missing evidence that no request of ours explains: an error, until the fence times out.
    fn no_evidence(&mut self, step: &StepRecord, message: String) -> Action {
        if self.elapsed(step) > self.spec.timeouts.fence.get() {
            return self.fail(format!(
                "fencing not confirmed within {}: {message}; no workload was released",
                self.spec.timeouts.fence
            ));
        }
        if self.status.last_error.as_deref() != Some(message.as_str()) {
            self.note(true, "FenceNotProven", message.clone());
        }
        self.status.last_error = Some(message.clone());
        self.set_step_message(message);
        Action::Wait(SLOW_POLL)
    }

    fn release(&mut self, step: &StepRecord) -> Action {
        let Some(w) = self.observed.workloads else {
            return Action::Wait(POLL);
        };
        if w.pods == 0 && w.volume_attachments == 0 {
            self.finish_step("no pod or VolumeAttachment left on the node");
            return Action::Wait(StdDuration::ZERO);
        }
        if self.elapsed(step) > self.spec.timeouts.release_workloads.get() {
            return self.fail(format!(
                "{} pods and {} VolumeAttachments still on the node after {}",
                w.pods, w.volume_attachments, self.spec.timeouts.release_workloads
            ));
        }
        self.set_step_message(format!(
            "waiting for {} pods and {} VolumeAttachments to leave the node",
            w.pods, w.volume_attachments
        ));
        match self.spec.workload_eviction {
            WorkloadEviction::ResourceDeletion => Action::DeleteWorkloads,
            // The out-of-service taint (desired_taints) lets Kubernetes evict the pods (the
            // taint manager, honouring their tolerations) and detach their volumes; the pods
            // it evicted are then deleted as pod GC would, without waiting for its period.
            WorkloadEviction::OutOfServiceTaint if w.evicted_pods > 0 => Action::FinishEvictions,
            WorkloadEviction::OutOfServiceTaint | WorkloadEviction::None => Action::Wait(POLL),
        }
    }

    fn recover(&mut self, step: &StepRecord) -> Action {
        if self.elapsed(step) > self.spec.timeouts.recover.get() {
            return self.fail(format!(
                "the server did not recover within {}",
                self.spec.timeouts.recover
            ));
        }
        match self.spec.action {
            RemediationAction::Replace => self.recover_replace(step),
            RemediationAction::PowerCycle => self.power_on(step),
            RemediationAction::Rebuild => self.rebuild(step),
            RemediationAction::Reboot => self.fail("a reboot has no recover step".into()),
        }
    }

    fn rebuild(&mut self, step: &StepRecord) -> Action {
        let ServerObservation::Present(server) = self.observed.server.clone() else {
            return self.fail("the server disappeared before it could be rebuilt".into());
        };
        let Some(rebuild) = last_request(step, RequestKind::Rebuild).cloned() else {
            let shelved =
                server.is_shelved() || last_request(step, RequestKind::Unshelve).is_some();
            if shelved && let Some(action) = self.unshelve(step, &server) {
                return action;
            }
            if server.task_state.is_some() {
                return Action::Wait(POLL);
            }
            return self.send(CloudRequest::Rebuild {
                image_id: server.image_id.clone(),
            });
        };
        let rebuilding = |s: &ServerState| {
            s.status == "REBUILD"
                || s.task_state
                    .as_deref()
                    .is_some_and(|t| t.starts_with("rebuild"))
        };
        if let Some(action) = self.follow_up(RequestKind::Rebuild, &server, rebuilding) {
            return action;
        }
        // A rebuild of a running server ends ACTIVE with no task. Nova keeps a stopped server
        // stopped (nova/compute/manager.py, `_do_rebuild_instance`: it saves the rebuilt server
        // ACTIVE with no task, then "bringing vm to original state" powers it off): that one
        // ends at SHUTOFF with no task, and `os-start` follows (power_on). Its moment of ACTIVE
        // is no end, not even with a node that reports Ready in it. Records of earlier releases
        // do not say: taken as stopped, the fence having stopped it.
        let stopped_before = rebuild.server_stopped != Some(false);
        if !stopped_before || last_request(step, RequestKind::Start).is_some() {
            return self.power_on(step);
        }
        if !server.is_active() {
            self.set_active_seen(None);
            return self.power_on(step);
        }
        // A Nova that does not stop it again: ACTIVE, and still ACTIVE a settle later. Timed
        // between two of our own looks on our own clock, never our clock against Nova's
        // `updated`: a Nova clock behind ours made a fresh moment of ACTIVE look settled.
        match rebuild.active_seen_at {
            Some(seen) if self.since(seen.0) >= REBUILT_ACTIVE_SETTLE => self.power_on(step),
            Some(_) => Action::Wait(POLL),
            None => {
                self.set_active_seen(Some(Time(self.now)));
                self.set_step_message(
                    "rebuilt: Nova shows the server ACTIVE; it was stopped before, so Nova \
                     should stop it again (then it is started): waiting to see which"
                        .into(),
                );
                Action::Wait(POLL)
            }
        }
    }

    /// Records (or clears) when a rebuilt, formerly stopped server was first seen ACTIVE.
    fn set_active_seen(&mut self, at: Option<Time>) {
        if let Some(step) = self.status.steps.last_mut()
            && let Some(r) = step
                .requests
                .iter_mut()
                .rev()
                .find(|r| r.action == RequestKind::Rebuild)
        {
            r.active_seen_at = at;
        }
    }

    /// `os-start` until Nova reports the server ACTIVE.
    fn power_on(&mut self, step: &StepRecord) -> Action {
        let ServerObservation::Present(server) = self.observed.server.clone() else {
            return self.fail("the server disappeared before it could be powered on".into());
        };
        if server.is_active() {
            self.finish_step("Nova reports the server ACTIVE");
            return Action::Wait(StdDuration::ZERO);
        }
        // A Rebuild that unshelved first has rebuilt the server since: that is followed above.
        let unshelving = last_request(step, RequestKind::Unshelve).is_some()
            && last_request(step, RequestKind::Rebuild).is_none();
        if server.is_shelved() || unshelving {
            return self.unshelve(step, &server).unwrap_or(Action::Wait(POLL));
        }
        if last_request(step, RequestKind::Start).is_none() {
            if !server.is_off() {
                return Action::Wait(POLL);
            }
            return self.send(CloudRequest::Start);
        }
        self.follow_up(RequestKind::Start, &server, |s| {
            s.task_state.as_deref() == Some("powering-on") || s.status == "ACTIVE"
        })
        .unwrap_or(Action::Wait(POLL))
    }

    /// `unshelve` until Nova reports the server ACTIVE; None once it is.
    fn unshelve(&mut self, step: &StepRecord, server: &ServerState) -> Option<Action> {
        if server.is_active() {
            return None;
        }
        if last_request(step, RequestKind::Unshelve).is_none() {
            return Some(self.send(CloudRequest::Unshelve));
        }
        let unshelving = |s: &ServerState| {
            matches!(s.task_state.as_deref(), Some("unshelving" | "spawning"))
                || s.status == "ACTIVE"
        };
        Some(
            self.follow_up(RequestKind::Unshelve, server, unshelving)
                .unwrap_or(Action::Wait(POLL)),
        )
    }

    /// The removal, then the Node object, then Magnum's replacement.
    fn recover_replace(&mut self, step: &StepRecord) -> Action {
        let removal = self.removal();
        if let ServerObservation::Present(server) = self.observed.server.clone() {
            if last_request(step, removal).is_none() {
                return self.send(CloudRequest::of_kind(removal, &server));
            }
            if let Some(action) = self.resize_failed(step) {
                return action;
            }
            return self
                .follow_up(removal, &server, |s| {
                    s.task_state.as_deref() == Some("deleting") || s.status == "DELETED"
                })
                .unwrap_or(Action::Wait(POLL));
        }
        if self.observed.node.is_some() {
            return Action::DeleteNode;
        }
        let removed_by_us = last_request(step, removal)
            .is_some_and(|r| r.outcome.as_ref().is_none_or(RequestOutcome::is_accepted));
        if !self.magnum() {
            self.finish_step("the server is deleted; whatever manages the pool re-creates it");
            let how = if removed_by_us {
                "the server and its Node are deleted"
            } else {
                "the server was removed by someone else after the fence; its Node is deleted"
            };
            return self.succeed("Replaced", how.into());
        }
        if !removed_by_us {
            return self.fail(
                "the server was removed by someone else before this remediation asked Magnum to \
                 replace it: its Node is deleted, but no replacement was requested"
                    .into(),
            );
        }
        match self.observed.cluster_status.as_deref() {
            Some(s) if s.ends_with("_COMPLETE") => {
                self.finish_step("Magnum finished the resize");
                self.succeed(
                    "Replaced",
                    "Magnum replaced the server; its new node joins the pool".into(),
                )
            }
            Some(s) if s.ends_with("_FAILED") => {
                let why = self.magnum_reason();
                self.fail(format!(
                    "the server is removed, but Magnum's update of the cluster failed: the cluster \
                     is {s}{why}; the replacement may be missing"
                ))
            }
            _ => Action::Wait(StdDuration::from_secs(2)),
        }
    }

    /// `: <Magnum's status_reason>`, when it gave one.
    fn magnum_reason(&self) -> String {
        self.observed
            .cluster_status_reason
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    }

    /// Magnum accepted the resize (202) and then failed it: the cluster is `*_FAILED` while the
    /// server is still there, so the server will not be removed and waiting for it would only
    /// run out the recover timeout. A cluster that had failed already when the resize was sent
    /// (Magnum resizes an `UPDATE_FAILED` cluster) is given [`LOST_REQUEST_GRACE`] to take the
    /// resize on (`UPDATE_IN_PROGRESS`) before its failure is taken as this one's.
    fn resize_failed(&mut self, step: &StepRecord) -> Option<Action> {
        let request = last_request(step, RequestKind::MagnumResize)?.clone();
        if request.outcome != Some(RequestOutcome::Accepted) {
            return None;
        }
        let status = self
            .observed
            .cluster_status
            .clone()
            .filter(|s| s.ends_with("_FAILED"))?;
        let failed_before = request
            .cluster_status
            .as_deref()
            .is_some_and(|s| s.ends_with("_FAILED"));
        if failed_before && self.since(request.sent_at.0) <= LOST_REQUEST_GRACE {
            self.set_step_message(format!(
                "waiting for Magnum to take the resize on (the cluster is still {status})"
            ));
            return Some(Action::Wait(POLL));
        }
        let why = self.magnum_reason();
        Some(self.fail(format!(
            "Magnum accepted the resize but failed it: the cluster is {status}{why}; the server \
             was not removed (it stays off, its workloads were released)"
        )))
    }

    fn wait_for_node(&mut self, step: &StepRecord) -> Action {
        if self.observed.node.as_ref().is_some_and(|n| n.ready) {
            self.finish_step("the node is Ready");
            return self.succeed("NodeReady", "the node is Ready again".into());
        }
        if self.elapsed(step) > self.spec.timeouts.node_ready.get() {
            return self.fail(format!(
                "the node was not Ready within {} of its server coming back",
                self.spec.timeouts.node_ready
            ));
        }
        Action::Wait(POLL)
    }

    /// Decides what to do about a request already on record in the current step: wait for
    /// its effect, or send it again when it certainly failed or was certainly lost. Returns
    /// None when the request was accepted and there is nothing to do but wait.
    fn follow_up(
        &mut self,
        kind: RequestKind,
        server: &ServerState,
        in_progress: impl Fn(&ServerState) -> bool,
    ) -> Option<Action> {
        let step = self.status.steps.last()?;
        let request = last_request(step, kind)?.clone();
        let sent_at = request.sent_at.0;
        match &request.outcome {
            Some(RequestOutcome::Accepted) => None,
            Some(RequestOutcome::Failed(_)) => {
                if self.since(sent_at) < FAILED_REQUEST_BACKOFF {
                    Some(Action::Wait(FAILED_REQUEST_BACKOFF - self.since(sent_at)))
                } else {
                    Some(self.send(CloudRequest::of_kind(kind, server)))
                }
            }
            None => {
                // The answer never arrived. Only the server can say whether it got there: a
                // later `updated` than Nova showed when the request was decided (Nova's clock
                // against itself; records of earlier releases compare with `sentAt`). Both have
                // whole seconds only, so a change in the same second is no proof.
                let before = request.server_updated.as_ref().map_or(sent_at, |t| t.0);
                let touched = server.updated.is_some_and(|u| u > before);
                if in_progress(server) || touched {
                    self.set_outcome(kind, RequestOutcome::Accepted);
                    None
                } else if self.since(sent_at) > LOST_REQUEST_GRACE
                    && self.observed.leading_for > LOST_REQUEST_GRACE
                {
                    Some(self.send(CloudRequest::of_kind(kind, server)))
                } else {
                    Some(Action::Wait(POLL))
                }
            }
        }
    }

    /// Records the request in the current step (outcome unknown) and asks for it to be sent:
    /// the one place a request leaves the machine, and it leaves only if the action's plan
    /// allows it in this step. Nothing is sent to a Magnum cluster's servers while Magnum
    /// updates the cluster (as magnum-auto-healer does): Heat could undo or fight the action.
    fn send(&mut self, request: CloudRequest) -> Action {
        let kind = request.kind();
        let Some(step) = self.status.steps.last().map(|s| s.name) else {
            return self.fail(format!("{kind} asked for before any step began"));
        };
        if !allowed_requests(self.spec.action, self.magnum(), step).contains(&kind) {
            return self.fail(format!(
                "{kind} is not part of a {:?} in step {step}: nothing was sent",
                self.spec.action
            ));
        }
        if self.magnum()
            && let Some(status) = self.observed.cluster_status.clone()
            && status.ends_with("_IN_PROGRESS")
        {
            self.set_step_message(format!(
                "waiting: the Magnum cluster is {status}; nothing is sent to it while it is busy"
            ));
            return Action::Wait(SLOW_POLL);
        }
        // magnum-auto-healer's switch: with healing off, nothing is started. A remediation
        // already under way finishes (a half-done one would leave the server off).
        let nothing_sent = self.status.steps.iter().all(|s| s.requests.is_empty());
        if self.magnum() && self.observed.cluster_auto_healing == Some(false) && nothing_sent {
            self.set_step_message(
                "waiting: the Magnum cluster does not have the label auto_healing_enabled=true; nothing is started while healing is off".into(),
            );
            return Action::Wait(SLOW_POLL);
        }
        // Never run a guest while Kubernetes releases its workloads (another remediation of
        // the node, or another remediator, holds the out-of-service taint): its volumes may be
        // attached elsewhere by now.
        if kind.runs_the_guest() && self.observed.node_out_of_service {
            self.set_step_message(format!(
                "waiting: the node carries the out-of-service taint, so {kind} is not sent until \
                 it is gone (another remediation of this node is releasing its workloads)"
            ));
            return Action::Wait(POLL);
        }
        let now = self.now;
        let target = self.status.server_id.clone();
        let server_updated = match &self.observed.server {
            ServerObservation::Present(s) => s.updated.map(Time),
            ServerObservation::Gone => None,
        };
        // What a rebuild ends in depends on it (see `rebuild`).
        let server_stopped = match (&self.observed.server, kind) {
            (ServerObservation::Present(s), RequestKind::Rebuild) => Some(s.status == "SHUTOFF"),
            _ => None,
        };
        if let Some(step) = self.status.steps.last_mut() {
            let cluster_status = (kind == RequestKind::MagnumResize)
                .then(|| self.observed.cluster_status.clone())
                .flatten();
            step.requests.push(OpenStackRequest {
                action: kind,
                sent_at: Time(now),
                target,
                server_updated,
                cluster_status,
                server_stopped,
                active_seen_at: None,
                outcome: None,
            });
        }
        Action::Cloud(request)
    }

    fn set_outcome(&mut self, kind: RequestKind, outcome: RequestOutcome) {
        if let Some(step) = self.status.steps.last_mut()
            && let Some(r) = step.requests.iter_mut().rev().find(|r| r.action == kind)
        {
            r.outcome = Some(outcome);
        }
    }

    fn begin(&mut self, name: StepName, phase: RemediationPhase) {
        self.status.steps.push(StepRecord {
            name,
            started: Time(self.now),
            finished: None,
            requests: Vec::new(),
            message: None,
        });
        self.status.phase = Some(phase);
    }

    fn finish_step(&mut self, message: &str) {
        let now = self.now;
        if let Some(step) = self.status.steps.last_mut()
            && step.finished.is_none()
        {
            step.finished = Some(Time(now));
            step.message = Some(message.to_string());
        }
    }

    fn set_step_message(&mut self, message: String) {
        if let Some(step) = self.status.steps.last_mut() {
            step.message = Some(message);
        }
    }

    fn succeed(&mut self, reason: &'static str, message: String) -> Action {
        self.status.phase = Some(RemediationPhase::Succeeded);
        self.status.last_error = None;
        self.note(false, reason, message);
        Action::Done
    }

    fn fail(&mut self, message: String) -> Action {
        self.status.phase = Some(RemediationPhase::Failed);
        self.status.last_error = Some(message.clone());
        if let Some(step) = self.status.steps.last_mut()
            && step.finished.is_none()
        {
            step.finished = Some(Time(self.now));
            step.message = Some(message.clone());
        }
        self.note(true, "RemediationFailed", message);
        Action::Done
    }

    fn note(&mut self, warning: bool, reason: &'static str, message: String) {
        self.notice = Some(Notice {
            warning,
            reason,
            message,
        });
    }

    fn elapsed(&self, step: &StepRecord) -> StdDuration {
        self.since(step.started.0)
    }

    fn since(&self, at: Timestamp) -> StdDuration {
        let d = self.now.duration_since(at);
        StdDuration::try_from(d).unwrap_or(StdDuration::ZERO)
    }
    /// Conditions as the medik8s contract reads them.
    fn sync_conditions(&mut self) {
        let phase = self.status.phase.unwrap_or(RemediationPhase::Pending);
        let (now, generation) = (self.now, self.generation);
        let phase_name = format!("{phase:?}");
        let message = self
            .status
            .last_error
            .clone()
            .or_else(|| self.status.steps.last().and_then(|s| s.message.clone()))
            .unwrap_or_else(|| phase_name.clone());
        let conditions = &mut self.status.conditions;
        set_condition(
            conditions,
            PROCESSING_CONDITION,
            !phase.is_final(),
            &phase_name,
            &message,
            generation,
            now,
        );
        match phase {
            RemediationPhase::Succeeded => {
                set_condition(
                    conditions,
                    SUCCEEDED_CONDITION,
                    true,
                    "RemediationSucceeded",
                    &message,
                    generation,
                    now,
                );
            }
            RemediationPhase::Failed => {
                set_condition(
                    conditions,
                    SUCCEEDED_CONDITION,
                    false,
                    "RemediationFailed",
                    &message,
                    generation,
                    now,
                );
            }
            _ => {
                conditions.retain(|c| c.type_ != SUCCEEDED_CONDITION);
            }
        }
        if self.spec.action == RemediationAction::Replace && !self.status.steps.is_empty() {
            set_condition(
                conditions,
                PERMANENT_NODE_DELETION_EXPECTED_CONDITION,
                true,
                "Replace",
                "the node's server is replaced; its Node object is deleted",
                generation,
                now,
            );
        }
        self.status.observed_generation = generation;
    }
}

/// The last request of that kind in the step.
fn last_request(step: &StepRecord, kind: RequestKind) -> Option<&OpenStackRequest> {
    step.requests.iter().rev().find(|r| r.action == kind)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
