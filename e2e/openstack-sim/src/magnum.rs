//! Magnum (container-infra API v1, versions 1.1 to [`crate::MAGNUM_MAX_VERSION`]):
//! clusters, their nodegroups, health-status PATCH and the resize action. Field sets follow
//! Magnum's API types (`magnum/api/controllers/v1/cluster.py`, `nodegroup.py`) and the
//! api-ref samples.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::Sim;
use crate::keystone::require_token;
use crate::pyliteral::{Py, literal_eval};
use crate::state::{Caller, Cluster, MagnumError, NodeGroup, State as Cloud};
use crate::time;

const MIN_MINOR: u16 = 1;
/// 2025.2's Magnum serves 1.1 to 1.12 (`magnum/api/controllers/versions.py`,
/// `CURRENT_MAX_VER`).
pub(crate) const MAX_MINOR: u16 = 12;
/// Resize appeared in 1.7, nodegroups in 1.9, zero-sized nodegroups in 1.10.
const RESIZE_SINCE: u16 = 7;
const NODEGROUPS_SINCE: u16 = 9;
const ZERO_NODES_SINCE: u16 = 10;

#[derive(Clone, Copy, Debug)]
struct ApiVersion(u16);

pub(crate) fn router(sim: Sim) -> Router<Sim> {
    let api = Router::new()
        .route("/container-infra/v1/clusters", get(list_clusters))
        .route(
            "/container-infra/v1/clusters/{id}",
            get(show_cluster).patch(patch_cluster),
        )
        .route(
            "/container-infra/v1/clusters/{id}/nodegroups",
            get(list_nodegroups),
        )
        .route(
            "/container-infra/v1/clusters/{id}/nodegroups/{ng}",
            get(show_nodegroup),
        )
        .route(
            "/container-infra/v1/clusters/{id}/actions/resize",
            post(resize),
        )
        .route_layer(from_fn_with_state(sim.clone(), api_version))
        .route_layer(from_fn_with_state(sim, require_token));
    Router::new()
        .route("/container-infra", get(versions))
        .route("/container-infra/", get(versions))
        .route("/container-infra/v1", get(v1))
        .route("/container-infra/v1/", get(v1))
        .merge(api)
}

/// Magnum's error shape (`magnum/api/middleware/parsable_error.py`):
/// `{"errors": [{"request_id", "code": "client"|"server", "status", "title", "detail", "links"}]}`,
/// the title being the fault string up to its first full stop.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let code = if status.is_server_error() {
        "server"
    } else {
        "client"
    };
    let title = message.split_once('.').map_or(message, |(first, _)| first);
    let body = json!({"errors": [{
        "request_id": "",
        "code": code,
        "status": status.as_u16(),
        "title": title,
        "detail": message,
        "links": [],
    }]});
    (status, Json(body)).into_response()
}

fn fail(e: MagnumError) -> Response {
    error(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.message,
    )
}

async fn versions(State(sim): State<Sim>) -> Json<Value> {
    let base = sim.base_url();
    Json(json!({
        "name": "OpenStack Magnum API",
        "description": "Magnum is an OpenStack project which aims to provide container cluster management.",
        "versions": [{
            "id": "v1",
            "links": [{"href": format!("{base}/container-infra/v1/"), "rel": "self"}],
            "status": "CURRENT",
            "min_version": format!("1.{MIN_MINOR}"),
            "max_version": format!("1.{}", sim.config().magnum_max_minor),
        }]
    }))
}

async fn v1(State(sim): State<Sim>) -> Json<Value> {
    let base = sim.base_url();
    let link = |what: &str| {
        json!([
            {"href": format!("{base}/container-infra/v1/{what}/"), "rel": "self"},
            {"href": format!("{base}/container-infra/{what}/"), "rel": "bookmark"}
        ])
    };
    Json(json!({
        "id": "v1",
        "media_types": [{"base": "application/json", "type": "application/vnd.openstack.magnum.v1+json"}],
        "links": [{"href": format!("{base}/container-infra/v1/"), "rel": "self"}],
        "clusters": link("clusters"),
        "clustertemplates": link("clustertemplates"),
    }))
}

