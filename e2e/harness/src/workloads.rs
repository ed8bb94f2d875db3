//! Workloads the scenarios run: a StatefulSet whose pod holds an RWO CSI volume, so a
//! failover shows both the pod and its VolumeAttachment moving.

use anyhow::Result;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::link::CSI_DRIVER;

/// Creates a one-replica StatefulSet `name` in `ns` whose pod runs on nodes matching
/// `node_selector` (`key=value` pairs) and mounts a pre-provisioned RWO CSI volume.
pub async fn stateful_app(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node_selector: &[(&str, &str)],
) -> Result<()> {
    stateful_app_requesting(client, ns, name, node_selector, None).await
}

/// Like [`stateful_app`], with the pod requesting `cpu` (so it fits only where that much is
/// free: a pool "without spare capacity" is one whose nodes lack it).
pub async fn stateful_app_requesting(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node_selector: &[(&str, &str)],
    cpu: Option<&str>,
) -> Result<()> {
    let claim = format!("data-{name}-0");
    let pv_name = format!("pv-{ns}-{name}");
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv_name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": ns, "name": claim},
            "csi": {"driver": CSI_DRIVER, "volumeHandle": pv_name}
        }
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await?;
    let selector: serde_json::Map<String, serde_json::Value> = node_selector
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": selector,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "db",
                        "image": "registry.invalid/db:1",
                        "resources": cpu.map_or(json!({}), |cpu| json!({"requests": {"cpu": cpu}})),
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "resources": {"requests": {"storage": "1Gi"}}
                }
            }]
        }
    }))?;
    Api::<StatefulSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sts)
        .await?;
    Ok(())
}

/// Binds a pod requesting `cpu` straight to `node` (no scheduler): it takes that room away.
pub async fn filler_pod(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node: &str,
    cpu: &str,
) -> Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "filler"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "filler",
                "image": "registry.invalid/filler:1",
                "resources": {"requests": {"cpu": cpu}}
            }]
        }
    }))?;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await?;
    Ok(())
}

/// Where the StatefulSet's pod `<name>-0` runs, if it is Running (and not being deleted).
pub async fn running_on(client: &kube::Client, ns: &str, pod: &str) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Some(p) = pods.get_opt(pod).await? else {
        return Ok(None);
    };
    if p.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    Ok(if running {
        p.spec.and_then(|s| s.node_name)
    } else {
        None
    })
}

/// Nodes the volume `pv` is attached to (VolumeAttachments reported attached).
pub async fn attached_nodes(client: &kube::Client, pv: &str) -> Result<Vec<String>> {
    let vas: Api<VolumeAttachment> = Api::all(client.clone());
    Ok(vas
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|va| va.spec.source.persistent_volume_name.as_deref() == Some(pv))
        .filter(|va| va.status.as_ref().map(|s| s.attached).unwrap_or(false))
        .map(|va| va.spec.node_name)
        .collect())
}

/// The PersistentVolume name `stateful_app` creates for `name` in `ns`.
pub fn pv_name(ns: &str, name: &str) -> String {
    format!("pv-{ns}-{name}")
}
