//! Node objects as a Magnum (or plain Nova) cluster's kubelets register them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};
use kube::api::ObjectMeta;
use openstack_sim::ServerView;

/// Label every test bed node carries with its cluster's name: the root of a pool selector.
pub const CLUSTER_LABEL: &str = "nodehealer.io/testbed-cluster";
/// The label kwok is told to manage nodes by.
pub const KWOK_LABEL: (&str, &str) = ("type", "kwok");
/// Magnum's role label on nodes (`master` / `worker`).
pub const MAGNUM_ROLE_LABEL: &str = "magnum.openstack.org/role";
/// Magnum's nodegroup label on nodes.
pub const MAGNUM_NODEGROUP_LABEL: &str = "magnum.openstack.org/nodegroup";
/// The standard control-plane role label.
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// Set to "true" to make the node's kubelet report Ready=False (see stages/nodes.yaml).
pub const KUBELET_HANG_LABEL: &str = "nodehealer.io/testbed-kubelet-hang";
/// Set (with the kubelet-hang label) when the guest kernel hangs: a soft reboot does not help.
pub const KERNEL_HANG_LABEL: &str = "nodehealer.io/testbed-kernel-hang";
/// The node's InternalIP, read by the kwok stage that initialises the node.
pub const INTERNAL_IP_ANNOTATION: &str = "nodehealer.io/testbed-internal-ip";

/// Sets (`Some`) or removes (`None`) labels of node `name` with one merge patch.
pub async fn patch_labels(
    client: &kube::Client,
    name: &str,
    labels: &[(&str, Option<&str>)],
) -> kube::Result<()> {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(key, value)| (key.to_string(), serde_json::json!(value)))
        .collect();
    let patch = serde_json::json!({"metadata": {"labels": labels}});
    kube::Api::<Node>::all(client.clone())
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

/// How to build a Node for a server of one simulated cluster.
#[derive(Clone, Debug)]
pub struct NodeBlueprint {
    pub cluster: String,
    /// The region of the servers (the `topology.kubernetes.io/region` label).
    pub region: String,
    /// The region the providerID names (`openstack://<region>/<id>`); `None`: none
    /// (`openstack:///<id>`).
    pub provider_id_region: Option<String>,
    /// Nodegroup name → role (`master` or `worker`).
    pub nodegroup_roles: BTreeMap<String, String>,
    /// Extra labels per role, e.g. a pool label for the workers.
    pub extra_labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl NodeBlueprint {
    /// The role of a server: from its nodegroup for Magnum clusters, from its `role`
    /// metadata for plain Nova servers.
    pub fn role_of(&self, server: &ServerView) -> String {
        server
            .nodegroup
            .as_ref()
            .and_then(|ng| self.nodegroup_roles.get(ng).cloned())
            .or_else(|| server.metadata.get("role").cloned())
            .unwrap_or_else(|| "worker".to_string())
    }
}

/// The Node a kubelet on `server` registers.
pub fn node_object(bp: &NodeBlueprint, server: &ServerView, internal_ip: &str) -> Node {
    let role = bp.role_of(server);
    let mut labels: BTreeMap<String, String> = [
        (KWOK_LABEL.0, KWOK_LABEL.1.to_string()),
        ("kubernetes.io/hostname", server.name.clone()),
        ("kubernetes.io/os", "linux".into()),
        ("kubernetes.io/arch", "amd64".into()),
        // One zone per simulated cluster: kube-controller-manager's zone-disruption logic
        // then judges each scenario's nodes on their own, as in a cluster of their own.
        ("topology.kubernetes.io/zone", bp.cluster.clone()),
        ("topology.kubernetes.io/region", bp.region.clone()),
        (CLUSTER_LABEL, bp.cluster.clone()),
        (MAGNUM_ROLE_LABEL, role.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(ng) = &server.nodegroup {
        labels.insert(MAGNUM_NODEGROUP_LABEL.into(), ng.clone());
    }
    let mut taints = Vec::new();
    if role == "master" {
        labels.insert(CONTROL_PLANE_LABEL.into(), String::new());
        taints.push(Taint {
            key: CONTROL_PLANE_LABEL.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    if let Some(extra) = bp.extra_labels.get(&role) {
        labels.extend(extra.clone());
    }
    let annotations: BTreeMap<String, String> = [
        ("node.alpha.kubernetes.io/ttl", "0"),
        ("kwok.x-k8s.io/node", "fake"),
        // Without this at creation the attach-detach controller never attaches volumes to
        // the node (a kubelet sets it when it registers).
        (
            "volumes.kubernetes.io/controller-managed-attach-detach",
            "true",
        ),
        (INTERNAL_IP_ANNOTATION, internal_ip),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(server.name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!(
                "openstack://{}/{}",
                bp.provider_id_region.as_deref().unwrap_or_default(),
                server.id
            )),
            taints: (!taints.is_empty()).then_some(taints),
            ..Default::default()
        }),
        status: None,
    }
}

/// True when the node's Ready condition is "True".
pub fn is_ready(node: &Node) -> bool {
    ready_status(node).as_deref() == Some("True")
}

/// The status of the node's Ready condition, if it has one.
pub fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// The node's taints as `key=value:Effect` strings.
pub fn taint_strings(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .map(|t| match &t.value {
                    Some(v) if !v.is_empty() => format!("{}={}:{}", t.key, v, t.effect),
                    _ => format!("{}:{}", t.key, t.effect),
                })
                .collect()
        })
        .unwrap_or_default()
}