/// How Magnum refuses a version (`magnum/api/controllers/versions.py`, `parse_headers`, and
/// `v1/__init__.py`, `_check_version`).
#[derive(Debug, PartialEq)]
enum VersionRefusal {
    /// The header is not `container-infra <version>` (a list of services is not read: Magnum
    /// splits the whole value on white space and wants two words).
    Malformed(&'static str),
    /// A well-formed version outside 1.1 to 1.max: `HTTPNotAcceptableAPIVersion`.
    Unsupported { version: String, message: String },
}

/// `OpenStack-API-Version: container-infra 1.X` (or `latest`); without it 1.1.
fn requested_minor(headers: &HeaderMap, max: u16) -> Result<u16, VersionRefusal> {
    let Some(raw) = headers
        .get("OpenStack-API-Version")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(MIN_MINOR);
    };
    let words: Vec<&str> = raw.split_whitespace().collect();
    let [service, version] = words[..] else {
        return Err(VersionRefusal::Malformed(
            "Invalid service type for OpenStack-API-Version header",
        ));
    };
    if version.eq_ignore_ascii_case("latest") {
        return Ok(max);
    }
    if service != "container-infra" {
        return Err(VersionRefusal::Malformed(
            "Invalid service type for OpenStack-API-Version header",
        ));
    }
    let parsed = version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u16>().ok()?, minor.parse::<u16>().ok()?)));
    let Some((major, minor)) = parsed else {
        return Err(VersionRefusal::Malformed(
            "Invalid value for OpenStack-API-Version header",
        ));
    };
    let range = format!("[container-infra 1.{MIN_MINOR}, container-infra 1.{max}]");
    let refused = |message: String| VersionRefusal::Unsupported {
        version: format!("{major}.{minor}"),
        message,
    };
    if major != 1 {
        return Err(refused(format!(
            "Mutually exclusive versions requested. Version {major}.{minor} requested but not \
             supported by this service.The supported version range is: {range}."
        )));
    }
    if !(MIN_MINOR..=max).contains(&minor) {
        return Err(refused(format!(
            "Version {major}.{minor} was requested but the minor version is not supported by \
             this service. The supported version range is: {range}."
        )));
    }
    Ok(minor)
}

/// The 406 of a version outside the range (`magnum/api/http_error.py`): kept as it is by the
/// error middleware because it carries `min_version`.
fn version_unsupported(message: &str, max: u16) -> Response {
    let body = json!({"errors": [{
        "code": "magnum.microversion-unsupported",
        "title": "Requested microversion is unsupported",
        "description": message,
        "min_version": format!("1.{MIN_MINOR}"),
        "max_version": format!("1.{max}"),
        "links": [{"rel": "help", "href": "http://docs.openstack.org/api-guide/compute/microversions.html"}],
    }]});
    (StatusCode::NOT_ACCEPTABLE, Json(body)).into_response()
}

