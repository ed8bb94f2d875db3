//! `NodeHealthCheck`: which nodes form a pool, when one of them is unhealthy, what to create for it,
//! and the limits that keep remediation from making an outage worse.
//!
//! Field names and semantics follow medik8s' `remediation.medik8s.io/v1alpha1` NodeHealthCheck, so
//! a medik8s manifest is accepted after changing only its `apiVersion`; fields medik8s does not
//! have are marked "nodehealer extension".

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Duration, IntOrPercent, SignedDuration, intorpercent::NON_NEGATIVE_INT_OR_PERCENT};

/// Most unhealthy conditions a NodeHealthCheck may list.
pub const MAX_UNHEALTHY_CONDITIONS: usize = 32;
/// Most endpoint checks a NodeHealthCheck may list.
pub const MAX_ENDPOINT_CHECKS: usize = 8;
/// Most escalation steps a NodeHealthCheck may list. Bounded so the uniqueness rule on `order`
/// (quadratic in the list length) stays within the apiserver's CEL cost budget.
pub const MAX_ESCALATING_REMEDIATIONS: usize = 10;
/// Shortest escalation timeout; medik8s enforces the same minimum so that two remediators never
/// act on one node at nearly the same time.
pub const MIN_ESCALATION_TIMEOUT_SECS: u64 = 60;

