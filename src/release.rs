//! What "released" means for a fenced node: which of its pods and VolumeAttachments must be
//! gone before the ReleaseWorkloads step ends (the out-of-service taint comes off and the
//! server is powered on again), and which stay where they are.
//!
//! The rule is Kubernetes' own non-graceful node shutdown, so `OutOfServiceTaint` and
//! `ResourceDeletion` release the same things:
//!
//! - a pod whose tolerations let it stay under `node.kubernetes.io/out-of-service:NoExecute`
//!   for good (kube-proxy, CNI agents, CSI node plugins, log shippers: `operator: Exists`) is
//!   never evicted by the taint. Waiting for it would never end, and deleting it would only
//!   make its DaemonSet put it back on the very node. It stays, and it does not block;
//! - a pod that tolerates the taint only for `tolerationSeconds` is evicted once that time
//!   has passed (the taint manager's rule): it must leave, like every other pod;
//! - a pod being deleted with a grace period still running is finished off with a force
//!   delete, whatever its tolerations, as pod GC does on a node with the taint;
//! - a pod already force-deleted (grace period 0) that only waits for its finalizers does not
//!   block: its containers can never start again (a kubelet that comes back kills a pod
//!   being deleted), and its controller already treats it as gone (a ReplicaSet has made its
//!   replacement; a StatefulSet makes one when the finalizers are done, which is theirs to
//!   decide, not ours). Waiting for it could hold the server off for good. Its volumes still
//!   count, through their VolumeAttachments;
//! - a mirror pod (the kubelet's static pod) is the kubelet's: the API cannot remove it;
//! - a VolumeAttachment stays when a pod that stays uses its volume: the attach-detach
//!   controller never detaches a volume a live pod on the node still uses, and the pod will
//!   want it when the server is back. Every other VolumeAttachment must be gone.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Toleration;

use crate::remediation::{OUT_OF_SERVICE_TAINT_KEY, OUT_OF_SERVICE_TAINT_VALUE};

/// The effect of the out-of-service taint.
pub const OUT_OF_SERVICE_TAINT_EFFECT: &str = "NoExecute";

/// Where a pod bound to the fenced node is in its deletion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Deletion {
    /// Not being deleted.
    #[default]
    None,
    /// Being deleted, with a grace period still to run out (no kubelet will ever end it).
    Graceful,
    /// Force-deleted (grace period 0): only finalizers keep the object.
    Forced,
}

/// A pod bound to the fenced node, as far as the release decision needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodOnNode {
    /// A mirror pod (annotation `kubernetes.io/config.mirror`).
    pub mirror: bool,
    pub deletion: Deletion,
    pub tolerations: Vec<Toleration>,
    /// The PersistentVolumes the pod's claims are bound to (as far as they could be read).
    pub volumes: Vec<String>,
}

/// What happens to a pod of the fenced node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodFate {
    /// It stays on the node, and the step does not wait for it.
    Stays(StayReason),
    /// Force-deleted already, waiting for its finalizers: nothing to do, nothing to wait for.
    Finalizing,
    /// Evicted (being deleted, grace period running): force-delete it, and wait until gone.
    Evicted,
    /// It must leave: the taint evicts it (`OutOfServiceTaint`) or we delete it
    /// (`ResourceDeletion`); the step waits until it is gone.
    Leaves,
}

/// Why a pod stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StayReason {
    /// It tolerates the out-of-service taint with no time limit.
    ToleratesOutOfService,
    /// A mirror pod: the kubelet's own.
    Mirror,
}

/// The fate of one pod of the fenced node.
pub fn pod_fate(pod: &PodOnNode) -> PodFate {
    if pod.mirror {
        return PodFate::Stays(StayReason::Mirror);
    }
    match pod.deletion {
        Deletion::Forced => PodFate::Finalizing,
        Deletion::Graceful => PodFate::Evicted,
        Deletion::None if tolerates_out_of_service_forever(&pod.tolerations) => {
            PodFate::Stays(StayReason::ToleratesOutOfService)
        }
        Deletion::None => PodFate::Leaves,
    }
}

/// Whether the taint manager would leave a pod with these tolerations alone under the
/// out-of-service taint for good: the first toleration that matches the taint (the one
/// Kubernetes uses) has no `tolerationSeconds`. One with `tolerationSeconds` (0 or less: at
/// once) is evicted when they have passed.
pub fn tolerates_out_of_service_forever(tolerations: &[Toleration]) -> bool {
    tolerations
        .iter()
        .find(|t| tolerates_out_of_service(t))
        .is_some_and(|t| t.toleration_seconds.is_none())
}

/// Kubernetes' `Toleration.ToleratesTaint` for the out-of-service taint: an empty effect or key
/// matches any; `Exists` matches any value, `Equal` (or no operator) the taint's value only;
/// any other operator matches nothing.
fn tolerates_out_of_service(t: &Toleration) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != OUT_OF_SERVICE_TAINT_EFFECT {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != OUT_OF_SERVICE_TAINT_KEY {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => t.value.as_deref().unwrap_or_default() == OUT_OF_SERVICE_TAINT_VALUE,
        "Exists" => true,
        _ => false,
    }
}

/// A VolumeAttachment to the fenced node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentOnNode {
    /// Its PersistentVolume; None for an inline volume spec.
    pub volume: Option<String>,
}

/// The volumes that stay attached: those a pod that stays uses.
pub fn staying_volumes(pods: &[PodOnNode]) -> BTreeSet<String> {
    pods.iter()
        .filter(|p| matches!(pod_fate(p), PodFate::Stays(_)))
        .flat_map(|p| p.volumes.iter().cloned())
        .collect()
}

/// Whether a VolumeAttachment stays (neither waited for nor deleted).
pub fn attachment_stays(attachment: &AttachmentOnNode, staying: &BTreeSet<String>) -> bool {
    attachment
        .volume
        .as_ref()
        .is_some_and(|v| staying.contains(v))
}

/// What is still to be released from the node: the counts the step machine waits on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Pods that must still leave (including the evicted ones).
    pub pods: usize,
    /// Of `pods`, those evicted and waiting for a force delete.
    pub evicted_pods: usize,
    /// VolumeAttachments that must still go.
    pub volume_attachments: usize,
}

/// What blocks the release of a node holding `pods` and `attachments`.
pub fn pending(pods: &[PodOnNode], attachments: &[AttachmentOnNode]) -> Pending {
    let staying = staying_volumes(pods);
    let fates: Vec<PodFate> = pods.iter().map(pod_fate).collect();
    Pending {
        pods: fates
            .iter()
            .filter(|f| matches!(f, PodFate::Leaves | PodFate::Evicted))
            .count(),
        evicted_pods: fates.iter().filter(|f| **f == PodFate::Evicted).count(),
        volume_attachments: attachments
            .iter()
            .filter(|a| !attachment_stays(a, &staying))
            .count(),
    }
}

#[cfg(test)]
mod tests;