async fn api_version(State(sim): State<Sim>, mut req: Request, next: Next) -> Response {
    let max = sim.config().magnum_max_minor;
    let (mut response, minor) = match requested_minor(req.headers(), max) {
        Ok(minor) => {
            req.extensions_mut().insert(ApiVersion(minor));
            (next.run(req).await, Some(format!("1.{minor}")))
        }
        // webob's own 406: no version headers, and the error middleware finds no fault code.
        Err(VersionRefusal::Malformed(message)) => {
            let body = json!({"errors": [{
                "request_id": "",
                "code": "",
                "status": 406,
                "title": "Not Acceptable",
                "detail": message,
                "links": [],
            }]});
            return (StatusCode::NOT_ACCEPTABLE, Json(body)).into_response();
        }
        Err(VersionRefusal::Unsupported { version, message }) => {
            (version_unsupported(&message, max), Some(version))
        }
    };
    let headers = response.headers_mut();
    // Magnum echoes the version it parsed, refused or not (`_route` sets it before the check).
    let echoed = minor.map(|m| format!("container-infra {m}"));
    if let Some(v) = echoed.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert("OpenStack-API-Version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("container-infra 1.{MIN_MINOR}")) {
        headers.insert("OpenStack-API-Minimum-Version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("container-infra 1.{max}")) {
        headers.insert("OpenStack-API-Maximum-Version", v);
    }
    headers.insert("Vary", HeaderValue::from_static("OpenStack-API-Version"));
    response
}

/// A request below the version an API appeared in.
fn too_old(v: ApiVersion, since: u16, api: &str) -> Option<Response> {
    (v.0 < since).then(|| {
        error(
            StatusCode::NOT_ACCEPTABLE,
            &format!("Version 1.{} was requested but the requested API {api} is not supported for this version.", v.0),
        )
    })
}

fn addresses(st: &Cloud, c: &Cluster, master: bool) -> Vec<String> {
    c.nodegroups
        .iter()
        .filter(|ng| (ng.role == "master") == master)
        .flat_map(|ng| st.nodegroup_servers(&c.uuid, &ng.name))
        .map(|s| s.address.clone())
        .collect()
}

fn links(base: &str, path: &str) -> Value {
    json!([
        {"href": format!("{base}/container-infra/v1/{path}"), "rel": "self"},
        {"href": format!("{base}/container-infra/{path}"), "rel": "bookmark"}
    ])
}

/// The cluster as `GET /clusters/{id}` shows it; `expand: false` is the list's subset.
fn cluster_json(st: &Cloud, base: &str, c: &Cluster, caller: &Caller, expand: bool) -> Value {
    let count = |master: bool| -> u32 {
        c.nodegroups
            .iter()
            .filter(|ng| (ng.role == "master") == master)
            .map(|ng| ng.node_count)
            .sum()
    };
    let flavor = |master: bool| {
        c.nodegroups
            .iter()
            .find(|ng| ng.is_default && (ng.role == "master") == master)
            .map(|ng| ng.flavor_id.clone())
    };
    let mut v = json!({
        "uuid": c.uuid,
        "name": c.name,
        "cluster_template_id": c.template_id,
        "keypair": null,
        "docker_volume_size": null,
        "labels": c.labels,
        "node_count": count(false),
        "master_count": count(true),
        "master_flavor_id": flavor(true),
        "flavor_id": flavor(false),
        "create_timeout": 60,
        "status": c.status,
        "stack_id": c.stack_id,
        "health_status": c.health_status,
        "links": links(base, &format!("clusters/{}", c.uuid)),
    });
    if !expand {
        return v;
    }
    let masters = addresses(st, c, true);
    let extra = json!({
        "status_reason": c.status_reason,
        "health_status_reason": c.health_status_reason,
        "discovery_url": null,
        "api_address": masters.first().map(|ip| format!("https://{ip}:6443")),
        "coe_version": "v1.33.4",
        "container_version": "1.12.6",
        "project_id": caller.project_id,
        "user_id": caller.user_id,
        "node_addresses": addresses(st, c, false),
        "master_addresses": masters,
        "fixed_network": null,
        "fixed_subnet": null,
        "floating_ip_enabled": false,
        "master_lb_enabled": false,
        "merge_labels": false,
        "labels_overridden": {},
        "labels_added": {},
        "labels_skipped": {},
        "created_at": time::magnum(c.created_at),
        "updated_at": c.updated_at.map(time::magnum),
    });
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    if c.status.ends_with("_FAILED") {
        v["faults"] = json!({"default-worker": c.status_reason});
    }
    v
}

/// A nodegroup: the list shows Magnum's brief subset, `GET .../nodegroups/{ng}` all of it.
fn nodegroup_json(
    st: &Cloud,
    base: &str,
    c: &Cluster,
    ng: &NodeGroup,
    caller: &Caller,
    expand: bool,
) -> Value {
    let mut v = json!({
        "uuid": ng.uuid,
        "name": ng.name,
        "flavor_id": ng.flavor_id,
        "image_id": ng.image_id,
        "node_count": ng.node_count,
        "role": ng.role,
        "is_default": ng.is_default,
        "status": ng.status,
        "stack_id": ng.stack_id,
    });
    if !expand {
        return v;
    }
    let extra = json!({
        "id": ng.int_id,
        "cluster_id": c.uuid,
        "project_id": caller.project_id,
        "docker_volume_size": null,
        "labels": c.labels,
        "links": links(base, &format!("clusters/{}/nodegroups/{}", c.uuid, ng.uuid)),
        "node_addresses": st.nodegroup_servers(&c.uuid, &ng.name).iter().map(|s| s.address.clone()).collect::<Vec<_>>(),
        "min_node_count": ng.min_node_count,
        "max_node_count": ng.max_node_count,
        "status_reason": ng.status_reason,
        "version": null,
        "created_at": time::magnum(ng.created_at),
        "updated_at": ng.updated_at.map(time::magnum),
    });
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

async fn list_clusters(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let base = sim.base_url();
    sim.read(|st| {
        let list: Vec<Value> = st
            .clusters
            .values()
            .map(|c| cluster_json(st, &base, c, &caller, false))
            .collect();
        Json(json!({"clusters": list}))
    })
}

async fn show_cluster(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let base = sim.base_url();
    sim.read(|st| match st.find_cluster(&id) {
        Ok(c) => Json(cluster_json(st, &base, c, &caller, true)).into_response(),
        Err(e) => fail(e),
    })
}

async fn list_nodegroups(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = too_old(v, NODEGROUPS_SINCE, "nodegroup") {
        return r;
    }
    let base = sim.base_url();
    sim.read(|st| match st.find_cluster(&id) {
        Ok(c) => {
            let list: Vec<Value> = c
                .nodegroups
                .iter()
                .filter(|ng| query.get("role").is_none_or(|r| *r == ng.role))
                .map(|ng| nodegroup_json(st, &base, c, ng, &caller, false))
                .collect();
            Json(json!({"nodegroups": list})).into_response()
        }
        Err(e) => fail(e),
    })
}

async fn show_nodegroup(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(v): Extension<ApiVersion>,
    Path((id, ng)): Path<(String, String)>,
) -> Response {
    if let Some(r) = too_old(v, NODEGROUPS_SINCE, "nodegroup") {
        return r;
    }
    let base = sim.base_url();
    sim.read(|st| {
        let c = match st.find_cluster(&id) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        match c.nodegroup(&ng) {
            Some(group) => Json(nodegroup_json(st, &base, c, group, &caller, true)).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                &format!("Nodegroup {ng} could not be found."),
            ),
        }
    })
}

/// Checks a resize of `ng` to `node_count` the way Magnum's API and driver do.
fn check_resize(ng: &NodeGroup, node_count: u32, v: ApiVersion) -> Result<(), MagnumError> {
    if node_count == 0 && v.0 < ZERO_NODES_SINCE {
        return Err(MagnumError::new(
            400,
            "Resizing a nodegroup to zero is not supported in the provided microversion.",
        ));
    }
    if ng.role == "master" {
        if node_count == 0 || node_count.is_multiple_of(2) {
            return Err(MagnumError::new(
                400,
                format!(
                    "Master nodegroup size of {node_count} is invalid, size cannot be an even number."
                ),
            ));
        }
        return Ok(());
    }
    if node_count < ng.min_node_count || ng.max_node_count.is_some_and(|max| node_count > max) {
        return Err(MagnumError::new(
            400,
            format!(
                "Resizing {} outside the allowed range: min_node_count = {}, max_node_count = {}",
                ng.name,
                ng.min_node_count,
                ng.max_node_count
                    .map_or("None".to_string(), |m| m.to_string())
            ),
        ));
    }
    Ok(())
}

async fn resize(
    State(sim): State<Sim>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = too_old(v, RESIZE_SINCE, "resize") {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid input: the request body is not JSON.",
        );
    };
    let Some(node_count) = body
        .get("node_count")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid input for field/attribute node_count: a non-negative integer is required.",
        );
    };
    let remove: Vec<String> = match body.get("nodes_to_remove") {
        None | Some(Value::Null) => Vec::new(),
        Some(list) => match serde_json::from_value(list.clone()) {
            Ok(l) => l,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Invalid input for field/attribute nodes_to_remove.",
                );
            }
        },
    };
    let requested_ng = body
        .get("nodegroup")
        .and_then(Value::as_str)
        .map(str::to_string);
    let result =
        sim.with(|st| start_resize(st, &id, requested_ng.as_deref(), node_count, remove, v));
    match result {
        Ok(uuid) => (StatusCode::ACCEPTED, Json(json!({"uuid": uuid}))).into_response(),
        Err(e) => fail(e),
    }
}