/// Which nodes to watch, when they count as unhealthy, what to create for an unhealthy node and
/// the limits that keep remediation safe. One NodeHealthCheck per node pool.
// Clippy reads the repeated `type_ = "..."` of separate printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nodehealer.io",
    version = "v1alpha1",
    kind = "NodeHealthCheck",
    shortname = "nhc",
    status = "NodeHealthCheckStatus",
    derive = "PartialEq",
    doc = "NodeHealthCheck watches the nodes of one pool, decides when a node is unhealthy and \
           creates a remediation for it from a template, within the pool's safety limits.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Disabled, Paused, Remediating or Enabled"
    ),
    printcolumn(
        name = "Observed",
        type_ = "integer",
        json_path = ".status.observedNodes",
        description = "Nodes selected by the selector"
    ),
    printcolumn(
        name = "Healthy",
        type_ = "integer",
        json_path = ".status.healthyNodes",
        description = "Selected nodes that are healthy"
    ),
    printcolumn(
        name = "Unhealthy",
        type_ = "integer",
        json_path = ".status.unhealthyCount",
        description = "Selected nodes that are unhealthy"
    ),
    printcolumn(
        name = "CloudReady",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"CloudReady\")].reason",
        description = "Whether the remediation path works (the CloudReady condition's reason)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!(has(self.minHealthy) && has(self.maxUnhealthy))")
        .message("minHealthy and maxUnhealthy are mutually exclusive: set at most one of them"),
    validation = Rule::new("has(self.remediationTemplate) != has(self.escalatingRemediations)")
        .message("exactly one of remediationTemplate or escalatingRemediations must be set"),
    validation = Rule::new(
        "!has(self.unhealthyConditions) || size(self.unhealthyConditions) > 0 || \
         (has(self.endpointChecks) && size(self.endpointChecks) > 0)"
    )
    .message("at least one unhealthy condition or endpoint check is required to detect unhealthy nodes")
)]
#[serde(rename_all = "camelCase")]
pub struct NodeHealthCheckSpec {
    /// The nodes of the pool. Must not be empty: set `matchLabels` or `matchExpressions`.
    /// Do not select control-plane and worker nodes in one NodeHealthCheck, and do not let two
    /// NodeHealthChecks select the same node.
    #[x_kube(
        validation = Rule::new(
            "(has(self.matchLabels) && size(self.matchLabels) > 0) || \
             (has(self.matchExpressions) && size(self.matchExpressions) > 0)"
        )
        .message("selector must not be empty: set matchLabels or matchExpressions")
    )]
    pub selector: LabelSelector,

    /// Node conditions that make a node unhealthy, combined with a logical OR: a node is
    /// unhealthy when one of its conditions has had the given status for at least the given
    /// duration. Any node condition can be used, e.g. from node-problem-detector.
    /// Defaults to Ready=False and Ready=Unknown for 300s.
    #[serde(default = "default_unhealthy_conditions")]
    #[schemars(
        length(max = 32),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type", "status"])
    )]
    pub unhealthy_conditions: Vec<UnhealthyCondition>,

    /// HTTP(S) probes of each node's InternalIP (nodehealer extension, like magnum-auto-healer's
    /// endpoint check, e.g. `https://<node>:6443/healthz`). A check that has failed for its
    /// `duration` makes the node unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub endpoint_checks: Vec<EndpointCheck>,

    /// A node younger than this is never remediated, and a node older than this that has never
    /// been Ready is unhealthy (nodehealer extension). Unset: node age is not considered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_startup_timeout: Option<Duration>,

    /// Remediation is allowed only while at least this many selected nodes are healthy:
    /// a number, or a percentage of the selected nodes rounded up. `100%` blocks all
    /// remediation. Mutually exclusive with `maxUnhealthy`; when neither is set, `51%` applies,
    /// as in medik8s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(NON_NEGATIVE_INT_OR_PERCENT).message("minHealthy must not be negative"))]
    pub min_healthy: Option<IntOrPercent>,

    /// Remediation is allowed only while at most this many selected nodes are not healthy:
    /// a number, or a percentage of the selected nodes rounded up. `0` blocks all remediation.
    /// Mutually exclusive with `minHealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(NON_NEGATIVE_INT_OR_PERCENT).message("maxUnhealthy must not be negative"))]
    pub max_unhealthy: Option<IntOrPercent>,

    /// At most this many nodes of the pool are remediated at once: a number, or a percentage of
    /// the selected nodes rounded up (nodehealer extension). Unset: no limit besides
    /// minHealthy/maxUnhealthy. `0` blocks all new remediation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(NON_NEGATIVE_INT_OR_PERCENT).message("maxInFlight must not be negative"))]
    pub max_in_flight: Option<IntOrPercent>,

    /// After a storm (remediation blocked by minHealthy/maxUnhealthy while nodes were unhealthy)
    /// ends, wait this long before starting new remediations, because the counts that ended
    /// the storm may still be settling. Unset: no storm handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_cooldown_duration: Option<Duration>,

    /// The template to create a remediation from for an unhealthy node: any `<Kind>Template`
    /// that follows the medik8s remediation contract. Mutually exclusive with
    /// `escalatingRemediations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_template: Option<TemplateReference>,

    /// Templates tried one after another, lowest `order` first, each until its `timeout` expires
    /// or its remediation reports `Succeeded=False`. Mutually exclusive with
    /// `remediationTemplate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 10))]
    #[x_kube(
        validation = Rule::new("self.all(a, self.exists_one(b, b.order == a.order))")
            .message("escalatingRemediations must have unique order values")
    )]
    pub escalating_remediations: Vec<EscalatingRemediation>,

    /// Where the workloads of a failed node go (nodehealer extension, after Masakari's recovery
    /// methods). Defaults to `Auto`: the scheduler places them on any node of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySpec>,

    /// While any entry is present no new remediation starts; running ones continue. Each entry
    /// is free text, ideally saying who paused and why, e.g. "cluster upgrade by @admin".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub pause_requests: Vec<String>,

    /// How long a node whose conditions are healthy again must stay healthy before its
    /// remediation is removed. A negative value keeps the remediation until a person annotates
    /// the node with `remediation.medik8s.io/manually-confirmed-healthy`. Unset or zero: removed
    /// at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_delay: Option<SignedDuration>,

    /// Decide and report in status and events, but create, change and delete nothing
    /// (nodehealer extension).
    #[serde(default)]
    pub dry_run: bool,
}

/// The unhealthy conditions used when a NodeHealthCheck lists none: Ready=False or Ready=Unknown
/// for 300s, as in medik8s.
pub fn default_unhealthy_conditions() -> Vec<UnhealthyCondition> {
    [ConditionStatus::False, ConditionStatus::Unknown]
        .into_iter()
        .map(|status| UnhealthyCondition {
            type_: "Ready".to_owned(),
            status,
            duration: Duration::parse("300s").expect("a valid literal"),
        })
        .collect()
}

/// A node condition type and status which, held for `duration`, make a node unhealthy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct UnhealthyCondition {
    /// The condition type in the node's status, e.g. `Ready` or `KernelDeadlock`.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,

    /// The condition status to watch for: `True`, `False` or `Unknown`.
    pub status: ConditionStatus,

    /// How long the condition must have had this status (since its `lastTransitionTime`) for
    /// the node to be unhealthy. Go duration syntax, e.g. "300s", "5m", "1h30m".
    pub duration: Duration,
}

/// The status of a Kubernetes condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The condition's state is not known, e.g. the kubelet stopped reporting.
    Unknown,
}

