//! Table tests of the pool decision: node states in, outcomes out.

use std::time::Duration as StdDuration;

use jiff::Timestamp;

use super::*;
use crate::{
    api::{ConditionStatus, contract::ObservedRemediation},
    health::UnhealthyReason,
};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn template(name: &str) -> TemplateReference {
    TemplateReference::new(
        "nodehealer.io/v1alpha1",
        "RemediationTemplate",
        "nodehealer",
        name,
    )
}

fn single_template_policy() -> Policy {
    Policy {
        templates: vec![TemplateStep {
            template: template("power-cycle"),
            timeout: None,
        }],
        min_healthy: None,
        max_unhealthy: None,
        max_in_flight: None,
        storm_cooldown: None,
        healthy_delay: None,
        pause_requests: vec![],
        dry_run: false,
        recovery: None,
        template_blocks: vec![],
    }
}

fn escalating_policy() -> Policy {
    Policy {
        templates: vec![
            TemplateStep {
                template: template("reboot"),
                timeout: Some(StdDuration::from_secs(300)),
            },
            TemplateStep {
                template: template("rebuild"),
                timeout: Some(StdDuration::from_secs(600)),
            },
        ],
        ..single_template_policy()
    }
}

fn unhealthy_since(since: i64) -> Health {
    Health::Unhealthy {
        since: t(since),
        reason: UnhealthyReason::Condition {
            type_: "Ready".into(),
            status: ConditionStatus::Unknown,
            since: t(since - 300),
            duration: StdDuration::from_secs(300),
        },
    }
}

fn node(name: &str, health: Health) -> PoolNode {
    PoolNode {
        name: name.into(),
        health,
        control_plane: false,
        excluded: false,
        maintenance: false,
        cordoned: false,
        reserved: Default::default(),
        lease: LeaseState::Free,
        manually_confirmed_healthy: false,
        remediations: vec![],
    }
}

fn healthy(name: &str) -> PoolNode {
    node(name, Health::Healthy)
}

fn sick(name: &str) -> PoolNode {
    node(name, unhealthy_since(-10))
}

fn cp(mut n: PoolNode) -> PoolNode {
    n.control_plane = true;
    n
}

/// A remediation object for `node` created from template `template` at `created`.
fn rem(node: &str, template: &str, created: i64) -> ObservedRemediation {
    ObservedRemediation {
        api_version: "nodehealer.io/v1alpha1".into(),
        kind: "Remediation".into(),
        name: format!("{node}-{template}"),
        namespace: "nodehealer".into(),
        uid: None,
        node_name: node.into(),
        template_name: Some(template.into()),
        created: Some(t(created)),
        deleting: false,
        processing: Some(true),
        succeeded: None,
        permanent_node_deletion_expected: false,
        timed_out: None,
        healthy_since: None,
        owned: true,
    }
}

fn id(node: &str, template: &str) -> RemediationId {
    RemediationId::from(&rem(node, template, 0))
}

fn with(mut n: PoolNode, r: ObservedRemediation) -> PoolNode {
    n.remediations.push(r);
    n
}

fn pool(nodes: Vec<PoolNode>) -> Pool {
    Pool {
        nodes,
        ..Pool::default()
    }
}

fn outcome_of(decision: &Decision, name: &str) -> Outcome {
    decision
        .node(name)
        .unwrap_or_else(|| panic!("no decision for {name}: {decision:#?}"))
        .outcome
        .clone()
}

fn create(name: &str) -> Outcome {
    Outcome::Create {
        template: template(name),
    }
}

fn blocked(reason: BlockReason) -> Outcome {
    Outcome::Blocked { reason }
}

/// (name, minHealthy, maxUnhealthy, healthy nodes, unhealthy nodes, expected outcome)
type LimitCase = (
    &'static str,
    Option<IntOrPercent>,
    Option<IntOrPercent>,
    usize,
    usize,
    Outcome,
);

/// (name, nodes, expected outcome per named node)
type ControlPlaneCase = (&'static str, Vec<PoolNode>, Vec<(&'static str, Outcome)>);

#[test]
fn min_healthy_and_max_unhealthy_use_medik8s_rounding() {
    let pct = IntOrPercent::Percent;
    // (name, minHealthy, maxUnhealthy, healthy nodes, unhealthy nodes, expected for the first sick node)
    let cases: Vec<LimitCase> = vec![
        (
            "default 51% of 3: 2 healthy is enough",
            None,
            None,
            2,
            1,
            create("power-cycle"),
        ),
        (
            "default 51% of 3 is 2 (rounded up): 1 healthy blocks",
            None,
            None,
            1,
            2,
            blocked(BlockReason::BelowMinHealthy { healthy: 1, min: 2 }),
        ),
        (
            "51% of 10 is 6: 6 healthy suffices",
            Some(pct(51)),
            None,
            6,
            4,
            create("power-cycle"),
        ),
        (
            "51% of 10 is 6: 5 healthy blocks",
            Some(pct(51)),
            None,
            5,
            5,
            blocked(BlockReason::BelowMinHealthy { healthy: 5, min: 6 }),
        ),
        (
            "absolute minHealthy",
            Some(IntOrPercent::Int(2)),
            None,
            2,
            3,
            create("power-cycle"),
        ),
        (
            "100% blocks every remediation",
            Some(pct(100)),
            None,
            9,
            1,
            blocked(BlockReason::BelowMinHealthy {
                healthy: 9,
                min: 10,
            }),
        ),
        (
            "49% of 3 unhealthy is 2 (rounded up)",
            None,
            Some(pct(49)),
            1,
            2,
            create("power-cycle"),
        ),
        (
            "maxUnhealthy 1 with 2 unhealthy",
            None,
            Some(IntOrPercent::Int(1)),
            3,
            2,
            blocked(BlockReason::AboveMaxUnhealthy {
                unhealthy: 2,
                max: 1,
            }),
        ),
        (
            "maxUnhealthy 0 blocks every remediation",
            None,
            Some(IntOrPercent::Int(0)),
            4,
            1,
            blocked(BlockReason::AboveMaxUnhealthy {
                unhealthy: 1,
                max: 0,
            }),
        ),
    ];
    for (name, min_healthy, max_unhealthy, healthy_count, sick_count, want) in cases {
        let policy = Policy {
            min_healthy,
            max_unhealthy,
            ..single_template_policy()
        };
        let mut nodes: Vec<PoolNode> = (0..healthy_count)
            .map(|i| healthy(&format!("ok-{i}")))
            .collect();
        // sick-0 is the longest unhealthy.
        nodes.extend(
            (0..sick_count).map(|i| node(&format!("sick-{i}"), unhealthy_since(-100 + i as i64))),
        );
        let decision = decide(&policy, &pool(nodes), t(0));
        assert_eq!(outcome_of(&decision, "sick-0"), want, "{name}");
        assert_eq!(decision.observed, healthy_count + sick_count, "{name}");
        assert_eq!(decision.healthy, healthy_count, "{name}");
    }
}

