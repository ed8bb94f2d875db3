//! Is this node healthy? Pure functions over a node's plain state, a NodeHealthCheck's rules and
//! a `now`.
//!
//! The answer says not only *whether* but *until when*: a node whose condition matches but whose
//! duration has not run out yet is [`Health::SoonUnhealthy`] with the exact time it will be
//! unhealthy, so a controller requeues at that moment instead of polling.

use std::{collections::BTreeMap, fmt, time::Duration as StdDuration};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;

use crate::api::{ConditionStatus, EndpointCheck, NodeHealthCheckSpec, UnhealthyCondition};

/// The node condition type that says a node works.
pub const READY_CONDITION: &str = "Ready";

/// A node's conditions and probe results, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The node's name.
    pub name: String,
    /// When the Node object was created.
    pub created: Option<Timestamp>,
    /// The node's status conditions.
    pub conditions: Vec<NodeCondition>,
    /// Results of the NodeHealthCheck's endpoint checks, by check name.
    pub endpoint_results: BTreeMap<String, EndpointResult>,
}

impl NodeState {
    /// The state of a Kubernetes Node, with the endpoint check results gathered for it.
    pub fn from_node(node: &Node, endpoint_results: BTreeMap<String, EndpointResult>) -> Self {
        let conditions = node
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|c| NodeCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                last_transition: c.last_transition_time.as_ref().map(|t| t.0),
            })
            .collect();
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            created: node.metadata.creation_timestamp.as_ref().map(|t| t.0),
            conditions,
            endpoint_results,
        }
    }
}

/// One of a node's status conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCondition {
    /// The condition type, e.g. `Ready`.
    pub type_: String,
    /// `True`, `False` or `Unknown` as written by the kubelet (any other text never matches).
    pub status: String,
    /// When the condition last changed status.
    pub last_transition: Option<Timestamp>,
}

/// The outcome of probing one endpoint of one node so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointResult {
    /// When the probe started failing without a success since; `None` while it succeeds.
    pub failing_since: Option<Timestamp>,
    /// When the probe last succeeded.
    pub last_success: Option<Timestamp>,
}

/// The rules of a NodeHealthCheck that decide whether a node is healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthRules {
    /// Conditions that, held long enough, make a node unhealthy.
    pub unhealthy_conditions: Vec<UnhealthyCondition>,
    /// Endpoint checks that, failing long enough, make a node unhealthy.
    pub endpoint_checks: Vec<EndpointCheck>,
    /// A node younger than this is never unhealthy; an older one never Ready is.
    pub node_startup_timeout: Option<StdDuration>,
}

impl HealthRules {
    /// The rules of a NodeHealthCheck spec.
    pub fn from_spec(spec: &NodeHealthCheckSpec) -> Self {
        Self {
            unhealthy_conditions: spec.unhealthy_conditions.clone(),
            endpoint_checks: spec.endpoint_checks.clone(),
            node_startup_timeout: spec.node_startup_timeout.as_ref().map(|d| d.get()),
        }
    }
}

/// Why a node is, or is about to be, unhealthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnhealthyReason {
    /// A node condition has had an unhealthy status.
    Condition {
        /// The condition type.
        type_: String,
        /// The status it has.
        status: ConditionStatus,
        /// Since when it has had that status.
        since: Timestamp,
        /// How long it may have it before the node is unhealthy.
        duration: StdDuration,
    },
    /// An endpoint check has been failing.
    EndpointCheck {
        /// The check's name.
        name: String,
        /// Since when it has been failing.
        failing_since: Timestamp,
        /// How long it may fail before the node is unhealthy.
        duration: StdDuration,
    },
    /// The node has never been Ready since it was created.
    NeverReady {
        /// When the node was created.
        created: Timestamp,
        /// How long a node may take to become Ready.
        startup_timeout: StdDuration,
    },
}

