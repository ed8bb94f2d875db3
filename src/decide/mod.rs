//! May we act? Pure decision functions over a pool's plain state and a `now`.
//!
//! [`decide`] takes every node of a NodeHealthCheck's pool (its [`Health`], roles, labels, lease,
//! and the remediation objects that exist for it) and returns, for each node that needs
//! something, one [`Outcome`]: create a remediation, escalate to the next template, wait, remove
//! the remediation of a recovered node, or nothing with the [`BlockReason`] why. The controller
//! carries the outcomes out and writes them into status; every rule below is table-tested.
//!
//! # The rules
//!
//! - **New remediations** start only when none of these holds, checked in this order (the first
//!   one found is reported): `pauseRequests` set; the pool below minHealthy/above maxUnhealthy;
//!   a storm cooldown running; the node excluded by label; its medik8s lease held by someone else;
//!   another control-plane node in remediation; etcd quorum at risk; maxInFlight reached.
//! - **Control-plane one at a time** counts every control-plane node with a remediation object
//!   anywhere the operator looks ([`Pool::control_plane_remediations`]: any NodeHealthCheck's,
//!   ours or medik8s', any kind, the Node deleted or not), plus the pool's control-plane nodes
//!   with remediations of this NodeHealthCheck.
//! - **Escalation** (the next template after a timeout or `Succeeded=False`) is also a new action
//!   on the node: the same checks apply, except maxInFlight and control-plane one-at-a-time,
//!   which the node already passed. Marking the last template as timed out, which starts nothing,
//!   is never blocked.
//! - **Recovered nodes**: their remediations are removed, after `healthyDelay` when set, even while
//!   paused (DESIGN invariant 5; medik8s would leave them until unpaused).
//! - **Deleted nodes**: their remediations are removed, except while one reports
//!   `PermanentNodeDeletionExpected=True` without `Succeeded=True` (the remediator deletes the
//!   node on purpose). They never count as in flight and never block anything.
//! - **dryRun**: every outcome that would write something is reported as
//!   [`BlockReason::DryRun`] with what would have been done; counts are updated as if it had.

pub mod placement;
pub mod recovery;
pub mod storm;

use std::{collections::BTreeSet, fmt, time::Duration as StdDuration};

use jiff::Timestamp;

use crate::{
    api::{
        IntOrPercent, NodeHealthCheckPhase, NodeHealthCheckSpec, SignedDuration, TemplateReference,
        TemplateStep,
        contract::{LeaseState, ObservedRemediation, remediation_kind},
    },
    health::{Health, add},
};

pub use recovery::{PendingPod, RecoveryPlan, RecoveryPolicy, Reserved, ReservedRole};
pub use storm::{StormState, StormStep, StormTransition, next_storm};

/// The parts of a NodeHealthCheck spec that decide what may be done.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The templates in the order they are tried.
    pub templates: Vec<TemplateStep>,
    /// `minHealthy`.
    pub min_healthy: Option<IntOrPercent>,
    /// `maxUnhealthy`.
    pub max_unhealthy: Option<IntOrPercent>,
    /// `maxInFlight`.
    pub max_in_flight: Option<IntOrPercent>,
    /// `stormCooldownDuration`; `None` turns storm handling off.
    pub storm_cooldown: Option<StdDuration>,
    /// `healthyDelay`.
    pub healthy_delay: Option<SignedDuration>,
    /// `pauseRequests`.
    pub pause_requests: Vec<String>,
    /// `dryRun`.
    pub dry_run: bool,
    /// `recovery`; `None` is `Auto` without reporting.
    pub recovery: Option<RecoveryPolicy>,
    /// Templates that may not start anything now, and why (a Magnum cluster with healing off
    /// or busy). Filled in by the controller, which asks the cloud.
    pub template_blocks: Vec<(TemplateReference, BlockReason)>,
}

impl Policy {
    /// The policy of a NodeHealthCheck spec.
    pub fn from_spec(spec: &NodeHealthCheckSpec) -> Self {
        Self {
            templates: spec.template_steps(),
            min_healthy: spec.min_healthy,
            max_unhealthy: spec.max_unhealthy,
            max_in_flight: spec.max_in_flight,
            storm_cooldown: spec.storm_cooldown_duration.as_ref().map(|d| d.get()),
            healthy_delay: spec.healthy_delay.clone(),
            pause_requests: spec.pause_requests.clone(),
            dry_run: spec.dry_run,
            recovery: spec.recovery.as_ref().map(|r| RecoveryPolicy {
                method: r.method,
                pending_pod_timeout: r
                    .pending_pod_timeout
                    .as_ref()
                    .map_or(recovery::DEFAULT_PENDING_POD_TIMEOUT, |d| d.get()),
            }),
            template_blocks: vec![],
        }
    }