#[test]
fn only_healthy_nodes_without_remediation_count_as_healthy() {
    // 4 nodes: one healthy, one healthy but still holding a remediation (healthyDelay), one soon
    // unhealthy, one unhealthy. Healthy = 1 < 51% of 4 = 3.
    let policy = Policy {
        healthy_delay: Some(SignedDuration::parse("10m").unwrap()),
        ..single_template_policy()
    };
    let mut held = rem("held", "power-cycle", -1000);
    held.healthy_since = Some(t(-10));
    let soon = node(
        "soon",
        Health::SoonUnhealthy {
            at: t(100),
            reason: UnhealthyReason::NeverReady {
                created: t(-1000),
                startup_timeout: StdDuration::from_secs(1100),
            },
        },
    );
    let nodes = vec![
        healthy("ok"),
        with(healthy("held"), held),
        soon,
        sick("sick"),
    ];
    let decision = decide(&policy, &pool(nodes), t(0));
    assert_eq!(decision.healthy, 1);
    assert_eq!(decision.unhealthy, 1);
    assert_eq!(decision.min_healthy, 3);
    assert_eq!(
        outcome_of(&decision, "sick"),
        blocked(BlockReason::BelowMinHealthy { healthy: 1, min: 3 })
    );
    assert!(
        decision.node("ok").is_none(),
        "healthy nodes without remediation need nothing"
    );
    assert!(
        decision.node("soon").is_none(),
        "soon-unhealthy nodes without remediation are left alone"
    );
}

#[test]
fn pause_blocks_new_remediations_but_not_the_cleanup_of_recovered_nodes() {
    let policy = Policy {
        pause_requests: vec!["cluster upgrade by @admin".into()],
        ..single_template_policy()
    };
    let nodes = vec![
        healthy("a"),
        healthy("b"),
        healthy("c"),
        sick("sick"),
        with(healthy("recovered"), rem("recovered", "power-cycle", -500)),
    ];
    let decision = decide(&policy, &pool(nodes), t(0));
    assert_eq!(
        outcome_of(&decision, "sick"),
        blocked(BlockReason::Paused {
            requests: vec!["cluster upgrade by @admin".into()]
        })
    );
    assert_eq!(
        outcome_of(&decision, "recovered"),
        Outcome::Remove {
            remediations: vec![id("recovered", "power-cycle")]
        }
    );
}

#[test]
fn storm_blocks_during_the_cooldown_and_reports_transitions() {
    let policy = Policy {
        storm_cooldown: Some(StdDuration::from_secs(600)),
        ..single_template_policy()
    };
    // A storm: 3 of 5 unhealthy, below 51%.
    let storming = pool(vec![
        healthy("a"),
        healthy("b"),
        sick("x"),
        sick("y"),
        sick("z"),
    ]);
    let decision = decide(&policy, &storming, t(0));
    assert_eq!(decision.storm.transition, Some(StormTransition::Started));
    assert!(decision.storm.state.active);
    assert_eq!(
        outcome_of(&decision, "x"),
        blocked(BlockReason::BelowMinHealthy { healthy: 2, min: 3 })
    );

    // The pool recovers except one node: the cooldown starts and blocks it.
    let mut recovered = pool(vec![
        healthy("a"),
        healthy("b"),
        healthy("x"),
        healthy("y"),
        sick("z"),
    ]);
    recovered.storm = decision.storm.state;
    let decision = decide(&policy, &recovered, t(60));
    assert_eq!(
        decision.storm.transition,
        Some(StormTransition::CooldownStarted)
    );
    assert_eq!(
        outcome_of(&decision, "z"),
        blocked(BlockReason::StormCooldown { until: t(660) })
    );
    assert_eq!(
        decision.requeue_at,
        Some(t(660)),
        "requeue exactly when the cooldown ends"
    );

    // After the cooldown, remediation resumes.
    recovered.storm = decision.storm.state;
    let decision = decide(&policy, &recovered, t(660));
    assert_eq!(decision.storm.transition, Some(StormTransition::Ended));
    assert_eq!(outcome_of(&decision, "z"), create("power-cycle"));

    // Without stormCooldownDuration there is no storm state at all.
    let decision = decide(&single_template_policy(), &storming, t(0));
    assert_eq!(decision.storm.transition, None);
    assert!(!decision.storm.state.active);
}

#[test]
fn max_in_flight_counts_nodes_with_remediations_but_never_deleted_nodes() {
    let policy = Policy {
        max_in_flight: Some(IntOrPercent::Int(1)),
        ..single_template_policy()
    };
    let healthy_ones = || {
        (0..6)
            .map(|i| healthy(&format!("ok-{i}")))
            .collect::<Vec<_>>()
    };

    // Two new unhealthy nodes: the one unhealthy longest goes first.
    let mut nodes = healthy_ones();
    nodes.push(node("later", unhealthy_since(-5)));
    nodes.push(node("first", unhealthy_since(-50)));
    let decision = decide(&policy, &pool(nodes), t(0));
    assert_eq!(outcome_of(&decision, "first"), create("power-cycle"));
    assert_eq!(
        outcome_of(&decision, "later"),
        blocked(BlockReason::MaxInFlight { max: 1 })
    );
    assert_eq!(decision.in_flight, 1);

    // One already in flight: a new one waits; the running one is not affected.
    let mut nodes = healthy_ones();
    nodes.push(with(sick("running"), rem("running", "power-cycle", -60)));
    nodes.push(sick("new"));
    let decision = decide(&policy, &pool(nodes), t(0));
    assert_eq!(
        outcome_of(&decision, "running"),
        Outcome::Wait { until: None }
    );
    assert_eq!(
        outcome_of(&decision, "new"),
        blocked(BlockReason::MaxInFlight { max: 1 })
    );

    // A remediation of a deleted node does not count.
    let mut gone = pool({
        let mut nodes = healthy_ones();
        nodes.push(sick("new"));
        nodes
    });
    gone.orphans.push(rem("deleted-node", "power-cycle", -60));
    let decision = decide(&policy, &gone, t(0));
    assert_eq!(outcome_of(&decision, "new"), create("power-cycle"));

    // Percentages round up: 10% of 7 nodes is 1, never 0.
    let policy = Policy {
        max_in_flight: Some(IntOrPercent::Percent(10)),
        ..single_template_policy()
    };
    let mut nodes = healthy_ones();
    nodes.push(sick("new"));
    assert_eq!(
        outcome_of(&decide(&policy, &pool(nodes), t(0)), "new"),
        create("power-cycle")
    );
}

