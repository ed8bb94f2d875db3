//! Where a failed node's workloads go: Masakari's recovery methods, for a node pool.
//!
//! A pool with `recovery.method` other than `Auto` keeps *standby* nodes: nodes of the pool
//! held out of scheduling by our reserved taint, so they are empty when a node fails. What a
//! node is, is written on the node itself (so a restart or a leader change knows it):
//!
//! - `nodehealer.io/reserved-host=standby` and the taint `nodehealer.io/reserved:NoSchedule`: a
//!   standby. A node selected by `reservedNodeSelector` that has no such label becomes one.
//! - `nodehealer.io/reserved-host=in-service`, with the annotations `nodehealer.io/replaced-node`
//!   and `nodehealer.io/promoted-at`: a former standby brought into service in place of a
//!   failed node. From then on it is an ordinary node of the pool.
//!
//! # The rules
//!
//! - A *promotion* takes the first available standby (healthy, no remediation, not in
//!   maintenance, not excluded, its medik8s lease free, not cordoned; by name), removes its
//!   reserved taint and marks it in service in place of the failed node; the failed node is
//!   marked a standby at the same moment (label and taint), so when it is repaired it comes
//!   back as the pool's standby and nothing is scheduled onto it in between.
//! - `ReservedHost` and `ReservedHostPriority`: an unhealthy node (not itself a standby) whose
//!   remediation starts now or runs, and which has no replacement for this failure yet, gets a
//!   promotion. It is carried out *before* the remediation is created, so the standby is in
//!   service before any remediator frees the workloads. With no standby available,
//!   `ReservedHost` does not start the remediation (blocked, `NoStandby`: Masakari's
//!   `reserved_host` fails the same way); `ReservedHostPriority` goes on as `Auto`.
//! - `AutoPriority`: the scheduler places freed pods first. When pods that could not be
//!   scheduled (`PodScheduled=False`, reason `Unschedulable`), created since the remediation of a
//!   node without a replacement began, have waited `pendingPodTimeout` (counted again from the
//!   last promotion of the pool), one standby is promoted for that node. Only pods that could
//!   run on the standby count (its labels and taints against their node selector, required node
//!   affinity and tolerations, see [`super::placement`]): a pod waiting for another pool's
//!   nodes brings none of ours into service.
//! - A failed standby is remediated like any node; it needs no replacement (it ran nothing).
//! - A node "has a replacement for this failure" when an in-service node names it in
//!   `replaced-node` with a `promoted-at` not older than the start of its current unhealthiness.
//! - Nothing is written in dry run; the status still lists the standbys.

use std::time::Duration as StdDuration;

use jiff::Timestamp;

use super::placement::{NodeTraits, Placement, fits};
use super::{BlockReason, NodeDecision, Outcome, Pool, PoolNode};
use crate::api::RecoveryMethod;
use crate::api::contract::LeaseState;
use crate::health::{Health, add};

/// Label on a node with its reserved-host role: [`STANDBY`] or [`IN_SERVICE`].
pub const RESERVED_HOST_LABEL: &str = "nodehealer.io/reserved-host";
/// The role of a standby node.
pub const STANDBY: &str = "standby";
/// The role of a former standby brought into service.
pub const IN_SERVICE: &str = "in-service";
/// Our NoSchedule taint that keeps workloads off standby nodes.
pub const RESERVED_TAINT_KEY: &str = "nodehealer.io/reserved";
/// On an in-service node: the failed node it took over from.
pub const REPLACED_NODE_ANNOTATION: &str = "nodehealer.io/replaced-node";
/// On an in-service node: when it was brought into service (RFC 3339).
pub const PROMOTED_AT_ANNOTATION: &str = "nodehealer.io/promoted-at";
/// A node labelled `nodehealer.io/maintenance=true` is never remediated and never a standby
/// brought into service.
pub const MAINTENANCE_LABEL: &str = "nodehealer.io/maintenance";
/// `pendingPodTimeout` when not set.
pub const DEFAULT_PENDING_POD_TIMEOUT: StdDuration = StdDuration::from_secs(60);

