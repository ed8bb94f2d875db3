//! Table tests of the step machine: observations in, status and action out.

use super::*;
use crate::api::conditions::{find_condition, is_condition_true};
use crate::api::{
    CloudSecretRef, Duration, MagnumSpec, OpenStackSpec, RemediationStatus, StepTimeouts,
};

fn spec(action: RemediationAction) -> RemediationSpec {
    RemediationSpec {
        action,
        workload_eviction: WorkloadEviction::OutOfServiceTaint,
        openstack: OpenStackSpec {
            cloud_secret_ref: CloudSecretRef {
                name: "cloud".into(),
                key: "clouds.yaml".into(),
            },
            cloud: "openstack".into(),
            magnum: None,
            reboot_type: RebootType::SoftThenHard,
        },
        timeouts: StepTimeouts {
            fence: Duration::from_secs(60),
            release_workloads: Duration::from_secs(60),
            recover: Duration::from_secs(60),
            node_ready: Duration::from_secs(60),
        },
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn server(status: &str, task: Option<&str>) -> ServerObservation {
    ServerObservation::Present(ServerState {
        status: status.into(),
        task_state: task.map(Into::into),
        image_id: "img-1".into(),
        updated: Some(t(-100)),
    })
}

fn observed(ready: Option<bool>, server: ServerObservation) -> Observed {
    Observed {
        node: ready.map(|ready| NodeObservation { ready }),
        server,
        workloads: None,
        cluster_status: None,
        cluster_status_reason: None,
        cluster_auto_healing: None,
        deletion: None,
        fence_confirmed_by: None,
        leading_for: StdDuration::MAX,
        node_out_of_service: false,
    }
}

/// Runs the machine from `status` until it asks for something other than an immediate requeue.
fn run(spec: &RemediationSpec, status: &RemediationStatus, obs: &Observed, now: Timestamp) -> Plan {
    let mut plan = next(spec, status, obs, now, Some(1));
    for _ in 0..10 {
        if plan.action != Action::Wait(StdDuration::ZERO) {
            break;
        }
        plan = next(spec, &plan.status, obs, now, Some(1));
    }
    plan
}

fn accept_last(status: &mut RemediationStatus) {
    let req = status
        .steps
        .last_mut()
        .unwrap()
        .requests
        .last_mut()
        .unwrap();
    req.outcome = Some(RequestOutcome::Accepted);
}

/// The OpenStack requests on record, in order.
fn sent_requests(status: &RemediationStatus) -> Vec<RequestKind> {
    status
        .steps
        .iter()
        .flat_map(|s| s.requests.iter().map(|r| r.action))
        .collect()
}

/// A status in `phase` whose one step `step` began at t(0), with `requests` on record.
fn in_step(
    phase: RemediationPhase,
    step: StepName,
    requests: Vec<OpenStackRequest>,
) -> RemediationStatus {
    RemediationStatus {
        phase: Some(phase),
        steps: vec![StepRecord {
            name: step,
            started: Time(t(0)),
            finished: None,
            requests,
            message: None,
        }],
        ..Default::default()
    }
}

/// A request of `kind` recorded at t(0) with `outcome`.
fn recorded(kind: RequestKind, outcome: Option<RequestOutcome>) -> OpenStackRequest {
    OpenStackRequest {
        action: kind,
        sent_at: Time(t(0)),
        target: None,
        server_updated: None,
        cluster_status: None,
        server_stopped: None,
        active_seen_at: None,
        outcome,
    }
}

fn step_names(status: &RemediationStatus) -> Vec<StepName> {
    status.steps.iter().map(|s| s.name).collect()
}

#[test]
fn a_ready_node_is_never_fenced() {
    for action in [
        RemediationAction::Reboot,
        RemediationAction::PowerCycle,
        RemediationAction::Rebuild,
        RemediationAction::Replace,
    ] {
        let plan = run(
            &spec(action),
            &RemediationStatus::default(),
            &observed(Some(true), server("ACTIVE", None)),
            t(0),
        );
        assert_eq!(plan.action, Action::Done, "{action:?}");
        assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
        assert!(
            plan.status.steps.is_empty(),
            "no step was started for {action:?}"
        );
        assert!(is_condition_true(
            &plan.status.conditions,
            SUCCEEDED_CONDITION
        ));
        assert!(!is_condition_true(
            &plan.status.conditions,
            PROCESSING_CONDITION
        ));
    }
}

#[test]
fn power_cycle_sends_one_stop_and_waits_for_shutoff() {
    let spec = spec(RemediationAction::PowerCycle);
    let obs = observed(Some(false), server("ACTIVE", None));
    let plan = run(&spec, &RemediationStatus::default(), &obs, t(0));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Fencing));
    let recorded = &plan.status.steps[0].requests;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].action, RequestKind::Stop);
    assert_eq!(recorded[0].outcome, None, "recorded before it is sent");
    // Fencing: our NoSchedule taint, never the out-of-service taint.
    let taints = desired_taints(&spec, &plan.status);
    assert_eq!(taints, vec![(REMEDIATING_TAINT_KEY, "", "NoSchedule")]);

    // Accepted; the server is still powering off: wait, never send again.
    let mut status = plan.status;
    accept_last(&mut status);
    let plan = run(
        &spec,
        &status,
        &observed(Some(false), server("ACTIVE", Some("powering-off"))),
        t(3),
    );
    assert_eq!(plan.action, Action::Wait(POLL));
    assert_eq!(plan.status.steps[0].requests.len(), 1);
}

#[test]
fn the_out_of_service_taint_comes_only_after_shutoff_is_confirmed() {
    let spec = spec(RemediationAction::PowerCycle);
    let mut status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    accept_last(&mut status);
    // SHUTOFF but still a task running: not yet.
    let plan = run(
        &spec,
        &status,
        &observed(Some(false), server("SHUTOFF", Some("powering-off"))),
        t(2),
    );
    assert!(
        !desired_taints(&spec, &plan.status)
            .iter()
            .any(|t| t.0 == OUT_OF_SERVICE_TAINT_KEY)
    );
    // Confirmed: Fenced, then ReleasingWorkloads with the taint.
    let plan = next(
        &spec,
        &status,
        &observed(Some(false), server("SHUTOFF", None)),
        t(3),
        Some(1),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Fenced));
    assert!(
        !desired_taints(&spec, &plan.status)
            .iter()
            .any(|t| t.0 == OUT_OF_SERVICE_TAINT_KEY)
    );
    let plan = run(
        &spec,
        &plan.status,
        &observed(Some(false), server("SHUTOFF", None)),
        t(3),
    );
    assert_eq!(
        plan.status.phase,
        Some(RemediationPhase::ReleasingWorkloads)
    );
    assert!(desired_taints(&spec, &plan.status).contains(&(
        OUT_OF_SERVICE_TAINT_KEY,
        OUT_OF_SERVICE_TAINT_VALUE,
        "NoExecute"
    )));
}

#[test]
fn a_server_that_never_powers_off_fails_without_releasing_anything() {
    let spec = spec(RemediationAction::PowerCycle);
    let mut status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    accept_last(&mut status);
    let plan = run(
        &spec,
        &status,
        &observed(Some(false), server("ACTIVE", None)),
        t(61),
    );
    assert_eq!(plan.action, Action::Done);
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    assert_eq!(step_names(&plan.status), vec![StepName::Fence]);
    let succeeded = find_condition(&plan.status.conditions, SUCCEEDED_CONDITION).unwrap();
    assert_eq!(succeeded.status, "False");
    assert!(
        plan.status
            .last_error
            .as_deref()
            .unwrap()
            .contains("no workload was released")
    );
    assert!(desired_taints(&spec, &plan.status).is_empty());
    assert!(plan.notice.unwrap().warning);
}