#[test]
fn node_level_blocks() {
    let healthy_ones = || vec![healthy("a"), healthy("b"), healthy("c")];
    let run = |n: PoolNode| {
        let mut nodes = healthy_ones();
        let name = n.name.clone();
        nodes.push(n);
        outcome_of(
            &decide(&single_template_policy(), &pool(nodes), t(0)),
            &name,
        )
    };
    let mut excluded = sick("x");
    excluded.excluded = true;
    assert_eq!(run(excluded), blocked(BlockReason::Excluded));

    let mut leased = sick("x");
    leased.lease = LeaseState::HeldBy("node-maintenance".into());
    assert_eq!(
        run(leased),
        blocked(BlockReason::LeaseHeldBy {
            holder: "node-maintenance".into()
        })
    );

    let mut ours = sick("x");
    ours.lease = LeaseState::Ours;
    assert_eq!(run(ours), create("power-cycle"));
}

#[test]
fn control_plane_one_at_a_time_and_etcd_quorum() {
    // (name, control-plane nodes, expected outcome per listed node)
    let cases: Vec<ControlPlaneCase> = vec![
        (
            "3 members, 1 unhealthy: the other 2 keep quorum",
            vec![cp(healthy("cp-0")), cp(healthy("cp-1")), cp(sick("cp-2"))],
            vec![("cp-2", create("power-cycle"))],
        ),
        (
            "3 members, 2 unhealthy: an unhealthy one may still hold quorum",
            vec![cp(healthy("cp-0")), cp(sick("cp-1")), cp(sick("cp-2"))],
            vec![
                (
                    "cp-1",
                    blocked(BlockReason::EtcdQuorum {
                        healthy_cp: 1,
                        total_cp: 3,
                    }),
                ),
                (
                    "cp-2",
                    blocked(BlockReason::EtcdQuorum {
                        healthy_cp: 1,
                        total_cp: 3,
                    }),
                ),
            ],
        ),
        (
            "5 members, 2 unhealthy: one at a time",
            vec![
                cp(healthy("cp-0")),
                cp(healthy("cp-1")),
                cp(healthy("cp-2")),
                cp(node("cp-3", unhealthy_since(-100))),
                cp(node("cp-4", unhealthy_since(-50))),
            ],
            vec![
                ("cp-3", create("power-cycle")),
                (
                    "cp-4",
                    blocked(BlockReason::ControlPlaneOneAtATime {
                        other: "cp-3".into(),
                    }),
                ),
            ],
        ),
        (
            "5 members, another one still holds a remediation while healthy again",
            vec![
                cp(healthy("cp-0")),
                cp(healthy("cp-1")),
                cp(healthy("cp-2")),
                cp(with(healthy("cp-3"), rem("cp-3", "power-cycle", -100))),
                cp(sick("cp-4")),
            ],
            vec![(
                "cp-4",
                blocked(BlockReason::ControlPlaneOneAtATime {
                    other: "cp-3".into(),
                }),
            )],
        ),
        (
            "a single control-plane node is never fenced",
            vec![cp(sick("cp-0")), healthy("w-0"), healthy("w-1")],
            vec![(
                "cp-0",
                blocked(BlockReason::EtcdQuorum {
                    healthy_cp: 0,
                    total_cp: 1,
                }),
            )],
        ),
        (
            "2 members, 1 unhealthy: the other alone is no quorum",
            vec![cp(healthy("cp-0")), cp(sick("cp-1")), healthy("w-0")],
            vec![(
                "cp-1",
                blocked(BlockReason::EtcdQuorum {
                    healthy_cp: 1,
                    total_cp: 2,
                }),
            )],
        ),
        (
            "workers are not limited by control-plane remediation",
            vec![
                cp(healthy("cp-0")),
                cp(healthy("cp-1")),
                cp(with(sick("cp-2"), rem("cp-2", "power-cycle", -10))),
                healthy("w-0"),
                healthy("w-1"),
                sick("w-2"),
            ],
            vec![
                ("cp-2", Outcome::Wait { until: None }),
                ("w-2", create("power-cycle")),
            ],
        ),
    ];
    // The pool threshold is out of the way here, so the control-plane rules alone decide.
    let policy = Policy {
        min_healthy: Some(IntOrPercent::Int(0)),
        ..single_template_policy()
    };
    for (name, nodes, want) in cases {
        let decision = decide(&policy, &pool(nodes), t(0));
        for (node_name, outcome) in want {
            assert_eq!(
                outcome_of(&decision, node_name),
                outcome,
                "{name}: {node_name}"
            );
        }
    }

    // A remediation of a deleted node not known as a control-plane node blocks nothing.
    let mut p = pool(vec![
        cp(healthy("cp-0")),
        cp(healthy("cp-1")),
        cp(sick("cp-2")),
    ]);
    p.orphans.push(rem("cp-old", "power-cycle", -100));
    assert_eq!(
        outcome_of(&decide(&single_template_policy(), &p, t(0)), "cp-2"),
        create("power-cycle")
    );
}

/// A remediation object made elsewhere: another NodeHealthCheck's (ours or medik8s'), of a
/// third-party kind, in another namespace.
fn foreign(node: &str) -> ObservedRemediation {
    ObservedRemediation {
        api_version: "self-node-remediation.medik8s.io/v1alpha1".into(),
        kind: "SelfNodeRemediation".into(),
        namespace: "workload-availability".into(),
        name: node.into(),
        template_name: None,
        owned: false,
        ..rem(node, "snr", -100)
    }
}

/// (name, control-plane remediations seen cluster-wide, orphans of this NodeHealthCheck, the
/// outcome for cp-4)
type SeenCase = (
    &'static str,
    Vec<ObservedRemediation>,
    Vec<ObservedRemediation>,
    Outcome,
);