impl fmt::Display for UnhealthyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let go = |d: &StdDuration| crate::api::duration::format_go_duration(*d);
        match self {
            Self::Condition {
                type_,
                status,
                since,
                duration,
            } => write!(
                f,
                "condition {type_}={} since {since} (limit {})",
                status.as_str(),
                go(duration)
            ),
            Self::EndpointCheck {
                name,
                failing_since,
                duration,
            } => write!(
                f,
                "endpoint check {name} failing since {failing_since} (limit {})",
                go(duration)
            ),
            Self::NeverReady {
                created,
                startup_timeout,
            } => write!(
                f,
                "never became Ready since it was created at {created} (startup timeout {})",
                go(startup_timeout)
            ),
        }
    }
}

/// How a node stands against a NodeHealthCheck's rules at a given time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// No rule matches.
    Healthy,
    /// A rule has matched for its full duration since `since`.
    Unhealthy {
        /// When the node became unhealthy: the earliest moment a rule's duration ran out.
        since: Timestamp,
        /// The rule that made it unhealthy first.
        reason: UnhealthyReason,
    },
    /// A rule matches but its duration has not run out yet: unhealthy at `at` unless it recovers.
    /// Such a node is left alone, and its remediation (if any) neither removed nor escalated:
    /// it may just have moved from one unhealthy condition to another (Unknown → False while
    /// rebooting).
    SoonUnhealthy {
        /// When the node will be unhealthy.
        at: Timestamp,
        /// The rule that will make it unhealthy first.
        reason: UnhealthyReason,
    },
    /// Younger than `nodeStartupTimeout` and not (yet) healthy: never remediated before `until`.
    Starting {
        /// When the startup grace ends.
        until: Timestamp,
    },
}

impl Health {
    /// When this evaluation can next change by the passing of time alone, so a controller
    /// requeues exactly then. `None` for states only an event can change (healthy, unhealthy).
    pub fn next_check_at(&self) -> Option<Timestamp> {
        match self {
            Self::Healthy | Self::Unhealthy { .. } => None,
            Self::SoonUnhealthy { at, .. } => Some(*at),
            Self::Starting { until } => Some(*until),
        }
    }

    /// Whether the node counts towards `healthyNodes`. Only [`Health::Healthy`] does: a node about
    /// to be unhealthy, or still starting, is not relied on for minHealthy, as in medik8s.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }

    /// Whether the node needs remediation now.
    pub fn is_unhealthy(&self) -> bool {
        matches!(self, Self::Unhealthy { .. })
    }
}