#[test]
fn a_request_with_no_answer_is_not_sent_again_while_the_server_may_have_it() {
    let spec = spec(RemediationAction::PowerCycle);
    // Recorded at t(0), then the controller died: outcome unknown.
    let status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    // The server shows the stop happening: accepted, no resend.
    let plan = run(
        &spec,
        &status,
        &observed(Some(false), server("ACTIVE", Some("powering-off"))),
        t(5),
    );
    assert_eq!(plan.action, Action::Wait(POLL));
    assert_eq!(
        plan.status.steps[0].requests[0].outcome,
        Some(RequestOutcome::Accepted)
    );
    // No sign of it, but within the grace: wait.
    let quiet = observed(Some(false), server("ACTIVE", None));
    let plan = run(&spec, &status, &quiet, t(10));
    assert_eq!(plan.action, Action::Wait(POLL));
    assert_eq!(plan.status.steps[0].requests.len(), 1);
    // No sign of it after the grace: lost, sent again (a second record).
    let plan = run(&spec, &status, &quiet, t(31));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    assert_eq!(plan.status.steps[0].requests.len(), 2);
}

#[test]
fn a_failed_request_is_retried_after_a_backoff() {
    let spec = spec(RemediationAction::PowerCycle);
    let mut status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    status.steps[0].requests[0].outcome = Some(RequestOutcome::Failed("ServiceUnavailable".into()));
    let quiet = observed(Some(false), server("ACTIVE", None));
    assert!(matches!(
        run(&spec, &status, &quiet, t(2)).action,
        Action::Wait(_)
    ));
    assert_eq!(
        run(&spec, &status, &quiet, t(6)).action,
        Action::Cloud(CloudRequest::Stop)
    );
}

#[test]
fn power_cycle_runs_to_success() {
    let spec = spec(RemediationAction::PowerCycle);
    let mut status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    accept_last(&mut status);
    // Released workloads are awaited.
    let mut off = observed(Some(false), server("SHUTOFF", None));
    off.workloads = Some(Workloads {
        pods: 2,
        volume_attachments: 1,
        evicted_pods: 0,
    });
    let plan = run(&spec, &status, &off, t(2));
    assert_eq!(plan.action, Action::Wait(POLL));
    assert_eq!(
        plan.status.phase,
        Some(RemediationPhase::ReleasingWorkloads)
    );
    // Pods the taint evicted are deleted as pod GC would, at once.
    off.workloads = Some(Workloads {
        pods: 2,
        volume_attachments: 1,
        evicted_pods: 1,
    });
    assert_eq!(
        run(&spec, &plan.status, &off, t(3)).action,
        Action::FinishEvictions
    );
    off.workloads = Some(Workloads::default());
    let plan = run(&spec, &plan.status, &off, t(9));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Start));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Recovering));
    // The out-of-service taint is gone before the server is started.
    assert!(
        !desired_taints(&spec, &plan.status)
            .iter()
            .any(|t| t.0 == OUT_OF_SERVICE_TAINT_KEY)
    );
    let mut status = plan.status;
    accept_last(&mut status);
    let plan = run(
        &spec,
        &status,
        &observed(Some(false), server("ACTIVE", None)),
        t(11),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::WaitingForNode));
    let plan = run(
        &spec,
        &plan.status,
        &observed(Some(true), server("ACTIVE", None)),
        t(14),
    );
    assert_eq!(plan.action, Action::Done);
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    assert_eq!(
        step_names(&plan.status),
        vec![
            StepName::Fence,
            StepName::ReleaseWorkloads,
            StepName::Recover,
            StepName::WaitForNode
        ]
    );
    assert!(desired_taints(&spec, &plan.status).is_empty());
    assert_eq!(
        sent_requests(&plan.status),
        vec![RequestKind::Stop, RequestKind::Start]
    );
}

#[test]
fn rebuild_uses_the_servers_image_and_starts_a_server_nova_left_off() {
    let spec = spec(RemediationAction::Rebuild);
    let mut status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    accept_last(&mut status);
    let mut off = observed(Some(false), server("SHUTOFF", None));
    off.workloads = Some(Workloads::default());
    let plan = run(&spec, &status, &off, t(2));
    assert_eq!(
        plan.action,
        Action::Cloud(CloudRequest::Rebuild {
            image_id: "img-1".into()
        })
    );
    let mut status = plan.status;
    accept_last(&mut status);
    let plan = run(
        &spec,
        &status,
        &observed(Some(false), server("REBUILD", Some("rebuilding"))),
        t(3),
    );
    assert_eq!(plan.action, Action::Wait(POLL));
    let plan = run(&spec, &plan.status, &off, t(5));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Start));
}

#[test]
fn a_volume_backed_server_is_not_rebuilt_and_nothing_is_done() {
    let spec = spec(RemediationAction::Rebuild);
    let ServerObservation::Present(mut volume_backed) = server("ACTIVE", None) else {
        unreachable!()
    };
    volume_backed.image_id = String::new();
    let plan = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), ServerObservation::Present(volume_backed)),
        t(0),
    );
    assert_eq!(plan.action, Action::Done);
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    assert!(plan.status.steps.is_empty(), "no step began");
    let error = plan.status.last_error.unwrap_or_default();
    assert!(error.contains("boots from a volume"), "{error}");
    let notice = plan.notice.expect("a Warning event");
    assert!(notice.warning);
    // Succeeded=False: the NodeHealthCheck escalates to its next template at once.
    let succeeded = plan
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == SUCCEEDED_CONDITION)
        .expect("Succeeded");
    assert_eq!(succeeded.status, "False");
}

#[test]
fn replace_through_magnum_waits_for_a_busy_cluster_then_removes_the_server() {
    let mut spec = spec(RemediationAction::Replace);
    spec.openstack.magnum = Some(MagnumSpec {
        cluster: "k8s".into(),
        report_health_status: false,
    });
    let mut obs = observed(Some(false), server("ACTIVE", None));
    obs.cluster_status = Some("UPDATE_IN_PROGRESS".into());
    let plan = run(&spec, &RemediationStatus::default(), &obs, t(0));
    assert!(matches!(plan.action, Action::Wait(_)));
    assert!(
        plan.status.steps[0].requests.is_empty(),
        "nothing is sent to a busy cluster"
    );
    assert!(
        plan.status.steps[0]
            .message
            .as_deref()
            .unwrap()
            .contains("UPDATE_IN_PROGRESS")
    );
    assert!(is_condition_true(
        &plan.status.conditions,
        PERMANENT_NODE_DELETION_EXPECTED_CONDITION
    ));

    obs.cluster_status = Some("UPDATE_COMPLETE".into());
    // The fence comes first: os-stop, then SHUTOFF is the evidence.
    let plan = run(&spec, &plan.status, &obs, t(5));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    let mut status = plan.status;
    accept_last(&mut status);
    let mut off = observed(Some(false), server("SHUTOFF", None));
    off.cluster_status = Some("UPDATE_COMPLETE".into());
    off.workloads = Some(Workloads::default());
    let plan = run(&spec, &status, &off, t(7));
    assert_eq!(
        plan.status.fence_evidence,
        Some(FenceEvidence::ServerShutoff)
    );
    // Workloads released (nothing left), then the removal through Magnum.
    assert_eq!(plan.action, Action::Cloud(CloudRequest::MagnumResize));
    assert_eq!(
        step_names(&plan.status),
        vec![
            StepName::Fence,
            StepName::ReleaseWorkloads,
            StepName::Recover
        ]
    );
    let mut status = plan.status;
    accept_last(&mut status);
    // Gone: the Node is deleted, then Magnum finishes.
    let mut gone = observed(Some(false), ServerObservation::Gone);
    gone.cluster_status = Some("UPDATE_IN_PROGRESS".into());
    let plan = run(&spec, &status, &gone, t(9));
    assert_eq!(plan.action, Action::DeleteNode);
    gone.node = None;
    let plan = run(&spec, &plan.status, &gone, t(10));
    assert!(matches!(plan.action, Action::Wait(_)));
    gone.cluster_status = Some("UPDATE_COMPLETE".into());
    let plan = run(&spec, &plan.status, &gone, t(20));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    assert_eq!(
        sent_requests(&plan.status),
        vec![RequestKind::Stop, RequestKind::MagnumResize]
    );
}