/// A node's reserved-host role, from its label and annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReservedRole {
    /// No label.
    #[default]
    None,
    /// A standby.
    Standby,
    /// A former standby in service.
    InService {
        /// The failed node it took over from.
        replaced: Option<String>,
        /// When it was brought into service.
        since: Option<Timestamp>,
    },
}

impl ReservedRole {
    /// The role written on a node.
    pub fn read(label: Option<&str>, replaced: Option<&str>, promoted_at: Option<&str>) -> Self {
        match label {
            Some(STANDBY) => Self::Standby,
            Some(IN_SERVICE) => Self::InService {
                replaced: replaced.map(str::to_owned),
                since: promoted_at.and_then(|t| t.parse().ok()),
            },
            _ => Self::None,
        }
    }
}

/// What about a node matters to recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    /// Its role.
    pub role: ReservedRole,
    /// `reservedNodeSelector` selects it.
    pub selected: bool,
    /// It carries the reserved taint.
    pub tainted: bool,
    /// Its labels and taints, read for standbys only: `AutoPriority` promotes a standby only
    /// for pods that could run on it.
    pub traits: NodeTraits,
}

/// The recovery part of a NodeHealthCheck's policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveryPolicy {
    /// The method.
    pub method: RecoveryMethod,
    /// `AutoPriority`: how long freed pods may stay unschedulable.
    pub pending_pod_timeout: StdDuration,
}

/// A pod the scheduler could not place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPod {
    /// When it was created.
    pub created: Timestamp,
    /// When the scheduler first reported it unschedulable.
    pub unschedulable_since: Timestamp,
    /// Which nodes it may run on.
    pub placement: Placement,
}

/// Bring `standby` into service in place of `replaces`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The standby.
    pub standby: String,
    /// The failed node; it becomes a standby.
    pub replaces: String,
}

/// A standby of the pool, for the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyReport {
    /// The node.
    pub name: String,
    /// Why it cannot be brought into service now; `None` when it can.
    pub unavailable: Option<String>,
}

/// A node brought into service, for the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InServiceReport {
    /// The node.
    pub name: String,
    /// The failed node it took over from.
    pub replaced: Option<String>,
    /// When.
    pub since: Option<Timestamp>,
}

/// What recovery writes this round, and what the status says about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecoveryPlan {
    /// The method; `None` when the NodeHealthCheck has no `recovery`.
    pub method: Option<RecoveryMethod>,
    /// Standbys to bring into service; carry these out before creating remediations.
    pub promotions: Vec<Promotion>,
    /// Nodes to mark as standbys (label and taint), besides those promoted ones replace.
    pub make_standby: Vec<String>,
    /// The pool's standbys after this round.
    pub standbys: Vec<StandbyReport>,
    /// The pool's nodes in service in place of another, after this round.
    pub in_service: Vec<InServiceReport>,
    /// `AutoPriority`: unschedulable pods counted against `pendingPodTimeout`.
    pub pending_pods: usize,
    /// When the passing of time alone changes this plan.
    pub requeue_at: Option<Timestamp>,
}

/// Why a standby cannot be brought into service now.
pub fn unavailable(node: &PoolNode) -> Option<String> {
    if !node.health.is_healthy() {
        return Some("not healthy".into());
    }
    if !node.remediations.is_empty() {
        return Some("being remediated".into());
    }
    if node.maintenance {
        return Some(format!("in maintenance ({MAINTENANCE_LABEL})"));
    }
    if node.excluded {
        return Some("excluded from remediation".into());
    }
    if let LeaseState::HeldBy(holder) = &node.lease {
        return Some(format!("medik8s node lease held by {holder}"));
    }
    if node.cordoned {
        return Some("cordoned".into());
    }
    None
}

