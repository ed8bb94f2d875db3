//! `Remediation`: one node's repair through OpenStack, and the step machine kept in its status so
//! a restarted controller resumes without repeating an action.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// What to do to an unhealthy node, and how to reach its cloud.
// Clippy reads the repeated `type_ = "..."` of separate printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nodehealer.io",
    version = "v1alpha1",
    kind = "Remediation",
    namespaced,
    shortname = "rem",
    status = "RemediationStatus",
    derive = "PartialEq",
    // A remediation under way must not change what it does or which cloud it acts on: its
    // status (requests on record, the fence's evidence) belongs to the spec it started with.
    // (Only the Remediation: a RemediationTemplate's copy of the spec may change.)
    validation = Rule::new("self.spec == oldSelf.spec")
        .message("a Remediation's spec cannot change; delete it and create a new one"),
    doc = "Remediation repairs one node through OpenStack: fence it, free its workloads and bring \
           the capacity back. Created by a NodeHealthCheck from a RemediationTemplate, named after \
           the node.",
    printcolumn(
        name = "Action",
        type_ = "string",
        json_path = ".spec.action",
        description = "Reboot, PowerCycle, Rebuild or Replace"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "The current step"
    ),
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".status.nodeName",
        description = "The node being remediated"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RemediationSpec {
    /// `Reboot`: reboot the server (soft, then hard); no fencing, workloads stay.
    /// `PowerCycle`: power off, free workloads once the cloud confirms the server is off, power on.
    /// `Rebuild`: power off, free workloads, rebuild the server with its image.
    /// `Replace`: power off, free workloads, replace the server (Magnum resize with
    /// `nodes_to_remove`, or Nova delete for pools something else re-creates); the Node object is
    /// deleted.
    pub action: RemediationAction,

    /// How the workloads of a fenced node are freed; used only after the cloud has confirmed the
    /// server is off or gone. `OutOfServiceTaint` (default): the
    /// `node.kubernetes.io/out-of-service` taint, so Kubernetes deletes the pods and detaches
    /// their volumes. `ResourceDeletion`: delete the pods and VolumeAttachments directly.
    /// `None`: leave them.
    #[serde(default)]
    pub workload_eviction: WorkloadEviction,

    /// The OpenStack cloud that runs the node's server.
    pub openstack: OpenStackSpec,

    /// How long each step may take before the remediation fails (`Succeeded=False`), so that a
    /// NodeHealthCheck can escalate.
    #[serde(default)]
    pub timeouts: StepTimeouts,
}

/// What a remediation does to a node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RemediationAction {
    /// Reboot the server; no fencing, workloads stay.
    Reboot,
    /// Power off, free the workloads, power on.
    PowerCycle,
    /// Power off, free the workloads, rebuild the server with its image.
    Rebuild,
    /// Power off, free the workloads, replace the server; the Node object is deleted.
    Replace,
}

impl RemediationAction {
    /// Whether the action powers the server off before anything else, which is what makes it
    /// safe to free the node's workloads.
    pub fn fences(&self) -> bool {
        !matches!(self, Self::Reboot)
    }
}

/// How the workloads of a fenced node are freed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum WorkloadEviction {
    /// The `node.kubernetes.io/out-of-service=nodeshutdown:NoExecute` taint: Kubernetes deletes the
    /// pods and force-detaches their volumes; the taint is removed once they are gone.
    #[default]
    OutOfServiceTaint,
    /// Delete the node's pods and VolumeAttachments directly.
    ResourceDeletion,
    /// Leave the workloads.
    None,
}

/// The OpenStack cloud of a node and how to reach it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenStackSpec {
    /// The Secret, in the remediation's namespace, that holds a standard `clouds.yaml`.
    pub cloud_secret_ref: CloudSecretRef,

    /// The entry of `clouds.yaml` to use. Defaults to `openstack`.
    #[serde(default = "default_cloud")]
    #[schemars(length(min = 1, max = 253))]
    pub cloud: String,

    /// The Magnum cluster the node belongs to, when Magnum manages the pool; required for
    /// `Replace` through Magnum and for health reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub magnum: Option<MagnumSpec>,

    /// How `Reboot` reboots the server: `Soft`, `Hard`, or `SoftThenHard` (default: a hard
    /// reboot when the soft one did not bring the node back within the recover timeout).
    #[serde(default)]
    pub reboot_type: RebootType,
}

fn default_cloud() -> String {
    "openstack".to_owned()
}

/// A key of a Secret in the remediation's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct CloudSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key of the `clouds.yaml` in the Secret. Defaults to `clouds.yaml`.
    #[serde(default = "default_clouds_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_clouds_key() -> String {
    "clouds.yaml".to_owned()
}