#[test]
fn control_plane_remediations_anywhere_in_the_cluster_hold_the_slot() {
    let replace_of_deleted_node = {
        let mut r = rem("cp-old", "replace", -100);
        r.permanent_node_deletion_expected = true;
        r
    };
    let deleting = {
        let mut r = foreign("cp-1");
        r.deleting = true;
        r
    };
    let timed_out = {
        let mut r = foreign("cp-1");
        r.timed_out = Some(Some(t(-10)));
        r
    };
    let one_at_a_time = |other: &str| {
        blocked(BlockReason::ControlPlaneOneAtATime {
            other: other.into(),
        })
    };
    let cases: Vec<SeenCase> = vec![
        ("none anywhere", vec![], vec![], create("power-cycle")),
        (
            "another NodeHealthCheck remediates cp-0 (third-party kind, other namespace)",
            vec![foreign("cp-0")],
            vec![],
            one_at_a_time("cp-0"),
        ),
        (
            "our Replace of cp-old, whose Node is already deleted",
            vec![replace_of_deleted_node.clone()],
            vec![replace_of_deleted_node],
            one_at_a_time("cp-old"),
        ),
        (
            "a remediation being deleted still runs its finalizer",
            vec![deleting],
            vec![],
            one_at_a_time("cp-1"),
        ),
        (
            "a timed-out remediation whose node has not recovered",
            vec![timed_out],
            vec![],
            one_at_a_time("cp-1"),
        ),
        (
            "one for cp-4 itself is not another node",
            vec![foreign("cp-4")],
            vec![],
            create("power-cycle"),
        ),
        (
            "one for cp-4 itself does not hide one for cp-0",
            vec![foreign("cp-4"), foreign("cp-0")],
            vec![],
            one_at_a_time("cp-0"),
        ),
    ];
    let policy = Policy {
        min_healthy: Some(IntOrPercent::Int(0)),
        ..single_template_policy()
    };
    for (name, control_plane_remediations, orphans, want) in cases {
        let p = Pool {
            orphans,
            control_plane_remediations,
            ..pool(vec![
                cp(healthy("cp-0")),
                cp(healthy("cp-1")),
                cp(healthy("cp-2")),
                cp(healthy("cp-3")),
                cp(sick("cp-4")),
                sick("w-0"),
            ])
        };
        let decision = decide(&policy, &p, t(0));
        assert_eq!(outcome_of(&decision, "cp-4"), want, "{name}");
        assert_eq!(
            outcome_of(&decision, "w-0"),
            create("power-cycle"),
            "{name}: workers are not limited"
        );
    }

    // A kind that cannot be read may hide one: no new control-plane remediation, but the
    // escalation of one already running goes on.
    let p = Pool {
        control_plane_unseen: vec!["SelfNodeRemediation: forbidden".into()],
        ..pool(vec![
            cp(healthy("cp-0")),
            cp(healthy("cp-1")),
            cp(healthy("cp-2")),
            cp(sick("cp-3")),
            cp(sick("cp-4")),
            sick("w-0"),
        ])
    };
    let policy = Policy {
        min_healthy: Some(IntOrPercent::Int(0)),
        ..escalating_policy()
    };
    let decision = decide(&policy, &p, t(0));
    for name in ["cp-3", "cp-4"] {
        assert_eq!(
            outcome_of(&decision, name),
            blocked(BlockReason::ControlPlaneUnseen {
                why: "SelfNodeRemediation: forbidden".into()
            }),
            "{name}"
        );
    }
    assert_eq!(outcome_of(&decision, "w-0"), create("reboot"));
    let mut p = p;
    p.nodes[3].remediations.push(rem("cp-3", "reboot", -1000));
    let escalation = outcome_of(&decide(&policy, &p, t(0)), "cp-3");
    assert!(
        matches!(escalation, Outcome::Escalate { to: Some(_), .. }),
        "{escalation:?}"
    );
}

#[test]
fn etcd_quorum_rule() {
    // (healthy others, members, allowed)
    for (healthy_others, total, allowed) in [
        (2, 3, true),
        (1, 3, false),
        (0, 1, false),
        (1, 2, false),
        (3, 5, true),
        (2, 5, false),
        (4, 7, true),
        (3, 7, false),
    ] {
        assert_eq!(
            etcd_allows_fencing(healthy_others, total),
            allowed,
            "{healthy_others} healthy of {total}"
        );
    }
}

#[test]
fn escalation_by_order_with_timeouts() {
    let policy = escalating_policy();
    let timed_out = |mut r: ObservedRemediation| {
        r.timed_out = Some(Some(t(-1)));
        r
    };
    let failed = |mut r: ObservedRemediation| {
        r.succeeded = Some(false);
        r
    };
    // (name, remediations of the sick node, expected outcome)
    let cases: Vec<(&str, Vec<ObservedRemediation>, Outcome)> = vec![
        (
            "no remediation yet: the first template",
            vec![],
            create("reboot"),
        ),
        (
            "first running, within its timeout",
            vec![rem("n", "reboot", -100)],
            Outcome::Wait {
                until: Some(t(200)),
            },
        ),
        (
            "first timed out",
            vec![rem("n", "reboot", -300)],
            Outcome::Escalate {
                from: id("n", "reboot"),
                to: Some(template("rebuild")),
                cause: EscalationCause::TimedOut,
            },
        ),
        (
            "first reported Succeeded=False: escalate at once",
            vec![failed(rem("n", "reboot", -10))],
            Outcome::Escalate {
                from: id("n", "reboot"),
                to: Some(template("rebuild")),
                cause: EscalationCause::Failed,
            },
        ),
        (
            "first annotated timed out but the next not created yet (crash in between): create it",
            vec![timed_out(rem("n", "reboot", -400))],
            Outcome::Escalate {
                from: id("n", "reboot"),
                to: Some(template("rebuild")),
                cause: EscalationCause::TimedOut,
            },
        ),
        (
            "second running",
            vec![
                timed_out(rem("n", "reboot", -400)),
                rem("n", "rebuild", -100),
            ],
            Outcome::Wait {
                until: Some(t(500)),
            },
        ),
        (
            "last timed out: mark it, nothing left",
            vec![
                timed_out(rem("n", "reboot", -1000)),
                rem("n", "rebuild", -600),
            ],
            Outcome::Escalate {
                from: id("n", "rebuild"),
                to: None,
                cause: EscalationCause::TimedOut,
            },
        ),
        (
            "all tried",
            vec![
                timed_out(rem("n", "reboot", -1000)),
                timed_out(rem("n", "rebuild", -600)),
            ],
            Outcome::Exhausted,
        ),
    ];
    for (name, remediations, want) in cases {
        let mut n = sick("n");
        n.remediations = remediations;
        let nodes = vec![healthy("a"), healthy("b"), healthy("c"), n];
        assert_eq!(
            outcome_of(&decide(&policy, &pool(nodes), t(0)), "n"),
            want,
            "{name}"
        );
    }
}

#[test]
fn escalation_is_blocked_like_a_new_remediation_but_marking_the_last_timeout_is_not() {
    let policy = Policy {
        pause_requests: vec!["maintenance".into()],
        ..escalating_policy()
    };
    let paused = blocked(BlockReason::Paused {
        requests: vec!["maintenance".into()],
    });
    let nodes = vec![
        healthy("a"),
        healthy("b"),
        healthy("c"),
        with(sick("first"), rem("first", "reboot", -300)),
        with(
            with(sick("last"), {
                let mut r = rem("last", "reboot", -2000);
                r.timed_out = Some(None);
                r
            }),
            rem("last", "rebuild", -600),
        ),
    ];
    let decision = decide(&policy, &pool(nodes), t(0));
    assert_eq!(outcome_of(&decision, "first"), paused);
    assert_eq!(
        outcome_of(&decision, "last"),
        Outcome::Escalate {
            from: id("last", "rebuild"),
            to: None,
            cause: EscalationCause::TimedOut
        }
    );
}

#[test]
fn escalation_order_comes_from_the_order_field() {
    let spec: NodeHealthCheckSpec = serde_yaml::from_str(
        r#"
selector: {matchLabels: {pool: a}}
escalatingRemediations:
  - {order: 5, timeout: 10m, remediationTemplate: {apiVersion: nodehealer.io/v1alpha1, kind: RemediationTemplate, namespace: nodehealer, name: rebuild}}
  - {order: 1, timeout: 5m, remediationTemplate: {apiVersion: nodehealer.io/v1alpha1, kind: RemediationTemplate, namespace: nodehealer, name: reboot}}
"#,
    )
    .unwrap();
    let policy = Policy::from_spec(&spec);
    let names: Vec<&str> = policy
        .templates
        .iter()
        .map(|s| s.template.name.as_str())
        .collect();
    assert_eq!(names, ["reboot", "rebuild"]);
    assert_eq!(
        policy.templates[0].timeout,
        Some(StdDuration::from_secs(300))
    );
}