    /// Why `template` may not start anything now, if so.
    fn template_block(&self, template: &TemplateReference) -> Option<BlockReason> {
        self.template_blocks
            .iter()
            .find(|(t, _)| t.same_template(template))
            .map(|(_, reason)| reason.clone())
    }

    fn limit_spec(&self) -> NodeHealthCheckSpec {
        NodeHealthCheckSpec {
            min_healthy: self.min_healthy,
            max_unhealthy: self.max_unhealthy,
            ..empty_spec()
        }
    }
}

fn empty_spec() -> NodeHealthCheckSpec {
    NodeHealthCheckSpec {
        selector: Default::default(),
        unhealthy_conditions: vec![],
        endpoint_checks: vec![],
        node_startup_timeout: None,
        min_healthy: None,
        max_unhealthy: None,
        max_in_flight: None,
        storm_cooldown_duration: None,
        remediation_template: None,
        escalating_remediations: vec![],
        recovery: None,
        pause_requests: vec![],
        healthy_delay: None,
        dry_run: false,
    }
}

/// A node of the pool, as plain data.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolNode {
    /// The node's name.
    pub name: String,
    /// Its health (see [`crate::health::evaluate`]).
    pub health: Health,
    /// It carries a control-plane role label (and so, we assume, an etcd member).
    pub control_plane: bool,
    /// It carries `remediation.medik8s.io/exclude-from-remediation=true`.
    pub excluded: bool,
    /// It carries `nodehealer.io/maintenance=true`.
    pub maintenance: bool,
    /// It is cordoned (`spec.unschedulable`).
    pub cordoned: bool,
    /// Its reserved-host role (recovery methods).
    pub reserved: Reserved,
    /// Its lease in `medik8s-leases`.
    pub lease: LeaseState,
    /// A person annotated it `remediation.medik8s.io/manually-confirmed-healthy`.
    pub manually_confirmed_healthy: bool,
    /// The remediation objects of this NodeHealthCheck for this node, of any kind.
    pub remediations: Vec<ObservedRemediation>,
}

/// The pool's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pool {
    /// Every node the selector selects.
    pub nodes: Vec<PoolNode>,
    /// Remediation objects of this NodeHealthCheck whose node no longer exists.
    pub orphans: Vec<ObservedRemediation>,
    /// The storm state from the NodeHealthCheck's conditions.
    pub storm: StormState,
    /// Pods the scheduler could not place (read only for `AutoPriority`).
    pub pending_pods: Vec<PendingPod>,
    /// Every remediation object of a control-plane node the operator sees, whoever made it
    /// (this or another NodeHealthCheck, medik8s' own) and of any kind, its Node deleted or not:
    /// while one exists, no other control-plane node is remediated.
    pub control_plane_remediations: Vec<ObservedRemediation>,
    /// Why some remediation kind in use could not be read: the list above may be missing
    /// objects, so no new control-plane remediation starts.
    pub control_plane_unseen: Vec<String>,
}

/// Identifies a remediation object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemediationId {
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl From<&ObservedRemediation> for RemediationId {
    fn from(r: &ObservedRemediation) -> Self {
        Self {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        }
    }
}

impl fmt::Display for RemediationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Why an escalation happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscalationCause {
    /// The template's timeout ran out with the node still unhealthy.
    TimedOut,
    /// The remediation reported `Succeeded=False`.
    Failed,
}

