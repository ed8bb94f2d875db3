//! Property tests of the step machine: random interleavings of what Nova, Magnum, Kubernetes and
//! people do (lost answers, refusals, 404s, task states, someone else powering the server on,
//! local deletes, a busy cluster), with the safety invariants checked after every step:
//!
//! - nothing is released (out-of-service taint, pod or VolumeAttachment deletion, Node
//!   deletion) unless the Fence step saw evidence that the guest stopped;
//! - no request leaves that the action's plan does not list for the step it is in;
//! - no request is sent again while an earlier one of the same kind may still be in flight
//!   (accepted, or unanswered within the lost-request grace with no sign on the server);
//! - a remediation that ended sends nothing more, and a node Ready at the start is never fenced.

use proptest::prelude::*;

use super::*;
use crate::api::{CloudSecretRef, Duration, MagnumSpec, OpenStackSpec, StepTimeouts};

/// What Nova shows on one look.
#[derive(Clone, Debug)]
enum Nova {
    Present {
        status: &'static str,
        task: Option<&'static str>,
        /// The server changed since the last request (Nova's `updated` is later).
        touched: bool,
        image: bool,
    },
    Gone(Option<DeletionEvidence>),
}

/// One turn of the world: what the controller observes, how a request it sends fares, and how
/// much time passes before the next turn.
#[derive(Clone, Debug)]
struct Turn {
    nova: Nova,
    node: Option<bool>,
    workloads: (usize, usize, usize),
    cluster: Option<&'static str>,
    confirmed_by_person: bool,
    answer: Answer,
    advance_secs: i64,
    /// Another replica takes over before this turn: it has led for no time at all.
    leader_change: bool,
    /// Someone (another remediation of the node, another remediator) holds the out-of-service
    /// taint on the node.
    node_out_of_service: bool,
    /// Filled in by the driver: how long the current leader has led.
    leading_for: StdDuration,
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Accepted,
    Refused,
    Lost,
}

fn nova() -> impl Strategy<Value = Nova> {
    let present = (
        prop::sample::select(vec![
            "ACTIVE",
            "SHUTOFF",
            "ERROR",
            "REBUILD",
            "REBOOT",
            "HARD_REBOOT",
            "SHELVED",
            "SHELVED_OFFLOADED",
        ]),
        prop::option::of(prop::sample::select(vec![
            "powering-off",
            "powering-on",
            "rebooting",
            "rebuilding",
            "rebuild_spawning",
            "deleting",
            "unshelving",
            "spawning",
        ])),
        any::<bool>(),
        prop::bool::weighted(0.95),
    )
        .prop_map(|(status, task, touched, image)| Nova::Present {
            status,
            task,
            touched,
            image,
        });
    let gone = prop::option::of(prop::sample::select(vec![
        DeletionEvidence::ComputeTerminated,
        DeletionEvidence::Terminating,
        DeletionEvidence::NotByCompute,
        DeletionEvidence::NoDelete,
        DeletionEvidence::UnknownServer,
    ]))
    .prop_map(Nova::Gone);
    prop_oneof![8 => present, 2 => gone]
}

fn turn() -> impl Strategy<Value = Turn> {
    (
        nova(),
        prop::option::weighted(0.9, prop::bool::weighted(0.2)),
        (0usize..3, 0usize..2, 0usize..3),
        prop::option::of(prop::sample::select(vec![
            "UPDATE_IN_PROGRESS",
            "UPDATE_COMPLETE",
            "UPDATE_FAILED",
            "CREATE_COMPLETE",
        ])),
        prop::bool::weighted(0.03),
        prop::sample::select(vec![
            Answer::Accepted,
            Answer::Accepted,
            Answer::Refused,
            Answer::Lost,
        ]),
        prop_oneof![0i64..3, 3i64..40],
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(
                nova,
                node,
                workloads,
                cluster,
                confirmed_by_person,
                answer,
                advance_secs,
                leader_change,
                node_out_of_service,
            )| Turn {
                nova,
                node,
                workloads,
                cluster,
                confirmed_by_person,
                answer,
                advance_secs,
                leader_change,
                node_out_of_service,
                leading_for: StdDuration::MAX,
            },
        )
}