#[test]
fn single_template_is_never_escalated() {
    let policy = single_template_policy();
    let run = |r: ObservedRemediation| {
        let nodes = vec![healthy("a"), healthy("b"), healthy("c"), with(sick("n"), r)];
        outcome_of(&decide(&policy, &pool(nodes), t(0)), "n")
    };
    assert_eq!(
        run(rem("n", "power-cycle", -100_000)),
        Outcome::Wait { until: None }
    );
    let mut failed = rem("n", "power-cycle", -10);
    failed.succeeded = Some(false);
    assert_eq!(run(failed), Outcome::Exhausted);
    let mut deleting = rem("n", "power-cycle", -10);
    deleting.deleting = true;
    assert_eq!(run(deleting), Outcome::Wait { until: None });
}

#[test]
fn other_kinds_and_templates_are_told_apart() {
    let snr = TemplateReference::new(
        "self-node-remediation.medik8s.io/v1alpha1",
        "SelfNodeRemediationTemplate",
        "medik8s",
        "snr-auto",
    );
    let mut r = rem("n", "snr-auto", 0);
    r.api_version = "self-node-remediation.medik8s.io/v1alpha1".into();
    r.kind = "SelfNodeRemediation".into();
    r.namespace = "medik8s".into();
    assert!(created_from(&r, &snr));
    assert!(!created_from(&r, &template("snr-auto")));
    r.template_name = None;
    assert!(
        created_from(&r, &snr),
        "objects without the annotation match by kind"
    );
    r.template_name = Some("snr-other".into());
    assert!(!created_from(&r, &snr));
}

#[test]
fn healthy_delay_keeps_remediations_of_recovered_nodes() {
    let marked = |since: i64| {
        let mut r = rem("n", "power-cycle", -1000);
        r.healthy_since = Some(t(since));
        r
    };
    // (name, healthyDelay, manually confirmed, remediation, expected)
    let cases: Vec<(&str, Option<&str>, bool, ObservedRemediation, Outcome)> = vec![
        (
            "no delay: removed at once",
            None,
            false,
            rem("n", "power-cycle", -1000),
            Outcome::Remove {
                remediations: vec![id("n", "power-cycle")],
            },
        ),
        (
            "zero delay: removed at once",
            Some("0s"),
            false,
            rem("n", "power-cycle", -1000),
            Outcome::Remove {
                remediations: vec![id("n", "power-cycle")],
            },
        ),
        (
            "delay starts now: mark the remediation",
            Some("5m"),
            false,
            rem("n", "power-cycle", -1000),
            Outcome::HoldHealthy {
                until: Some(t(300)),
                mark: vec![id("n", "power-cycle")],
            },
        ),
        (
            "delay running since the mark",
            Some("5m"),
            false,
            marked(-100),
            Outcome::HoldHealthy {
                until: Some(t(200)),
                mark: vec![],
            },
        ),
        (
            "delay passed",
            Some("5m"),
            false,
            marked(-300),
            Outcome::Remove {
                remediations: vec![id("n", "power-cycle")],
            },
        ),
        (
            "negative delay: until a person confirms",
            Some("-1s"),
            false,
            marked(-100_000),
            Outcome::HoldHealthy {
                until: None,
                mark: vec![],
            },
        ),
        (
            "manually confirmed healthy",
            Some("-1s"),
            true,
            marked(-1),
            Outcome::Remove {
                remediations: vec![id("n", "power-cycle")],
            },
        ),
    ];
    for (name, delay, confirmed, r, want) in cases {
        let policy = Policy {
            healthy_delay: delay.map(|d| SignedDuration::parse(d).unwrap()),
            ..single_template_policy()
        };
        let mut n = with(healthy("n"), r);
        n.manually_confirmed_healthy = confirmed;
        let decision = decide(&policy, &pool(vec![n]), t(0));
        assert_eq!(outcome_of(&decision, "n"), want, "{name}");
        if let Outcome::HoldHealthy {
            until: Some(until), ..
        } = want
        {
            assert_eq!(
                decision.requeue_at,
                Some(until),
                "{name}: requeue when the delay ends"
            );
        }
    }
}

#[test]
fn a_relapse_clears_the_healthy_delay_mark() {
    let mut r = rem("n", "power-cycle", -1000);
    r.healthy_since = Some(t(-50));
    let decision = decide(
        &single_template_policy(),
        &pool(vec![
            healthy("a"),
            healthy("b"),
            healthy("c"),
            with(sick("n"), r),
        ]),
        t(0),
    );
    let n = decision.node("n").unwrap();
    assert_eq!(n.outcome, Outcome::Wait { until: None });
    assert_eq!(n.clear_healthy_mark, vec![id("n", "power-cycle")]);
}

#[test]
fn soon_unhealthy_nodes_keep_their_remediation_untouched() {
    let soon = Health::SoonUnhealthy {
        at: t(120),
        reason: UnhealthyReason::Condition {
            type_: "Ready".into(),
            status: ConditionStatus::False,
            since: t(-180),
            duration: StdDuration::from_secs(300),
        },
    };
    // Even past the escalation timeout nothing is escalated or removed while the node is only
    // "soon unhealthy" (Unknown → False during a reboot).
    let nodes = vec![
        healthy("a"),
        healthy("b"),
        with(node("n", soon), rem("n", "reboot", -5000)),
    ];
    let decision = decide(&escalating_policy(), &pool(nodes), t(0));
    assert_eq!(
        outcome_of(&decision, "n"),
        Outcome::Wait {
            until: Some(t(120))
        }
    );
    assert_eq!(decision.requeue_at, Some(t(120)));
}

#[test]
fn remediations_of_deleted_nodes() {
    let pnde = |succeeded: Option<bool>| {
        let mut r = rem("gone", "replace", -100);
        r.permanent_node_deletion_expected = true;
        r.succeeded = succeeded;
        r
    };
    let remove = Outcome::Remove {
        remediations: vec![id("gone", "replace")],
    };
    // (name, remediation, expected)
    let cases = vec![
        (
            "plain: removed",
            rem("gone", "replace", -100),
            Some(remove.clone()),
        ),
        (
            "node deletion expected, not succeeded yet: kept",
            pnde(None),
            Some(Outcome::Wait { until: None }),
        ),
        (
            "node deletion expected and failed: kept",
            pnde(Some(false)),
            Some(Outcome::Wait { until: None }),
        ),
        (
            "node deletion expected and succeeded: removed",
            pnde(Some(true)),
            Some(remove),
        ),
        (
            "already being deleted: nothing to do",
            {
                let mut r = rem("gone", "replace", -100);
                r.deleting = true;
                r
            },
            None,
        ),
    ];
    for (name, r, want) in cases {
        let p = Pool {
            nodes: vec![healthy("a")],
            orphans: vec![r],
            ..Pool::default()
        };
        let decision = decide(&single_template_policy(), &p, t(0));
        assert_eq!(
            decision.orphans.first().map(|o| o.outcome.clone()),
            want,
            "{name}"
        );
        assert_eq!(decision.in_flight, 0, "{name}: never in flight");
    }
}

