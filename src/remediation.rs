//! The Remediation step machine: a pure function from (spec, status, what was observed, now) to
//! the next status and the one action to take. The controller persists the status *before* it
//! acts, so every OpenStack request is on record before it leaves; after a crash or a leader
//! change the new controller reads the record and checks the server instead of sending again.
//!
//! Steps, by action:
//!
//! | action | steps |
//! |---|---|
//! | `Reboot` | Reboot (soft, then hard if the node is not back in half the recover timeout) → node Ready |
//! | `PowerCycle` | Fence (`os-stop`, confirmed `SHUTOFF`) → ReleaseWorkloads → Recover (`os-start`) → WaitForNode |
//! | `Rebuild` | Fence → ReleaseWorkloads → Recover (`rebuild` with the server's image, then `os-start` if Nova left it off) → WaitForNode |
//! | `Replace` | Fence by removal (Magnum resize with `nodes_to_remove`, or Nova delete; confirmed when the server is gone) → ReleaseWorkloads → Recover (the Node object is deleted; Magnum's update completes) |
//!
//! A server someone shelved (`SHELVED` or `SHELVED_OFFLOADED`, no task) is already off: the
//! Fence step confirms it without a request, and Recover sends `unshelve` where it would send
//! `os-start` (a Rebuild unshelves first: Nova rebuilds only an active or stopped server).
//!
//! ReleaseWorkloads with `OutOfServiceTaint` puts the taint on and lets Kubernetes evict the
//! pods (honouring their tolerations) and detach their volumes; the pods it evicted are then
//! force-deleted at once, as kube-controller-manager's pod GC would on its next 20 s pass.
//!
//! Safety: ReleaseWorkloads — the only step that puts the out-of-service taint on a node or
//! deletes its pods — starts only after the Fence step saw the server `SHUTOFF` or shelved
//! (with no task running) or gone. A node that is Ready when the remediation starts is never fenced.

use std::time::Duration as StdDuration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::conditions::set_condition;
use crate::api::contract::{
    PERMANENT_NODE_DELETION_EXPECTED_CONDITION, PROCESSING_CONDITION, SUCCEEDED_CONDITION,
};
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

/// Step names as they appear in `status.steps[].name`.
pub const STEP_REBOOT: &str = "Reboot";
pub const STEP_FENCE: &str = "Fence";
pub const STEP_RELEASE: &str = "ReleaseWorkloads";
pub const STEP_RECOVER: &str = "Recover";
pub const STEP_WAIT_FOR_NODE: &str = "WaitForNode";

/// Request names as they appear in `status.steps[].requests[].action`.
pub const REQ_STOP: &str = "os-stop";
pub const REQ_START: &str = "os-start";
pub const REQ_UNSHELVE: &str = "unshelve";
pub const REQ_REBOOT_SOFT: &str = "reboot-soft";
pub const REQ_REBOOT_HARD: &str = "reboot-hard";
pub const REQ_REBUILD: &str = "rebuild";
pub const REQ_DELETE: &str = "delete";
pub const REQ_RESIZE: &str = "magnum-resize";

/// Outcome recorded for a request OpenStack accepted.
pub const OUTCOME_ACCEPTED: &str = "Accepted";

/// A request whose answer never arrived (the controller died in between) is taken as lost only
/// when the server shows no sign of it for this long; then it may be sent again.
pub const LOST_REQUEST_GRACE: StdDuration = StdDuration::from_secs(30);
/// After OpenStack refused or failed a request, wait this long before sending it again.
pub const FAILED_REQUEST_BACKOFF: StdDuration = StdDuration::from_secs(5);
/// How often to look again while waiting for something outside our control.
pub const POLL: StdDuration = StdDuration::from_secs(1);

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
}

/// What the controller learned from Nova this time.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerObservation {
    /// Nova says the server does not exist (404).
    Gone,
    Present(ServerState),
}