/// What to do for one node.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Create a remediation from `template` (the node has none in progress).
    Create {
        /// The template to create it from.
        template: TemplateReference,
    },
    /// Give up on `from`: annotate it `nhc-timed-out` (if not yet), record `timedOut` in status,
    /// and create a remediation from `to`, unless no template is left.
    Escalate {
        /// The remediation that timed out or failed.
        from: RemediationId,
        /// The next template; `None` after the last one.
        to: Option<TemplateReference>,
        /// Why.
        cause: EscalationCause,
    },
    /// A remediation is in progress; look again at `until` (its timeout, or when the node's
    /// health can change), or on the next event.
    Wait {
        /// When to look again.
        until: Option<Timestamp>,
    },
    /// Every template has been tried; nothing more is done until the node recovers.
    Exhausted,
    /// The node is healthy again; its remediations stay until `until` (`None`: until a person
    /// confirms with the manually-confirmed-healthy annotation). Annotate `mark` with the
    /// healthy-delay start (now), so a restart keeps counting from the same moment.
    HoldHealthy {
        /// When the remediations may be removed.
        until: Option<Timestamp>,
        /// Remediations to annotate with the healthy-delay start.
        mark: Vec<RemediationId>,
    },
    /// Delete these remediations (node healthy, or deleted).
    Remove {
        /// The remediations to delete (those not already being deleted).
        remediations: Vec<RemediationId>,
    },
    /// Nothing is done, for this reason.
    Blocked {
        /// Why.
        reason: BlockReason,
    },
}

impl Outcome {
    /// Whether carrying the outcome out writes something.
    pub fn writes(&self) -> bool {
        match self {
            Self::Create { .. } | Self::Escalate { .. } => true,
            Self::Remove { remediations } => !remediations.is_empty(),
            Self::HoldHealthy { mark, .. } => !mark.is_empty(),
            Self::Wait { .. } | Self::Exhausted | Self::Blocked { .. } => false,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create { template } => write!(
                f,
                "create a remediation from {} {}/{}",
                template.kind, template.namespace, template.name
            ),
            Self::Escalate {
                from,
                to: Some(to),
                cause,
            } => write!(
                f,
                "{from} {}; escalate to {} {}/{}",
                cause_text(*cause),
                to.kind,
                to.namespace,
                to.name
            ),
            Self::Escalate {
                from,
                to: None,
                cause,
            } => {
                write!(f, "{from} {}; no template left", cause_text(*cause))
            }
            Self::Wait { until: Some(until) } => {
                write!(f, "remediation in progress; next check at {until}")
            }
            Self::Wait { until: None } => write!(f, "remediation in progress"),
            Self::Exhausted => write!(
                f,
                "every remediation template was tried; waiting for the node to recover"
            ),
            Self::HoldHealthy {
                until: Some(until), ..
            } => {
                write!(
                    f,
                    "healthy again; remediation kept until {until} (healthyDelay)"
                )
            }
            Self::HoldHealthy { until: None, .. } => write!(
                f,
                "healthy again; remediation kept until the node is annotated remediation.medik8s.io/manually-confirmed-healthy (negative healthyDelay)"
            ),
            Self::Remove { remediations } => {
                let names: Vec<String> = remediations.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "remove {}",
                    if names.is_empty() {
                        "nothing (being deleted)".to_owned()
                    } else {
                        names.join(", ")
                    }
                )
            }
            Self::Blocked { reason } => write!(f, "{reason}"),
        }
    }
}

fn cause_text(cause: EscalationCause) -> &'static str {
    match cause {
        EscalationCause::TimedOut => "timed out",
        EscalationCause::Failed => "failed (Succeeded=False)",
    }
}

/// Why nothing is done for a node.
#[derive(Clone, Debug, PartialEq)]
pub enum BlockReason {
    /// `pauseRequests` is set.
    Paused {
        /// The pause requests.
        requests: Vec<String>,
    },
    /// Fewer healthy nodes than `minHealthy` (or the 51% default).
    BelowMinHealthy {
        /// Healthy nodes.
        healthy: usize,
        /// The minimum.
        min: usize,
    },
    /// More unhealthy nodes than `maxUnhealthy`.
    AboveMaxUnhealthy {
        /// Nodes not healthy.
        unhealthy: usize,
        /// The maximum.
        max: usize,
    },
    /// The cooldown after a storm runs until `until`.
    StormCooldown {
        /// When it ends.
        until: Timestamp,
    },
    /// `maxInFlight` remediations are in progress.
    MaxInFlight {
        /// The limit.
        max: usize,
    },
    /// The node carries `remediation.medik8s.io/exclude-from-remediation=true`.
    Excluded,
    /// The node carries `nodehealer.io/maintenance=true`.
    Maintenance,
    /// `ReservedHost`: no standby node can take the node's workloads.
    NoStandby,
    /// The template's Magnum cluster has auto-healing turned off.
    MagnumHealingDisabled {
        /// The cluster.
        cluster: String,
    },
    /// The template's Magnum cluster is being changed (`*_IN_PROGRESS`).
    MagnumClusterBusy {
        /// The cluster.
        cluster: String,
        /// Its status.
        status: String,
    },
    /// The template's Magnum cluster could not be read.
    MagnumUnreachable {
        /// The cluster.
        cluster: String,
        /// What went wrong.
        error: String,
    },
    /// The node's medik8s lease is held by someone else (e.g. node maintenance).
    LeaseHeldBy {
        /// The holder.
        holder: String,
    },
    /// Another control-plane node is being remediated.
    ControlPlaneOneAtATime {
        /// That node.
        other: String,
    },
    /// Some remediation kind in use could not be read, so another control-plane node may be
    /// in remediation unseen.
    ControlPlaneUnseen {
        /// Why.
        why: String,
    },
    /// Fencing this control-plane node could break etcd quorum.
    EtcdQuorum {
        /// Healthy control-plane nodes.
        healthy_cp: usize,
        /// All control-plane nodes of the pool.
        total_cp: usize,
    },
    /// `dryRun`: this would have been done.
    DryRun {
        /// What would have been done.
        would: Box<Outcome>,
    },
}