#[test]
fn dry_run_acts_on_nothing_but_reports_what_it_would_do() {
    let policy = Policy {
        dry_run: true,
        max_in_flight: Some(IntOrPercent::Int(2)),
        ..single_template_policy()
    };
    let mut marked = rem("back", "power-cycle", -100);
    marked.healthy_since = Some(t(-10));
    let nodes = vec![
        healthy("a"),
        healthy("b"),
        healthy("c"),
        healthy("d"),
        node("first", unhealthy_since(-100)),
        node("second", unhealthy_since(-10)),
        with(healthy("back"), marked),
    ];
    let mut p = pool(nodes);
    p.orphans.push(rem("gone", "power-cycle", -100));
    let decision = decide(&policy, &p, t(0));
    assert_eq!(
        outcome_of(&decision, "first"),
        blocked(BlockReason::DryRun {
            would: Box::new(create("power-cycle"))
        })
    );
    // Counted as if created ("back" still holds one): the second is held back by maxInFlight.
    assert_eq!(
        outcome_of(&decision, "second"),
        blocked(BlockReason::MaxInFlight { max: 2 })
    );
    assert!(matches!(
        outcome_of(&decision, "back"),
        Outcome::Blocked {
            reason: BlockReason::DryRun { .. }
        }
    ));
    assert!(matches!(
        decision.orphans[0].outcome,
        Outcome::Blocked {
            reason: BlockReason::DryRun { .. }
        }
    ));
    assert!(
        decision
            .nodes
            .iter()
            .all(|n| !n.outcome.writes() && n.clear_healthy_mark.is_empty())
    );
}

#[test]
fn unhealthy_nodes_come_first_longest_unhealthy_first() {
    let nodes = vec![
        with(
            healthy("a-recovered"),
            rem("a-recovered", "power-cycle", -10),
        ),
        node("z-old", unhealthy_since(-500)),
        node("m-new", unhealthy_since(-5)),
        healthy("h1"),
        healthy("h2"),
        healthy("h3"),
        healthy("h4"),
    ];
    let decision = decide(&single_template_policy(), &pool(nodes), t(0));
    let names: Vec<&str> = decision.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["z-old", "m-new", "a-recovered"]);
}

#[test]
fn block_reasons_read_well() {
    let cases = [
        (
            BlockReason::BelowMinHealthy { healthy: 1, min: 2 },
            "1 healthy nodes, below minHealthy 2: no new remediation",
        ),
        (
            BlockReason::EtcdQuorum {
                healthy_cp: 1,
                total_cp: 3,
            },
            "only 1 of 3 control-plane nodes are healthy; fencing this one could break etcd quorum (2 needed)",
        ),
        (
            BlockReason::DryRun {
                would: Box::new(create("power-cycle")),
            },
            "dry run: would create a remediation from RemediationTemplate nodehealer/power-cycle",
        ),
        (
            BlockReason::ControlPlaneOneAtATime {
                other: "cp-0".into(),
            },
            "control-plane node cp-0 is being remediated; one control-plane node at a time",
        ),
    ];
    for (reason, want) in cases {
        assert_eq!(reason.to_string(), want);
    }
}

#[test]
fn phases_as_medik8s_computes_them() {
    let paused = vec!["upgrade".to_owned()];
    assert_eq!(
        phase(Some("template missing"), &paused, 3).0,
        NodeHealthCheckPhase::Disabled
    );
    assert_eq!(
        phase(None, &paused, 3),
        (NodeHealthCheckPhase::Paused, "paused: upgrade".into())
    );
    assert_eq!(phase(None, &[], 2).0, NodeHealthCheckPhase::Remediating);
    assert_eq!(phase(None, &[], 0).0, NodeHealthCheckPhase::Enabled);
}

mod recovery_methods {
    use super::*;
    use crate::api::RecoveryMethod;
    use crate::decide::placement::{NodeTraits, Placement, Taint};
    use crate::decide::recovery::{InServiceReport, Promotion, RESERVED_TAINT_KEY, StandbyReport};

    fn policy(method: RecoveryMethod) -> Policy {
        Policy {
            recovery: Some(RecoveryPolicy {
                method,
                pending_pod_timeout: StdDuration::from_secs(10),
            }),
            ..single_template_policy()
        }
    }

    /// A standby picked by reservedNodeSelector and already marked (label and taint).
    fn standby(name: &str) -> PoolNode {
        let mut n = healthy(name);
        n.reserved = Reserved {
            role: ReservedRole::Standby,
            selected: true,
            tainted: true,
            traits: NodeTraits {
                name: name.into(),
                labels: [("pool".to_string(), "workers".to_string())].into(),
                taints: vec![Taint {
                    key: RESERVED_TAINT_KEY.into(),
                    value: String::new(),
                    effect: "NoSchedule".into(),
                }],
            },
        };
        n
    }

    fn in_service(name: &str, replaced: &str, since: i64) -> PoolNode {
        let mut n = healthy(name);
        n.reserved.role = ReservedRole::InService {
            replaced: Some(replaced.into()),
            since: Some(t(since)),
        };
        n
    }

    fn workers() -> Vec<PoolNode> {
        vec![healthy("w1"), healthy("w2"), sick("w3")]
    }

    fn promotion(standby: &str, replaces: &str) -> Promotion {
        Promotion {
            standby: standby.into(),
            replaces: replaces.into(),
        }
    }

    #[test]
    fn reserved_host_brings_a_standby_into_service_with_the_new_remediation() {
        let mut nodes = workers();
        nodes.push(standby("s1"));
        let d = decide(&policy(RecoveryMethod::ReservedHost), &pool(nodes), t(0));
        assert_eq!(
            outcome_of(&d, "w3"),
            Outcome::Create {
                template: template("power-cycle")
            }
        );
        assert_eq!(d.recovery.promotions, vec![promotion("s1", "w3")]);
        assert!(d.recovery.make_standby.is_empty(), "{:?}", d.recovery);
        assert_eq!(
            d.recovery.in_service,
            vec![InServiceReport {
                name: "s1".into(),
                replaced: Some("w3".into()),
                since: Some(t(0)),
            }]
        );
        // The failed node is the pool's standby from now on (unavailable until repaired).
        assert_eq!(
            d.recovery.standbys,
            vec![StandbyReport {
                name: "w3".into(),
                unavailable: Some("not healthy".into()),
            }]
        );
    }

