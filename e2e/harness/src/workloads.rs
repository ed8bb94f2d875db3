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

/// The finalizer the realistic cluster's `cleanup` pods carry; [`run_finalizer`] plays its
/// controller.
pub const CLEANUP_FINALIZER: &str = "nodehealer.io/testbed-cleanup";
/// The label of the pods that carry [`CLEANUP_FINALIZER`].
const CLEANUP_LABEL: (&str, &str) = ("nodehealer.io/testbed-cleanup", "true");

/// Binds a pod carrying [`CLEANUP_FINALIZER`] straight to `node`: deleted while the node is
/// down, it stays (force-deleted, waiting for its finalizer) until the node is Ready again.
pub async fn pod_with_finalizer(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node: &str,
) -> Result<()> {
    let mut labels = serde_json::Map::new();
    labels.insert(CLEANUP_LABEL.0.into(), json!(CLEANUP_LABEL.1));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "finalizers": [CLEANUP_FINALIZER]
        },
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}]
        }
    }))?;
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await?;
    Ok(())
}

/// The objects [`realistic_cluster`] created for one simulated cluster.
#[derive(Clone, Debug)]
pub struct RealisticCluster {
    /// The namespace they live in.
    pub namespace: String,
    /// The DaemonSets that tolerate every taint (a node agent such as kube-proxy, a CNI
    /// agent or a log shipper; a CSI node plugin).
    pub daemonsets: Vec<String>,
    /// The Deployments (one of them with a finalizer on its pods) and the StatefulSet.
    pub deployments: Vec<String>,
    pub statefulset: String,
}

/// The namespace of a simulated cluster's realistic workloads.
pub fn realistic_namespace(cluster: &str) -> String {
    format!("{cluster}-system")
}

/// Gives the simulated cluster `cluster` the workloads every real cluster runs, in a
/// namespace of its own (`<cluster>-system`), all pinned to the cluster's own nodes so tests
/// side by side on one control plane never see each other's:
///
/// - DaemonSet `node-agent`: `tolerations: [{operator: Exists}]`, like kube-proxy, a CNI
///   agent or a log shipper, on every node (control plane too);
/// - DaemonSet `csi-node`: a CSI node plugin, tolerating everything, with its hostPath
///   volumes;
/// - Deployment `web` (two replicas), Deployment `cleanup` whose pod carries a finalizer that
///   only [`run_finalizer`] removes (and only once the pod's node is Ready), a StatefulSet
///   `store` with an RWO CSI volume, and a PodDisruptionBudget that allows no disruption of it
///   (the out-of-service taint deletes pods, it does not evict through the PDB).
///
/// With `workers == 0` only the DaemonSets are made (the others would stay Pending).
/// Returns once every pod of them is Running.
pub async fn realistic_cluster(
    client: &kube::Client,
    cluster: &str,
    workers: u32,
) -> Result<RealisticCluster> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;

    let ns = realistic_namespace(cluster);
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    create(&Api::<Namespace>::all(client.clone()), &namespace).await?;
    let labels = |pairs: &[(&str, &str)]| -> serde_json::Value {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let on_cluster = labels(&[(crate::nodes::CLUSTER_LABEL, cluster)]);
    let worker_pairs = [
        (crate::nodes::CLUSTER_LABEL, cluster),
        (crate::nodes::MAGNUM_ROLE_LABEL, "worker"),
    ];
    let on_workers = labels(&worker_pairs);
    let tolerate_everything = json!([{"operator": "Exists"}]);

    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let node_agent: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "node-agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "node-agent"}},
            "template": {
                "metadata": {"labels": {"app": "node-agent"}},
                "spec": {
                    "nodeSelector": on_cluster,
                    "tolerations": tolerate_everything,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{"name": "agent", "image": "registry.invalid/node-agent:1"}]
                }
            }
        }
    }))?;
    let csi_node: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "csi-node"},
        "spec": {
            "selector": {"matchLabels": {"app": "csi-node"}},
            "template": {
                "metadata": {"labels": {"app": "csi-node"}},
                "spec": {
                    "nodeSelector": on_cluster,
                    "tolerations": tolerate_everything,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "plugin",
                            "image": "registry.invalid/csi-plugin:1",
                            "volumeMounts": [
                                {"name": "plugin-dir", "mountPath": "/csi"},
                                {"name": "pods-mount-dir", "mountPath": "/var/lib/kubelet"}
                            ]
                        },
                        {
                            "name": "node-driver-registrar",
                            "image": "registry.invalid/csi-node-driver-registrar:1",
                            "volumeMounts": [
                                {"name": "plugin-dir", "mountPath": "/csi"},
                                {"name": "registration-dir", "mountPath": "/registration"}
                            ]
                        }
                    ],
                    "volumes": [
                        {"name": "plugin-dir", "hostPath": {
                            "path": format!("/var/lib/kubelet/plugins/{CSI_DRIVER}"),
                            "type": "DirectoryOrCreate"}},
                        {"name": "pods-mount-dir", "hostPath": {
                            "path": "/var/lib/kubelet", "type": "Directory"}},
                        {"name": "registration-dir", "hostPath": {
                            "path": "/var/lib/kubelet/plugins_registry", "type": "Directory"}}
                    ]
                }
            }
        }
    }))?;
    create(&daemonsets, &node_agent).await?;
    create(&daemonsets, &csi_node).await?;

    let mut deployments = Vec::new();
    if workers > 0 {
        let deploys: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        for (name, replicas, finalizers, labels) in [
            ("web", 2, json!(null), json!({"app": "web"})),
            (
                "cleanup",
                1,
                json!([CLEANUP_FINALIZER]),
                labels(&[("app", "cleanup"), CLEANUP_LABEL]),
            ),
        ] {
            let deploy: Deployment = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": labels, "finalizers": finalizers},
                        "spec": {
                            "nodeSelector": on_workers,
                            "terminationGracePeriodSeconds": 30,
                            "containers": [{"name": name, "image": format!("registry.invalid/{name}:1")}]
                        }
                    }
                }
            }))?;
            create(&deploys, &deploy).await?;
            deployments.push(name.to_string());
        }
        stateful_app(client, &ns, "store", &worker_pairs).await?;
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "store"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "store"}}}
        }))?;
        create(&Api::namespaced(client.clone(), &ns), &pdb).await?;
    }
    let realistic = RealisticCluster {
        namespace: ns,
        daemonsets: vec!["node-agent".into(), "csi-node".into()],
        deployments,
        statefulset: "store".into(),
    };
    crate::wait_for(
        std::time::Duration::from_secs(60),
        "the realistic workloads running",
        || realistic.running(client),
    )
    .await?;
    Ok(realistic)
}