impl ConditionStatus {
    /// The status as written in Kubernetes objects.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// An HTTP(S) probe of a node's InternalIP.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("duration(self.timeout) < duration(self.interval)")
        .message("endpoint check timeout must be shorter than its interval"),
    validation = Rule::new("duration(self.duration) >= duration(self.interval)")
        .message("endpoint check duration must be at least one interval, so one failed probe alone never makes a node unhealthy")
)]
#[serde(rename_all = "camelCase")]
pub struct EndpointCheck {
    /// Names the check in status and events. A DNS label, unique within the NodeHealthCheck.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,

    /// `HTTPS` (default) or `HTTP`.
    #[serde(default)]
    pub scheme: Scheme,

    /// The TCP port to probe, e.g. 6443 for the API server on control-plane nodes.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// The URL path to request. Defaults to `/healthz`.
    #[serde(default = "default_endpoint_path")]
    #[schemars(length(min = 1, max = 1024), pattern(r"^/"))]
    pub path: String,

    /// Response codes that count as success. Defaults to `[200]`.
    #[serde(default = "default_ok_codes")]
    #[schemars(length(min = 1, max = 16), inner(range(min = 100, max = 599)))]
    pub ok_codes: Vec<i32>,

    /// How long the check must fail without a success in between for the node to be
    /// unhealthy. Defaults to 300s.
    #[serde(default = "default_endpoint_duration")]
    pub duration: Duration,

    /// How long to wait for one response. Defaults to 5s.
    #[serde(default = "default_endpoint_timeout")]
    pub timeout: Duration,

    /// How often to probe. Defaults to 30s.
    #[serde(default = "default_endpoint_interval")]
    pub interval: Duration,

    /// Accept any server certificate. Node certificates are often self-signed or issued for
    /// names rather than IPs; the probe sends no credentials.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_endpoint_path() -> String {
    "/healthz".to_owned()
}
fn default_ok_codes() -> Vec<i32> {
    vec![200]
}
fn default_endpoint_duration() -> Duration {
    Duration::parse("300s").expect("a valid literal")
}
fn default_endpoint_timeout() -> Duration {
    Duration::parse("5s").expect("a valid literal")
}
fn default_endpoint_interval() -> Duration {
    Duration::parse("30s").expect("a valid literal")
}

/// The protocol of an endpoint check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    #[default]
    Https,
}

/// A reference to a remediation template: any namespaced `<Kind>Template` whose
/// `spec.template.spec` becomes the `spec` of the `<Kind>` created for an unhealthy node.
/// The shape of a `corev1.ObjectReference`, as in medik8s.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[x_kube(
    validation = Rule::new("self.kind.endsWith('Template') && size(self.kind) > 8")
        .message("remediationTemplate kind must end with \"Template\", e.g. RemediationTemplate")
)]
#[serde(rename_all = "camelCase")]
pub struct TemplateReference {
    /// API version of the template, e.g. `nodehealer.io/v1alpha1`.
    #[schemars(length(min = 1, max = 316))]
    pub api_version: String,

    /// Kind of the template; must end with `Template`. The remediation created has this kind
    /// without the suffix.
    #[schemars(length(min = 1, max = 253))]
    pub kind: String,

    /// Name of the template.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Namespace of the template; remediations are created in this namespace.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// Ignored; accepted so references copied from a `corev1.ObjectReference` are valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,

    /// Ignored; accepted so references copied from a `corev1.ObjectReference` are valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,

    /// Ignored; accepted so references copied from a `corev1.ObjectReference` are valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

impl TemplateReference {
    /// A reference to the template `namespace/name` of the given apiVersion and kind.
    pub fn new(api_version: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            uid: None,
            resource_version: None,
            field_path: None,
        }
    }

    /// Whether both references name the same template (the ignored fields do not matter).
    pub fn same_template(&self, other: &TemplateReference) -> bool {
        self.api_version == other.api_version
            && self.kind == other.kind
            && self.name == other.name
            && self.namespace == other.namespace
    }
}

/// One step of an escalation: a template, its place in the order and how long it may try.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EscalatingRemediation {
    /// The template to create a remediation from.
    pub remediation_template: TemplateReference,

    /// Lower orders are tried first. Orders must be unique.
    pub order: i32,

    /// How long to wait for the node to become healthy before trying the next template. When
    /// the last one times out, remediation of the node has failed. At least 60s.
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('60s')")
            .message("escalating remediation timeout must be at least 60s")
    )]
    pub timeout: Duration,
}