/// The Magnum cluster a node belongs to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MagnumSpec {
    /// The cluster's UUID or name.
    #[schemars(length(min = 1, max = 255))]
    pub cluster: String,

    /// Report node health to Magnum (`health_status`), as magnum-auto-healer does.
    #[serde(default)]
    pub report_health_status: bool,
}

/// How a server is rebooted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum RebootType {
    /// Ask the guest OS to reboot.
    Soft,
    /// Reset the server.
    Hard,
    /// Soft first; hard when the node is not back within the recover timeout.
    #[default]
    SoftThenHard,
}

/// How long each step of a remediation may take.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StepTimeouts {
    /// From the power-off request until the cloud reports the server off (`SHUTOFF`) or gone.
    /// Defaults to 5m.
    #[serde(default = "default_fence_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("fence timeout must be at least 10s"))]
    pub fence: Duration,

    /// From applying the out-of-service taint (or deleting) until the node's pods and
    /// VolumeAttachments are gone. Defaults to 10m.
    #[serde(default = "default_release_timeout")]
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('10s')").message("releaseWorkloads timeout must be at least 10s")
    )]
    pub release_workloads: Duration,

    /// From the recovery request (power on, reboot, rebuild, replace) until the cloud reports it
    /// done. Defaults to 20m.
    #[serde(default = "default_recover_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("recover timeout must be at least 10s"))]
    pub recover: Duration,

    /// From recovery until the node is Ready. Defaults to 15m.
    #[serde(default = "default_node_ready_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("nodeReady timeout must be at least 10s"))]
    pub node_ready: Duration,
}

fn default_fence_timeout() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_release_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_recover_timeout() -> Duration {
    Duration::from_secs(20 * 60)
}
fn default_node_ready_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for StepTimeouts {
    fn default() -> Self {
        Self {
            fence: default_fence_timeout(),
            release_workloads: default_release_timeout(),
            recover: default_recover_timeout(),
            node_ready: default_node_ready_timeout(),
        }
    }
}

/// The step machine of a remediation, kept in the object so a restart resumes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemediationStatus {
    /// The current step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RemediationPhase>,

    /// The node being remediated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,

    /// The OpenStack server of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,

    /// The region of the server, from the node's providerID (`openstack://<region>/<id>`);
    /// empty when the providerID names none (the clouds.yaml's region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// What proved that the server stopped before any workload was released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_evidence: Option<FenceEvidence>,

    /// Each step begun, in order, with the OpenStack requests it sent. A request recorded here is
    /// never sent again for the same step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,

    /// The last error, without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,

    /// `Processing`, `Succeeded` and `PermanentNodeDeletionExpected`, as the medik8s remediation
    /// contract reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The step a remediation is in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RemediationPhase {
    /// Accepted; nothing sent yet.
    Pending,
    /// Power-off requested; waiting for the cloud to report the server off.
    Fencing,
    /// The cloud confirmed the server is off or gone.
    Fenced,
    /// Freeing the node's workloads (out-of-service taint or deletion).
    ReleasingWorkloads,
    /// Power on, reboot, rebuild or replace requested; waiting for the cloud.
    Recovering,
    /// Waiting for the node to become Ready.
    WaitingForNode,
    /// The server is gone, but nothing proves its guest stopped (Nova deleted it locally while
    /// its compute host was down): the capacity is replaced, the node's workloads stay where
    /// they are until a person confirms the fence (annotation `nodehealer.io/fence-confirmed`).
    FenceUnproven,
    /// The node is back (or replaced).
    Succeeded,
    /// A step failed or timed out; see `lastError`.
    Failed,
}

impl RemediationPhase {
    /// Whether the remediation has ended.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// A step of a remediation and what it sent to the cloud.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step.
    pub name: StepName,

    /// When the step began.
    pub started: Time,

    /// When the step ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Time>,

    /// The OpenStack requests sent in this step, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<OpenStackRequest>,

    /// How the step ended, or what it is waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The steps of the machine, stored by name (as earlier releases stored them).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum StepName {
    /// `Reboot`: reboot the server and wait for the node.
    Reboot,
    /// Power the server off (or remove it) and wait for the cloud's proof that it stopped.
    Fence,
    /// Free the node's pods and volumes.
    ReleaseWorkloads,
    /// Power on, rebuild, or replace the server.
    Recover,
    /// Wait for the node to be Ready.
    WaitForNode,
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// An OpenStack request the step machine may send, stored by the name earlier releases used.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RequestKind {
    /// Nova `os-stop`.
    #[serde(rename = "os-stop")]
    Stop,
    /// Nova `os-start`.
    #[serde(rename = "os-start")]
    Start,
    /// Nova `unshelve`.
    #[serde(rename = "unshelve")]
    Unshelve,
    /// Nova `reboot` with type SOFT.
    #[serde(rename = "reboot-soft")]
    RebootSoft,
    /// Nova `reboot` with type HARD.
    #[serde(rename = "reboot-hard")]
    RebootHard,
    /// Nova `rebuild` with the server's image.
    #[serde(rename = "rebuild")]
    Rebuild,
    /// Nova `DELETE /servers/{id}`.
    #[serde(rename = "delete")]
    Delete,
    /// Magnum resize of the server's nodegroup with `nodes_to_remove`.
    #[serde(rename = "magnum-resize")]
    MagnumResize,
}