#[test]
fn soft_then_hard_reboot_and_a_node_that_recovers_on_its_own() {
    let spec = spec(RemediationAction::Reboot);
    let hung = observed(Some(false), server("ACTIVE", None));
    let plan = run(&spec, &RemediationStatus::default(), &hung, t(0));
    assert_eq!(
        plan.action,
        Action::Cloud(CloudRequest::Reboot { hard: false })
    );
    assert!(
        desired_taints(&spec, &plan.status).is_empty(),
        "a reboot does not fence"
    );
    let mut status = plan.status;
    accept_last(&mut status);
    assert_eq!(run(&spec, &status, &hung, t(10)).action, Action::Wait(POLL));
    // Half the recover timeout without the node back: hard.
    let plan = run(&spec, &status, &hung, t(31));
    assert_eq!(
        plan.action,
        Action::Cloud(CloudRequest::Reboot { hard: true })
    );
    let mut status = plan.status;
    accept_last(&mut status);
    let plan = run(
        &spec,
        &status,
        &observed(Some(true), server("ACTIVE", None)),
        t(40),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    // Timed out instead: Succeeded=False so the NodeHealthCheck escalates.
    let plan = run(&spec, &status, &hung, t(61));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
}

#[test]
fn resource_deletion_deletes_until_nothing_is_left() {
    let mut spec = spec(RemediationAction::PowerCycle);
    spec.workload_eviction = WorkloadEviction::ResourceDeletion;
    let mut status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    accept_last(&mut status);
    let mut off = observed(Some(false), server("SHUTOFF", None));
    off.workloads = Some(Workloads {
        pods: 1,
        volume_attachments: 0,
        evicted_pods: 0,
    });
    let plan = run(&spec, &status, &off, t(2));
    assert_eq!(plan.action, Action::DeleteWorkloads);
    assert!(
        !desired_taints(&spec, &plan.status)
            .iter()
            .any(|t| t.0 == OUT_OF_SERVICE_TAINT_KEY)
    );
}

#[test]
fn a_final_remediation_does_nothing() {
    let spec = spec(RemediationAction::PowerCycle);
    let status = RemediationStatus {
        phase: Some(RemediationPhase::Failed),
        ..Default::default()
    };
    let plan = next(
        &spec,
        &status,
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
        Some(1),
    );
    assert_eq!(plan.action, Action::Done);
}

#[test]
fn an_unreachable_cloud_blocks_then_fails_without_releasing_anything() {
    let spec = spec(RemediationAction::PowerCycle);
    // Before the first step: measured from the remediation's creation.
    let plan = blocked(
        &spec,
        &RemediationStatus::default(),
        Some(t(0)),
        &Blocker {
            reason: "CloudUnavailable",
            message: "keystone token: unavailable",
            retryable: true,
        },
        t(30),
        Some(1),
    );
    assert_eq!(plan.action, Action::Wait(FAILED_REQUEST_BACKOFF));
    assert_eq!(
        plan.status.last_error.as_deref(),
        Some("keystone token: unavailable")
    );
    let processing = find_condition(&plan.status.conditions, PROCESSING_CONDITION).unwrap();
    assert_eq!(
        (processing.status.as_str(), processing.reason.as_str()),
        ("True", "CloudUnavailable")
    );
    assert!(desired_taints(&spec, &plan.status).is_empty());

    let plan = blocked(
        &spec,
        &plan.status,
        Some(t(0)),
        &Blocker {
            reason: "CloudUnavailable",
            message: "keystone token: unavailable",
            retryable: true,
        },
        t(61),
        Some(1),
    );
    assert_eq!(plan.action, Action::Done);
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    let succeeded = find_condition(&plan.status.conditions, SUCCEEDED_CONDITION).unwrap();
    assert_eq!(succeeded.status, "False");
    assert!(
        succeeded.message.contains("no workload was released"),
        "{}",
        succeeded.message
    );
    assert!(!is_condition_true(
        &plan.status.conditions,
        PROCESSING_CONDITION
    ));
}

#[test]
fn a_blocked_step_is_timed_from_its_own_start() {
    let spec = spec(RemediationAction::PowerCycle);
    let mut status = RemediationStatus::default();
    status.steps.push(StepRecord {
        name: StepName::Fence,
        started: Time(t(100)),
        finished: None,
        requests: vec![],
        message: None,
    });
    status.phase = Some(RemediationPhase::Fencing);
    // Created long ago, but the Fence step started at 100: not overdue at 150.
    let plan = blocked(
        &spec,
        &status,
        Some(t(0)),
        &Blocker {
            reason: "X",
            message: "nova down",
            retryable: true,
        },
        t(150),
        Some(1),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Fencing));
    let plan = blocked(
        &spec,
        &status,
        Some(t(0)),
        &Blocker {
            reason: "X",
            message: "nova down",
            retryable: true,
        },
        t(161),
        Some(1),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    // A final remediation stays as it is.
    let again = blocked(
        &spec,
        &plan.status,
        Some(t(0)),
        &Blocker {
            reason: "X",
            message: "y",
            retryable: true,
        },
        t(500),
        Some(1),
    );
    assert_eq!(again.status, plan.status);
    assert_eq!(again.action, Action::Done);
}

#[test]
fn nothing_is_sent_to_a_magnum_cluster_while_it_updates() {
    let mut spec = spec(RemediationAction::PowerCycle);
    spec.openstack.magnum = Some(MagnumSpec {
        cluster: "k8s".into(),
        report_health_status: false,
    });
    let mut obs = observed(Some(false), server("ACTIVE", None));
    obs.cluster_status = Some("UPDATE_IN_PROGRESS".into());
    let plan = run(&spec, &RemediationStatus::default(), &obs, t(0));
    assert_eq!(plan.action, Action::Wait(StdDuration::from_secs(5)));
    assert!(
        plan.status.steps[0].requests.is_empty(),
        "no os-stop while busy"
    );
    assert!(
        plan.status.steps[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("UPDATE_IN_PROGRESS")
    );
    obs.cluster_status = Some("UPDATE_COMPLETE".into());
    let plan = run(&spec, &plan.status, &obs, t(6));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    // A reboot waits just the same.
    let mut reboot = spec.clone();
    reboot.action = RemediationAction::Reboot;
    obs.cluster_status = Some("UPDATE_IN_PROGRESS".into());
    let plan = run(&reboot, &RemediationStatus::default(), &obs, t(0));
    assert_eq!(plan.action, Action::Wait(StdDuration::from_secs(5)));
}

#[test]
fn a_remediation_deleted_half_way_powers_back_on_what_it_powered_off() {
    let power_cycle = spec(RemediationAction::PowerCycle);
    let obs = observed(Some(false), server("ACTIVE", None));
    // Fence: the os-stop is sent and accepted, Nova reports SHUTOFF.
    let mut status = run(&power_cycle, &RemediationStatus::default(), &obs, t(0)).status;
    accept_last(&mut status);
    assert_eq!(
        PowerRestore::Start,
        power_restore(&power_cycle, &status, &server("SHUTOFF", None), false)
    );
    // Not while it is running, or after our own os-start.
    assert_eq!(
        PowerRestore::Nothing,
        power_restore(&power_cycle, &status, &server("ACTIVE", None), false)
    );
    // Still powering off (the Remediation was deleted while os-stop ran): wait, then start.
    assert_eq!(
        PowerRestore::WaitForStop,
        power_restore(
            &power_cycle,
            &status,
            &server("ACTIVE", Some("powering-off")),
            false
        )
    );
    let mut started = status.clone();
    started
        .steps
        .last_mut()
        .unwrap()
        .requests
        .push(OpenStackRequest {
            action: RequestKind::Start,
            sent_at: Time(t(5)),
            target: None,
            server_updated: None,
            cluster_status: None,
            server_stopped: None,
            active_seen_at: None,
            outcome: Some(RequestOutcome::Accepted),
        });
    assert_eq!(
        PowerRestore::Nothing,
        power_restore(&power_cycle, &started, &server("SHUTOFF", None), false)
    );
    // A stop that certainly failed did not turn it off: a server off for another reason stays off.
    let mut failed = status.clone();
    failed
        .steps
        .last_mut()
        .unwrap()
        .requests
        .last_mut()
        .unwrap()
        .outcome = Some(RequestOutcome::Failed("CloudConflict".into()));
    assert_eq!(
        PowerRestore::Nothing,
        power_restore(&power_cycle, &failed, &server("SHUTOFF", None), false)
    );
    // Nothing was sent at all (the server crashed by itself): left as it is.
    assert_eq!(
        PowerRestore::Nothing,
        power_restore(
            &power_cycle,
            &RemediationStatus::default(),
            &server("SHUTOFF", None),
            false
        )
    );
    // Replace removes servers on purpose.
    assert_eq!(
        PowerRestore::Nothing,
        power_restore(
            &spec(RemediationAction::Replace),
            &status,
            &server("SHUTOFF", None),
            false
        )
    );
}

#[test]
fn nothing_starts_while_the_magnum_cluster_has_healing_off_but_a_started_remediation_finishes() {
    let mut spec = spec(RemediationAction::PowerCycle);
    spec.openstack.magnum = Some(MagnumSpec {
        cluster: "k8s".into(),
        report_health_status: false,
    });
    let mut obs = observed(Some(false), server("ACTIVE", None));
    obs.cluster_status = Some("UPDATE_COMPLETE".into());
    obs.cluster_auto_healing = Some(false);
    let plan = run(&spec, &RemediationStatus::default(), &obs, t(0));
    let plan = run(&spec, &plan.status, &obs, t(1));
    assert!(matches!(plan.action, Action::Wait(_)), "{:?}", plan.action);
    assert!(plan.status.steps[0].requests.is_empty(), "nothing is sent");
    assert!(
        plan.status.steps[0]
            .message
            .as_deref()
            .unwrap()
            .contains("auto_healing_enabled")
    );

    obs.cluster_auto_healing = Some(true);
    let plan = run(&spec, &plan.status, &obs, t(2));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    let mut status = plan.status;
    accept_last(&mut status);

    // Turned off half-way: the fence already sent is followed through, not abandoned.
    obs.cluster_auto_healing = Some(false);
    obs.server = server("SHUTOFF", None);
    let plan = run(&spec, &status, &obs, t(3));
    assert_ne!(plan.status.phase, Some(RemediationPhase::Fencing));
}

#[test]
fn a_server_change_in_the_same_second_as_the_record_is_no_proof_the_request_arrived() {
    // The stop finished in the second the start was recorded (times have whole seconds);
    // then the controller died before sending the start.
    let spec = spec(RemediationAction::PowerCycle);
    let mut obs = observed(Some(false), server("SHUTOFF", None));
    let mut status = RemediationStatus::default();
    status.steps.push(StepRecord {
        name: StepName::Recover,
        started: Time(t(0)),
        finished: None,
        requests: vec![OpenStackRequest {
            action: RequestKind::Start,
            sent_at: Time(t(0)),
            target: None,
            server_updated: None,
            cluster_status: None,
            server_stopped: None,
            active_seen_at: None,
            outcome: None,
        }],
        message: None,
    });
    status.phase = Some(RemediationPhase::Recovering);
    if let ServerObservation::Present(s) = &mut obs.server {
        s.updated = Some(t(0));
    }
    let plan = run(&spec, &status, &obs, t(5));
    assert_eq!(plan.action, Action::Wait(POLL));
    assert_eq!(
        plan.status.steps[0].requests[0].outcome, None,
        "not taken as accepted"
    );
    let plan = run(&spec, &status, &obs, t(31));
    assert_eq!(
        plan.action,
        Action::Cloud(CloudRequest::Start),
        "sent again after the grace"
    );
    // A change in a later second does prove it.
    if let ServerObservation::Present(s) = &mut obs.server {
        s.updated = Some(t(1));
    }
    let plan = run(&spec, &status, &obs, t(5));
    assert_eq!(
        plan.status.steps[0].requests[0].outcome,
        Some(RequestOutcome::Accepted)
    );
}

#[test]
fn a_shelved_server_is_fenced_without_a_request_and_unshelved_to_recover() {
    let spec = spec(RemediationAction::PowerCycle);
    for shelved in ["SHELVED", "SHELVED_OFFLOADED"] {
        let mut obs = observed(Some(false), server(shelved, None));
        let plan = run(&spec, &RemediationStatus::default(), &obs, t(0));
        assert_eq!(
            plan.status.phase,
            Some(RemediationPhase::ReleasingWorkloads),
            "{shelved}: a shelved guest is powered off"
        );
        assert!(
            sent_requests(&plan.status).is_empty(),
            "{shelved}: no os-stop"
        );
        obs.workloads = Some(Workloads::default());
        let plan = run(&spec, &plan.status, &obs, t(2));
        assert_eq!(
            plan.action,
            Action::Cloud(CloudRequest::Unshelve),
            "{shelved}: os-start does not apply to a shelved server"
        );
        let mut status = plan.status;
        accept_last(&mut status);
        // Unshelving: the status stays shelved while the task runs.
        let busy = observed(Some(false), server(shelved, Some("unshelving")));
        assert_eq!(run(&spec, &status, &busy, t(3)).action, Action::Wait(POLL));
        let plan = run(
            &spec,
            &status,
            &observed(Some(true), server("ACTIVE", None)),
            t(5),
        );
        assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
        assert_eq!(sent_requests(&plan.status), vec![RequestKind::Unshelve]);
    }
}

#[test]
fn a_shelving_server_is_not_fenced_until_the_shelve_is_done() {
    let spec = spec(RemediationAction::PowerCycle);
    // The guest may still run while Nova shelves it: only the end state proves it off.
    let obs = observed(Some(false), server("ACTIVE", Some("shelving")));
    let plan = run(&spec, &RemediationStatus::default(), &obs, t(0));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Fencing));
    assert!(
        !desired_taints(&spec, &plan.status)
            .iter()
            .any(|t| t.0 == OUT_OF_SERVICE_TAINT_KEY)
    );
}

