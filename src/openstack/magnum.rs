//! Magnum: cluster show, nodegroups, resize with `nodes_to_remove`, and the `health_status`
//! report magnum-auto-healer makes. Wire types stay here; callers see [`Cluster`] and
//! [`NodeGroup`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{
    ApiVersion, MAGNUM_BASE_VERSION, OpenStackClient, Request, Service, parse_json, segment,
};
use super::error::Result;

/// Resize (`actions/resize`, with `nodegroup`) appeared in 1.7.
const RESIZE_VERSION: ApiVersion = ApiVersion::new(1, 7);
/// From 1.10 Magnum allows nodegroups of no node (`magnum/api/controllers/v1/cluster.py`).
const ZERO_NODES_VERSION: ApiVersion = ApiVersion::new(1, 10);

/// The cluster label that turns auto-healing on, as magnum-auto-healer reads it.
pub const AUTO_HEALING_LABEL: &str = "auto_healing_enabled";

/// A Magnum cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub uuid: String,
    pub name: String,
    /// e.g. CREATE_COMPLETE, UPDATE_IN_PROGRESS, UPDATE_FAILED.
    pub status: String,
    pub status_reason: Option<String>,
    /// HEALTHY, UNHEALTHY, UNKNOWN, or None when nobody reported yet.
    pub health_status: Option<String>,
    pub health_status_reason: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Worker nodes (all worker nodegroups).
    pub node_count: u32,
    pub master_count: u32,
    pub stack_id: Option<String>,
}

impl Cluster {
    /// A create, update, delete, ... is running: Magnum refuses (or silently drops) another
    /// update now, so nothing is sent until it ends.
    pub fn in_progress(&self) -> bool {
        self.status.ends_with("_IN_PROGRESS")
    }
    pub fn is_complete(&self) -> bool {
        self.status.ends_with("_COMPLETE")
    }
    pub fn is_failed(&self) -> bool {
        self.status.ends_with("_FAILED")
    }
    /// magnum-auto-healer's rule: healing is on only when the `auto_healing_enabled` label is
    /// present and reads as true (Go's `strconv.ParseBool`: 1, t, T, TRUE, true, True). A
    /// missing or unreadable label means off.
    pub fn auto_healing_enabled(&self) -> bool {
        matches!(
            self.labels.get(AUTO_HEALING_LABEL).map(String::as_str),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True")
        )
    }
}

/// A nodegroup of a cluster. The list Magnum returns is a subset: the min/max counts are
/// only in a nodegroup's own document, so they may be None here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeGroup {
    pub uuid: String,
    pub name: String,
    /// `master` or `worker`.
    pub role: String,
    pub node_count: u32,
    pub min_node_count: Option<u32>,
    pub max_node_count: Option<u32>,
    pub is_default: bool,
    pub status: String,
    pub image_id: Option<String>,
    pub flavor_id: Option<String>,
}

/// The values Magnum takes for `health_status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }
}

/// A health report in magnum-auto-healer's format: `updated_at`, then `api: ok` and
/// `nodes: ok` when all is well, one `<node>.<check>: error` per unhealthy worker, or
/// `api: error` when only control-plane nodes are unhealthy.
pub fn health_report(
    unhealthy_workers: &[(&str, &str)],
    control_plane_unhealthy: bool,
    now: Timestamp,
) -> (HealthStatus, BTreeMap<String, String>) {
    let mut reason = BTreeMap::new();
    reason.insert("updated_at".to_string(), now.to_string());
    if unhealthy_workers.is_empty() && !control_plane_unhealthy {
        reason.insert("api".into(), "ok".into());
        reason.insert("nodes".into(), "ok".into());
        return (HealthStatus::Healthy, reason);
    }
    if unhealthy_workers.is_empty() {
        reason.insert("api".into(), "error".into());
    }
    for (node, check) in unhealthy_workers {
        reason.insert(format!("{node}.{check}"), "error".into());
    }
    (HealthStatus::Unhealthy, reason)
}

#[derive(Deserialize)]
struct ClusterWire {
    uuid: String,
    #[serde(default)]
    name: Option<String>,
    status: String,
    #[serde(default)]
    status_reason: Option<String>,
    #[serde(default)]
    health_status: Option<String>,
    #[serde(default)]
    health_status_reason: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    node_count: Option<u32>,
    #[serde(default)]
    master_count: Option<u32>,
    #[serde(default)]
    stack_id: Option<String>,
}

