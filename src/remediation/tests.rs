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
        cluster_auto_healing: None,
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
    req.outcome = Some(OUTCOME_ACCEPTED.into());
}

/// The OpenStack requests on record, in order.
fn sent_requests(status: &RemediationStatus) -> Vec<&str> {
    status
        .steps
        .iter()
        .flat_map(|s| s.requests.iter().map(|r| r.action.as_str()))
        .collect()
}

fn step_names(status: &RemediationStatus) -> Vec<&str> {
    status.steps.iter().map(|s| s.name.as_str()).collect()
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
    assert_eq!(recorded[0].action, REQ_STOP);
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
    assert_eq!(step_names(&plan.status), vec![STEP_FENCE]);
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
        plan.status.steps[0].requests[0].outcome.as_deref(),
        Some(OUTCOME_ACCEPTED)
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
    status.steps[0].requests[0].outcome = Some("Failed: ServiceUnavailable".into());
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
        vec![STEP_FENCE, STEP_RELEASE, STEP_RECOVER, STEP_WAIT_FOR_NODE]
    );
    assert!(desired_taints(&spec, &plan.status).is_empty());
    assert_eq!(sent_requests(&plan.status), vec![REQ_STOP, REQ_START]);
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
    let plan = run(&spec, &plan.status, &obs, t(5));
    assert_eq!(plan.action, Action::Cloud(CloudRequest::MagnumResize));
    let mut status = plan.status;
    accept_last(&mut status);
    // Gone: fenced by removal; workloads released; the Node is deleted.
    let mut gone = observed(Some(false), ServerObservation::Gone);
    gone.workloads = Some(Workloads::default());
    gone.cluster_status = Some("UPDATE_IN_PROGRESS".into());
    let plan = run(&spec, &status, &gone, t(9));
    assert_eq!(plan.action, Action::DeleteNode);
    gone.node = None;
    let plan = run(&spec, &plan.status, &gone, t(10));
    assert!(matches!(plan.action, Action::Wait(_)));
    gone.cluster_status = Some("UPDATE_COMPLETE".into());
    let plan = run(&spec, &plan.status, &gone, t(20));
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
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
        "CloudUnavailable",
        "keystone token: unavailable",
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
        "CloudUnavailable",
        "keystone token: unavailable",
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
        name: STEP_FENCE.into(),
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
        "X",
        "nova down",
        t(150),
        Some(1),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Fencing));
    let plan = blocked(
        &spec,
        &status,
        Some(t(0)),
        "X",
        "nova down",
        t(161),
        Some(1),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Failed));
    // A final remediation stays as it is.
    let again = blocked(&spec, &plan.status, Some(t(0)), "X", "y", t(500), Some(1));
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
    assert!(restore_power_on_delete(
        &power_cycle,
        &status,
        &server("SHUTOFF", None)
    ));
    // Not while it is still running, stopping, or after our own os-start.
    assert!(!restore_power_on_delete(
        &power_cycle,
        &status,
        &server("ACTIVE", None)
    ));
    assert!(!restore_power_on_delete(
        &power_cycle,
        &status,
        &server("ACTIVE", Some("powering-off"))
    ));
    let mut started = status.clone();
    started
        .steps
        .last_mut()
        .unwrap()
        .requests
        .push(OpenStackRequest {
            action: REQ_START.into(),
            sent_at: Time(t(5)),
            target: None,
            outcome: Some(OUTCOME_ACCEPTED.into()),
        });
    assert!(!restore_power_on_delete(
        &power_cycle,
        &started,
        &server("SHUTOFF", None)
    ));
    // A stop that certainly failed did not turn it off: a server off for another reason stays off.
    let mut failed = status.clone();
    failed
        .steps
        .last_mut()
        .unwrap()
        .requests
        .last_mut()
        .unwrap()
        .outcome = Some("Failed: CloudConflict".into());
    assert!(!restore_power_on_delete(
        &power_cycle,
        &failed,
        &server("SHUTOFF", None)
    ));
    // Nothing was sent at all (the server crashed by itself): left as it is.
    assert!(!restore_power_on_delete(
        &power_cycle,
        &RemediationStatus::default(),
        &server("SHUTOFF", None)
    ));
    // Replace removes servers on purpose.
    assert!(!restore_power_on_delete(
        &spec(RemediationAction::Replace),
        &status,
        &server("SHUTOFF", None)
    ));
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
        name: "Recover".into(),
        started: Time(t(0)),
        finished: None,
        requests: vec![OpenStackRequest {
            action: "os-start".into(),
            sent_at: Time(t(0)),
            target: None,
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
        plan.status.steps[0].requests[0].outcome.as_deref(),
        Some(OUTCOME_ACCEPTED)
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
        assert_eq!(sent_requests(&plan.status), vec![REQ_UNSHELVE]);
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
    let plan = run(
        &spec,
        &status,
        &observed(Some(true), server("ACTIVE", None)),
        t(8),
    );
    assert_eq!(plan.status.phase, Some(RemediationPhase::Succeeded));
    assert_eq!(sent_requests(&plan.status), vec![REQ_UNSHELVE, REQ_REBUILD]);
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