fn start_resize(
    st: &mut Cloud,
    id: &str,
    requested_ng: Option<&str>,
    node_count: u32,
    remove: Vec<String>,
    v: ApiVersion,
) -> Result<String, MagnumError> {
    let c = st.find_cluster(id)?;
    let uuid = c.uuid.clone();
    // Without a nodegroup the default worker one is resized.
    let ng = match requested_ng {
        Some(name) => c.nodegroup(name).ok_or_else(|| {
            MagnumError::new(404, format!("Nodegroup {name} could not be found."))
        })?,
        None => c
            .default_worker()
            .ok_or_else(|| MagnumError::new(404, "The cluster has no default worker nodegroup."))?,
    };
    check_resize(ng, node_count, v)?;
    let ng_name = ng.name.clone();
    if st.admit_cluster_update(&uuid)? {
        st.start_resize(&uuid, &ng_name, node_count, remove, Instant::now());
    }
    Ok(uuid)
}

/// Cluster fields a PATCH may not touch at all.
const INTERNAL: &[&str] = &[
    "api_address",
    "node_addresses",
    "master_addresses",
    "stack_id",
    "ca_cert_ref",
    "magnum_cert_ref",
    "trust_id",
    "trustee_user_name",
    "trustee_password",
    "trustee_user_id",
    "etcd_ca_cert_ref",
    "front_proxy_ca_cert_ref",
    "created_at",
    "id",
    "links",
    "updated_at",
    "uuid",
    "project_id",
    "user_id",
];
/// Cluster fields that exist but that an update may not change.
const FIXED: &[&str] = &[
    "name",
    "cluster_template_id",
    "keypair",
    "master_count",
    "docker_volume_size",
    "labels",
    "master_flavor_id",
    "flavor_id",
    "create_timeout",
    "status",
    "status_reason",
    "discovery_url",
    "coe_version",
    "container_version",
    "faults",
    "fixed_network",
    "fixed_subnet",
    "floating_ip_enabled",
    "merge_labels",
    "master_lb_enabled",
];
/// In the order Magnum 21.x lists them in its refusal (a Python set).
const HEALTH: &[&str] = &["HEALTHY", "UNKNOWN", "UNHEALTHY"];