#[test]
fn a_shelved_server_is_unshelved_before_it_is_rebuilt() {
    let spec = spec(RemediationAction::Rebuild);
    let mut shelved = observed(Some(false), server("SHELVED_OFFLOADED", None));
    shelved.workloads = Some(Workloads::default());
    let plan = run(&spec, &RemediationStatus::default(), &shelved, t(0));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Unshelve));
    let mut status = plan.status;
    accept_last(&mut status);
    let mut active = observed(Some(false), server("ACTIVE", None));
    active.workloads = Some(Workloads::default());
    let plan = run(&spec, &status, &active, t(4));
    assert_eq!(
        plan.action,
        Action::Cloud(CloudRequest::Rebuild {
            image_id: "img-1".into()
        })
    );
    let mut status = plan.status;
    accept_last(&mut status);
    let rebuilding = observed(Some(false), server("REBUILD", Some("rebuilding")));
    assert_eq!(
        run(&spec, &status, &rebuilding, t(5)).action,
        Action::Wait(POLL)
    );
    // The server was running (unshelved) when it was rebuilt: Nova leaves it running, so
    // ACTIVE with no task ends the rebuild at once.
    assert_eq!(
        status.steps.last().unwrap().requests[1].server_stopped,
        Some(false)
    );
    let ready_active = observed(Some(true), server("ACTIVE", None));
    let plan = run(&spec, &status, &ready_active, t(8));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    assert_eq!(
        sent_requests(&plan.status),
        vec![RequestKind::Unshelve, RequestKind::Rebuild]
    );
}