    #[test]
    fn a_node_picked_by_the_selector_is_made_a_standby_and_can_be_promoted_at_once() {
        let mut s1 = healthy("s1");
        s1.reserved.selected = true;
        let d = decide(
            &policy(RecoveryMethod::ReservedHost),
            &pool(vec![healthy("w1"), healthy("w2"), s1.clone()]),
            t(0),
        );
        assert_eq!(d.recovery.make_standby, vec!["s1".to_string()]);
        assert_eq!(
            d.recovery.standbys,
            vec![StandbyReport {
                name: "s1".into(),
                unavailable: None
            }]
        );

        let mut nodes = workers();
        nodes.push(s1);
        let d = decide(&policy(RecoveryMethod::ReservedHost), &pool(nodes), t(0));
        assert_eq!(d.recovery.promotions, vec![promotion("s1", "w3")]);
        assert!(d.recovery.make_standby.is_empty());
    }

    #[test]
    fn a_standby_that_lost_its_taint_gets_it_back() {
        let mut s1 = standby("s1");
        s1.reserved.tainted = false;
        let d = decide(
            &policy(RecoveryMethod::ReservedHost),
            &pool(vec![healthy("w1"), s1]),
            t(0),
        );
        assert_eq!(d.recovery.make_standby, vec!["s1".to_string()]);
    }

    #[test]
    fn reserved_host_without_an_available_standby_does_not_start_the_remediation() {
        type Change = Box<dyn Fn(&mut PoolNode)>;
        let cases: Vec<(&str, Change, &str)> = vec![
            (
                "unhealthy",
                Box::new(|n| n.health = unhealthy_since(-5)),
                "not healthy",
            ),
            (
                "maintenance",
                Box::new(|n| n.maintenance = true),
                "in maintenance (nodehealer.io/maintenance)",
            ),
            ("cordoned", Box::new(|n| n.cordoned = true), "cordoned"),
            (
                "excluded",
                Box::new(|n| n.excluded = true),
                "excluded from remediation",
            ),
            (
                "leased",
                Box::new(|n| n.lease = LeaseState::HeldBy("node-maintenance".into())),
                "medik8s node lease held by node-maintenance",
            ),
            (
                "remediated",
                Box::new(|n| n.remediations.push(rem("s1", "power-cycle", -3))),
                "being remediated",
            ),
        ];
        for (name, change, why) in cases {
            let mut s1 = standby("s1");
            change(&mut s1);
            let mut nodes = workers();
            nodes.push(s1);
            // A pool big enough that the standby's own trouble does not trip minHealthy.
            nodes.extend(["w4", "w5", "w6"].map(healthy));
            let d = decide(&policy(RecoveryMethod::ReservedHost), &pool(nodes), t(0));
            assert_eq!(
                outcome_of(&d, "w3"),
                Outcome::Blocked {
                    reason: BlockReason::NoStandby
                },
                "{name}"
            );
            assert!(d.recovery.promotions.is_empty(), "{name}");
            let standby = d.recovery.standbys.iter().find(|s| s.name == "s1").unwrap();
            assert_eq!(standby.unavailable.as_deref(), Some(why), "{name}");
            // A standby in trouble has its own remediation.
            let expected_in_flight = usize::from(name == "remediated" || name == "unhealthy");
            assert_eq!(d.in_flight, expected_in_flight, "{name}");
        }
    }

    #[test]
    fn reserved_host_priority_goes_on_as_auto_without_a_standby() {
        let d = decide(
            &policy(RecoveryMethod::ReservedHostPriority),
            &pool(workers()),
            t(0),
        );
        assert_eq!(
            outcome_of(&d, "w3"),
            Outcome::Create {
                template: template("power-cycle")
            }
        );
        assert!(d.recovery.promotions.is_empty());
        assert_eq!(d.in_flight, 1);
    }

    #[test]
    fn one_standby_per_failed_node_longest_unhealthy_first() {
        let mut older = sick("w4");
        older.health = unhealthy_since(-60);
        let mut nodes = vec![healthy("w1"), healthy("w2"), healthy("w5"), healthy("w6")];
        nodes.extend([sick("w3"), older, standby("s1")]);
        let d = decide(
            &policy(RecoveryMethod::ReservedHostPriority),
            &pool(nodes),
            t(0),
        );
        assert_eq!(d.recovery.promotions, vec![promotion("s1", "w4")]);
        assert!(matches!(outcome_of(&d, "w3"), Outcome::Create { .. }));
    }

    #[test]
    fn a_node_replaced_for_this_failure_is_not_replaced_again_and_is_marked_standby() {
        // w3 unhealthy since t(-10); s1 went into service for it at t(-8), but a restart came
        // before w3 was marked.
        let mut nodes = workers();
        nodes.push(in_service("s1", "w3", -8));
        let d = decide(&policy(RecoveryMethod::ReservedHost), &pool(nodes), t(0));
        assert!(d.recovery.promotions.is_empty());
        assert_eq!(d.recovery.make_standby, vec!["w3".to_string()]);
        assert!(matches!(outcome_of(&d, "w3"), Outcome::Create { .. }));
    }

    #[test]
    fn a_replacement_from_an_earlier_failure_does_not_count() {
        let mut nodes = workers();
        nodes.extend([in_service("s1", "w3", -500), standby("s2")]);
        let d = decide(&policy(RecoveryMethod::ReservedHost), &pool(nodes), t(0));
        assert_eq!(d.recovery.promotions, vec![promotion("s2", "w3")]);
        assert!(d.recovery.make_standby.is_empty());
    }

    #[test]
    fn a_failed_standby_is_remediated_without_a_replacement() {
        let mut s1 = standby("s1");
        s1.health = unhealthy_since(-10);
        let nodes = vec![healthy("w1"), healthy("w2"), healthy("w3"), s1];
        let d = decide(&policy(RecoveryMethod::ReservedHost), &pool(nodes), t(0));
        assert!(matches!(outcome_of(&d, "s1"), Outcome::Create { .. }));
        assert!(d.recovery.promotions.is_empty());
    }

    #[test]
    fn a_running_remediation_gets_a_standby_that_became_available() {
        let nodes = vec![
            healthy("w1"),
            healthy("w2"),
            with(sick("w3"), rem("w3", "power-cycle", -5)),
            standby("s1"),
        ];
        let d = decide(
            &policy(RecoveryMethod::ReservedHostPriority),
            &pool(nodes),
            t(0),
        );
        assert_eq!(d.recovery.promotions, vec![promotion("s1", "w3")]);
    }

    fn auto_priority_pool(pending: Vec<PendingPod>, extra: Vec<PoolNode>) -> Pool {
        let mut nodes = vec![
            healthy("w1"),
            healthy("w2"),
            with(sick("w3"), rem("w3", "power-cycle", -20)),
            standby("s1"),
        ];
        nodes.extend(extra);
        Pool {
            pending_pods: pending,
            ..pool(nodes)
        }
    }