/// What a PATCH document asks for.
#[derive(Debug, Default, PartialEq)]
struct ClusterPatch {
    node_count: Option<u32>,
    health_status: Option<Option<String>>,
    health_status_reason: Option<BTreeMap<String, String>>,
}

/// The checks Magnum's API makes of a patch document before it looks at the cluster: wsme's
/// reading of `[ClusterPatchType]` (`magnum/api/controllers/v1/types.py`, `JsonPatchType`):
/// `path` matches `^(/[\w-]+)+$`, `op` is add, replace or remove, and `value` is a string or
/// an integer (`MultiType(wtypes.text, int)`): an object, a list or a float is refused with
/// wsme's `InvalidInput`, Magnum's error middleware putting it in its `errors` shape.
fn check_patch_document(doc: &Value) -> Result<&Vec<Value>, MagnumError> {
    let bad = |m: String| MagnumError::new(400, m);
    let ops = doc
        .as_array()
        .ok_or_else(|| bad("Invalid input: a JSON patch must be a list of operations.".into()))?;
    let path_ok = |p: &str| {
        p.starts_with('/')
            && p[1..].split('/').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            })
    };
    for op in ops {
        let field = |name: &str| op.get(name).map(Py::from_json);
        if let Some(value) = op.get("value") {
            // Python's bool is an int, so JSON true/false pass.
            let scalar = matches!(value, Value::String(_) | Value::Bool(_) | Value::Null)
                || value.as_i64().is_some();
            if !scalar {
                let v = Py::from_json(value);
                return Err(bad(format!(
                    "Invalid input for field/attribute value. Value: '{}'. Wrong type. Expected \
                     '(<class 'str'>, <class 'int'>)', got '{}'",
                    v.str(),
                    v.type_name()
                )));
            }
        }
        let kind = field("op").map(|v| v.str()).unwrap_or_default();
        if !matches!(kind.as_str(), "add" | "replace" | "remove") {
            return Err(bad(format!(
                "Invalid input for field/attribute op. Value: '{kind}'. Value should be one of: add, replace, remove"
            )));
        }
        let path = field("path").map(|v| v.str()).unwrap_or_default();
        if !path_ok(&path) {
            return Err(bad(format!(
                "Invalid input for field/attribute path. Value: '{path}'. Value should match the pattern ^(/[\\w-]+)+$"
            )));
        }
        if INTERNAL.contains(&&path[1..]) {
            return Err(bad(format!(
                "'{path}' is an internal attribute and can not be updated"
            )));
        }
        if kind != "remove" && op.get("value").is_none_or(Value::is_null) {
            return Err(bad("'add' and 'replace' operations needs value".into()));
        }
    }
    Ok(ops)
}