/// Where the workloads of a failed node go (after Masakari's recovery methods).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new(
        "!has(self.method) || self.method == 'Auto' || has(self.reservedNodeSelector)"
    )
    .message("reservedNodeSelector is required for the ReservedHost, ReservedHostPriority and AutoPriority methods")
)]
#[serde(rename_all = "camelCase")]
pub struct RecoverySpec {
    /// `Auto` (default): the scheduler places freed workloads on any node.
    /// `ReservedHost`: a standby node of the pool (selected by `reservedNodeSelector`) is brought
    /// into service as a failed node is fenced; the repaired node becomes the new standby.
    /// `ReservedHostPriority`: a standby first, any node when none is left.
    /// `AutoPriority`: any node first, a standby when pods stay pending for `pendingPodTimeout`.
    #[serde(default)]
    pub method: RecoveryMethod,

    /// Selects the standby nodes among the pool's nodes. Required for every method but `Auto`.
    /// nodehealer labels them `nodehealer.io/reserved-host=standby` and taints them
    /// `nodehealer.io/reserved:NoSchedule`; a node brought into service is labelled
    /// `nodehealer.io/reserved-host=in-service` and counts as an ordinary node from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_node_selector: Option<LabelSelector>,

    /// With `AutoPriority`: how long pods created since a remediation began may stay
    /// unschedulable before a standby node is brought into service (counted again from the
    /// pool's last promotion). Defaults to 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_pod_timeout: Option<Duration>,
}

/// A recovery method: where freed workloads go.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RecoveryMethod {
    /// The scheduler places workloads on any node.
    #[default]
    Auto,
    /// A standby node of the pool takes the workloads.
    ReservedHost,
    /// A standby node first; any node when no standby is left.
    ReservedHostPriority,
    /// Any node first; a standby when pods stay pending.
    AutoPriority,
}

/// The observed state of a NodeHealthCheck, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeHealthCheckStatus {
    /// Number of nodes selected by the selector.
    #[serde(default)]
    pub observed_nodes: i32,

    /// Number of selected nodes that are healthy and have no remediation.
    #[serde(default)]
    pub healthy_nodes: i32,

    /// Number of entries in `unhealthyNodes`, for `kubectl get`.
    #[serde(default)]
    pub unhealthy_count: i32,

    /// Number of nodes with a remediation in progress.
    #[serde(default)]
    pub in_flight_remediations: i32,

    /// The unhealthy nodes: why each is unhealthy, its remediations, and why nothing is being
    /// done when that is the case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub unhealthy_nodes: Vec<UnhealthyNode>,

    /// `Disabled`, `Paused`, `Remediating` or `Enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodeHealthCheckPhase>,

    /// Explains the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// `Disabled` (the configuration cannot work, e.g. a template is missing), `StormActive`
    /// and `StormCooldownActive`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// With `recovery`: the pool's standby nodes and the nodes brought into service in place
    /// of failed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryStatus>,

    /// What the last cloud readiness check found (see the `CloudReady` condition): the nodes
    /// of the pool that map to no server the templates' credentials can see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_readiness: Option<CloudReadinessStatus>,

    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The condition saying whether the pool's remediation path works: the Secret parses,
/// Keystone accepts the credentials, every node maps to a server they can see in its region,
/// the Magnum cluster exists. Written by the readiness check, never read by a decision.
pub const CLOUD_READY_CONDITION: &str = "CloudReady";

/// Most unmapped nodes listed in `status.cloudReadiness.unmappedNodes` (all are counted).
pub const MAX_UNMAPPED_NODES_LISTED: usize = 20;

/// The last cloud readiness check of a NodeHealthCheck.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudReadinessStatus {
    /// When the cloud was last looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<Time>,

    /// How many nodes of the pool map to no server the credentials can see.
    #[serde(default)]
    pub unmapped_count: i32,

    /// The first unmapped nodes by name (at most 20), each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub unmapped_nodes: Vec<UnmappedNode>,
}

/// A node of the pool whose server the credentials cannot see: a remediation of it would fail.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnmappedNode {
    /// The node.
    pub name: String,
    /// Why it maps to no server (no server of its providerID's id in its region, a providerID
    /// that is not OpenStack's, a region the catalog lacks, ...).
    pub reason: String,
}