fn spec(action: RemediationAction, eviction: WorkloadEviction, magnum: bool) -> RemediationSpec {
    RemediationSpec {
        action,
        workload_eviction: eviction,
        openstack: OpenStackSpec {
            cloud_secret_ref: CloudSecretRef {
                name: "cloud".into(),
                key: "clouds.yaml".into(),
            },
            cloud: "openstack".into(),
            magnum: magnum.then(|| MagnumSpec {
                cluster: "k8s".into(),
                report_health_status: false,
            }),
            reboot_type: RebootType::SoftThenHard,
        },
        timeouts: StepTimeouts {
            fence: Duration::from_secs(60),
            release_workloads: Duration::from_secs(60),
            recover: Duration::from_secs(120),
            node_ready: Duration::from_secs(60),
        },
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// Whether what was seen is evidence that the guest stopped.
fn is_evidence(turn: &Turn) -> bool {
    turn.confirmed_by_person
        || match &turn.nova {
            Nova::Present { status, task, .. } => {
                task.is_none() && matches!(*status, "SHUTOFF" | "SHELVED" | "SHELVED_OFFLOADED")
            }
            Nova::Gone(deletion) => *deletion == Some(DeletionEvidence::ComputeTerminated),
        }
}

fn observe(turn: &Turn, now: Timestamp, last_sent: Option<Timestamp>) -> Observed {
    let server = match &turn.nova {
        Nova::Present {
            status,
            task,
            touched,
            image,
        } => ServerObservation::Present(ServerState {
            status: status.to_string(),
            task_state: task.map(str::to_string),
            image_id: if *image { "img".into() } else { String::new() },
            // Touched: changed after the last request (a second later, as Nova's whole
            // seconds show it); else long before anything we sent.
            updated: Some(match (touched, last_sent) {
                (true, Some(sent)) => sent + jiff::SignedDuration::from_secs(1),
                _ => t(-1000),
            })
            .filter(|u| *u <= now || !touched),
        }),
        Nova::Gone(_) => ServerObservation::Gone,
    };
    let (pods, volume_attachments, evicted) = turn.workloads;
    Observed {
        node: turn.node.map(|ready| NodeObservation { ready }),
        server,
        deletion: match &turn.nova {
            Nova::Gone(d) => *d,
            Nova::Present { .. } => None,
        },
        workloads: Some(Workloads {
            pods,
            volume_attachments,
            evicted_pods: evicted.min(pods),
        }),
        cluster_status: turn.cluster.map(str::to_string),
        cluster_status_reason: None,
        cluster_auto_healing: Some(true),
        fence_confirmed_by: turn
            .confirmed_by_person
            .then(|| "ops: checked the host".into()),
        leading_for: turn.leading_for,
        node_out_of_service: turn.node_out_of_service,
    }
}

/// Drives one remediation through `turns`, checking the invariants after every step.
fn drive(spec: &RemediationSpec, turns: &[Turn]) -> Result<(), TestCaseError> {
    let mut status = RemediationStatus {
        server_id: Some("srv".into()),
        ..RemediationStatus::default()
    };
    let mut now = t(0);
    let mut evidence_seen = false;
    let mut ended = false;
    let mut leading_since: Option<Timestamp> = None;
    let magnum = spec.openstack.magnum.is_some();
    for (i, turn) in turns.iter().enumerate() {
        let last_sent = status
            .steps
            .iter()
            .flat_map(|s| s.requests.iter())
            .map(|r| r.sent_at.0)
            .max();
        if turn.leader_change {
            leading_since = Some(now);
        }
        let mut turn = turn.clone();
        turn.leading_for = leading_since.map_or(StdDuration::MAX, |since| {
            StdDuration::try_from(now.duration_since(since)).unwrap_or_default()
        });
        let turn = &turn;
        let observed = observe(turn, now, last_sent);
        let current = status
            .steps
            .last()
            .filter(|s| s.finished.is_none())
            .map(|s| s.name);
        if current == Some(StepName::Fence) && is_evidence(turn) {
            evidence_seen = true;
        }
        let was_ready_at_start = status.steps.is_empty() && turn.node == Some(true);
        let before = status.clone();
        let plan = next(spec, &status, &observed, now, Some(1));

        // Nothing released without evidence.
        let releases = matches!(
            plan.action,
            Action::DeleteWorkloads | Action::FinishEvictions | Action::DeleteNode
        ) || desired_taints(spec, &plan.status)
            .iter()
            .any(|(k, _, _)| *k == OUT_OF_SERVICE_TAINT_KEY);
        if releases {
            prop_assert!(
                evidence_seen && plan.status.fence_evidence.is_some(),
                "turn {i}: {:?} released without evidence; status {:#?}",
                plan.action,
                plan.status
            );
        }
        if was_ready_at_start {
            prop_assert!(plan.status.steps.is_empty(), "a Ready node was fenced");
        }
        if let Action::Cloud(request) = &plan.action {
            prop_assert!(
                !ended,
                "turn {i}: {request:?} sent after the remediation ended"
            );
            let kind = request.kind();
            let step = plan.status.steps.last().unwrap();
            prop_assert!(
                allowed_requests(spec.action, magnum, step.name).contains(&kind),
                "turn {i}: {kind} is not in the plan of {:?} for step {}",
                spec.action,
                step.name
            );
            prop_assert!(
                !(kind.runs_the_guest() && turn.node_out_of_service),
                "turn {i}: {kind} sent while the node is out of service"
            );
            // The new record is the last one; any earlier one of that kind, in whatever step,
            // must be certainly failed, or unanswered past the grace with no sign on the
            // server. (Each kind belongs to one step of an action's plan.)
            let earlier = before
                .steps
                .iter()
                .flat_map(|s| s.requests.iter())
                .rev()
                .find(|r| r.action == kind);
            if let Some(earlier) = earlier {
                let waited = StdDuration::try_from(now.duration_since(earlier.sent_at.0))
                    .unwrap_or_default();
                match &earlier.outcome {
                    Some(RequestOutcome::Accepted) => {
                        prop_assert!(false, "turn {i}: {kind} sent again after it was accepted")
                    }
                    Some(RequestOutcome::Failed(_)) => prop_assert!(
                        waited >= FAILED_REQUEST_BACKOFF,
                        "turn {i}: {kind} resent {waited:?} after a refusal"
                    ),
                    None => {
                        let touched = matches!(turn.nova, Nova::Present { touched: true, .. });
                        prop_assert!(
                            waited > LOST_REQUEST_GRACE && !touched,
                            "turn {i}: {kind} resent {waited:?} after a lost answer (touched: {touched})"
                        );
                        prop_assert!(
                            turn.leading_for > LOST_REQUEST_GRACE,
                            "turn {i}: {kind} resent by a leader of {:?}: the old one may still send it",
                            turn.leading_for
                        );
                    }
                }
            }
        }
        status = plan.status;
        if let Action::Cloud(request) = &plan.action {
            let result = match turn.answer {
                Answer::Accepted => SendResult::Accepted,
                Answer::Refused => SendResult::Failed {
                    category: "CloudConflict".into(),
                    message: "409".into(),
                },
                Answer::Lost => SendResult::Unknown {
                    message: "timed out".into(),
                },
            };
            record_result(&mut status, request.kind(), &result);
        }
        if status.phase.is_some_and(|p| p.is_final()) {
            ended = true;
        }
        // As persisted and read back: the stored shape must carry everything.
        let stored = serde_json::to_value(&status).unwrap();
        status = serde_json::from_value(stored).unwrap();
        if plan.action != Action::Wait(StdDuration::ZERO) {
            now += jiff::SignedDuration::from_secs(turn.advance_secs);
        }
    }
    Ok(())
}

fn actions() -> impl Strategy<Value = RemediationAction> {
    prop::sample::select(vec![
        RemediationAction::Reboot,
        RemediationAction::PowerCycle,
        RemediationAction::Rebuild,
        RemediationAction::Replace,
    ])
}

fn evictions() -> impl Strategy<Value = WorkloadEviction> {
    prop::sample::select(vec![
        WorkloadEviction::OutOfServiceTaint,
        WorkloadEviction::ResourceDeletion,
        WorkloadEviction::None,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_safety_invariants_hold_after_every_step(
        action in actions(),
        eviction in evictions(),
        magnum in any::<bool>(),
        turns in prop::collection::vec(turn(), 1..60),
    ) {
        drive(&spec(action, eviction, magnum), &turns)?;
    }
}

/// The generators reach the interesting places: releases, Replace's unproven fence, and every
/// kind of request. Without this, a generator bug could leave the properties vacuous.
#[test]
fn the_generated_worlds_reach_every_step() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut kinds = std::collections::BTreeSet::new();
    let mut phases = std::collections::BTreeSet::new();
    for _ in 0..3000 {
        let action = actions().new_tree(&mut runner).unwrap().current();
        let magnum = any::<bool>().new_tree(&mut runner).unwrap().current();
        let turns = prop::collection::vec(turn(), 1..60)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let spec = spec(action, WorkloadEviction::OutOfServiceTaint, magnum);
        let mut status = RemediationStatus::default();
        let mut now = t(0);
        for turn in &turns {
            let plan = next(&spec, &status, &observe(turn, now, None), now, Some(1));
            status = plan.status;
            if let Action::Cloud(r) = &plan.action {
                kinds.insert(r.kind().to_string());
                record_result(&mut status, r.kind(), &SendResult::Accepted);
            }
            if let Some(p) = status.phase {
                phases.insert(format!("{p:?}"));
            }
            now += jiff::SignedDuration::from_secs(turn.advance_secs);
        }
    }
    for kind in [
        "os-stop",
        "os-start",
        "unshelve",
        "reboot-soft",
        "reboot-hard",
        "rebuild",
        "delete",
        "magnum-resize",
    ] {
        assert!(kinds.contains(kind), "no world sent {kind}: {kinds:?}");
    }
    for phase in [
        "ReleasingWorkloads",
        "FenceUnproven",
        "WaitingForNode",
        "Succeeded",
        "Failed",
    ] {
        assert!(
            phases.contains(phase),
            "no world reached {phase}: {phases:?}"
        );
    }
}

/// A Nova that sequences a rebuild as the real one does (`nova/compute/manager.py`,
/// `_do_rebuild_instance`): REBUILD through its three task states, a moment of ACTIVE with no
/// task (seen by one look, or by none), then, for a server that was stopped, powering-off and
/// SHUTOFF again; or, as `keeps_running` plays, a Nova that leaves it ACTIVE. Its clock is
/// `skew` seconds off ours.
#[derive(Clone, Debug)]
struct RebuildNova {
    status: &'static str,
    task: Option<&'static str>,
    /// How many more looks see the current state (the last state lasts).
    remaining: u8,
    /// The states still to come, each with the number of looks that see it.
    ahead: Vec<(&'static str, Option<&'static str>, u8)>,
    updated: i64,
    keeps_running: bool,
    skew: i64,
    /// Nova booted the guest anew for us (start, unshelve, rebuild).
    booted: bool,
}

impl RebuildNova {
    fn set(&mut self, status: &'static str, task: Option<&'static str>, looks: u8, now: i64) {
        self.status = status;
        self.task = task;
        self.remaining = looks;
        self.updated = now + self.skew;
    }

    /// Nova accepts `request` (202) at `now`: what it does at once, and what comes after.
    fn accept(&mut self, request: &CloudRequest, now: i64, looks: &[u8; 6]) {
        let was_stopped = self.status == "SHUTOFF";
        self.ahead.clear();
        self.booted |= request.kind().runs_the_guest();
        match request {
            CloudRequest::Stop => {
                self.set("ACTIVE", Some("powering-off"), looks[0], now);
                self.ahead.push(("SHUTOFF", None, 1));
            }
            CloudRequest::Start => {
                self.set("SHUTOFF", Some("powering-on"), looks[0], now);
                self.ahead.push(("ACTIVE", None, 1));
            }
            CloudRequest::Unshelve => {
                self.set("SHELVED_OFFLOADED", Some("unshelving"), looks[0], now);
                self.ahead.push(("BUILD", Some("spawning"), looks[1]));
                self.ahead.push(("ACTIVE", None, 1));
            }
            CloudRequest::Rebuild { .. } => {
                self.set("REBUILD", Some("rebuilding"), looks[0], now);
                self.ahead
                    .push(("REBUILD", Some("rebuild_block_device_mapping"), looks[1]));
                self.ahead
                    .push(("REBUILD", Some("rebuild_spawning"), looks[2]));
                if was_stopped && !self.keeps_running {
                    // The moment of ACTIVE: one look sees it, or none.
                    if looks[3] % 2 == 1 {
                        self.ahead.push(("ACTIVE", None, 1));
                    }
                    self.ahead.push(("ACTIVE", Some("powering-off"), looks[4]));
                    self.ahead.push(("SHUTOFF", None, 1));
                } else {
                    self.ahead.push(("ACTIVE", None, 1));
                }
            }
            CloudRequest::Reboot { .. } | CloudRequest::Delete | CloudRequest::MagnumResize => {}
        }
    }

    /// One look later.
    fn advance(&mut self, now: i64) {
        if self.remaining > 1 {
            self.remaining -= 1;
            return;
        }
        if !self.ahead.is_empty() {
            let (status, task, looks) = self.ahead.remove(0);
            self.set(status, task, looks.max(1), now);
        }
    }

    /// The guest runs and will keep running: nothing ahead would stop it.
    fn ends_running(&self) -> bool {
        let last = self
            .ahead
            .last()
            .map_or((self.status, self.task), |(s, t, _)| (*s, *t));
        last == ("ACTIVE", None)
    }
}

/// One look of the Rebuild world: what becomes of a request, the node's noise, time.
#[derive(Clone, Debug)]
struct RebuildTurn {
    answer: Answer,
    /// A node Ready while its server is not (yet) running for good: a kubelet heartbeat in the
    /// moment of ACTIVE, or a stale one.
    node_ready_noise: bool,
    advance_secs: i64,
    looks: [u8; 6],
}

fn rebuild_turn() -> impl Strategy<Value = RebuildTurn> {
    (
        prop::sample::select(vec![
            Answer::Accepted,
            Answer::Accepted,
            Answer::Accepted,
            Answer::Lost,
        ]),
        prop::bool::weighted(0.3),
        1i64..4,
        prop::array::uniform6(1u8..4),
    )
        .prop_map(
            |(answer, node_ready_noise, advance_secs, looks)| RebuildTurn {
                answer,
                node_ready_noise,
                advance_secs,
                looks,
            },
        )
}

/// Drives a Rebuild against [`RebuildNova`]: it never ends Succeeded with a server that is (or
/// is about to be) off, whatever the node says in the meantime; and with answers that arrive,
/// it ends Succeeded.
fn drive_rebuild(
    shelved: bool,
    keeps_running: bool,
    skew: i64,
    turns: &[RebuildTurn],
) -> Result<(), TestCaseError> {
    let spec = spec(
        RemediationAction::Rebuild,
        WorkloadEviction::OutOfServiceTaint,
        false,
    );
    let mut nova = RebuildNova {
        status: if shelved {
            "SHELVED_OFFLOADED"
        } else {
            "ACTIVE"
        },
        task: None,
        remaining: 1,
        ahead: Vec::new(),
        updated: -1000 + skew,
        keeps_running,
        skew,
        booted: false,
    };
    let mut status = RemediationStatus {
        server_id: Some("srv".into()),
        ..RemediationStatus::default()
    };
    let mut now = 0i64;
    // Whether an answer was lost: then the lost-request grace, and perhaps the step's
    // timeout, may run out first.
    let mut lost_any = false;
    for (i, turn) in turns.iter().enumerate() {
        let running = nova.status == "ACTIVE" && nova.task.is_none() && nova.ends_running();
        let observed = Observed {
            // The node is broken until Nova ran the guest again for us; then it follows the
            // guest, with noise while the guest is not running for good.
            node: Some(NodeObservation {
                ready: nova.booted
                    && (running || (turn.node_ready_noise && nova.status == "ACTIVE")),
            }),
            server: ServerObservation::Present(ServerState {
                status: nova.status.to_string(),
                task_state: nova.task.map(str::to_string),
                image_id: "img".into(),
                updated: Some(t(nova.updated)),
            }),
            deletion: None,
            workloads: Some(Workloads::default()),
            cluster_status: None,
            cluster_status_reason: None,
            cluster_auto_healing: None,
            fence_confirmed_by: None,
            leading_for: StdDuration::MAX,
            node_out_of_service: false,
        };
        let plan = next(&spec, &status, &observed, t(now), Some(1));
        status = plan.status;
        if let Action::Cloud(request) = &plan.action {
            // A lost answer: Nova got it half of the time.
            let arrived = match turn.answer {
                Answer::Accepted => true,
                Answer::Lost => turn.looks[5] % 2 == 0,
                Answer::Refused => false,
            };
            if arrived {
                nova.accept(request, now, &turn.looks);
            }
            lost_any |= !matches!(turn.answer, Answer::Accepted);
            let result = match turn.answer {
                Answer::Accepted => SendResult::Accepted,
                Answer::Lost | Answer::Refused => SendResult::Unknown {
                    message: "timed out".into(),
                },
            };
            record_result(&mut status, request.kind(), &result);
        }
        if status.phase == Some(RemediationPhase::Succeeded) {
            prop_assert!(
                nova.ends_running(),
                "turn {i}: Succeeded with the server {} {:?}, then {:?}",
                nova.status,
                nova.task,
                nova.ahead
            );
            return Ok(());
        }
        // Lost answers cost the lost-request grace each, and may cost the step's timeout.
        if lost_any && status.phase == Some(RemediationPhase::Failed) {
            return Ok(());
        }
        prop_assert_ne!(
            status.phase,
            Some(RemediationPhase::Failed),
            "turn {}: failed: {:?}",
            i,
            status.last_error
        );
        let stored = serde_json::to_value(&status).unwrap();
        status = serde_json::from_value(stored).unwrap();
        if plan.action != Action::Wait(StdDuration::ZERO) {
            now += turn.advance_secs;
            nova.advance(now);
        }
    }
    prop_assert!(
        lost_any,
        "never ended: {:?}, server {} {:?}, then {:?}",
        status.phase,
        nova.status,
        nova.task,
        nova.ahead
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn a_rebuild_ends_with_the_server_running_however_nova_sequences_it(
        shelved in prop::bool::weighted(0.2),
        keeps_running in prop::bool::weighted(0.3),
        skew in -30i64..30,
        turns in prop::collection::vec(rebuild_turn(), 60..150),
    ) {
        drive_rebuild(shelved, keeps_running, skew, &turns)?;
    }
}