/// The patch as Magnum's `PatchError` shows it: a list of dicts keyed path, op, value (the
/// order wsme gives them).
fn patch_repr(doc: &Value) -> String {
    let Some(ops) = doc.as_array() else {
        return Py::from_json(doc).repr();
    };
    let ops = ops
        .iter()
        .map(|op| {
            Py::Dict(
                ["path", "op", "value"]
                    .iter()
                    .filter_map(|k| Some((Py::Str(k.to_string()), Py::from_json(op.get(*k)?))))
                    .collect(),
            )
        })
        .collect();
    Py::List(ops).repr()
}

/// A `health_status_reason` as Magnum's API stores it: a string is read with Python's
/// `ast.literal_eval` (`magnum/api/utils.py`, `apply_jsonpatch`, for `replace` only), and the
/// result must be the field's type, a dict of strings to strings
/// (`wtypes.DictType(wtypes.text, wtypes.text)` in `v1/cluster.py`).
fn health_reason(
    kind: &str,
    value: &Value,
    doc: &Value,
) -> Result<BTreeMap<String, String>, MagnumError> {
    let parsed = match value {
        Value::String(text) if kind == "replace" => literal_eval(text).map_err(|reason| {
            MagnumError::new(
                400,
                format!(
                    "Couldn't apply patch '{}'. Reason: {reason}",
                    patch_repr(doc)
                ),
            )
        })?,
        Value::String(_) => Py::from_json(value),
        // An integer: literal_eval refuses anything but a string.
        other if kind == "replace" => {
            return Err(MagnumError::new(
                400,
                format!(
                    "Couldn't apply patch '{}'. Reason: malformed node or string: {}",
                    patch_repr(doc),
                    Py::from_json(other).repr()
                ),
            ));
        }
        other => Py::from_json(other),
    };
    let wrong = |got: &Py, expected: &str| {
        MagnumError::new(
            400,
            format!(
                "Invalid input for field/attribute health_status_reason. Value: '{}'. Wrong type. Expected '{expected}', got '{}'",
                parsed.str(),
                got.type_name()
            ),
        )
    };
    let Py::Dict(pairs) = &parsed else {
        return Err(wrong(&parsed, "{<class 'str'>: <class 'str'>}"));
    };
    pairs
        .iter()
        .map(|(k, v)| match (k, v) {
            (Py::Str(k), Py::Str(v)) => Ok((k.clone(), v.clone())),
            (Py::Str(_), other) | (other, _) => Err(wrong(other, "<class 'str'>")),
        })
        .collect()
}