/// Magnum maps are text to text, but older clients wrote other scalars; keep them as text.
fn text_map(map: Option<BTreeMap<String, Value>>) -> BTreeMap<String, String> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect()
}

impl From<ClusterWire> for Cluster {
    fn from(w: ClusterWire) -> Cluster {
        Cluster {
            name: w.name.unwrap_or_default(),
            uuid: w.uuid,
            status: w.status,
            status_reason: w.status_reason,
            health_status: w.health_status,
            health_status_reason: text_map(w.health_status_reason),
            labels: text_map(w.labels),
            node_count: w.node_count.unwrap_or_default(),
            master_count: w.master_count.unwrap_or_default(),
            stack_id: w.stack_id,
        }
    }
}

#[derive(Deserialize)]
struct NodeGroupList {
    nodegroups: Vec<NodeGroupWire>,
}

#[derive(Deserialize)]
struct NodeGroupWire {
    uuid: String,
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    node_count: u32,
    #[serde(default)]
    min_node_count: Option<u32>,
    #[serde(default)]
    max_node_count: Option<u32>,
    #[serde(default)]
    is_default: bool,
    #[serde(default)]
    status: String,
    #[serde(default)]
    image_id: Option<String>,
    #[serde(default)]
    flavor_id: Option<String>,
}

impl From<NodeGroupWire> for NodeGroup {
    fn from(w: NodeGroupWire) -> NodeGroup {
        NodeGroup {
            uuid: w.uuid,
            name: w.name,
            role: w.role,
            node_count: w.node_count,
            min_node_count: w.min_node_count,
            max_node_count: w.max_node_count,
            is_default: w.is_default,
            status: w.status,
            image_id: w.image_id,
            flavor_id: w.flavor_id,
        }
    }
}

/// `GET /clusters/{uuid or name}`.
pub(super) async fn cluster(client: &OpenStackClient, id_or_name: &str) -> Result<Cluster> {
    const OP: &str = "cluster_show";
    let req = Request::get(
        Service::Magnum,
        OP,
        format!("/clusters/{}", segment(id_or_name)),
    )
    .at(MAGNUM_BASE_VERSION);
    let answer = client.call(&req).await?;
    let wire: ClusterWire = parse_json("magnum", OP, &answer.body)?;
    Ok(wire.into())
}

/// `GET /clusters/{cluster}/nodegroups`.
pub(super) async fn nodegroups(client: &OpenStackClient, cluster: &str) -> Result<Vec<NodeGroup>> {
    const OP: &str = "nodegroup_list";
    let req = Request::get(
        Service::Magnum,
        OP,
        format!("/clusters/{}/nodegroups", segment(cluster)),
    );
    let answer = client.call(&req).await?;
    let list: NodeGroupList = parse_json("magnum", OP, &answer.body)?;
    Ok(list.nodegroups.into_iter().map(NodeGroup::from).collect())
}

/// `POST /clusters/{cluster}/actions/resize`: `nodes_to_remove` are Nova server ids; with
/// `node_count` unchanged, Magnum replaces them.
pub(super) async fn resize(
    client: &OpenStackClient,
    cluster: &str,
    nodegroup: &str,
    node_count: u32,
    nodes_to_remove: &[String],
) -> Result<()> {
    let req = Request::action(
        Service::Magnum,
        "cluster_resize",
        Method::POST,
        format!("/clusters/{}/actions/resize", segment(cluster)),
        Some(json!({
            "node_count": node_count,
            "nodes_to_remove": nodes_to_remove,
            "nodegroup": nodegroup,
        })),
    )
    // Resize, with its `nodegroup`, since 1.7.
    .at(RESIZE_VERSION);
    client.call(&req).await.map(drop)
}

/// The JSON patch magnum-auto-healer sends: `replace` of `/health_status` and of
/// `/health_status_reason`. Magnum takes only strings and integers as a patch value
/// (`JsonPatchType.value` is `MultiType(wtypes.text, int)` in
/// `magnum/api/controllers/v1/types.py`: an object is a 400), and reads a string given for
/// `/health_status_reason` with Python's `ast.literal_eval` into the dict it stores
/// (`magnum/api/utils.py`, `apply_jsonpatch`). So the map goes as text: its JSON, which is a
/// Python dict display of strings (JSON's string escapes are Python's too).
pub(super) fn health_patch(status: HealthStatus, reason: &BTreeMap<String, String>) -> Value {
    let reason = serde_json::to_string(reason).unwrap_or_else(|_| "{}".to_string());
    json!([
        {"op": "replace", "path": "/health_status", "value": status.as_str()},
        {"op": "replace", "path": "/health_status_reason", "value": reason},
    ])
}

