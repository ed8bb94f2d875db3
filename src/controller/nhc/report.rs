//! What a NodeHealthCheck's status says, and which events a change deserves: pure functions of
//! the pool, the decision and the previous status.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::conditions::set_condition;
use crate::api::contract::ObservedRemediation;
use crate::api::{
    DISABLED_CONDITION, InServiceNode, NodeHealthCheckStatus, RecoveryMethod, RecoveryStatus,
    RemediationRecord, ResourceReference, StandbyNode, UnhealthyNode,
};
use crate::decide::storm::apply_storm_conditions;
use crate::decide::{Decision, Outcome, Pool, RecoveryPlan, phase};
use crate::health::Health;

/// An event to write about the NodeHealthCheck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// Everything the status is made of besides the pool and the decision.
pub struct ReportInput<'a> {
    pub previous: &'a NodeHealthCheckStatus,
    /// Why the NodeHealthCheck cannot work, if it cannot.
    pub disabled: Option<&'a str>,
    pub pause_requests: &'a [String],
    /// Remediation objects created by this round, by node.
    pub created: &'a [(String, ObservedRemediation)],
    pub generation: Option<i64>,
    pub now: Timestamp,
}

/// Puts the readiness check's part of a status (the `CloudReady` condition and
/// `cloudReadiness`) as `stored` has it into `status`, which this controller computed from
/// its cache: the check writes them, this controller only carries them.
pub fn keep_readiness(status: &mut NodeHealthCheckStatus, stored: &NodeHealthCheckStatus) {
    use crate::api::nodehealthcheck::CLOUD_READY_CONDITION;
    status.cloud_readiness = stored.cloud_readiness.clone();
    let stored_condition = stored
        .conditions
        .iter()
        .find(|c| c.type_ == CLOUD_READY_CONDITION);
    match (
        status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == CLOUD_READY_CONDITION),
        stored_condition,
    ) {
        (Some(ours), Some(theirs)) => *ours = theirs.clone(),
        (None, Some(theirs)) => status.conditions.push(theirs.clone()),
        (Some(_), None) => status
            .conditions
            .retain(|c| c.type_ != CLOUD_READY_CONDITION),
        (None, None) => {}
    }
}

/// The record of a remediation object in status.
pub fn record(r: &ObservedRemediation, now: Timestamp) -> RemediationRecord {
    RemediationRecord {
        resource: ResourceReference {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: Some(r.namespace.clone()),
            name: r.name.clone(),
            uid: r.uid.clone(),
        },
        started: Time(r.created.unwrap_or(now)),
        timed_out: r.timed_out.map(|t| Time(t.unwrap_or(now))),
        template_name: r.template_name.clone(),
    }
}