fn parse_patch(doc: &Value, v: ApiVersion) -> Result<ClusterPatch, MagnumError> {
    let bad = |m: String| MagnumError::new(400, m);
    let ops = check_patch_document(doc)?;
    let mut patch = ClusterPatch::default();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let field = &path[1..];
        if FIXED.contains(&field) {
            return Err(bad(format!("cannot change cluster property(ies) {field}.")));
        }
        let value = op.get("value");
        let removing = kind == "remove";
        match field {
            "node_count" => {
                let n = value
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|_| !removing)
                    .ok_or_else(|| bad("Invalid input for field/attribute node_count.".into()))?;
                if n == 0 && v.0 < ZERO_NODES_SINCE {
                    return Err(bad("Resizing a nodegroup to zero is not supported in the provided microversion.".into()));
                }
                patch.node_count = Some(n);
            }
            "health_status" if removing => patch.health_status = Some(None),
            "health_status" => {
                let s = value.and_then(Value::as_str).filter(|s| HEALTH.contains(s));
                let s = s.ok_or_else(|| {
                    bad(format!(
                        "Invalid input for field/attribute health_status. Value: '{}'. Value should be one of: {}",
                        value.map(Py::from_json).unwrap_or(Py::None).str(),
                        HEALTH.join(", ")
                    ))
                })?;
                patch.health_status = Some(Some(s.to_string()));
            }
            "health_status_reason" if removing => {
                patch.health_status_reason = Some(BTreeMap::new())
            }
            "health_status_reason" => {
                let value = value.unwrap_or(&Value::Null);
                patch.health_status_reason = Some(health_reason(kind, value, doc)?);
            }
            _ => {
                return Err(bad(format!(
                    "Couldn't apply patch '{}'. Reason: can't {kind} non-existent object '{field}'",
                    patch_repr(doc)
                )));
            }
        }
    }
    Ok(patch)
}

async fn patch_cluster(
    State(sim): State<Sim>,
    Extension(v): Extension<ApiVersion>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Invalid input: the request body is not JSON.",
        );
    };
    match sim.with(|st| apply_patch(st, &id, &doc, v)) {
        Ok(uuid) => (StatusCode::ACCEPTED, Json(json!({"uuid": uuid}))).into_response(),
        Err(e) => fail(e),
    }
}