#[test]
fn a_reboot_of_a_shelved_server_fails_at_once_so_the_next_template_runs() {
    let spec = spec(RemediationAction::Reboot);
    let obs = observed(Some(false), server("SHELVED_OFFLOADED", None));
    let plan = run(&spec, &RemediationStatus::default(), &obs, t(0));
    assert_eq!(plan.action, Action::Done);
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    assert!(sent_requests(&plan.status).is_empty());
    let error = plan.status.last_error.unwrap_or_default();
    assert!(error.contains("SHELVED_OFFLOADED"), "{error}");
}

fn gone(deletion: Option<DeletionEvidence>) -> Observed {
    let mut obs = observed(Some(false), ServerObservation::Gone);
    obs.deletion = deletion;
    obs.workloads = Some(Workloads::default());
    obs
}

fn releases(spec: &RemediationSpec, plan: &Plan) -> bool {
    matches!(
        plan.action,
        Action::DeleteWorkloads | Action::FinishEvictions | Action::DeleteNode
    ) || desired_taints(spec, &plan.status)
        .iter()
        .any(|(k, _, _)| *k == OUT_OF_SERVICE_TAINT_KEY)
        || plan.status.fence_evidence.is_some()
}

#[test]
fn a_server_missing_when_we_deleted_nothing_is_no_fence() {
    // A providerID of another region, a Secret of another project: Nova answers 404.
    for action in [
        RemediationAction::PowerCycle,
        RemediationAction::Rebuild,
        RemediationAction::Replace,
    ] {
        let spec = spec(action);
        for deletion in [
            None,
            Some(DeletionEvidence::UnknownServer),
            Some(DeletionEvidence::NoDelete),
            Some(DeletionEvidence::NotByCompute),
        ] {
            let plan = run(&spec, &RemediationStatus::default(), &gone(deletion), t(0));
            assert!(
                !releases(&spec, &plan),
                "{action:?} {deletion:?}: {plan:#?}"
            );
            assert_eq!(plan.status.phase, Some(RemediationPhase::Fencing));
            let error = plan.status.last_error.clone().unwrap_or_default();
            assert!(
                error.contains("404") && error.contains("nothing is released"),
                "{error}"
            );
            assert!(
                plan.notice
                    .as_ref()
                    .is_some_and(|n| n.warning && n.reason == "FenceNotProven")
            );
            assert!(sent_requests(&plan.status).is_empty(), "nothing was sent");
            // Until the fence times out; then Failed, so the NodeHealthCheck escalates.
            let plan = run(&spec, &plan.status, &gone(deletion), t(61));
            assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
            assert!(!releases(&spec, &plan));
        }
    }
}

#[test]
fn a_server_the_compute_host_deleted_is_fenced() {
    let spec = spec(RemediationAction::PowerCycle);
    let plan = run(
        &spec,
        &RemediationStatus::default(),
        &gone(Some(DeletionEvidence::ComputeTerminated)),
        t(0),
    );
    assert_eq!(
        plan.status.fence_evidence,
        Some(FenceEvidence::DeletedByComputeHost)
    );
    // Still being terminated: wait, release nothing yet.
    let plan = run(
        &spec,
        &RemediationStatus::default(),
        &gone(Some(DeletionEvidence::Terminating)),
        t(0),
    );
    assert!(!releases(&spec, &plan));
    assert_eq!(plan.action, Action::Wait(POLL));
}

#[test]
fn replace_powers_off_first_and_removes_the_server_after_its_workloads_are_released() {
    let spec = spec(RemediationAction::Replace);
    let plan = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    );
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    let mut status = plan.status;
    accept_last(&mut status);
    let mut off = observed(Some(false), server("SHUTOFF", None));
    off.workloads = Some(Workloads {
        pods: 1,
        volume_attachments: 0,
        evicted_pods: 1,
    });
    let plan = run(&spec, &status, &off, t(3));
    assert_eq!(
        plan.status.fence_evidence,
        Some(FenceEvidence::ServerShutoff)
    );
    assert_eq!(plan.action, Action::FinishEvictions);
    assert!(
        !sent_requests(&plan.status).contains(&RequestKind::Delete),
        "nothing is deleted before the workloads are released"
    );
    off.workloads = Some(Workloads::default());
    let plan = run(&spec, &plan.status, &off, t(5));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Delete));
    let mut status = plan.status;
    accept_last(&mut status);
    let plan = run(&spec, &status, &gone(None), t(7));
    assert_eq!(plan.action, Action::DeleteNode);
    let mut no_node = gone(None);
    no_node.node = None;
    let plan = run(&spec, &plan.status, &no_node, t(8));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    assert_eq!(
        sent_requests(&plan.status),
        vec![RequestKind::Stop, RequestKind::Delete]
    );
}

#[test]
fn replace_on_a_lost_host_removes_and_releases_nothing_until_shutoff_or_a_person() {
    let spec = spec(RemediationAction::Replace);
    let stuck = observed(Some(false), server("ACTIVE", Some("powering-off")));
    let mut status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    accept_last(&mut status);
    // The compute host is down: os-stop never completes.
    let plan = run(&spec, &status, &stuck, t(20));
    assert_eq!(plan.action, Action::Wait(POLL));
    // After the patience (half the 60 s fence timeout): FenceUnproven, nothing removed.
    let plan = run(&spec, &plan.status, &stuck, t(31));
    assert_eq!(plan.status.phase, Some(RemediationPhase::FenceUnproven));
    assert!(!releases(&spec, &plan), "{plan:#?}");
    assert_eq!(sent_requests(&plan.status), vec![RequestKind::Stop]);
    let notice = plan.notice.clone().expect("a Warning event");
    assert!(notice.warning && notice.reason == "FenceUnproven");
    assert!(notice.message.contains(FENCE_CONFIRMED_ANNOTATION));
    // Long after the fence timeout: still waiting, still nothing removed or released.
    let later = run(&spec, &plan.status, &stuck, t(600));
    assert_eq!(later.status.phase, Some(RemediationPhase::FenceUnproven));
    assert!(!releases(&spec, &later));
    assert!(later.notice.is_none(), "the event is written once");
    assert_eq!(sent_requests(&later.status), vec![RequestKind::Stop]);
    // A cloud error meanwhile does not end the wait for a person.
    let blocked_plan = blocked(
        &spec,
        &later.status,
        Some(t(0)),
        &Blocker {
            reason: "CloudUnavailable",
            message: "nova: 503",
            retryable: true,
        },
        t(700),
        Some(1),
    );
    assert_eq!(
        blocked_plan.status.phase,
        Some(RemediationPhase::FenceUnproven)
    );
    // The host comes back and the stop completes: SHUTOFF is the evidence after all.
    let mut off = observed(Some(false), server("SHUTOFF", None));
    off.workloads = Some(Workloads::default());
    let plan = run(&spec, &later.status, &off, t(601));
    assert_eq!(
        plan.status.fence_evidence,
        Some(FenceEvidence::ServerShutoff)
    );
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Delete));
    // Or a person confirms: released, then removed.
    let mut confirmed = observed(Some(false), server("ACTIVE", Some("powering-off")));
    confirmed.workloads = Some(Workloads::default());
    confirmed.fence_confirmed_by = Some("alice: the hypervisor is powered off".into());
    let plan = run(&spec, &later.status, &confirmed, t(601));
    assert_eq!(
        plan.status.fence_evidence,
        Some(FenceEvidence::ConfirmedByPerson)
    );
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Delete));
    assert_eq!(
        step_names(&plan.status),
        vec![
            StepName::Fence,
            StepName::ReleaseWorkloads,
            StepName::Recover
        ]
    );
}