impl BlockReason {
    /// A short CamelCase name, for event reasons and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Paused { .. } => "Paused",
            Self::BelowMinHealthy { .. } => "BelowMinHealthy",
            Self::AboveMaxUnhealthy { .. } => "AboveMaxUnhealthy",
            Self::StormCooldown { .. } => "StormCooldown",
            Self::MaxInFlight { .. } => "MaxInFlight",
            Self::Excluded => "Excluded",
            Self::Maintenance => "Maintenance",
            Self::NoStandby => "NoStandby",
            Self::MagnumHealingDisabled { .. } => "MagnumHealingDisabled",
            Self::MagnumClusterBusy { .. } => "MagnumClusterBusy",
            Self::MagnumUnreachable { .. } => "MagnumUnreachable",
            Self::LeaseHeldBy { .. } => "LeaseHeld",
            Self::ControlPlaneOneAtATime { .. } => "ControlPlaneOneAtATime",
            Self::ControlPlaneUnseen { .. } => "ControlPlaneUnseen",
            Self::EtcdQuorum { .. } => "EtcdQuorum",
            Self::DryRun { .. } => "DryRun",
        }
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Paused { requests } => write!(f, "paused: {}", requests.join(", ")),
            Self::BelowMinHealthy { healthy, min } => write!(
                f,
                "{healthy} healthy nodes, below minHealthy {min}: no new remediation"
            ),
            Self::AboveMaxUnhealthy { unhealthy, max } => write!(
                f,
                "{unhealthy} nodes not healthy, above maxUnhealthy {max}: no new remediation"
            ),
            Self::StormCooldown { until } => {
                write!(f, "storm cooldown until {until}: no new remediation")
            }
            Self::MaxInFlight { max } => write!(
                f,
                "{max} remediations in progress (maxInFlight): waiting for one to finish"
            ),
            Self::Excluded => write!(
                f,
                "node is labelled remediation.medik8s.io/exclude-from-remediation=true"
            ),
            Self::Maintenance => write!(f, "node is labelled {}=true", recovery::MAINTENANCE_LABEL),
            Self::NoStandby => write!(
                f,
                "recovery method ReservedHost: no standby node is available to take the workloads (see status.recovery)"
            ),
            Self::MagnumHealingDisabled { cluster } => write!(
                f,
                "Magnum cluster {cluster} does not have the label auto_healing_enabled=true: healing is off"
            ),
            Self::MagnumClusterBusy { cluster, status } => write!(
                f,
                "Magnum cluster {cluster} is {status}: no new remediation until it settles"
            ),
            Self::MagnumUnreachable { cluster, error } => {
                write!(f, "Magnum cluster {cluster} could not be read: {error}")
            }
            Self::LeaseHeldBy { holder } => {
                write!(f, "node lease medik8s-leases is held by {holder}")
            }
            Self::ControlPlaneOneAtATime { other } => {
                write!(
                    f,
                    "control-plane node {other} is being remediated; one control-plane node at a time"
                )
            }
            Self::ControlPlaneUnseen { why } => write!(
                f,
                "cannot see every remediation of control-plane nodes ({why}): one control-plane node at a time cannot be checked"
            ),
            Self::EtcdQuorum {
                healthy_cp,
                total_cp,
            } => write!(
                f,
                "only {healthy_cp} of {total_cp} control-plane nodes are healthy; fencing this one could break etcd quorum ({} needed)",
                quorum(*total_cp)
            ),
            Self::DryRun { would } => write!(f, "dry run: would {would}"),
        }
    }
}