/// `PATCH /clusters/{cluster}` with [`health_patch`].
pub(super) async fn report_health(
    client: &OpenStackClient,
    cluster: &str,
    status: HealthStatus,
    reason: &BTreeMap<String, String>,
) -> Result<()> {
    let req = Request::action(
        Service::Magnum,
        "cluster_update",
        Method::PATCH,
        format!("/clusters/{}", segment(cluster)),
        Some(health_patch(status, reason)),
    )
    // Any version takes it; before 1.10 Magnum refuses any PATCH of a cluster whose default
    // worker nodegroup has no node (`ZeroNodeCountNotSupported`), so 1.10 where served.
    .at(MAGNUM_BASE_VERSION)
    .preferring(ZERO_NODES_VERSION);
    client.call(&req).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_with(status: &str, label: Option<&str>) -> Cluster {
        Cluster {
            uuid: "u".into(),
            name: "k8s".into(),
            status: status.into(),
            status_reason: None,
            health_status: None,
            health_status_reason: BTreeMap::new(),
            labels: label
                .map(|v| BTreeMap::from([(AUTO_HEALING_LABEL.to_string(), v.to_string())]))
                .unwrap_or_default(),
            node_count: 3,
            master_count: 1,
            stack_id: None,
        }
    }

    #[test]
    fn cluster_states_and_the_auto_healing_label() {
        assert!(cluster_with("UPDATE_IN_PROGRESS", None).in_progress());
        assert!(!cluster_with("UPDATE_COMPLETE", None).in_progress());
        assert!(cluster_with("UPDATE_FAILED", None).is_failed());
        for (label, on) in [
            (None, false),
            (Some("true"), true),
            (Some("True"), true),
            (Some("1"), true),
            (Some("t"), true),
            (Some("false"), false),
            (Some("yes"), false),
            (Some(""), false),
        ] {
            assert_eq!(
                cluster_with("CREATE_COMPLETE", label).auto_healing_enabled(),
                on,
                "{label:?}"
            );
        }
    }

    #[test]
    fn a_cluster_from_the_published_sample_shape() {
        let wire: ClusterWire = serde_json::from_value(json!({
            "uuid": "746e779a-751a-456b-a3e9-c883d734946f",
            "name": "k8s",
            "status": "CREATE_COMPLETE",
            "status_reason": "Stack CREATE completed successfully",
            "health_status": null,
            "health_status_reason": null,
            "labels": {"auto_healing_enabled": "true", "max_node_count": 5},
            "node_count": 2,
            "master_count": 1,
            "stack_id": "9c6f1169-7300-4d08-a444-d2be38758719",
            "api_address": "https://172.24.4.6:6443"
        }))
        .unwrap();
        let c = Cluster::from(wire);
        assert!(c.auto_healing_enabled());
        assert_eq!(c.labels["max_node_count"], "5");
        assert!(c.health_status_reason.is_empty());
        assert_eq!(c.node_count, 2);
    }

    #[test]
    fn health_reports_as_magnum_auto_healer_makes_them() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let (status, reason) = health_report(&[], false, now);
        assert_eq!(status, HealthStatus::Healthy);
        assert_eq!(reason["api"], "ok");
        assert_eq!(reason["nodes"], "ok");
        assert_eq!(reason["updated_at"], "2026-11-23T10:00:00Z");

        let (status, reason) = health_report(&[("worker-1", "Ready")], false, now);
        assert_eq!(status, HealthStatus::Unhealthy);
        assert_eq!(reason["worker-1.Ready"], "error");
        assert!(!reason.contains_key("api"));

        let (_, reason) = health_report(&[], true, now);
        assert_eq!(reason["api"], "error");

        // Magnum takes a string (or an integer) as a patch value, never an object.
        assert_eq!(
            health_patch(HealthStatus::Unhealthy, &reason),
            json!([
                {"op": "replace", "path": "/health_status", "value": "UNHEALTHY"},
                {"op": "replace", "path": "/health_status_reason",
                 "value": "{\"api\":\"error\",\"updated_at\":\"2026-11-23T10:00:00Z\"}"},
            ])
        );
    }
}
