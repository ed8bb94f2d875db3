//! The fenced node's pods and VolumeAttachments during ReleaseWorkloads: read them, let the
//! pure `crate::release` rules say which must still go, and delete those (force, preconditioned
//! on each pod's uid). Pods that stay (tolerating the out-of-service taint for good: DaemonSets)
//! are never counted nor deleted.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};

use crate::error::Result;
use crate::release::{self, AttachmentOnNode, Deletion, PodFate, PodOnNode};
use crate::remediation::Workloads;

/// What blocks the release of `node_name`: pods that must still leave, those of them already
/// evicted, and VolumeAttachments that must still go.
pub(super) async fn count_workloads(client: &kube::Client, node_name: &str) -> Result<Workloads> {
    let pods = pods_on(client, node_name).await?;
    let facts = with_volumes(client, &pods).await;
    let attachments: Vec<AttachmentOnNode> = attachments_to(client, node_name)
        .await?
        .iter()
        .map(attachment_on_node)
        .collect();
    let pending = release::pending(&facts, &attachments);
    Ok(Workloads {
        pods: pending.pods,
        volume_attachments: pending.volume_attachments,
        evicted_pods: pending.evicted_pods,
    })
}

/// `ResourceDeletion`: force-deletes the node's pods that must leave and the VolumeAttachments
/// that must go (the server is confirmed off, so nothing can still be writing).
pub(super) async fn delete_workloads(client: &kube::Client, node_name: &str) -> Result<()> {
    let pods = pods_on(client, node_name).await?;
    let facts = with_volumes(client, &pods).await;
    let leaving = pods
        .iter()
        .zip(&facts)
        .filter(|(_, f)| matches!(release::pod_fate(f), PodFate::Leaves | PodFate::Evicted))
        .map(|(p, _)| p);
    force_delete_pods(client, leaving).await?;
    let staying = release::staying_volumes(&facts);
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    for va in attachments_to(client, node_name).await? {
        if release::attachment_stays(&attachment_on_node(&va), &staying) {
            continue;
        }
        match vas.delete(&va.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `OutOfServiceTaint`: force-deletes the node's pods the taint manager evicted (being deleted,
/// their grace period running), as pod GC does for a node with the out-of-service taint.
/// Returns how many.
pub(super) async fn finish_evictions(client: &kube::Client, node_name: &str) -> Result<usize> {
    let pods = pods_on(client, node_name).await?;
    let evicted = pods
        .iter()
        .filter(|p| release::pod_fate(&pod_on_node(p, Vec::new())) == PodFate::Evicted);
    force_delete_pods(client, evicted).await
}

async fn pods_on(client: &kube::Client, node_name: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node_name}"));
    Ok(pods.list(&on_node).await?.items)
}

async fn attachments_to(client: &kube::Client, node_name: &str) -> Result<Vec<VolumeAttachment>> {
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    Ok(vas
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|va| va.spec.node_name == node_name)
        .collect())
}

fn attachment_on_node(va: &VolumeAttachment) -> AttachmentOnNode {
    AttachmentOnNode {
        volume: va.spec.source.persistent_volume_name.clone(),
    }
}

/// The release facts of a pod, `volumes` being the PersistentVolumes its claims are bound to.
fn pod_on_node(pod: &Pod, volumes: Vec<String>) -> PodOnNode {
    let deletion = match (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) {
        (None, _) => Deletion::None,
        (Some(_), Some(0)) => Deletion::Forced,
        (Some(_), _) => Deletion::Graceful,
    };
    PodOnNode {
        mirror: pod
            .annotations()
            .contains_key("kubernetes.io/config.mirror"),
        deletion,
        tolerations: pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default(),
        volumes,
    }
}

/// The pods' release facts. Only the volumes of pods that stay matter (they keep those
/// attached), so only their claims are read; a claim that cannot be read (not bound yet, or
/// no permission) keeps nothing attached, and its VolumeAttachment is waited for as before.
async fn with_volumes(client: &kube::Client, pods: &[Pod]) -> Vec<PodOnNode> {
    let mut facts = Vec::with_capacity(pods.len());
    for pod in pods {
        let mut fact = pod_on_node(pod, Vec::new());
        if matches!(release::pod_fate(&fact), PodFate::Stays(_)) {
            fact.volumes = bound_volumes(client, pod).await;
        }
        facts.push(fact);
    }
    facts
}

/// The PersistentVolumes a pod's claims (and generic ephemeral volumes) are bound to.
async fn bound_volumes(client: &kube::Client, pod: &Pod) -> Vec<String> {
    let claims: BTreeSet<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(pvc) = &v.persistent_volume_claim {
                Some(pvc.claim_name.clone())
            } else {
                // A generic ephemeral volume's claim is named after the pod and the volume.
                v.ephemeral
                    .as_ref()
                    .map(|_| format!("{}-{}", pod.name_any(), v.name))
            }
        })
        .collect();
    if claims.is_empty() {
        return Vec::new();
    }
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let mut volumes = Vec::new();
    for claim in claims {
        match api.get_opt(&claim).await {
            Ok(Some(pvc)) => volumes.extend(pvc.spec.and_then(|s| s.volume_name)),
            Ok(None) => {}
            Err(e) => tracing::debug!(%claim, error = %e, "reading a staying pod's claim"),
        }
    }
    volumes
}

/// Force-deletes `pods`; returns how many. Each delete names the pod's uid, so a pod of the
/// same name created meanwhile (a StatefulSet's replacement, elsewhere) is never touched.
async fn force_delete_pods<'a>(
    client: &kube::Client,
    pods: impl Iterator<Item = &'a Pod>,
) -> Result<usize> {
    let mut deleted = 0;
    for pod in pods {
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default().grace_period(0)
        };
        match api.delete(&pod.name_any(), &params).await {
            Ok(_) => deleted += 1,
            // Gone, or a new pod by that name (precondition failed): nothing to do.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}