/// The standbys of a pool and the nodes brought into service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryStatus {
    /// The recovery method in force.
    pub method: RecoveryMethod,

    /// The standby nodes (label `nodehealer.io/reserved-host=standby`, taint
    /// `nodehealer.io/reserved:NoSchedule`), and whether each can be brought into service now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<StandbyNode>,

    /// Former standbys in service, and the failed node each one replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_service: Vec<InServiceNode>,

    /// `AutoPriority`: pods created since a remediation began that the scheduler could not
    /// place and that could run on a standby of the pool (node selector, required node
    /// affinity, tolerations); a standby is brought into service when they wait longer than
    /// `pendingPodTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_pods: Option<i32>,
}

/// A standby node of the pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandbyNode {
    /// The node.
    pub name: String,
    /// Whether it can be brought into service now.
    pub available: bool,
    /// Why it cannot, when it cannot (not healthy, in maintenance, cordoned, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A former standby brought into service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InServiceNode {
    /// The node.
    pub name: String,
    /// The failed node whose workloads it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
    /// When it was brought into service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// The phase of a NodeHealthCheck.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NodeHealthCheckPhase {
    /// The configuration cannot work (see the `Disabled` condition); nothing is done.
    Disabled,
    /// `pauseRequests` is set: no new remediation starts.
    Paused,
    /// At least one node is being remediated.
    Remediating,
    /// Watching; no remediation in progress.
    Enabled,
}

impl NodeHealthCheckPhase {
    /// The phase as written in status.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Disabled => "Disabled",
            Self::Paused => "Paused",
            Self::Remediating => "Remediating",
            Self::Enabled => "Enabled",
        }
    }
}

/// An unhealthy node of the pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyNode {
    /// The node's name.
    pub name: String,

    /// When the node became unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,

    /// Why the node is unhealthy: the condition or endpoint check that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// The remediations created for the node, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remediations: Vec<RemediationRecord>,

    /// Why nothing is being done for the node, when that is the case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,

    /// When the node's conditions stopped matching; its remediations are removed once they
    /// have been healthy for `healthyDelay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions_healthy_timestamp: Option<Time>,

    /// True while a healthy node is kept as unhealthy because of `healthyDelay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_delayed: Option<bool>,
}

/// A remediation created for a node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationRecord {
    /// The remediation object created.
    pub resource: ResourceReference,

    /// When it was created.
    pub started: Time,

    /// When it timed out or failed and the next template (if any) was tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<Time>,

    /// The template it was created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
}

/// A reference to an object created by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceReference {
    /// API version of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Namespace of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the object.
    pub name: String,
    /// UID of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One template of a NodeHealthCheck in the order it is tried, with its timeout (none for a
/// single `remediationTemplate`, which is never escalated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateStep {
    /// The template.
    pub template: TemplateReference,
    /// How long it may try before the next one; `None` for a single template.
    pub timeout: Option<std::time::Duration>,
}

impl NodeHealthCheckSpec {
    /// The templates in the order they are tried: the single `remediationTemplate`, or
    /// `escalatingRemediations` by ascending `order`.
    pub fn template_steps(&self) -> Vec<TemplateStep> {
        if let Some(template) = &self.remediation_template {
            return vec![TemplateStep {
                template: template.clone(),
                timeout: None,
            }];
        }
        let mut steps: Vec<&EscalatingRemediation> = self.escalating_remediations.iter().collect();
        steps.sort_by_key(|step| step.order);
        steps
            .into_iter()
            .map(|step| TemplateStep {
                template: step.remediation_template.clone(),
                timeout: Some(step.timeout.get()),
            })
            .collect()
    }

    /// The pool's lower bound: remediation is allowed while at least this many of `observed`
    /// nodes are healthy. From `minHealthy`, or `observed - maxUnhealthy`, or 51% when neither is
    /// set; percentages rounded up, as medik8s does.
    pub fn min_healthy_nodes(&self, observed: usize) -> usize {
        match (&self.min_healthy, &self.max_unhealthy) {
            (Some(min), _) => min.scaled(observed, true),
            (None, Some(max)) => observed.saturating_sub(max.scaled(observed, true)),
            (None, None) => DEFAULT_MIN_HEALTHY.scaled(observed, true),
        }
    }
}

/// The `minHealthy` that applies when neither `minHealthy` nor `maxUnhealthy` is set; medik8s'
/// default. It is applied by the controller rather than as a schema default, because a schema
/// default would make every manifest that sets `maxUnhealthy` violate the one-of rule.
pub const DEFAULT_MIN_HEALTHY: IntOrPercent = IntOrPercent::Percent(51);