    fn pending(created: i64, since: i64) -> PendingPod {
        PendingPod {
            created: t(created),
            unschedulable_since: t(since),
            placement: Placement::default(),
        }
    }

    fn pinned(created: i64, since: i64, pool: &str) -> PendingPod {
        PendingPod {
            placement: Placement {
                node_selector: [("pool".to_string(), pool.to_string())].into(),
                ..Placement::default()
            },
            ..pending(created, since)
        }
    }

    #[test]
    fn auto_priority_counts_only_pods_that_could_run_on_a_standby() {
        let p = policy(RecoveryMethod::AutoPriority);
        // A pod waiting for the GPU pool's nodes is not ours to make room for.
        let d = decide(
            &p,
            &auto_priority_pool(vec![pinned(-15, -14, "gpu")], vec![]),
            t(0),
        );
        assert!(d.recovery.promotions.is_empty());
        assert_eq!(d.recovery.pending_pods, 0);
        assert_eq!(d.recovery.requeue_at, None);
        // Counted when it could run here.
        let d = decide(
            &p,
            &auto_priority_pool(
                vec![pinned(-15, -14, "workers"), pinned(-15, -14, "gpu")],
                vec![],
            ),
            t(0),
        );
        assert_eq!(d.recovery.pending_pods, 1);
        assert_eq!(d.recovery.promotions, vec![promotion("s1", "w3")]);
        // The standby chosen is one the pod fits, not merely the first by name.
        let mut s2 = standby("s2");
        s2.reserved
            .traits
            .labels
            .insert("pool".into(), "infra".into());
        let mut s0 = standby("s0");
        s0.reserved.traits.taints.push(Taint {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: "NoSchedule".into(),
        });
        let d = decide(
            &p,
            &auto_priority_pool(vec![pinned(-15, -14, "infra")], vec![s0, s2]),
            t(0),
        );
        assert_eq!(d.recovery.promotions, vec![promotion("s2", "w3")]);
        // A pod fitting a standby that is not yet due waits for it.
        let d = decide(
            &p,
            &auto_priority_pool(
                vec![pinned(-15, -14, "gpu"), pinned(-6, -5, "workers")],
                vec![],
            ),
            t(0),
        );
        assert!(d.recovery.promotions.is_empty());
        assert_eq!(d.recovery.requeue_at, Some(t(5)));
    }

    #[test]
    fn auto_priority_promotes_when_freed_pods_stay_unschedulable() {
        let p = policy(RecoveryMethod::AutoPriority);
        // Not yet: pending 5 s of 10.
        let d = decide(&p, &auto_priority_pool(vec![pending(-6, -5)], vec![]), t(0));
        assert!(d.recovery.promotions.is_empty());
        assert_eq!(d.recovery.pending_pods, 1);
        assert_eq!(d.recovery.requeue_at, Some(t(5)));
        assert!(d.requeue_at.is_some_and(|r| r <= t(5)));
        // Due.
        let d = decide(
            &p,
            &auto_priority_pool(vec![pending(-15, -14)], vec![]),
            t(0),
        );
        assert_eq!(d.recovery.promotions, vec![promotion("s1", "w3")]);
        // Pods pending since before the remediation began were not freed by it.
        let d = decide(
            &p,
            &auto_priority_pool(vec![pending(-60, -59)], vec![]),
            t(0),
        );
        assert!(d.recovery.promotions.is_empty());
        assert_eq!(d.recovery.pending_pods, 0);
        // No pending pods: the scheduler found room.
        let d = decide(&p, &auto_priority_pool(vec![], vec![]), t(0));
        assert!(d.recovery.promotions.is_empty());
        assert_eq!(d.recovery.requeue_at, None);
        // A new remediation does not promote on its own.
        let mut nodes = workers();
        nodes.push(standby("s1"));
        let d = decide(&p, &pool(nodes), t(0));
        assert!(matches!(outcome_of(&d, "w3"), Outcome::Create { .. }));
        assert!(d.recovery.promotions.is_empty());
    }

    #[test]
    fn auto_priority_waits_the_timeout_again_after_a_promotion() {
        let p = policy(RecoveryMethod::AutoPriority);
        // Another node went into service 4 s ago; w3 still waits for its own.
        let mut other = sick("w9");
        other.health = unhealthy_since(-100);
        let pool = auto_priority_pool(
            vec![pending(-15, -14)],
            vec![in_service("s0", "w9", -4), standby("s2")],
        );
        let d = decide(&p, &pool, t(0));
        assert!(d.recovery.promotions.is_empty());
        assert_eq!(d.recovery.requeue_at, Some(t(6)));
        let d = decide(&p, &pool, t(6));
        assert_eq!(d.recovery.promotions, vec![promotion("s1", "w3")]);
    }

    #[test]
    fn dry_run_writes_no_role() {
        let mut nodes = workers();
        let mut s2 = healthy("s2");
        s2.reserved.selected = true;
        nodes.extend([standby("s1"), s2]);
        let p = Policy {
            dry_run: true,
            ..policy(RecoveryMethod::ReservedHost)
        };
        let d = decide(&p, &pool(nodes), t(0));
        assert!(d.recovery.promotions.is_empty());
        assert!(d.recovery.make_standby.is_empty());
        assert_eq!(d.recovery.standbys.len(), 2);
    }

    #[test]
    fn auto_and_no_recovery_touch_no_node() {
        let mut s1 = healthy("s1");
        s1.reserved.selected = true;
        let mut nodes = workers();
        nodes.push(s1);
        for p in [policy(RecoveryMethod::Auto), single_template_policy()] {
            let d = decide(&p, &pool(nodes.clone()), t(0));
            assert!(d.recovery.promotions.is_empty());
            assert!(d.recovery.make_standby.is_empty());
            assert!(d.recovery.standbys.is_empty());
        }
    }

    #[test]
    fn maintenance_blocks_a_node_and_a_magnum_gate_blocks_a_template() {
        let mut w3 = sick("w3");
        w3.maintenance = true;
        let d = decide(
            &single_template_policy(),
            &pool(vec![healthy("w1"), healthy("w2"), w3]),
            t(0),
        );
        assert_eq!(
            outcome_of(&d, "w3"),
            Outcome::Blocked {
                reason: BlockReason::Maintenance
            }
        );

        let p = Policy {
            template_blocks: vec![(
                template("power-cycle"),
                BlockReason::MagnumHealingDisabled {
                    cluster: "k8s".into(),
                },
            )],
            ..single_template_policy()
        };
        let d = decide(&p, &pool(workers()), t(0));
        let Outcome::Blocked { reason } = outcome_of(&d, "w3") else {
            panic!("not blocked");
        };
        assert_eq!(reason.reason(), "MagnumHealingDisabled");
        assert!(reason.to_string().contains("auto_healing_enabled=true"));
        assert_eq!(d.in_flight, 0);
    }
}