/// The status after this round. `lastUpdateTime` moves only when something else changed.
pub fn status(
    input: &ReportInput,
    pool: &Pool,
    decision: Option<&Decision>,
) -> NodeHealthCheckStatus {
    let now = input.now;
    let mut s = NodeHealthCheckStatus {
        conditions: input.previous.conditions.clone(),
        // The readiness check's, not this controller's: kept as it wrote them.
        cloud_readiness: input.previous.cloud_readiness.clone(),
        observed_generation: input.generation,
        ..Default::default()
    };
    let disabled_message = input.disabled.unwrap_or("the NodeHealthCheck is enabled");
    set_condition(
        &mut s.conditions,
        DISABLED_CONDITION,
        input.disabled.is_some(),
        if input.disabled.is_some() {
            "InvalidConfiguration"
        } else {
            "Enabled"
        },
        disabled_message,
        input.generation,
        now,
    );
    let mut in_remediation = 0;
    if let Some(decision) = decision {
        s.observed_nodes = decision.observed as i32;
        s.healthy_nodes = decision.healthy as i32;
        s.unhealthy_count = decision.unhealthy as i32;
        s.in_flight_remediations = decision.in_flight as i32;
        apply_storm_conditions(
            &mut s.conditions,
            decision.storm.state,
            input.generation,
            now,
        );
        for d in &decision.nodes {
            if matches!(d.outcome, Outcome::Remove { .. }) {
                continue;
            }
            let Some(node) = pool.nodes.iter().find(|n| n.name == d.name) else {
                continue;
            };
            let mut remediations: Vec<RemediationRecord> = node
                .remediations
                .iter()
                .filter(|r| !r.deleting)
                .map(|r| record(r, now))
                .collect();
            remediations.extend(
                input
                    .created
                    .iter()
                    .filter(|(n, _)| n == &d.name)
                    .map(|(_, r)| record(r, now)),
            );
            if !remediations.is_empty() {
                in_remediation += 1;
            }
            let (since, reason) = match &node.health {
                Health::Unhealthy { since, reason } => {
                    (Some(Time(*since)), Some(reason.to_string()))
                }
                Health::SoonUnhealthy { reason, .. } => {
                    (None, Some(format!("soon unhealthy: {reason}")))
                }
                Health::Healthy => (None, Some("healthy again".to_owned())),
                Health::Starting { until } => (None, Some(format!("starting until {until}"))),
            };
            let blocked_reason = match &d.outcome {
                Outcome::Blocked { reason } => Some(reason.to_string()),
                Outcome::Exhausted => Some(Outcome::Exhausted.to_string()),
                _ => None,
            };
            let holding = matches!(d.outcome, Outcome::HoldHealthy { .. });
            let healthy_since = node
                .remediations
                .iter()
                .filter_map(|r| r.healthy_since)
                .min()
                .or(holding.then_some(now));
            s.unhealthy_nodes.push(UnhealthyNode {
                name: d.name.clone(),
                // Keep the first time we saw it unhealthy across rounds.
                since: input
                    .previous
                    .unhealthy_nodes
                    .iter()
                    .find(|u| u.name == d.name)
                    .and_then(|u| u.since.clone())
                    .filter(|_| since.is_some())
                    .or(since),
                reason,
                remediations,
                blocked_reason,
                conditions_healthy_timestamp: healthy_since.filter(|_| holding).map(Time),
                healthy_delayed: holding.then_some(true),
            });
        }
        s.recovery = recovery_status(&decision.recovery);
    }
    let (phase, reason) = phase(input.disabled, input.pause_requests, in_remediation);
    s.phase = Some(phase);
    s.reason = Some(reason);
    let mut unchanged = s.clone();
    unchanged.last_update_time = input.previous.last_update_time.clone();
    s.last_update_time = if &unchanged == input.previous {
        input.previous.last_update_time.clone()
    } else {
        Some(Time(now))
    };
    s
}

/// The `recovery` part of the status: the standbys and the nodes in service in their place.
fn recovery_status(plan: &RecoveryPlan) -> Option<RecoveryStatus> {
    let method = plan.method?;
    Some(RecoveryStatus {
        method,
        standbys: plan
            .standbys
            .iter()
            .map(|s| StandbyNode {
                name: s.name.clone(),
                available: s.unavailable.is_none(),
                reason: s.unavailable.clone(),
            })
            .collect(),
        in_service: plan
            .in_service
            .iter()
            .map(|s| InServiceNode {
                name: s.name.clone(),
                replaced: s.replaced.clone(),
                since: s.since.map(Time),
            })
            .collect(),
        pending_pods: (method == RecoveryMethod::AutoPriority).then_some(plan.pending_pods as i32),
    })
}