#[test]
fn nothing_that_runs_the_guest_is_sent_while_the_node_is_out_of_service() {
    // Another remediation of the node holds the out-of-service taint: no os-start.
    let spec = spec(RemediationAction::PowerCycle);
    let status = RemediationStatus {
        fence_evidence: Some(FenceEvidence::ServerShutoff),
        ..in_step(RemediationPhase::Recovering, StepName::Recover, vec![])
    };
    let mut off = observed(Some(false), server("SHUTOFF", None));
    off.node_out_of_service = true;
    let plan = run(&spec, &status, &off, t(1));
    assert_eq!(plan.action, Action::Wait(POLL));
    assert!(sent_requests(&plan.status).is_empty());
    off.node_out_of_service = false;
    assert_eq!(
        run(&spec, &status, &off, t(2)).action,
        Action::Cloud(CloudRequest::Start)
    );
    // Nor does a deleted Remediation power it on then.
    let mut stopped = status.clone();
    stopped.steps[0]
        .requests
        .push(recorded(RequestKind::Stop, Some(RequestOutcome::Accepted)));
    assert_eq!(
        power_restore(&spec, &stopped, &server("SHUTOFF", None), true),
        PowerRestore::Nothing
    );
    assert_eq!(
        power_restore(&spec, &stopped, &server("SHUTOFF", None), false),
        PowerRestore::Start
    );
}

#[test]
fn a_blocked_turn_between_two_steps_is_timed_from_the_end_of_the_last_one() {
    let spec = spec(RemediationAction::PowerCycle);
    let mut status = in_step(RemediationPhase::Fenced, StepName::Fence, vec![]);
    status.steps[0].finished = Some(Time(t(500)));
    // Created at 0, fence finished at 500: a Nova error at 510 is not past any timeout.
    let plan = blocked(
        &spec,
        &status,
        Some(t(0)),
        &Blocker {
            reason: "CloudUnavailable",
            message: "nova: 503",
            retryable: true,
        },
        t(510),
        Some(1),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Fenced));
}

#[test]
fn every_recorded_request_is_resent_as_itself() {
    // A request that certainly failed is sent again after the backoff: the same request,
    // whatever the pool (an unshelve on a Magnum pool once came back as a resize).
    let cases = [
        (
            RemediationAction::PowerCycle,
            StepName::Fence,
            RequestKind::Stop,
            "ACTIVE",
        ),
        (
            RemediationAction::PowerCycle,
            StepName::Recover,
            RequestKind::Start,
            "SHUTOFF",
        ),
        (
            RemediationAction::PowerCycle,
            StepName::Recover,
            RequestKind::Unshelve,
            "SHELVED_OFFLOADED",
        ),
        (
            RemediationAction::Rebuild,
            StepName::Recover,
            RequestKind::Rebuild,
            "SHUTOFF",
        ),
        (
            RemediationAction::Reboot,
            StepName::Reboot,
            RequestKind::RebootSoft,
            "ACTIVE",
        ),
        (
            RemediationAction::Replace,
            StepName::Recover,
            RequestKind::Delete,
            "SHUTOFF",
        ),
    ];
    for magnum in [false, true] {
        for (action, step, kind, server_status) in cases {
            let mut spec = spec(action);
            let mut kind = kind;
            if magnum {
                spec.openstack.magnum = Some(MagnumSpec {
                    cluster: "k8s".into(),
                    report_health_status: false,
                });
                if kind == RequestKind::Delete {
                    kind = RequestKind::MagnumResize;
                }
            }
            let status = RemediationStatus {
                server_id: Some("srv".into()),
                fence_evidence: Some(FenceEvidence::ServerShutoff),
                ..in_step(
                    RemediationPhase::Recovering,
                    step,
                    vec![recorded(
                        kind,
                        Some(RequestOutcome::Failed("CloudConflict".into())),
                    )],
                )
            };
            let mut obs = observed(Some(false), server(server_status, None));
            obs.cluster_status = Some("UPDATE_COMPLETE".into());
            obs.cluster_auto_healing = Some(true);
            let plan = run(&spec, &status, &obs, t(10));
            let Action::Cloud(request) = &plan.action else {
                panic!(
                    "{action:?}/{step}/{kind} (magnum {magnum}): {:?}",
                    plan.action
                )
            };
            assert_eq!(request.kind(), kind, "{action:?}/{step} (magnum {magnum})");
        }
    }
}

#[test]
fn a_request_outside_the_actions_plan_fails_the_remediation_and_is_not_sent() {
    // A status written by hand (or by a bug) with a request the step does not allow.
    let spec = spec(RemediationAction::PowerCycle);
    for (action, step) in [
        (RemediationAction::PowerCycle, StepName::Fence),
        (RemediationAction::PowerCycle, StepName::Recover),
    ] {
        assert!(!allowed_requests(action, true, step).contains(&RequestKind::MagnumResize));
        assert!(!allowed_requests(action, false, step).contains(&RequestKind::Delete));
    }
    assert!(allowed_requests(RemediationAction::Reboot, false, StepName::Fence).is_empty());
    let status = in_step(
        RemediationPhase::Fencing,
        StepName::Fence,
        vec![recorded(RequestKind::Delete, None)],
    );
    let obs = observed(Some(false), server("ACTIVE", None));
    let mut m = Machine::new(&spec, &status, &obs, t(100), None);
    assert_eq!(m.send(CloudRequest::Delete), Action::Done);
    assert_eq!(m.status.phase, Some(RemediationPhase::Failed));
    assert!(
        m.status
            .last_error
            .unwrap()
            .contains("not part of a PowerCycle")
    );
}

#[test]
fn a_timed_out_remediation_stops_acting_and_wants_no_taint() {
    let spec = spec(RemediationAction::Reboot);
    let status = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    let plan = stop_timed_out(&spec, &status, t(5), Some(1));
    assert_eq!(plan.action, Action::Done);
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    assert!(desired_taints(&spec, &plan.status).is_empty());
    // And from then on the machine sends nothing, whatever it sees (no hard reboot at recover/2).
    let later = next(
        &spec,
        &plan.status,
        &observed(Some(false), server("ACTIVE", None)),
        t(40),
        Some(1),
    );
    assert_eq!(later.action, Action::Done);
}

#[test]
fn only_the_out_of_service_taint_we_added_is_removed() {
    let oos = (
        OUT_OF_SERVICE_TAINT_KEY,
        OUT_OF_SERVICE_TAINT_VALUE,
        "NoExecute",
    );
    let rem = (REMEDIATING_TAINT_KEY, "", "NoSchedule");
    // Wanted and missing: added and marked ours.
    let change = taint_change(&[], false, &[rem, oos], &[]);
    assert_eq!(change.add, vec![rem, oos]);
    assert_eq!(change.own_out_of_service, Some(true));
    // Another remediator's taint (not marked ours): never removed.
    let theirs = [(OUT_OF_SERVICE_TAINT_KEY, "NoExecute")];
    assert!(taint_change(&theirs, false, &[], &[]).is_none());
    // Ours, no longer wanted: removed, mark cleared.
    let change = taint_change(&theirs, true, &[], &[]);
    assert_eq!(change.remove, vec![(OUT_OF_SERVICE_TAINT_KEY, "NoExecute")]);
    assert_eq!(change.own_out_of_service, Some(false));
    // Kept by another live remediation of the node: left as it is.
    assert!(taint_change(&theirs, true, &[], &[oos]).is_none());
    // But another remediation's wish never adds it (its status may be stale in the cache).
    assert!(taint_change(&[], false, &[], &[rem, oos]).is_none());
    // Our remediating taint comes and goes with what is wanted.
    let change = taint_change(&[(REMEDIATING_TAINT_KEY, "NoSchedule")], false, &[], &[]);
    assert_eq!(change.remove, vec![(REMEDIATING_TAINT_KEY, "NoSchedule")]);
}

#[test]
fn the_out_of_service_taint_needs_a_recorded_evidence() {
    let spec = spec(RemediationAction::PowerCycle);
    let mut status = in_step(
        RemediationPhase::ReleasingWorkloads,
        StepName::ReleaseWorkloads,
        vec![],
    );
    assert!(
        !desired_taints(&spec, &status)
            .iter()
            .any(|(k, _, _)| *k == OUT_OF_SERVICE_TAINT_KEY),
        "a ReleaseWorkloads step without evidence (a status written by hand) taints nothing"
    );
    status.fence_evidence = Some(FenceEvidence::ServerShutoff);
    assert!(
        desired_taints(&spec, &status)
            .iter()
            .any(|(k, _, _)| *k == OUT_OF_SERVICE_TAINT_KEY)
    );
}