/// Pods and VolumeAttachments still bound to the node.
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
    /// Filled in during ReleaseWorkloads.
    pub workloads: Option<Workloads>,
    /// The Magnum cluster's status, when the spec names a cluster.
    pub cluster_status: Option<String>,
    /// Whether the Magnum cluster has healing on (its `auto_healing_enabled` label), when the
    /// spec names a cluster.
    pub cluster_auto_healing: Option<bool>,
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
    /// The name recorded in the status.
    pub fn record_name(&self) -> &'static str {
        match self {
            CloudRequest::Stop => REQ_STOP,
            CloudRequest::Start => REQ_START,
            CloudRequest::Unshelve => REQ_UNSHELVE,
            CloudRequest::Reboot { hard: false } => REQ_REBOOT_SOFT,
            CloudRequest::Reboot { hard: true } => REQ_REBOOT_HARD,
            CloudRequest::Rebuild { .. } => REQ_REBUILD,
            CloudRequest::Delete => REQ_DELETE,
            CloudRequest::MagnumResize => REQ_RESIZE,
        }
    }
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

/// Our taints the node should carry now, given the (new) status: `(key, value, effect)`.
pub fn desired_taints(
    spec: &RemediationSpec,
    status: &RemediationStatus,
) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut taints = Vec::new();
    let phase = status.phase.unwrap_or(RemediationPhase::Pending);
    if phase.is_final() || !spec.action.fences() {
        return taints;
    }
    if status.steps.is_empty() {
        return taints;
    }
    taints.push((REMEDIATING_TAINT_KEY, "", "NoSchedule"));
    let releasing = status
        .steps
        .last()
        .is_some_and(|s| s.name == STEP_RELEASE && s.finished.is_none());
    if releasing && spec.workload_eviction == WorkloadEviction::OutOfServiceTaint {
        taints.push((
            OUT_OF_SERVICE_TAINT_KEY,
            OUT_OF_SERVICE_TAINT_VALUE,
            "NoExecute",
        ));
    }
    taints
}

/// Advances the machine by one step.
pub fn next(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    observed: &Observed,
    now: Timestamp,
    generation: Option<i64>,
) -> Plan {
    let mut m = Machine {
        spec,
        status: status.clone(),
        observed,
        now,
        generation,
        notice: None,
    };
    let action = m.advance();
    m.sync_conditions();
    Plan {
        status: m.status,
        action,
        notice: m.notice,
    }
}

/// Whether a Remediation that is being deleted must power its server back on: we powered it
/// off (an `os-stop` that was or may have been accepted), nothing has started it again, and it
/// is off now. A remediation stopped half-way (its node came back, or a person deleted it)
/// never leaves behind a server that we turned off. `Replace` removed the server on purpose,
/// and `Rebuild` after its rebuild has been sent is left to Nova.
pub fn restore_power_on_delete(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    server: &ServerObservation,
) -> bool {
    if !matches!(
        spec.action,
        RemediationAction::PowerCycle | RemediationAction::Rebuild
    ) {
        return false;
    }
    let sent = |name: &str| {
        status.steps.iter().any(|s| {
            s.requests.iter().any(|r| {
                r.action == name && r.outcome.as_deref().is_none_or(|o| o == OUTCOME_ACCEPTED)
            })
        })
    };
    let off = matches!(server, ServerObservation::Present(s) if s.is_off());
    off && sent(REQ_STOP) && !sent(REQ_START) && !sent(REQ_REBUILD)
}