/// Events for what changed between two statuses: nodes found unhealthy, remediation newly
/// blocked (or blocked for another reason), the NodeHealthCheck disabled or enabled again.
pub fn notices(previous: &NodeHealthCheckStatus, next: &NodeHealthCheckStatus) -> Vec<Notice> {
    let mut out = Vec::new();
    let before = |name: &str| previous.unhealthy_nodes.iter().find(|u| u.name == name);
    for node in &next.unhealthy_nodes {
        let was = before(&node.name);
        if node.since.is_some() && was.and_then(|w| w.since.as_ref()).is_none() {
            out.push(Notice {
                warning: true,
                reason: "NodeUnhealthy".into(),
                message: format!(
                    "node {} is unhealthy: {}",
                    node.name,
                    node.reason.as_deref().unwrap_or("?")
                ),
            });
        }
        if let Some(blocked) = &node.blocked_reason
            && was.and_then(|w| w.blocked_reason.as_ref()) != Some(blocked)
        {
            out.push(Notice {
                warning: true,
                reason: "RemediationBlocked".into(),
                message: format!("node {}: {blocked}", node.name),
            });
        }
    }
    let disabled = |s: &NodeHealthCheckStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == DISABLED_CONDITION && c.status == "True")
            .map(|c| c.message.clone())
    };
    match (disabled(previous), disabled(next)) {
        (was, Some(now)) if was.as_ref() != Some(&now) => out.push(Notice {
            warning: true,
            reason: "Disabled".into(),
            message: now,
        }),
        (Some(_), None) => out.push(Notice {
            warning: false,
            reason: "Enabled".into(),
            message: "the NodeHealthCheck works again".into(),
        }),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::contract::LeaseState;
    use crate::api::{NodeHealthCheckPhase, NodeHealthCheckSpec, TemplateReference};
    use crate::decide::{Policy, PoolNode, decide};
    use crate::health::UnhealthyReason;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn spec(max_unhealthy: &str) -> NodeHealthCheckSpec {
        serde_json::from_value(serde_json::json!({
            "selector": {"matchLabels": {"pool": "w"}},
            "maxUnhealthy": max_unhealthy,
            "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1",
                "kind": "RemediationTemplate", "namespace": "nh", "name": "power-cycle"}
        }))
        .unwrap()
    }

    fn node(name: &str, unhealthy_since: Option<i64>) -> PoolNode {
        PoolNode {
            name: name.into(),
            health: match unhealthy_since {
                None => Health::Healthy,
                Some(s) => Health::Unhealthy {
                    since: t(s),
                    reason: UnhealthyReason::Condition {
                        type_: "Ready".into(),
                        status: crate::api::ConditionStatus::Unknown,
                        since: t(s - 300),
                        duration: std::time::Duration::from_secs(300),
                    },
                },
            },
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

    fn created(node: &str) -> ObservedRemediation {
        ObservedRemediation {
            api_version: "nodehealer.io/v1alpha1".into(),
            kind: "Remediation".into(),
            name: node.into(),
            namespace: "nh".into(),
            uid: Some("u1".into()),
            node_name: node.into(),
            template_name: Some("power-cycle".into()),
            created: Some(t(100)),
            deleting: false,
            processing: None,
            succeeded: None,
            permanent_node_deletion_expected: false,
            timed_out: None,
            healthy_since: None,
            owned: true,
        }
    }

    #[test]
    fn an_unhealthy_node_is_listed_with_why_and_its_new_remediation() {
        let spec = spec("50%");
        let pool = Pool {
            nodes: vec![node("a", Some(50)), node("b", None), node("c", None)],
            ..Default::default()
        };
        let decision = decide(&Policy::from_spec(&spec), &pool, t(100));
        assert!(matches!(
            decision.node("a").unwrap().outcome,
            Outcome::Create { template: TemplateReference { ref name, .. } } if name == "power-cycle"
        ));
        let previous = NodeHealthCheckStatus::default();
        let made = [("a".to_string(), created("a"))];
        let input = ReportInput {
            previous: &previous,
            disabled: None,
            pause_requests: &[],
            created: &made,
            generation: Some(2),
            now: t(100),
        };
        let s = status(&input, &pool, Some(&decision));
        assert_eq!(
            (s.observed_nodes, s.healthy_nodes, s.unhealthy_count),
            (3, 2, 1)
        );
        assert_eq!(s.phase, Some(NodeHealthCheckPhase::Remediating));
        let a = &s.unhealthy_nodes[0];
        assert_eq!(a.name, "a");
        assert_eq!(a.since, Some(Time(t(50))));
        assert!(
            a.reason.as_deref().unwrap().contains("Ready=Unknown"),
            "{:?}",
            a.reason
        );
        assert_eq!(a.remediations[0].resource.name, "a");
        assert_eq!(a.blocked_reason, None);
        assert_eq!(s.last_update_time, Some(Time(t(100))));
        let events = notices(&previous, &s);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "NodeUnhealthy");

        // The same round again changes nothing, not even lastUpdateTime.
        let input = ReportInput {
            previous: &s,
            now: t(130),
            created: &[],
            ..input
        };
        let mut pool2 = pool.clone();
        pool2.nodes[0].remediations.push(created("a"));
        let decision2 = decide(&Policy::from_spec(&spec), &pool2, t(130));
        let again = status(&input, &pool2, Some(&decision2));
        assert_eq!(again, s);
        assert!(notices(&s, &again).is_empty());
    }

    #[test]
    fn a_blocked_node_says_why_once() {
        let spec = spec("1");
        let pool = Pool {
            nodes: vec![node("a", Some(50)), node("b", Some(60)), node("c", None)],
            ..Default::default()
        };
        let decision = decide(&Policy::from_spec(&spec), &pool, t(100));
        let previous = NodeHealthCheckStatus::default();
        let input = ReportInput {
            previous: &previous,
            disabled: None,
            pause_requests: &[],
            created: &[],
            generation: Some(1),
            now: t(100),
        };
        let s = status(&input, &pool, Some(&decision));
        assert_eq!(s.phase, Some(NodeHealthCheckPhase::Enabled));
        for n in &s.unhealthy_nodes {
            let why = n.blocked_reason.as_deref().unwrap();
            assert!(why.contains("above maxUnhealthy 1"), "{why}");
        }
        let events = notices(&previous, &s);
        assert_eq!(
            events
                .iter()
                .filter(|e| e.reason == "RemediationBlocked")
                .count(),
            2
        );
        assert!(notices(&s, &s).is_empty());
    }

    #[test]
    fn a_disabled_nodehealthcheck_says_why() {
        let previous = NodeHealthCheckStatus::default();
        let input = ReportInput {
            previous: &previous,
            disabled: Some("template nh/missing not found"),
            pause_requests: &[],
            created: &[],
            generation: Some(1),
            now: t(0),
        };
        let s = status(&input, &Pool::default(), None);
        assert_eq!(s.phase, Some(NodeHealthCheckPhase::Disabled));
        assert_eq!(
            s.reason.as_deref(),
            Some("disabled: template nh/missing not found")
        );
        let events = notices(&previous, &s);
        assert_eq!(events[0].reason, "Disabled");
        assert!(events[0].warning);
    }

    /// A status computed from a cache that lacks the readiness check's last write gets it
    /// from the stored object, and drops what the stored object no longer has.
    #[test]
    fn the_readiness_part_comes_from_the_stored_status() {
        use crate::api::nodehealthcheck::{CLOUD_READY_CONDITION, CloudReadinessStatus};
        let with = |reason: &str| {
            let mut s = NodeHealthCheckStatus {
                cloud_readiness: Some(CloudReadinessStatus {
                    unmapped_count: i32::from(reason != "Ready"),
                    ..Default::default()
                }),
                ..Default::default()
            };
            set_condition(
                &mut s.conditions,
                DISABLED_CONDITION,
                false,
                "Enabled",
                "",
                Some(1),
                t(0),
            );
            set_condition(
                &mut s.conditions,
                CLOUD_READY_CONDITION,
                reason == "Ready",
                reason,
                "m",
                Some(1),
                t(0),
            );
            s
        };
        let bare = || {
            let mut s = NodeHealthCheckStatus::default();
            set_condition(
                &mut s.conditions,
                DISABLED_CONDITION,
                false,
                "Enabled",
                "",
                Some(1),
                t(0),
            );
            s
        };
        // (computed from the cache, stored) -> what is written.
        let cases = [
            (bare(), with("AuthFailed"), with("AuthFailed")),
            (with("Ready"), with("AuthFailed"), with("AuthFailed")),
            (with("AuthFailed"), bare(), bare()),
            (bare(), bare(), bare()),
        ];
        for (i, (mut computed, stored, want)) in cases.into_iter().enumerate() {
            keep_readiness(&mut computed, &stored);
            assert_eq!(computed, want, "case {i}");
        }
    }

    /// The readiness check writes `CloudReady` and `cloudReadiness` into the same status; this
    /// controller's write (a merge patch that clears what it leaves out) must keep both.
    #[test]
    fn the_readiness_checks_condition_and_status_are_kept() {
        use crate::api::nodehealthcheck::{
            CLOUD_READY_CONDITION, CloudReadinessStatus, UnmappedNode,
        };
        let mut previous = NodeHealthCheckStatus {
            cloud_readiness: Some(CloudReadinessStatus {
                last_checked: Some(Time(t(-10))),
                unmapped_count: 1,
                unmapped_nodes: vec![UnmappedNode {
                    name: "w-3".into(),
                    reason: "no server".into(),
                }],
            }),
            ..Default::default()
        };
        set_condition(
            &mut previous.conditions,
            CLOUD_READY_CONDITION,
            false,
            "NodesUnmapped",
            "1 of 2 nodes map to no server",
            Some(1),
            t(-10),
        );
        for disabled in [None, Some("template nh/missing not found")] {
            let input = ReportInput {
                previous: &previous,
                disabled,
                pause_requests: &[],
                created: &[],
                generation: Some(1),
                now: t(0),
            };
            let spec = spec("50%");
            let pool = Pool::default();
            let decision = decide(&Policy::from_spec(&spec), &pool, t(0));
            let s = status(&input, &pool, disabled.is_none().then_some(&decision));
            assert_eq!(s.cloud_readiness, previous.cloud_readiness, "{disabled:?}");
            assert_eq!(
                crate::api::conditions::find_condition(&s.conditions, CLOUD_READY_CONDITION),
                previous.conditions.first(),
                "{disabled:?}"
            );
        }
    }
}