/// What to do for one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeDecision {
    /// The node.
    pub name: String,
    /// What to do.
    pub outcome: Outcome,
    /// Remediations whose healthy-delay annotation must be removed because the node is not
    /// healthy anymore (so a later recovery starts the delay afresh). Empty in dry run.
    pub clear_healthy_mark: Vec<RemediationId>,
}

/// What to do for a remediation object whose node is gone.
#[derive(Clone, Debug, PartialEq)]
pub struct OrphanDecision {
    /// The remediation.
    pub remediation: RemediationId,
    /// The node it was for.
    pub node_name: String,
    /// `Remove`, `Wait` (the remediator deletes the node on purpose), or `Blocked` in dry run.
    pub outcome: Outcome,
}

/// Everything decided for a pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Nodes selected.
    pub observed: usize,
    /// Nodes healthy and without remediation.
    pub healthy: usize,
    /// Nodes that are unhealthy now.
    pub unhealthy: usize,
    /// The healthy nodes the pool must keep for new remediations.
    pub min_healthy: usize,
    /// Nodes with a remediation in progress, counting those created by this decision.
    pub in_flight: usize,
    /// The storm after this decision; write it with [`storm::apply_storm_conditions`].
    pub storm: StormStep,
    /// One entry per node that is unhealthy or has remediations, unhealthy ones first
    /// (longest unhealthy first).
    pub nodes: Vec<NodeDecision>,
    /// One entry per remediation whose node is gone.
    pub orphans: Vec<OrphanDecision>,
    /// Standbys to bring into service and to mark, and what the status says about them.
    pub recovery: RecoveryPlan,
    /// The earliest time the passing of time alone changes a decision; requeue then.
    pub requeue_at: Option<Timestamp>,
}