/// Adds a duration to a time, saturating at the end of jiff's range (a duration too long to add
/// means "never" for every use here).
pub fn add(at: Timestamp, duration: StdDuration) -> Timestamp {
    jiff::SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Evaluates `node` against `rules` at `now`.
///
/// - Each unhealthy condition matches when the node's condition of that type has exactly that
///   status; it has been unhealthy since `lastTransitionTime + duration`. A condition without a
///   transition time counts from now (the safe side: no remediation on missing data).
/// - Each endpoint check matches while its probe has been failing; unhealthy from
///   `failing_since + duration`. A check without results (not probed yet) does not match.
/// - With `nodeStartupTimeout`: a node younger than it is [`Health::Starting`] unless healthy; a
///   node older that has no `Ready=True` condition and whose Ready condition never changed since
///   creation is unhealthy with [`UnhealthyReason::NeverReady`].
///
/// Among several matching rules the one that expired (or expires) first is reported.
pub fn evaluate(node: &NodeState, rules: &HealthRules, now: Timestamp) -> Health {
    // (time the rule makes the node unhealthy, why)
    let mut matches: Vec<(Timestamp, UnhealthyReason)> = Vec::new();

    for rule in &rules.unhealthy_conditions {
        let Some(condition) = node
            .conditions
            .iter()
            .find(|c| c.type_ == rule.type_ && c.status == rule.status.as_str())
        else {
            continue;
        };
        let since = condition.last_transition.unwrap_or(now);
        let duration = rule.duration.get();
        matches.push((
            add(since, duration),
            UnhealthyReason::Condition {
                type_: rule.type_.clone(),
                status: rule.status,
                since,
                duration,
            },
        ));
    }

    for check in &rules.endpoint_checks {
        let Some(failing_since) = node
            .endpoint_results
            .get(&check.name)
            .and_then(|result| result.failing_since)
        else {
            continue;
        };
        let duration = check.duration.get();
        matches.push((
            add(failing_since, duration),
            UnhealthyReason::EndpointCheck {
                name: check.name.clone(),
                failing_since,
                duration,
            },
        ));
    }

    if let (Some(startup_timeout), Some(created)) = (rules.node_startup_timeout, node.created) {
        let grace_ends = add(created, startup_timeout);
        if now < grace_ends {
            return if matches.is_empty() && is_ready(node) {
                Health::Healthy
            } else {
                Health::Starting { until: grace_ends }
            };
        }
        if never_ready(node, created) {
            matches.push((
                grace_ends,
                UnhealthyReason::NeverReady {
                    created,
                    startup_timeout,
                },
            ));
        }
    }

    // Earliest first; ties keep rule order (conditions, then checks, then startup), so the
    // report is stable.
    matches.sort_by_key(|(at, _)| *at);
    let expired = matches.iter().find(|(at, _)| *at <= now);
    if let Some((since, reason)) = expired {
        return Health::Unhealthy {
            since: *since,
            reason: reason.clone(),
        };
    }
    match matches.into_iter().next() {
        Some((at, reason)) => Health::SoonUnhealthy { at, reason },
        None => Health::Healthy,
    }
}

fn is_ready(node: &NodeState) -> bool {
    node.conditions
        .iter()
        .any(|c| c.type_ == READY_CONDITION && c.status == ConditionStatus::True.as_str())
}

/// A node never became Ready when it is not Ready now and its Ready condition (if any) has not
/// changed since the node was created: a node that was Ready once has a later transition.
fn never_ready(node: &NodeState, created: Timestamp) -> bool {
    if is_ready(node) {
        return false;
    }
    match node.conditions.iter().find(|c| c.type_ == READY_CONDITION) {
        None => true,
        Some(ready) => ready.last_transition.is_none_or(|at| at <= created),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Duration, Scheme};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn cond(type_: &str, status: &str, since: i64) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition: Some(t(since)),
        }
    }

    fn rule(type_: &str, status: ConditionStatus, secs: u64) -> UnhealthyCondition {
        UnhealthyCondition {
            type_: type_.into(),
            status,
            duration: Duration::from_secs(secs),
        }
    }

    fn check(name: &str, secs: u64) -> EndpointCheck {
        EndpointCheck {
            name: name.into(),
            scheme: Scheme::Https,
            port: 6443,
            path: "/healthz".into(),
            ok_codes: vec![200],
            duration: Duration::from_secs(secs),
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(30),
            insecure_skip_verify: true,
        }
    }

    fn default_rules() -> HealthRules {
        HealthRules {
            unhealthy_conditions: crate::api::nodehealthcheck::default_unhealthy_conditions(),
            endpoint_checks: vec![],
            node_startup_timeout: None,
        }
    }

    fn node(conditions: Vec<NodeCondition>) -> NodeState {
        NodeState {
            name: "worker-1".into(),
            created: Some(t(-100_000)),
            conditions,
            endpoint_results: BTreeMap::new(),
        }
    }

    fn ready_condition(
        type_: &str,
        status: ConditionStatus,
        since: i64,
        secs: u64,
    ) -> UnhealthyReason {
        UnhealthyReason::Condition {
            type_: type_.into(),
            status,
            since: t(since),
            duration: StdDuration::from_secs(secs),
        }
    }

    #[test]
    fn conditions_with_durations() {
        use ConditionStatus::*;
        let now = t(0);
        // (name, node conditions, expected health)
        let cases = vec![
            (
                "ready node",
                vec![cond("Ready", "True", -1000)],
                Health::Healthy,
            ),
            ("no conditions at all", vec![], Health::Healthy),
            (
                "not ready for longer than 300s",
                vec![cond("Ready", "False", -301)],
                Health::Unhealthy {
                    since: t(-1),
                    reason: ready_condition("Ready", False, -301, 300),
                },
            ),
            (
                "unknown for exactly 300s is unhealthy",
                vec![cond("Ready", "Unknown", -300)],
                Health::Unhealthy {
                    since: t(0),
                    reason: ready_condition("Ready", Unknown, -300, 300),
                },
            ),
            (
                "unknown for 100s: soon unhealthy, at the exact expiry",
                vec![cond("Ready", "Unknown", -100)],
                Health::SoonUnhealthy {
                    at: t(200),
                    reason: ready_condition("Ready", Unknown, -100, 300),
                },
            ),
            (
                "status must match exactly",
                vec![cond("Ready", "false", -1000)],
                Health::Healthy,
            ),
            (
                "other conditions are ignored",
                vec![
                    cond("Ready", "True", -1000),
                    cond("DiskPressure", "True", -1000),
                ],
                Health::Healthy,
            ),
        ];
        for (name, conditions, want) in cases {
            assert_eq!(
                evaluate(&node(conditions), &default_rules(), now),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn earliest_expiry_is_reported_among_several_rules() {
        let rules = HealthRules {
            unhealthy_conditions: vec![
                rule("Ready", ConditionStatus::False, 300),
                rule("KernelDeadlock", ConditionStatus::True, 60),
            ],
            ..default_rules()
        };
        let sick = node(vec![
            cond("Ready", "False", -400),
            cond("KernelDeadlock", "True", -200),
        ]);
        assert_eq!(
            evaluate(&sick, &rules, t(0)),
            Health::Unhealthy {
                since: t(-140),
                reason: ready_condition("KernelDeadlock", ConditionStatus::True, -200, 60),
            }
        );
        let soon = node(vec![
            cond("Ready", "False", -10),
            cond("KernelDeadlock", "True", -30),
        ]);
        assert_eq!(
            evaluate(&soon, &rules, t(0)),
            Health::SoonUnhealthy {
                at: t(30),
                reason: ready_condition("KernelDeadlock", ConditionStatus::True, -30, 60),
            }
        );
    }

    #[test]
    fn endpoint_checks_fail_for_their_duration() {
        let rules = HealthRules {
            endpoint_checks: vec![check("apiserver", 120)],
            ..default_rules()
        };
        let with_result = |failing_since: Option<i64>| {
            let mut n = node(vec![cond("Ready", "True", -1000)]);
            n.endpoint_results.insert(
                "apiserver".into(),
                EndpointResult {
                    failing_since: failing_since.map(t),
                    last_success: Some(t(-500)),
                },
            );
            n
        };
        let reason = |since: i64| UnhealthyReason::EndpointCheck {
            name: "apiserver".into(),
            failing_since: t(since),
            duration: StdDuration::from_secs(120),
        };
        assert_eq!(evaluate(&with_result(None), &rules, t(0)), Health::Healthy);
        assert_eq!(
            evaluate(&with_result(Some(-60)), &rules, t(0)),
            Health::SoonUnhealthy {
                at: t(60),
                reason: reason(-60)
            }
        );
        assert_eq!(
            evaluate(&with_result(Some(-121)), &rules, t(0)),
            Health::Unhealthy {
                since: t(-1),
                reason: reason(-121)
            }
        );
        // A check with no results yet (never probed) does not match.
        assert_eq!(
            evaluate(&node(vec![cond("Ready", "True", -1000)]), &rules, t(0)),
            Health::Healthy
        );
    }

    #[test]
    fn startup_timeout_protects_young_nodes_and_catches_never_ready_ones() {
        let rules = HealthRules {
            node_startup_timeout: Some(StdDuration::from_secs(600)),
            ..default_rules()
        };
        let created_at = |created: i64, conditions: Vec<NodeCondition>| NodeState {
            created: Some(t(created)),
            ..node(conditions)
        };
        let never_ready = |created: i64| UnhealthyReason::NeverReady {
            created: t(created),
            startup_timeout: StdDuration::from_secs(600),
        };
        let cases = vec![
            (
                "young and not ready yet: starting",
                created_at(-100, vec![cond("Ready", "False", -100)]),
                Health::Starting { until: t(500) },
            ),
            (
                "young, no conditions yet: starting",
                created_at(-100, vec![]),
                Health::Starting { until: t(500) },
            ),
            (
                "young with an expired unhealthy condition is still never unhealthy",
                created_at(-500, vec![cond("Ready", "Unknown", -450)]),
                Health::Starting { until: t(100) },
            ),
            (
                "young and ready: healthy",
                created_at(-100, vec![cond("Ready", "True", -50)]),
                Health::Healthy,
            ),
            (
                "old, never ready, no Ready condition: unhealthy since the timeout",
                created_at(-700, vec![]),
                Health::Unhealthy {
                    since: t(-100),
                    reason: never_ready(-700),
                },
            ),
            (
                "old, Ready=False since creation: the earlier expiry is the startup timeout",
                created_at(-700, vec![cond("Ready", "False", -700)]),
                Health::Unhealthy {
                    since: t(-400),
                    reason: ready_condition("Ready", ConditionStatus::False, -700, 300),
                },
            ),
            (
                "old, was ready once, now briefly not ready: only the condition rule applies",
                created_at(-5000, vec![cond("Ready", "False", -10)]),
                Health::SoonUnhealthy {
                    at: t(290),
                    reason: ready_condition("Ready", ConditionStatus::False, -10, 300),
                },
            ),
        ];
        for (name, n, want) in cases {
            let got = evaluate(&n, &rules, t(0));
            assert_eq!(got, want, "{name}");
        }
        // A never-Ready node with a custom condition rule only: unhealthy by NeverReady.
        let only_custom = HealthRules {
            unhealthy_conditions: vec![rule("KernelDeadlock", ConditionStatus::True, 60)],
            ..rules
        };
        assert_eq!(
            evaluate(
                &created_at(-700, vec![cond("Ready", "False", -700)]),
                &only_custom,
                t(0)
            ),
            Health::Unhealthy {
                since: t(-100),
                reason: never_ready(-700),
            }
        );
    }

    #[test]
    fn next_check_is_the_moment_time_alone_changes_the_answer() {
        let soon = evaluate(
            &node(vec![cond("Ready", "Unknown", -100)]),
            &default_rules(),
            t(0),
        );
        assert_eq!(soon.next_check_at(), Some(t(200)));
        // At that moment the node is unhealthy, not a second later.
        assert!(
            evaluate(
                &node(vec![cond("Ready", "Unknown", -100)]),
                &default_rules(),
                t(200)
            )
            .is_unhealthy()
        );
        assert!(
            !evaluate(
                &node(vec![cond("Ready", "Unknown", -100)]),
                &default_rules(),
                t(199)
            )
            .is_unhealthy()
        );
        assert_eq!(Health::Healthy.next_check_at(), None);
        assert_eq!(Health::Starting { until: t(9) }.next_check_at(), Some(t(9)));
        assert!(!soon.is_healthy());
    }

    #[test]
    fn missing_transition_time_counts_from_now() {
        let n = node(vec![NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            last_transition: None,
        }]);
        assert!(matches!(
            evaluate(&n, &default_rules(), t(0)),
            Health::SoonUnhealthy { at, .. } if at == t(300)
        ));
    }

    #[test]
    fn reads_a_kubernetes_node() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "worker-1", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "status": {"conditions": [
                {"type": "Ready", "status": "Unknown", "lastTransitionTime": "2023-11-14T22:13:30Z"},
                {"type": "DiskPressure", "status": "False"}
            ]}
        }))
        .unwrap();
        let state = NodeState::from_node(&node, BTreeMap::new());
        assert_eq!(state.name, "worker-1");
        assert_eq!(state.created, Some(t(0)));
        assert_eq!(
            state.conditions,
            vec![
                cond("Ready", "Unknown", 10),
                NodeCondition {
                    type_: "DiskPressure".into(),
                    status: "False".into(),
                    last_transition: None,
                },
            ]
        );
        assert_eq!(
            evaluate(&state, &default_rules(), t(310)),
            Health::Unhealthy {
                since: t(310),
                reason: ready_condition("Ready", ConditionStatus::Unknown, 10, 300),
            }
        );
    }

    #[test]
    fn reasons_read_well() {
        let reason = ready_condition("Ready", ConditionStatus::Unknown, 0, 300);
        assert_eq!(
            reason.to_string(),
            "condition Ready=Unknown since 2023-11-14T22:13:20Z (limit 5m)"
        );
    }
}