/// The controller could not observe or reach what the next step needs (the cloud is
/// unreachable, the Secret is missing, the node cannot be mapped): nothing is sent and nothing
/// is released. The reason goes into `lastError` and the `Processing` condition; once the
/// current step (or, before the first step, the remediation since `created`) has run longer
/// than its timeout, the remediation fails so that the NodeHealthCheck escalates.
pub fn blocked(
    spec: &RemediationSpec,
    status: &RemediationStatus,
    created: Option<Timestamp>,
    reason: &str,
    message: &str,
    now: Timestamp,
    generation: Option<i64>,
) -> Plan {
    let observed = Observed {
        node: None,
        server: ServerObservation::Gone,
        workloads: None,
        cluster_status: None,
        cluster_auto_healing: None,
    };
    let mut m = Machine {
        spec,
        status: status.clone(),
        observed: &observed,
        now,
        generation,
        notice: None,
    };
    if m.status.phase.is_some_and(|p| p.is_final()) {
        return Plan {
            status: m.status,
            action: Action::Done,
            notice: None,
        };
    }
    let current = m.status.steps.last().filter(|s| s.finished.is_none());
    let (since, timeout) = match current {
        Some(step) => (Some(step.started.0), step_timeout(spec, &step.name)),
        None if spec.action.fences() => (created, spec.timeouts.fence.get()),
        None => (created, spec.timeouts.recover.get()),
    };
    let overdue = since.is_some_and(|at| m.since(at) > timeout);
    let action = if overdue {
        m.fail(format!(
            "{message}; gave up after {}s{}",
            timeout.as_secs(),
            if m.status.steps.iter().any(|s| s.name == STEP_RELEASE) {
                ""
            } else {
                "; no workload was released"
            }
        ))
    } else {
        m.status.last_error = Some(message.to_string());
        Action::Wait(FAILED_REQUEST_BACKOFF)
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

/// The timeout of a step, by name.
fn step_timeout(spec: &RemediationSpec, step: &str) -> StdDuration {
    match step {
        STEP_FENCE => spec.timeouts.fence.get(),
        STEP_RELEASE => spec.timeouts.release_workloads.get(),
        STEP_WAIT_FOR_NODE => spec.timeouts.node_ready.get(),
        _ => spec.timeouts.recover.get(),
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

impl Machine<'_> {
    fn advance(&mut self) -> Action {
        if self.status.phase.is_some_and(|p| p.is_final()) {
            return Action::Done;
        }
        let Some(step) = self.status.steps.last().cloned() else {
            return self.start();
        };
        if step.finished.is_some() {
            return self.after(&step.name);
        }
        match step.name.as_str() {
            STEP_REBOOT => self.reboot(&step),
            STEP_FENCE => self.fence(&step),
            STEP_RELEASE => self.release(&step),
            STEP_RECOVER => self.recover(&step),
            STEP_WAIT_FOR_NODE => self.wait_for_node(&step),
            other => self.fail(format!("unknown step {other:?} in status")),
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
            self.begin(STEP_FENCE, RemediationPhase::Fencing);
            self.note(
                false,
                "Fencing",
                "fencing the node's server through OpenStack".into(),
            );
        } else {
            self.begin(STEP_REBOOT, RemediationPhase::Recovering);
            self.note(false, "Rebooting", "rebooting the node's server".into());
        }
        Action::Wait(StdDuration::ZERO)
    }

    /// What follows a finished step.
    fn after(&mut self, finished: &str) -> Action {
        match finished {
            STEP_FENCE => {
                if self.spec.workload_eviction == WorkloadEviction::None {
                    self.begin(STEP_RECOVER, RemediationPhase::Recovering);
                } else {
                    self.begin(STEP_RELEASE, RemediationPhase::ReleasingWorkloads);
                    self.note(
                        false,
                        "ReleasingWorkloads",
                        "the server is confirmed off: releasing the node's pods and volumes".into(),
                    );
                }
            }
            STEP_RELEASE => {
                self.begin(STEP_RECOVER, RemediationPhase::Recovering);
                self.note(
                    false,
                    "Recovering",
                    "workloads released: bringing the capacity back".into(),
                );
            }
            STEP_RECOVER => self.begin(STEP_WAIT_FOR_NODE, RemediationPhase::WaitingForNode),
            _ => return self.fail(format!("nothing follows step {finished:?}")),
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
        let ServerObservation::Present(server) = &self.observed.server else {
            return self.fail("the server is gone: a reboot cannot help".into());
        };
        let server = server.clone();
        if server.is_shelved() {
            return self.fail(format!(
                "the server is {}: Nova cannot reboot a shelved server (a PowerCycle unshelves it)",
                server.status
            ));
        }
        let soft_sent = last_request(step, REQ_REBOOT_SOFT).is_some();
        let hard_sent = last_request(step, REQ_REBOOT_HARD).is_some();
        let hard_now = match self.spec.openstack.reboot_type {
            RebootType::Hard => true,
            RebootType::Soft => false,
            // A soft reboot gets half the time; a hung guest ignores it, so go hard.
            RebootType::SoftThenHard => soft_sent && self.elapsed(step) > timeout / 2,
        };
        let name = if hard_now {
            REQ_REBOOT_HARD
        } else {
            REQ_REBOOT_SOFT
        };
        let sent = if hard_now { hard_sent } else { soft_sent };
        if !sent {
            // Nova refuses a soft reboot unless the server is ACTIVE with no task.
            if !hard_now && !server.is_active() {
                return Action::Wait(POLL);
            }
            return self.send(CloudRequest::Reboot { hard: hard_now });
        }
        self.follow_up(name, &server, |s| {
            matches!(s.status.as_str(), "REBOOT" | "HARD_REBOOT")
                || s.task_state
                    .as_deref()
                    .is_some_and(|t| t.starts_with("reboot"))
        })
        .unwrap_or(Action::Wait(POLL))
    }

    fn fence(&mut self, step: &StepRecord) -> Action {
        let confirmed = match &self.observed.server {
            ServerObservation::Gone => Some("the server is gone"),
            ServerObservation::Present(s)
                if s.is_off() && self.spec.action != RemediationAction::Replace =>
            {
                Some("Nova reports the server SHUTOFF")
            }
            ServerObservation::Present(s)
                if s.is_shelved() && self.spec.action != RemediationAction::Replace =>
            {
                Some("Nova reports the server shelved (powered off)")
            }
            ServerObservation::Present(_) => None,
        };
        if let Some(how) = confirmed {
            self.finish_step(how);
            self.status.phase = Some(RemediationPhase::Fenced);
            self.note(false, "Fenced", format!("fencing confirmed: {how}"));
            return Action::Wait(StdDuration::ZERO);
        }
        if self.elapsed(step) > self.spec.timeouts.fence.get() {
            let state = match &self.observed.server {
                ServerObservation::Present(s) => format!(
                    "status {}{}",
                    s.status,
                    s.task_state
                        .as_ref()
                        .map(|t| format!(", task {t}"))
                        .unwrap_or_default()
                ),
                ServerObservation::Gone => "gone".into(),
            };
            return self.fail(format!(
                "fencing not confirmed within {} (server {state}); no workload was released",
                self.spec.timeouts.fence
            ));
        }
        let ServerObservation::Present(server) = self.observed.server.clone() else {
            unreachable!("a gone server is confirmed above")
        };
        if self.spec.action == RemediationAction::Replace {
            let request = if self.spec.openstack.magnum.is_some() {
                CloudRequest::MagnumResize
            } else {
                CloudRequest::Delete
            };
            let name = request.record_name();
            if last_request(step, name).is_none() {
                return self.send(request);
            }
            return self
                .follow_up(name, &server, |s| {
                    s.task_state.as_deref() == Some("deleting") || s.status == "DELETED"
                })
                .unwrap_or(Action::Wait(POLL));
        }
        if last_request(step, REQ_STOP).is_none() {
            return self.send(CloudRequest::Stop);
        }
        self.follow_up(REQ_STOP, &server, |s| {
            s.task_state.as_deref() == Some("powering-off") || s.status == "SHUTOFF"
        })
        .unwrap_or(Action::Wait(POLL))
    }

    fn release(&mut self, step: &StepRecord) -> Action {
        let Some(w) = self.observed.workloads else {
            return Action::Wait(POLL);
        };
        if w.pods == 0 && w.volume_attachments == 0 {
            self.finish_step("no pod or VolumeAttachment left on the node");
            if self.spec.action == RemediationAction::Replace {
                // Its server is gone for good: the Node object goes too, once it holds nothing.
                self.begin(STEP_RECOVER, RemediationPhase::Recovering);
                return Action::DeleteNode;
            }
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
            _ => Action::Wait(POLL),
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
            RemediationAction::Replace => self.recover_replace(),
            RemediationAction::PowerCycle => self.power_on(step),
            RemediationAction::Rebuild => {
                let ServerObservation::Present(server) = self.observed.server.clone() else {
                    return self.fail("the server disappeared before it could be rebuilt".into());
                };
                if last_request(step, REQ_REBUILD).is_none() {
                    let shelved = server.is_shelved() || last_request(step, REQ_UNSHELVE).is_some();
                    if shelved && let Some(action) = self.unshelve(step, &server) {
                        return action;
                    }
                    if server.task_state.is_some() {
                        return Action::Wait(POLL);
                    }
                    return self.send(CloudRequest::Rebuild {
                        image_id: server.image_id.clone(),
                    });
                }
                let rebuilding = |s: &ServerState| {
                    s.status == "REBUILD"
                        || s.task_state
                            .as_deref()
                            .is_some_and(|t| t.starts_with("rebuild"))
                };
                if let Some(action) = self.follow_up(REQ_REBUILD, &server, rebuilding) {
                    return action;
                }
                // Nova leaves a server that was off when rebuilt off again.
                self.power_on(step)
            }
            RemediationAction::Reboot => self.fail("a reboot has no recover step".into()),
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
        let unshelving =
            last_request(step, REQ_UNSHELVE).is_some() && last_request(step, REQ_REBUILD).is_none();
        if server.is_shelved() || unshelving {
            return self.unshelve(step, &server).unwrap_or(Action::Wait(POLL));
        }
        if last_request(step, REQ_START).is_none() {
            if !server.is_off() {
                return Action::Wait(POLL);
            }
            return self.send(CloudRequest::Start);
        }
        self.follow_up(REQ_START, &server, |s| {
            s.task_state.as_deref() == Some("powering-on") || s.status == "ACTIVE"
        })
        .unwrap_or(Action::Wait(POLL))
    }

    /// `unshelve` until Nova reports the server ACTIVE; None once it is.
    fn unshelve(&mut self, step: &StepRecord, server: &ServerState) -> Option<Action> {
        if server.is_active() {
            return None;
        }
        if last_request(step, REQ_UNSHELVE).is_none() {
            return Some(self.send(CloudRequest::Unshelve));
        }
        let unshelving = |s: &ServerState| {
            matches!(s.task_state.as_deref(), Some("unshelving" | "spawning"))
                || s.status == "ACTIVE"
        };
        Some(
            self.follow_up(REQ_UNSHELVE, server, unshelving)
                .unwrap_or(Action::Wait(POLL)),
        )
    }

    fn recover_replace(&mut self) -> Action {
        if self.observed.node.is_some() {
            return Action::DeleteNode;
        }
        if self.spec.openstack.magnum.is_none() {
            self.finish_step("the server is deleted; whatever manages the pool re-creates it");
            return self.succeed("Replaced", "the server and its Node are deleted".into());
        }
        match self.observed.cluster_status.as_deref() {
            Some(s) if s.ends_with("_COMPLETE") => {
                self.finish_step("Magnum finished the resize");
                self.succeed(
                    "Replaced",
                    "Magnum replaced the server; its new node joins the pool".into(),
                )
            }
            Some(s) if s.ends_with("_FAILED") => self.fail(format!("the Magnum cluster is {s}")),
            _ => Action::Wait(StdDuration::from_secs(2)),
        }
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
        name: &str,
        server: &ServerState,
        in_progress: impl Fn(&ServerState) -> bool,
    ) -> Option<Action> {
        let step = self.status.steps.last()?;
        let request = last_request(step, name)?.clone();
        let sent_at = request.sent_at.0;
        match request.outcome.as_deref() {
            Some(OUTCOME_ACCEPTED) => None,
            Some(_failed) => {
                if self.since(sent_at) < FAILED_REQUEST_BACKOFF {
                    Some(Action::Wait(FAILED_REQUEST_BACKOFF - self.since(sent_at)))
                } else {
                    Some(self.send(request_of(name, server)))
                }
            }
            None => {
                // The answer never arrived. Only the server can say whether it got there.
                // Both times have whole seconds only (Nova's `updated`, and `sentAt` once
                // stored): a change in the same second as the record may well have come
                // before the request, so only a later second proves the server was touched.
                let touched = server.updated.is_some_and(|u| u > sent_at);
                if in_progress(server) || touched {
                    self.set_outcome(name, OUTCOME_ACCEPTED);
                    None
                } else if self.since(sent_at) > LOST_REQUEST_GRACE {
                    Some(self.send(request_of(name, server)))
                } else {
                    Some(Action::Wait(POLL))
                }
            }
        }
    }

    /// Records the request in the current step (outcome unknown) and asks for it to be sent.
    /// Nothing is sent to a Magnum cluster's servers while Magnum updates the cluster (as
    /// magnum-auto-healer does): Heat could undo or fight the action.
    fn send(&mut self, request: CloudRequest) -> Action {
        if self.spec.openstack.magnum.is_some()
            && let Some(status) = self.observed.cluster_status.clone()
            && status.ends_with("_IN_PROGRESS")
        {
            self.set_step_message(format!(
                "waiting: the Magnum cluster is {status}; nothing is sent to it while it is busy"
            ));
            return Action::Wait(StdDuration::from_secs(5));
        }
        // magnum-auto-healer's switch: with healing off, nothing is started. A remediation
        // already under way finishes (a half-done one would leave the server off).
        let nothing_sent = self.status.steps.iter().all(|s| s.requests.is_empty());
        if self.spec.openstack.magnum.is_some()
            && self.observed.cluster_auto_healing == Some(false)
            && nothing_sent
        {
            self.set_step_message(
                "waiting: the Magnum cluster does not have the label auto_healing_enabled=true; nothing is started while healing is off".into(),
            );
            return Action::Wait(StdDuration::from_secs(5));
        }
        let now = self.now;
        let target = self.status.server_id.clone();
        if let Some(step) = self.status.steps.last_mut() {
            step.requests.push(OpenStackRequest {
                action: request.record_name().to_string(),
                sent_at: Time(now),
                target,
                outcome: None,
            });
        }
        Action::Cloud(request)
    }

    fn set_outcome(&mut self, name: &str, outcome: &str) {
        if let Some(step) = self.status.steps.last_mut()
            && let Some(r) = step.requests.iter_mut().rev().find(|r| r.action == name)
        {
            r.outcome = Some(outcome.to_string());
        }
    }

    fn begin(&mut self, name: &str, phase: RemediationPhase) {
        self.status.steps.push(StepRecord {
            name: name.to_string(),
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

/// The last request of that name in the step.
fn last_request<'s>(step: &'s StepRecord, name: &str) -> Option<&'s OpenStackRequest> {
    step.requests.iter().rev().find(|r| r.action == name)
}

/// The request to send again for a recorded name.
fn request_of(name: &str, server: &ServerState) -> CloudRequest {
    match name {
        REQ_STOP => CloudRequest::Stop,
        REQ_START => CloudRequest::Start,
        REQ_REBOOT_SOFT => CloudRequest::Reboot { hard: false },
        REQ_REBOOT_HARD => CloudRequest::Reboot { hard: true },
        REQ_REBUILD => CloudRequest::Rebuild {
            image_id: server.image_id.clone(),
        },
        REQ_DELETE => CloudRequest::Delete,
        _ => CloudRequest::MagnumResize,
    }
}

#[cfg(test)]
mod tests;