fn apply_patch(
    st: &mut Cloud,
    id: &str,
    doc: &Value,
    v: ApiVersion,
) -> Result<String, MagnumError> {
    // wsme reads the body before the controller looks the cluster up.
    check_patch_document(doc)?;
    let uuid = st.find_cluster(id)?.uuid.clone();
    let patch = parse_patch(doc, v)?;
    // Before 1.10 every PATCH is refused whose node count (the patch's, else the default
    // worker nodegroup's) is zero, a health update of a cluster without workers too
    // (magnum/api/controllers/v1/cluster.py, `patch` of 1.3 to 1.9: ZeroNodeCountNotSupported;
    // seen on Magnum 21.x).
    let workers = st.clusters[&uuid].default_worker().map(|ng| ng.node_count);
    if v.0 < ZERO_NODES_SINCE && patch.node_count.or(workers) == Some(0) {
        return Err(MagnumError::new(
            400,
            "Resizing a nodegroup to zero is not supported in the provided microversion.",
        ));
    }
    let resize_to = match (patch.node_count, st.clusters[&uuid].default_worker()) {
        (Some(n), Some(ng)) if n != ng.node_count => {
            check_resize(ng, n, v)?;
            Some((ng.name.clone(), n))
        }
        _ => None,
    };
    if !st.admit_cluster_update(&uuid)?
        || crate::magnum_conductor::drops_update(&st.clusters[&uuid])
    {
        return Ok(uuid);
    }
    let c = st.clusters.get_mut(&uuid).expect("found above");
    if let Some(h) = patch.health_status {
        c.health_status = h;
    }
    if let Some(r) = patch.health_status_reason {
        c.health_status_reason = r;
    }
    c.updated_at = Some(jiff::Timestamp::now());
    if let Some((ng, n)) = resize_to {
        st.start_resize(&uuid, &ng, n, Vec::new(), Instant::now());
    }
    Ok(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_checked_like_magnum() {
        let v = ApiVersion(MAX_MINOR);
        // What Magnum takes: the reason as a string it reads as a Python dict.
        let ok = json!([{"op": "replace", "path": "/health_status", "value": "UNHEALTHY"},
                        {"op": "replace", "path": "/health_status_reason", "value": "{'node-1.Ready': 'False', \"api\": \"ok\"}"}]);
        let p = parse_patch(&ok, v).unwrap();
        assert_eq!(p.health_status, Some(Some("UNHEALTHY".into())));
        assert_eq!(
            p.health_status_reason,
            Some(BTreeMap::from([
                ("api".to_string(), "ok".to_string()),
                ("node-1.Ready".to_string(), "False".to_string())
            ]))
        );
        // What Magnum refuses: an object as the value (wsme's MultiType(text, int)).
        let object =
            json!([{"op": "replace", "path": "/health_status_reason", "value": {"api": "ok"}}]);
        let e = parse_patch(&object, v).unwrap_err();
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                400,
                "Invalid input for field/attribute value. Value: '{'api': 'ok'}'. Wrong type. \
                 Expected '(<class 'str'>, <class 'int'>)', got '<class 'dict'>'"
            )
        );
        // A string that is no dict of strings.
        for (value, wanted) in [
            (
                "{'api': ok}",
                "Couldn't apply patch '[{'path': '/health_status_reason', 'op': 'replace', 'value': \"{'api': ok}\"}]'. Reason: malformed node or string",
            ),
            (
                "['api']",
                "Wrong type. Expected '{<class 'str'>: <class 'str'>}', got '<class 'list'>'",
            ),
            (
                "{'n': 1}",
                "Wrong type. Expected '<class 'str'>', got '<class 'int'>'",
            ),
        ] {
            let doc = json!([{"op": "replace", "path": "/health_status_reason", "value": value}]);
            let e = parse_patch(&doc, v).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(wanted), "{value}: {}", e.message);
        }
        let bad = |doc: Value| parse_patch(&doc, v).unwrap_err().status;
        assert_eq!(
            bad(json!([{"op": "replace", "path": "/health_status", "value": "SICK"}])),
            400
        );
        assert_eq!(
            bad(json!([{"op": "replace", "path": "/stack_id", "value": "x"}])),
            400
        );
        assert_eq!(
            bad(json!([{"op": "replace", "path": "/labels", "value": {}}])),
            400
        );
        assert_eq!(
            bad(json!([{"op": "replace", "path": "/no_such_field", "value": 1}])),
            400
        );
        let zero = json!([{"op": "replace", "path": "/node_count", "value": 0}]);
        assert_eq!(parse_patch(&zero, ApiVersion(9)).unwrap_err().status, 400);
    }
}