/// A Rebuild fenced and released, its `rebuild` of the SHUTOFF server accepted at t(2).
fn rebuild_sent_to_a_stopped_server(spec: &RemediationSpec) -> RemediationStatus {
    let mut status = run(
        spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", None)),
        t(0),
    )
    .status;
    accept_last(&mut status);
    let mut off = observed(Some(false), server("SHUTOFF", None));
    off.workloads = Some(Workloads::default());
    let plan = run(spec, &status, &off, t(2));
    assert!(matches!(
        plan.action,
        Action::Cloud(CloudRequest::Rebuild { .. })
    ));
    let mut status = plan.status;
    accept_last(&mut status);
    status
}

/// The server as Nova shows it, `updated` at `updated` (Nova's clock).
fn nova_at(node_ready: bool, status: &str, task: Option<&str>, updated: i64) -> Observed {
    observed(
        Some(node_ready),
        ServerObservation::Present(ServerState {
            status: status.into(),
            task_state: task.map(Into::into),
            image_id: "img-1".into(),
            updated: Some(t(updated)),
        }),
    )
}

#[test]
fn a_rebuilt_server_nova_stops_again_is_powered_on() {
    // Real Nova keeps a stopped server stopped: REBUILD (rebuilding, block device mapping,
    // spawning), a moment of ACTIVE with no task, then powering-off and SHUTOFF. The moment of
    // ACTIVE is not the end, not even with a node that reports Ready in it, and not even when
    // Nova's clock is behind ours (its `updated` looks old): only SHUTOFF, then os-start.
    let spec = spec(RemediationAction::Rebuild);
    let mut status = rebuild_sent_to_a_stopped_server(&spec);
    let rebuild = status.steps.last().unwrap().requests.last().unwrap();
    assert_eq!(rebuild.server_stopped, Some(true), "recorded when decided");
    // Nova's clock runs 20 s behind ours; the rebuild takes a while.
    let sequence = [
        (false, "REBUILD", Some("rebuilding"), 3, -17),
        (
            false,
            "REBUILD",
            Some("rebuild_block_device_mapping"),
            5,
            -15,
        ),
        (false, "REBUILD", Some("rebuild_spawning"), 7, -13),
        (true, "ACTIVE", None, 12, -8),
        (true, "ACTIVE", Some("powering-off"), 13, -7),
    ];
    for (ready, nova_status, task, at, updated) in sequence {
        let plan = run(
            &spec,
            &status,
            &nova_at(ready, nova_status, task, updated),
            t(at),
        );
        assert_eq!(
            plan.action,
            Action::Wait(POLL),
            "{nova_status} {task:?}: nothing to do yet"
        );
        assert_eq!(plan.status.phase, Some(RemediationPhase::Recovering));
        status = plan.status;
    }
    let plan = run(&spec, &status, &nova_at(false, "SHUTOFF", None, -6), t(14));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Start));
    let mut status = plan.status;
    accept_last(&mut status);
    let plan = run(&spec, &status, &nova_at(false, "ACTIVE", None, -5), t(16));
    assert_eq!(plan.status.phase, Some(RemediationPhase::WaitingForNode));
    let plan = run(
        &spec,
        &plan.status,
        &nova_at(true, "ACTIVE", None, -5),
        t(20),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    assert_eq!(
        sent_requests(&plan.status),
        vec![RequestKind::Stop, RequestKind::Rebuild, RequestKind::Start]
    );
}

#[test]
fn a_remediation_deleted_in_the_moment_of_active_after_a_rebuild_waits_and_powers_on() {
    // Deleted while Nova shows the rebuilt, formerly stopped server ACTIVE for a moment: Nova
    // stops it right after, so the finalizer waits for that and then powers it on.
    let spec = spec(RemediationAction::Rebuild);
    let status = rebuild_sent_to_a_stopped_server(&spec);
    let moment = server("ACTIVE", None);
    assert_eq!(
        power_restore(&spec, &status, &moment, false),
        PowerRestore::WaitForStop
    );
    assert_eq!(
        power_restore(&spec, &status, &server("SHUTOFF", None), false),
        PowerRestore::Start
    );
    // Once the step is over (Nova left it running, or it was started), there is nothing to do.
    let mut done = status.clone();
    done.steps.last_mut().unwrap().finished = Some(Time(t(20)));
    assert_eq!(
        power_restore(&spec, &done, &moment, false),
        PowerRestore::Nothing
    );
}

#[test]
fn a_rebuilt_stopped_server_that_nova_leaves_running_is_done_once_it_stays_active() {
    // A Nova that does not stop it again: ACTIVE with no task, seen again a settle later by our
    // own looks (Nova's `updated` is never compared with our clock).
    let spec = spec(RemediationAction::Rebuild);
    let status = rebuild_sent_to_a_stopped_server(&spec);
    let active = nova_at(true, "ACTIVE", None, 500);
    let plan = run(&spec, &status, &active, t(4));
    assert_eq!(plan.action, Action::Wait(POLL));
    assert_eq!(
        plan.status
            .steps
            .last()
            .unwrap()
            .requests
            .last()
            .unwrap()
            .active_seen_at,
        Some(Time(t(4)))
    );
    let plan = run(&spec, &plan.status, &active, t(6));
    assert_eq!(
        plan.status.phase,
        Some(RemediationPhase::Recovering),
        "not settled yet"
    );
    // Something else in between starts the count again.
    let plan = run(
        &spec,
        &plan.status,
        &nova_at(true, "ACTIVE", Some("powering-off"), 501),
        t(7),
    );
    let between = plan.status;
    assert_eq!(
        between
            .steps
            .last()
            .unwrap()
            .requests
            .last()
            .unwrap()
            .active_seen_at,
        None
    );
    let plan = run(&spec, &between, &active, t(8));
    let plan = run(
        &spec,
        &plan.status,
        &active,
        t(8) + jiff::SignedDuration::from_secs(REBUILT_ACTIVE_SETTLE.as_secs() as i64 - 1),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Recovering));
    let plan = run(
        &spec,
        &plan.status,
        &active,
        t(8) + jiff::SignedDuration::from_secs(REBUILT_ACTIVE_SETTLE.as_secs() as i64),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    assert_eq!(
        sent_requests(&plan.status),
        vec![RequestKind::Stop, RequestKind::Rebuild],
        "nothing to start: Nova left it running"
    );
}

#[test]
fn a_rebuild_recorded_by_an_earlier_release_is_taken_as_one_of_a_stopped_server() {
    let spec = spec(RemediationAction::Rebuild);
    let mut status = rebuild_sent_to_a_stopped_server(&spec);
    let rebuild = status
        .steps
        .last_mut()
        .unwrap()
        .requests
        .last_mut()
        .unwrap();
    rebuild.server_stopped = None;
    let plan = run(&spec, &status, &nova_at(true, "ACTIVE", None, 3), t(3));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Recovering));
    let plan = run(
        &spec,
        &plan.status,
        &nova_at(false, "SHUTOFF", None, 4),
        t(4),
    );
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Start));
}