/// Whether the node is one of the pool's standbys (or is about to be made one).
pub fn is_standby(node: &PoolNode) -> bool {
    node.reserved.is_standby()
}

impl Reserved {
    /// A standby, or a node the selector picks that has no role yet (about to be made one).
    pub fn is_standby(&self) -> bool {
        match self.role {
            ReservedRole::Standby => true,
            ReservedRole::None => self.selected,
            ReservedRole::InService { .. } => false,
        }
    }
}

/// Whether an in-service node already replaces `node` for its current failure.
fn has_replacement(pool: &Pool, node: &PoolNode) -> bool {
    let Health::Unhealthy { since, .. } = &node.health else {
        return false;
    };
    pool.nodes.iter().any(|n| match &n.reserved.role {
        ReservedRole::InService {
            replaced: Some(replaced),
            since: Some(promoted),
        } => replaced == &node.name && promoted >= since,
        _ => false,
    })
}

/// Whether the decision starts a remediation for the node now (also as a dry run would).
fn starts_now(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Create { .. } => true,
        Outcome::Blocked {
            reason: BlockReason::DryRun { would },
        } => matches!(**would, Outcome::Create { .. }),
        _ => false,
    }
}

/// Plans recovery for the pool after the per-node decisions; may turn a `Create` into
/// `Blocked { NoStandby }` (and then lowers `in_flight`). See the module documentation.
pub(super) fn plan(
    recovery: Option<&RecoveryPolicy>,
    dry_run: bool,
    pool: &Pool,
    decisions: &mut [NodeDecision],
    in_flight: &mut usize,
    now: Timestamp,
) -> RecoveryPlan {
    let Some(recovery) = recovery else {
        return RecoveryPlan::default();
    };
    let mut plan = RecoveryPlan {
        method: Some(recovery.method),
        ..RecoveryPlan::default()
    };
    if recovery.method == RecoveryMethod::Auto {
        plan.in_service = in_service(pool, &[]);
        return plan;
    }
    let node = |name: &str| pool.nodes.iter().find(|n| n.name == name);
    let mut available: Vec<&PoolNode> = pool
        .nodes
        .iter()
        .filter(|n| is_standby(n) && unavailable(n).is_none())
        .collect();
    available.sort_by(|a, b| a.name.cmp(&b.name));
    let mut available = available.into_iter();

    // The nodes that need a replacement, longest unhealthy first (the decisions' order).
    let needing: Vec<(usize, &PoolNode)> = decisions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i, node(&d.name)?)))
        .filter(|(i, n)| {
            n.health.is_unhealthy()
                && !is_standby(n)
                && (starts_now(&decisions[*i].outcome) || !n.remediations.is_empty())
                && !has_replacement(pool, n)
        })
        .collect();

    match recovery.method {
        RecoveryMethod::Auto => {}
        RecoveryMethod::ReservedHost | RecoveryMethod::ReservedHostPriority => {
            for (i, failed) in needing {
                match available.next() {
                    Some(standby) => plan.promotions.push(Promotion {
                        standby: standby.name.clone(),
                        replaces: failed.name.clone(),
                    }),
                    None if recovery.method == RecoveryMethod::ReservedHost
                        && starts_now(&decisions[i].outcome) =>
                    {
                        if matches!(decisions[i].outcome, Outcome::Create { .. }) {
                            *in_flight = in_flight.saturating_sub(1);
                        }
                        decisions[i].outcome = Outcome::Blocked {
                            reason: BlockReason::NoStandby,
                        };
                    }
                    None => {}
                }
            }
        }
        RecoveryMethod::AutoPriority => {
            // Only remediations already under way free pods.
            let waiting: Vec<&PoolNode> = needing
                .into_iter()
                .map(|(_, n)| n)
                .filter(|n| !n.remediations.is_empty())
                .collect();
            let began = waiting
                .iter()
                .flat_map(|n| n.remediations.iter())
                .filter_map(|r| r.created)
                .min();
            if let Some(began) = began {
                // Pods that could run on a standby of this pool: a pod waiting for another
                // pool's nodes is not ours to make room for.
                let standbys: Vec<&PoolNode> =
                    pool.nodes.iter().filter(|n| is_standby(n)).collect();
                let freed: Vec<&PendingPod> = pool
                    .pending_pods
                    .iter()
                    .filter(|p| p.created >= began)
                    .filter(|p| {
                        standbys
                            .iter()
                            .any(|s| fits(&p.placement, &s.reserved.traits))
                    })
                    .collect();
                plan.pending_pods = freed.len();
                let last_promotion = pool
                    .nodes
                    .iter()
                    .filter_map(|n| match &n.reserved.role {
                        ReservedRole::InService { since, .. } => *since,
                        _ => None,
                    })
                    .max();
                // The first available standby one of them has waited for long enough.
                let mut next_due: Option<Timestamp> = None;
                for standby in available.by_ref() {
                    let Some(oldest) = freed
                        .iter()
                        .filter(|p| fits(&p.placement, &standby.reserved.traits))
                        .map(|p| p.unschedulable_since)
                        .min()
                    else {
                        continue;
                    };
                    let from = last_promotion.map_or(oldest, |l| l.max(oldest));
                    let due = add(from, recovery.pending_pod_timeout);
                    if now >= due {
                        plan.promotions.push(Promotion {
                            standby: standby.name.clone(),
                            replaces: waiting[0].name.clone(),
                        });
                        next_due = None;
                        break;
                    }
                    next_due = Some(next_due.map_or(due, |d| d.min(due)));
                }
                plan.requeue_at = next_due;
            }
        }
    }

    if dry_run {
        plan.promotions.clear();
    }
    // Standbys to (re)mark: new ones picked by the selector, ones that lost their taint, and
    // failed nodes an earlier promotion replaced that are not marked yet (a restart between
    // the two writes of a promotion). Nodes of this round's promotions are marked by them.
    if !dry_run {
        for n in &pool.nodes {
            if plan
                .promotions
                .iter()
                .any(|p| p.standby == n.name || p.replaces == n.name)
            {
                continue;
            }
            let want = match n.reserved.role {
                ReservedRole::Standby => !n.reserved.tainted,
                ReservedRole::None => n.reserved.selected || has_replacement(pool, n),
                ReservedRole::InService { .. } => has_replacement(pool, n),
            };
            if want {
                plan.make_standby.push(n.name.clone());
            }
        }
    }

    // The status after the writes.
    let promoted = |name: &str| plan.promotions.iter().any(|p| p.standby == name);
    let demoted = |name: &str| {
        plan.promotions.iter().any(|p| p.replaces == name)
            || plan.make_standby.iter().any(|m| m == name)
    };
    plan.standbys = pool
        .nodes
        .iter()
        .filter(|n| (is_standby(n) || demoted(&n.name)) && !promoted(&n.name))
        .map(|n| StandbyReport {
            name: n.name.clone(),
            unavailable: unavailable(n),
        })
        .collect();
    plan.in_service = in_service(pool, &plan.promotions);
    for p in &plan.promotions {
        plan.in_service.retain(|s| s.name != p.standby);
        plan.in_service.push(InServiceReport {
            name: p.standby.clone(),
            replaced: Some(p.replaces.clone()),
            since: Some(now),
        });
    }
    plan.in_service.retain(|s| !demoted(&s.name));
    plan.in_service.sort_by(|a, b| a.name.cmp(&b.name));
    plan
}

fn in_service(pool: &Pool, promotions: &[Promotion]) -> Vec<InServiceReport> {
    pool.nodes
        .iter()
        .filter(|n| !promotions.iter().any(|p| p.replaces == n.name))
        .filter_map(|n| match &n.reserved.role {
            ReservedRole::InService { replaced, since } => Some(InServiceReport {
                name: n.name.clone(),
                replaced: replaced.clone(),
                since: *since,
            }),
            _ => None,
        })
        .collect()
}