impl RealisticCluster {
    /// True when every DaemonSet runs a ready pod on each node it wants one on, and every
    /// Deployment and the StatefulSet have all their replicas ready.
    pub async fn running(&self, client: &kube::Client) -> Result<bool> {
        Ok(self.not_running(client).await?.is_none())
    }

    /// What of them is not running (for a failure message), if anything.
    pub async fn not_running(&self, client: &kube::Client) -> Result<Option<String>> {
        use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
        for name in &self.daemonsets {
            let ds = Api::<DaemonSet>::namespaced(client.clone(), &self.namespace)
                .get(name)
                .await?;
            let (desired, ready) = ds
                .status
                .map_or((0, 0), |s| (s.desired_number_scheduled, s.number_ready));
            if desired == 0 || ready != desired {
                return Ok(Some(format!(
                    "DaemonSet {name}: {ready} of {desired} ready"
                )));
            }
        }
        for name in &self.deployments {
            let d = Api::<Deployment>::namespaced(client.clone(), &self.namespace)
                .get(name)
                .await?;
            let want = d.spec.and_then(|s| s.replicas).unwrap_or(1);
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            if ready != want {
                return Ok(Some(format!("Deployment {name}: {ready} of {want} ready")));
            }
        }
        if !self.deployments.is_empty() {
            let sts = Api::<StatefulSet>::namespaced(client.clone(), &self.namespace)
                .get(&self.statefulset)
                .await?;
            if sts.status.and_then(|s| s.ready_replicas).unwrap_or(0) != 1 {
                return Ok(Some(format!("StatefulSet {} not ready", self.statefulset)));
            }
        }
        Ok(None)
    }

    /// The DaemonSet pods bound to `node`, as (name, uid).
    pub async fn daemon_pods_on(
        &self,
        client: &kube::Client,
        node: &str,
    ) -> Result<Vec<(String, String)>> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
        Ok(pods
            .list(&on_node)
            .await?
            .items
            .into_iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "DaemonSet")
            })
            .map(|p| {
                (
                    p.metadata.name.unwrap_or_default(),
                    p.metadata.uid.unwrap_or_default(),
                )
            })
            .collect())
    }
}

async fn create<K>(api: &Api<K>, object: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Plays the controller that owns [`CLEANUP_FINALIZER`]: it cleans up after a deleted pod
/// once it can reach the pod's node (Ready), or at once when the node is gone, and then
/// removes the finalizer. A pod of a dead node keeps it: the node's Remediation must not
/// wait for it. Runs forever on the test bed's runtime.
pub async fn run_finalizer(client: kube::Client) {
    use k8s_openapi::api::core::v1::Node;
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let labelled =
        ListParams::default().labels(&format!("{}={}", CLEANUP_LABEL.0, CLEANUP_LABEL.1));
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let list = match pods.list(&labelled).await {
            Ok(list) => list.items,
            Err(e) => {
                tracing::warn!("listing pods with the cleanup finalizer: {e:#}");
                continue;
            }
        };
        for pod in list {
            let finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_none()
                || !finalizers.iter().any(|f| f == CLEANUP_FINALIZER)
            {
                continue;
            }
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let reachable = match &node {
                None => true,
                Some(node) => match nodes.get_opt(node).await {
                    Ok(None) => true,
                    Ok(Some(n)) => crate::nodes::is_ready(&n),
                    Err(_) => false,
                },
            };
            if !reachable {
                continue;
            }
            let rest: Vec<&String> = finalizers
                .iter()
                .filter(|f| *f != CLEANUP_FINALIZER)
                .collect();
            let patch = json!({"metadata": {
                "finalizers": rest,
                "resourceVersion": pod.metadata.resource_version,
            }});
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            if let Err(e) = Api::<Pod>::namespaced(client.clone(), &ns)
                .patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
            {
                tracing::debug!(%name, "removing the cleanup finalizer: {e:#}");
            }
        }
    }
}