#[test]
fn a_cause_that_cannot_go_away_by_itself_is_looked_at_again_when_the_step_times_out() {
    let spec = spec(RemediationAction::PowerCycle);
    let plan = blocked(
        &spec,
        &RemediationStatus::default(),
        Some(t(0)),
        &Blocker {
            reason: "CloudAuthFailed",
            message: "keystone: 401",
            retryable: false,
        },
        t(10),
        Some(1),
    );
    // The fence timeout is 60s: look again before it runs out (someone may fix the Secret),
    // never 300s later.
    assert_eq!(plan.action, Action::Wait(BLOCKED_RECHECK));
    let late = blocked(
        &spec,
        &RemediationStatus::default(),
        Some(t(0)),
        &Blocker {
            reason: "CloudAuthFailed",
            message: "keystone: 401",
            retryable: false,
        },
        t(55),
        Some(1),
    );
    // Just past the deadline, not a whole recheck later.
    assert_eq!(late.action, Action::Wait(StdDuration::from_secs(6)));
    let plan = blocked(
        &spec,
        &plan.status,
        Some(t(0)),
        &Blocker {
            reason: "CloudAuthFailed",
            message: "keystone: 401",
            retryable: false,
        },
        t(61),
        Some(1),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    let error = plan.status.last_error.unwrap();
    assert!(error.contains("timeout of 60s ran out"), "{error}");
}

#[test]
fn a_new_leader_waits_before_it_resends_an_unanswered_request() {
    // os-stop on record 60 s ago, no answer, the server untouched: lost, as far as Nova shows.
    let spec = spec(RemediationAction::PowerCycle);
    let status = in_step(
        RemediationPhase::Fencing,
        StepName::Fence,
        vec![recorded(RequestKind::Stop, None)],
    );
    let mut obs = observed(Some(false), server("ACTIVE", None));
    // A leader of 5 s: the one before it may have been paused with the request in hand.
    obs.leading_for = StdDuration::from_secs(5);
    let plan = run(&spec, &status, &obs, t(60));
    assert_eq!(plan.action, Action::Wait(POLL));
    assert_eq!(plan.status.steps[0].requests.len(), 1, "no new record");
    obs.leading_for = StdDuration::from_secs(31);
    let plan = run(&spec, &status, &obs, t(60));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    assert_eq!(plan.status.steps[0].requests.len(), 2);
}

#[test]
fn a_soft_then_hard_reboot_of_a_server_that_is_not_active_goes_hard_at_once() {
    // Nova refuses a soft reboot of a SHUTOFF or ERROR server: waiting for it would send
    // nothing until the recover timeout.
    let spec = spec(RemediationAction::Reboot);
    for status in ["SHUTOFF", "ERROR"] {
        let plan = run(
            &spec,
            &RemediationStatus::default(),
            &observed(Some(false), server(status, None)),
            t(0),
        );
        assert_eq!(
            plan.action,
            Action::Cloud(CloudRequest::Reboot { hard: true }),
            "{status}"
        );
    }
    // A server with a task running is waited for.
    let plan = run(
        &spec,
        &RemediationStatus::default(),
        &observed(Some(false), server("ACTIVE", Some("powering-on"))),
        t(0),
    );
    assert_eq!(plan.action, Action::Wait(POLL));
}

#[test]
fn whether_a_lost_request_arrived_is_read_on_novas_clock_alone() {
    // Nova's clock runs 3 s ahead of ours: the server's last change (before our os-stop)
    // carries a time after our sentAt. It is no sign that the request arrived.
    let spec = spec(RemediationAction::PowerCycle);
    let ahead = |at: i64| {
        observed(
            Some(false),
            ServerObservation::Present(ServerState {
                status: "ACTIVE".into(),
                task_state: None,
                image_id: "img-1".into(),
                updated: Some(t(at)),
            }),
        )
    };
    let plan = run(&spec, &RemediationStatus::default(), &ahead(2), t(0));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    let status = plan.status;
    let recorded = &status.steps[0].requests[0];
    assert_eq!(recorded.server_updated, Some(Time(t(2))));
    // The answer was lost (outcome empty); the server is unchanged.
    let plan = run(&spec, &status, &ahead(2), t(5));
    assert_eq!(
        plan.status.steps[0].requests[0].outcome, None,
        "not taken as accepted"
    );
    // After the grace, with nothing on the server: sent again.
    let plan = run(&spec, &status, &ahead(2), t(31));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::Stop));
    // A later change on Nova's clock is the sign.
    let plan = run(&spec, &status, &ahead(3), t(5));
    assert_eq!(
        plan.status.steps[0].requests[0].outcome,
        Some(RequestOutcome::Accepted)
    );
}

#[test]
fn a_remediation_deleted_while_its_node_is_ready_again_is_recorded_as_succeeded() {
    let spec = spec(RemediationAction::PowerCycle);
    let waiting = in_step(
        RemediationPhase::WaitingForNode,
        StepName::WaitForNode,
        vec![],
    );
    let plan = deleted_before_end(&spec, &waiting, true, false, t(10), Some(1))
        .expect("the success is recorded");
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    assert!(is_condition_true(
        &plan.status.conditions,
        SUCCEEDED_CONDITION
    ));
    let notice = plan.notice.expect("an event");
    assert!(!notice.warning, "a success is no warning: {notice:?}");
    assert!(
        notice.message.contains("WaitingForNode"),
        "{}",
        notice.message
    );
    assert!(plan.status.steps.last().unwrap().finished.is_some());

    // With the node not Ready, someone gave up on it: Failed, and said so.
    let plan = deleted_before_end(&spec, &waiting, false, false, t(10), Some(1)).unwrap();
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));

    // Nothing to record: it had ended already, never began, or was timed out by the NHC.
    assert_eq!(
        deleted_before_end(&spec, &plan.status, true, false, t(11), Some(1)),
        None,
        "recorded once"
    );
    assert_eq!(
        deleted_before_end(
            &spec,
            &RemediationStatus::default(),
            true,
            false,
            t(1),
            Some(1)
        ),
        None
    );
    assert_eq!(
        deleted_before_end(&spec, &waiting, true, true, t(10), Some(1)),
        None
    );
}

#[test]
fn a_resize_magnum_failed_ends_the_replace_with_magnums_reason() {
    let mut spec = spec(RemediationAction::Replace);
    spec.openstack.magnum = Some(MagnumSpec {
        cluster: "k8s".into(),
        report_health_status: false,
    });
    let resize = |before: &str| {
        let mut r = recorded(RequestKind::MagnumResize, Some(RequestOutcome::Accepted));
        r.cluster_status = Some(before.into());
        in_step(RemediationPhase::Recovering, StepName::Recover, vec![r])
    };
    let mut obs = observed(None, server("SHUTOFF", None));
    obs.cluster_status = Some("UPDATE_FAILED".into());
    obs.cluster_status_reason = Some("Heat is down".into());
    // The cluster was fine when the resize left: this failure is the resize's.
    let plan = run(&spec, &resize("CREATE_COMPLETE"), &obs, t(3));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    let error = plan.status.last_error.unwrap();
    assert!(error.contains("UPDATE_FAILED (Heat is down)"), "{error}");
    // It had failed before the resize: Magnum is given time to take the resize on...
    let plan = run(&spec, &resize("UPDATE_FAILED"), &obs, t(3));
    assert_eq!(plan.action, Action::Wait(POLL));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Recovering));
    // ... and a cluster still failed after that failed this resize too.
    let plan = run(&spec, &resize("UPDATE_FAILED"), &obs, t(31));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    // A resize being carried out is waited for.
    obs.cluster_status = Some("UPDATE_IN_PROGRESS".into());
    let plan = run(&spec, &resize("CREATE_COMPLETE"), &obs, t(3));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Recovering));
}

#[test]
fn a_resize_records_the_clusters_status_it_was_decided_on() {
    let mut spec = spec(RemediationAction::Replace);
    spec.openstack.magnum = Some(MagnumSpec {
        cluster: "k8s".into(),
        report_health_status: false,
    });
    let mut status = in_step(RemediationPhase::Recovering, StepName::Recover, vec![]);
    status.fence_evidence = Some(FenceEvidence::ServerShutoff);
    let mut obs = observed(None, server("SHUTOFF", None));
    obs.cluster_status = Some("UPDATE_FAILED".into());
    let plan = run(&spec, &status, &obs, t(1));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::MagnumResize));
    assert_eq!(
        plan.status.steps[0].requests[0].cluster_status.as_deref(),
        Some("UPDATE_FAILED")
    );
}