impl Decision {
    /// The decision for a node, if any.
    pub fn node(&self, name: &str) -> Option<&NodeDecision> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// The number of etcd members that must work for a cluster of `members` to have quorum.
pub fn quorum(members: usize) -> usize {
    members / 2 + 1
}

/// Whether a control-plane node may be fenced without risking etcd quorum.
///
/// We assume stacked etcd: every control-plane node runs a member. A node that is unhealthy to
/// Kubernetes (kubelet silent) may still run a working etcd member, and we cannot tell from here.
/// So the rule is: the *other* healthy control-plane nodes must form a quorum on their own,
/// `healthy_others ≥ ⌊total/2⌋ + 1`. Then fencing this node cannot break quorum whatever its
/// member's state.
///
/// When they do not, we block. Could remediating be "the only way back" then? If the API server
/// answers (it must, for us to act), etcd has quorum, so some of the unhealthy control-plane nodes
/// still run working members, and we cannot tell which: fencing any of them may be the fencing
/// that breaks quorum and takes the whole cluster down. Recovery of such a cluster is left to a
/// person. Examples: 3 members with 1 unhealthy → 2 ≥ 2, allowed; 3 with 2 unhealthy → blocked;
/// a single control-plane node, or 2 with 1 unhealthy → blocked.
pub fn etcd_allows_fencing(healthy_others: usize, total: usize) -> bool {
    healthy_others >= quorum(total)
}

/// Decides what to do for every node of a pool at `now`. See the module documentation for the
/// rules.
pub fn decide(policy: &Policy, pool: &Pool, now: Timestamp) -> Decision {
    let observed = pool.nodes.len();
    let healthy = pool
        .nodes
        .iter()
        .filter(|n| n.health.is_healthy() && n.remediations.is_empty())
        .count();
    let unhealthy = pool
        .nodes
        .iter()
        .filter(|n| n.health.is_unhealthy())
        .count();
    let min_healthy = policy.limit_spec().min_healthy_nodes(observed);

    let threshold_block =
        (healthy < min_healthy).then(|| match (&policy.min_healthy, &policy.max_unhealthy) {
            (None, Some(max)) => BlockReason::AboveMaxUnhealthy {
                unhealthy: observed - healthy,
                max: max.scaled(observed, true),
            },
            _ => BlockReason::BelowMinHealthy {
                healthy,
                min: min_healthy,
            },
        });
    let storm = next_storm(
        pool.storm,
        policy.storm_cooldown,
        unhealthy > 0 && threshold_block.is_some(),
        now,
    );
    let pool_block = if !policy.pause_requests.is_empty() {
        Some(BlockReason::Paused {
            requests: policy.pause_requests.clone(),
        })
    } else if let Some(reason) = threshold_block {
        Some(reason)
    } else {
        storm
            .cooldown_until
            .map(|until| BlockReason::StormCooldown { until })
    };

    let max_in_flight = policy.max_in_flight.map(|m| m.scaled(observed, true));
    let mut in_flight = pool
        .nodes
        .iter()
        .filter(|n| !n.remediations.is_empty())
        .count();
    let total_cp = pool.nodes.iter().filter(|n| n.control_plane).count();
    let healthy_cp = pool
        .nodes
        .iter()
        .filter(|n| n.control_plane && n.health.is_healthy())
        .count();
    let mut cp_in_flight: BTreeSet<String> = pool
        .nodes
        .iter()
        .filter(|n| n.control_plane && !n.remediations.is_empty())
        .map(|n| n.name.clone())
        .chain(
            pool.control_plane_remediations
                .iter()
                .map(|r| r.node_name.clone()),
        )
        .collect();

    // Longest unhealthy first, so the limits favour the node that has waited longest.
    let mut order: Vec<&PoolNode> = pool.nodes.iter().collect();
    order.sort_by(|a, b| {
        let key = |n: &PoolNode| match &n.health {
            Health::Unhealthy { since, .. } => (0, Some(*since)),
            _ => (1, None),
        };
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });

    let mut requeue_at: Option<Timestamp> = storm.cooldown_until;
    let mut earliest = |at: Option<Timestamp>| {
        if let Some(at) = at {
            requeue_at = Some(requeue_at.map_or(at, |r| r.min(at)));
        }
    };

    let mut nodes = Vec::new();
    for node in order {
        earliest(node.health.next_check_at());
        let live: Vec<&ObservedRemediation> = node.remediations.iter().collect();
        let not_healthy_marks = || -> Vec<RemediationId> {
            live.iter()
                .filter(|r| r.healthy_since.is_some() && !r.deleting)
                .map(|r| RemediationId::from(*r))
                .collect()
        };
        let (outcome, clear_healthy_mark) = match &node.health {
            Health::Healthy => {
                if live.is_empty() {
                    continue;
                }
                (recovered(policy, node, now), vec![])
            }
            Health::SoonUnhealthy { at, .. } => {
                if live.is_empty() {
                    continue;
                }
                // Maybe just moving from one unhealthy condition to another: keep everything.
                (Outcome::Wait { until: Some(*at) }, not_healthy_marks())
            }
            Health::Starting { until } => {
                if live.is_empty() {
                    continue;
                }
                (
                    Outcome::Wait {
                        until: Some(*until),
                    },
                    not_healthy_marks(),
                )
            }
            Health::Unhealthy { .. } => {
                let step = next_step(policy, &live, now);
                let is_new = live.is_empty();
                let outcome = match step {
                    Step::Start(template) => {
                        let guard = guard_new_action(
                            &pool_block,
                            node,
                            is_new,
                            max_in_flight,
                            in_flight,
                            &cp_in_flight,
                            &pool.control_plane_unseen,
                            healthy_cp,
                            total_cp,
                        );
                        let guard = guard.or_else(|| policy.template_block(&template));
                        match guard {
                            Some(reason) => Outcome::Blocked { reason },
                            None => {
                                if is_new {
                                    in_flight += 1;
                                    if node.control_plane {
                                        cp_in_flight.insert(node.name.clone());
                                    }
                                }
                                match previous_timed_out(policy, &live, &template) {
                                    Some(from) => Outcome::Escalate {
                                        from,
                                        to: Some(template),
                                        cause: EscalationCause::TimedOut,
                                    },
                                    None => Outcome::Create { template },
                                }
                            }
                        }
                    }
                    Step::Escalate { from, to, cause } => {
                        let guard = to
                            .as_ref()
                            .and_then(|_| {
                                guard_new_action(
                                    &pool_block,
                                    node,
                                    false,
                                    max_in_flight,
                                    in_flight,
                                    &cp_in_flight,
                                    &pool.control_plane_unseen,
                                    healthy_cp,
                                    total_cp,
                                )
                            })
                            .or_else(|| to.as_ref().and_then(|t| policy.template_block(t)));
                        match guard {
                            Some(reason) => Outcome::Blocked { reason },
                            None => Outcome::Escalate { from, to, cause },
                        }
                    }
                    Step::Wait { until } => {
                        earliest(until);
                        Outcome::Wait { until }
                    }
                    Step::Exhausted => Outcome::Exhausted,
                };
                (outcome, not_healthy_marks())
            }
        };
        if let Outcome::HoldHealthy { until, .. } = &outcome {
            earliest(*until);
        }
        let (outcome, clear_healthy_mark) = if policy.dry_run {
            (dry_run(outcome), vec![])
        } else {
            (outcome, clear_healthy_mark)
        };
        nodes.push(NodeDecision {
            name: node.name.clone(),
            outcome,
            clear_healthy_mark,
        });
    }

    let orphans = pool
        .orphans
        .iter()
        .filter(|r| !r.deleting)
        .map(|r| {
            let outcome = if r.permanent_node_deletion_expected && r.succeeded != Some(true) {
                Outcome::Wait { until: None }
            } else {
                Outcome::Remove {
                    remediations: vec![RemediationId::from(r)],
                }
            };
            OrphanDecision {
                remediation: RemediationId::from(r),
                node_name: r.node_name.clone(),
                outcome: if policy.dry_run {
                    dry_run(outcome)
                } else {
                    outcome
                },
            }
        })
        .collect();

    let recovery = recovery::plan(
        policy.recovery.as_ref(),
        policy.dry_run,
        pool,
        &mut nodes,
        &mut in_flight,
        now,
    );
    if let Some(at) = recovery.requeue_at {
        requeue_at = Some(requeue_at.map_or(at, |r: Timestamp| r.min(at)));
    }

    Decision {
        observed,
        healthy,
        unhealthy,
        min_healthy,
        in_flight,
        storm,
        nodes,
        orphans,
        recovery,
        requeue_at,
    }
}

fn dry_run(outcome: Outcome) -> Outcome {
    if outcome.writes() {
        Outcome::Blocked {
            reason: BlockReason::DryRun {
                would: Box::new(outcome),
            },
        }
    } else {
        outcome
    }
}

/// The first reason, if any, not to start something new on `node`. `is_new`: the node has no
/// remediation yet, so maxInFlight and control-plane one-at-a-time apply.
#[allow(clippy::too_many_arguments)]
fn guard_new_action(
    pool_block: &Option<BlockReason>,
    node: &PoolNode,
    is_new: bool,
    max_in_flight: Option<usize>,
    in_flight: usize,
    cp_in_flight: &BTreeSet<String>,
    unseen: &[String],
    healthy_cp: usize,
    total_cp: usize,
) -> Option<BlockReason> {
    if let Some(reason) = pool_block {
        return Some(reason.clone());
    }
    if node.excluded {
        return Some(BlockReason::Excluded);
    }
    if node.maintenance {
        return Some(BlockReason::Maintenance);
    }
    if let LeaseState::HeldBy(holder) = &node.lease {
        return Some(BlockReason::LeaseHeldBy {
            holder: holder.clone(),
        });
    }
    if node.control_plane {
        if let Some(other) = cp_in_flight
            .iter()
            .find(|other| **other != node.name)
            .filter(|_| is_new)
        {
            return Some(BlockReason::ControlPlaneOneAtATime {
                other: other.to_owned(),
            });
        }
        if is_new && !unseen.is_empty() {
            return Some(BlockReason::ControlPlaneUnseen {
                why: unseen.join("; "),
            });
        }
        let healthy_others = healthy_cp - usize::from(node.health.is_healthy());
        if !etcd_allows_fencing(healthy_others, total_cp) {
            return Some(BlockReason::EtcdQuorum {
                healthy_cp,
                total_cp,
            });
        }
    }
    if is_new && let Some(max) = max_in_flight.filter(|max| in_flight >= *max) {
        return Some(BlockReason::MaxInFlight { max });
    }
    None
}

/// Where an unhealthy node stands in its escalation.
enum Step {
    /// Start the template (first one, or the next after a timed-out one).
    Start(TemplateReference),
    /// Give up on `from`, go to `to`.
    Escalate {
        from: RemediationId,
        to: Option<TemplateReference>,
        cause: EscalationCause,
    },
    /// The current remediation is running.
    Wait { until: Option<Timestamp> },
    /// All templates were tried.
    Exhausted,
}

/// Whether a remediation object was created from `template`: same apiVersion and namespace, the
/// template's kind without `Template`, and the template-name annotation (when present).
pub fn created_from(remediation: &ObservedRemediation, template: &TemplateReference) -> bool {
    remediation.api_version == template.api_version
        && remediation.namespace == template.namespace
        && remediation_kind(&template.kind) == Some(remediation.kind.as_str())
        && remediation
            .template_name
            .as_deref()
            .is_none_or(|name| name == template.name)
}

fn next_step(policy: &Policy, remediations: &[&ObservedRemediation], now: Timestamp) -> Step {
    for (index, step) in policy.templates.iter().enumerate() {
        // The newest object of this template decides (an older one may still be finalizing).
        let current = remediations
            .iter()
            .filter(|r| created_from(r, &step.template))
            .max_by_key(|r| r.created);
        let Some(current) = current else {
            return Step::Start(step.template.clone());
        };
        if current.timed_out.is_some() {
            continue;
        }
        if current.deleting {
            return Step::Wait { until: None };
        }
        let next = policy.templates.get(index + 1).map(|s| s.template.clone());
        let escalate = |cause| Step::Escalate {
            from: RemediationId::from(*current),
            to: next.clone(),
            cause,
        };
        let Some(timeout) = step.timeout else {
            // A single template is never escalated; when it gives up, nothing is left to try.
            return if current.succeeded == Some(false) {
                Step::Exhausted
            } else {
                Step::Wait { until: None }
            };
        };
        if current.succeeded == Some(false) {
            return escalate(EscalationCause::Failed);
        }
        let deadline = add(current.created.unwrap_or(now), timeout);
        if now >= deadline {
            return escalate(EscalationCause::TimedOut);
        }
        return Step::Wait {
            until: Some(deadline),
        };
    }
    Step::Exhausted
}

/// The timed-out remediation of the template before `template`, if `template` is not the first:
/// starting it is the second half of an escalation.
fn previous_timed_out(
    policy: &Policy,
    remediations: &[&ObservedRemediation],
    template: &TemplateReference,
) -> Option<RemediationId> {
    let index = policy
        .templates
        .iter()
        .position(|s| s.template.same_template(template))?;
    let previous = &policy.templates.get(index.checked_sub(1)?)?.template;
    remediations
        .iter()
        .filter(|r| created_from(r, previous) && r.timed_out.is_some())
        .max_by_key(|r| r.created)
        .map(|r| RemediationId::from(*r))
}

/// What to do with the remediations of a node that is healthy again.
fn recovered(policy: &Policy, node: &PoolNode, now: Timestamp) -> Outcome {
    let deletable: Vec<RemediationId> = node
        .remediations
        .iter()
        .filter(|r| !r.deleting)
        .map(RemediationId::from)
        .collect();
    let remove = Outcome::Remove {
        remediations: deletable.clone(),
    };
    if node.manually_confirmed_healthy || deletable.is_empty() {
        return remove;
    }
    let Some(delay) = &policy.healthy_delay else {
        return remove;
    };
    let Some(delay) = delay.non_negative() else {
        return Outcome::HoldHealthy {
            until: None,
            mark: vec![],
        };
    };
    if delay.is_zero() {
        return remove;
    }
    let started = node
        .remediations
        .iter()
        .filter(|r| !r.deleting)
        .filter_map(|r| r.healthy_since)
        .min();
    let until = add(started.unwrap_or(now), delay);
    if now >= until {
        return remove;
    }
    let mark = node
        .remediations
        .iter()
        .filter(|r| !r.deleting && r.healthy_since.is_none())
        .map(RemediationId::from)
        .collect();
    Outcome::HoldHealthy {
        until: Some(until),
        mark,
    }
}

/// The phase of a NodeHealthCheck and its explanation, as medik8s computes them: Disabled when
/// the configuration cannot work, else Paused when paused, else Remediating when some node has a
/// remediation, else Enabled.
pub fn phase(
    disabled: Option<&str>,
    pause_requests: &[String],
    nodes_in_remediation: usize,
) -> (NodeHealthCheckPhase, String) {
    if let Some(why) = disabled {
        (NodeHealthCheckPhase::Disabled, format!("disabled: {why}"))
    } else if !pause_requests.is_empty() {
        (
            NodeHealthCheckPhase::Paused,
            format!("paused: {}", pause_requests.join(", ")),
        )
    } else if nodes_in_remediation > 0 {
        (
            NodeHealthCheckPhase::Remediating,
            format!("remediating {nodes_in_remediation} node(s)"),
        )
    } else {
        (
            NodeHealthCheckPhase::Enabled,
            "enabled, no remediation in progress".to_owned(),
        )
    }
}

#[cfg(test)]
mod tests;