impl RequestKind {
    /// Whether the request may run the guest again (power it on, boot it, reboot it).
    pub fn runs_the_guest(&self) -> bool {
        match self {
            RequestKind::Start
            | RequestKind::Unshelve
            | RequestKind::RebootSoft
            | RequestKind::RebootHard
            | RequestKind::Rebuild => true,
            RequestKind::Stop | RequestKind::Delete | RequestKind::MagnumResize => false,
        }
    }

    /// The name stored in the status and shown in events.
    pub fn as_str(&self) -> &'static str {
        match self {
            RequestKind::Stop => "os-stop",
            RequestKind::Start => "os-start",
            RequestKind::Unshelve => "unshelve",
            RequestKind::RebootSoft => "reboot-soft",
            RequestKind::RebootHard => "reboot-hard",
            RequestKind::Rebuild => "rebuild",
            RequestKind::Delete => "delete",
            RequestKind::MagnumResize => "magnum-resize",
        }
    }
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What came back for a request: stored as `Accepted` or `Failed: <reason>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(into = "String", from = "String")]
pub enum RequestOutcome {
    /// The service accepted it (Nova 202, Magnum 202).
    Accepted,
    /// The service refused or failed it; the reason is the error's category.
    Failed(String),
}

impl RequestOutcome {
    pub fn is_accepted(&self) -> bool {
        matches!(self, RequestOutcome::Accepted)
    }
}

impl From<RequestOutcome> for String {
    fn from(o: RequestOutcome) -> String {
        match o {
            RequestOutcome::Accepted => "Accepted".into(),
            RequestOutcome::Failed(reason) => format!("Failed: {reason}"),
        }
    }
}

impl From<String> for RequestOutcome {
    fn from(s: String) -> RequestOutcome {
        if s == "Accepted" {
            RequestOutcome::Accepted
        } else {
            RequestOutcome::Failed(s.strip_prefix("Failed: ").unwrap_or(&s).to_string())
        }
    }
}

/// What proved that a node's server stopped, so its workloads could be released.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum FenceEvidence {
    /// Nova reported the server `SHUTOFF` with no task running.
    ServerShutoff,
    /// Nova reported the server `SHELVED` or `SHELVED_OFFLOADED` with no task running.
    ServerShelved,
    /// The server is deleted, and Nova's instance actions show its compute host destroyed the
    /// guest (`compute_terminate_instance` succeeded), not a local delete.
    DeletedByComputeHost,
    /// A person confirmed it (annotation `nodehealer.io/fence-confirmed`).
    ConfirmedByPerson,
}

/// An OpenStack request sent by a step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenStackRequest {
    /// The request.
    pub action: RequestKind,

    /// When it was sent.
    pub sent_at: Time,

    /// The object it acted on, e.g. the server id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,

    /// Nova's `updated` of the server as seen when the request was decided: a later one shows
    /// the server changed since (Nova's clock against Nova's clock, never ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_updated: Option<Time>,

    /// The Magnum cluster's status as seen when a request to it (a resize) was decided: a
    /// `*_FAILED` seen afterwards is that request's failure only if the cluster had not failed
    /// already (Magnum accepts a resize of an `UPDATE_FAILED` cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_status: Option<String>,
    /// For a `rebuild`: whether the server was stopped (`SHUTOFF`) when the rebuild was
    /// decided. Nova brings a stopped server back to stopped after a rebuild (it passes through
    /// `ACTIVE` for a moment first), so a rebuild of a stopped server ends at `SHUTOFF` and
    /// needs an `os-start`; one of a running server ends at `ACTIVE`. Empty in records of
    /// earlier releases: then the server is treated as stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_stopped: Option<bool>,

    /// For a `rebuild` of a stopped server: when we first saw it `ACTIVE` with no task since
    /// our last look (our clock, as the time we compare it with). Only a server still `ACTIVE`
    /// a while later is taken as one that Nova leaves running; cleared when it is seen
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_seen_at: Option<Time>,

    /// What came back: `Accepted`, or `Failed: <reason>`. Empty while the answer is unknown —
    /// recorded before sending, so a controller that restarts in between knows the request may
    /// have reached OpenStack and checks the server before ever sending it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub outcome: Option<RequestOutcome>,
}
