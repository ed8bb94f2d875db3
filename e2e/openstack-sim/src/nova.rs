//! Nova (compute API v2.1 with microversions up to [`crate::NOVA_MAX_MICROVERSION`]):
//! servers as a non-admin project member sees them, power actions, rebuild, shelve and
//! unshelve, delete, and instance actions (`os-instance-actions`), in each region's Nova.
//! Field sets follow `doc/api_samples/servers/` and `doc/api_samples/os-instance-actions/`
//! for the negotiated microversion.

use std::collections::{BTreeMap, HashMap};
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
use crate::requests::{Region, RequestId};
use crate::state::{
    ActionError, Actor, Caller, InstanceAction, Server, ServerAction, State as Cloud,
};
use crate::time;

const MIN_MINOR: u16 = 1;
/// The newest microversion the simulator knows; [`crate::SimConfig::nova_max_minor`] may
/// make it serve less, as an older Nova would.
pub(crate) const MAX_MINOR: u16 = 100;

/// The negotiated microversion's minor number (2.X).
#[derive(Clone, Copy, Debug)]
struct Microversion(u16);

pub(crate) fn router(sim: Sim) -> Router<Sim> {
    let api = Router::new()
        .route("/compute/v2.1/servers", get(list_servers))
        .route("/compute/v2.1/servers/detail", get(list_servers_detail))
        .route(
            "/compute/v2.1/servers/{id}",
            get(show_server).delete(delete_server),
        )
        .route("/compute/v2.1/servers/{id}/action", post(server_action))
        .route(
            "/compute/v2.1/servers/{id}/os-instance-actions",
            get(list_instance_actions),
        )
        .route(
            "/compute/v2.1/servers/{id}/os-instance-actions/{request_id}",
            get(show_instance_action),
        )
        // The last layer runs first: the token is checked before the microversion, as
        // keystonemiddleware sits in front of Nova.
        .route_layer(from_fn_with_state(sim.clone(), microversion))
        .route_layer(from_fn_with_state(sim, require_token));
    Router::new()
        .route("/compute", get(versions))
        .route("/compute/", get(versions))
        .route("/compute/v2.1", get(version))
        .route("/compute/v2.1/", get(version))
        .merge(api)
}

/// Nova's error shape: `{"<name>": {"code", "message"}}`, the name from the status as
/// nova's `Fault` names them.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let name = match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflictingRequest",
        413 | 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    };
    (
        status,
        Json(json!({name: {"code": status.as_u16(), "message": message}})),
    )
        .into_response()
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("Instance {id} could not be found."),
    )
}

fn version_doc(sim: &Sim) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": format!("2.{}", sim.config().nova_max_minor),
        "min_version": "2.1",
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"href": format!("{}/compute/v2.1/", sim.base_url()), "rel": "self"}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]
    })
}

async fn versions(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({"versions": [version_doc(&sim)]}))
}

async fn version(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({"version": version_doc(&sim)}))
}

/// The version a client asked for: `OpenStack-API-Version: compute 2.X` (one entry of a
/// comma-separated list; other services' entries are ignored), else the legacy
/// `X-OpenStack-Nova-API-Version: 2.X`, else 2.1.
/// Errors are (status, message, the well-formed version refused), rendered by the caller.
fn requested_minor(
    headers: &HeaderMap,
    max: u16,
) -> Result<u16, (StatusCode, String, Option<String>)> {
    let from_new = headers
        .get_all("OpenStack-API-Version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|entry| {
            let mut parts = entry.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(service), Some(version)) if service.eq_ignore_ascii_case("compute") => {
                    Some(version.to_string())
                }
                _ => None,
            }
        });
    let legacy = || {
        headers
            .get("X-OpenStack-Nova-API-Version")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    let Some(requested) = from_new.or_else(legacy) else {
        return Ok(MIN_MINOR);
    };
    if requested.eq_ignore_ascii_case("latest") {
        return Ok(max);
    }
    let parsed = requested
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u16>().ok()?, minor.parse::<u16>().ok()?)));
    let Some((major, minor)) = parsed else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "API Version String {requested} is of invalid format. Must be of format MajorNum.MinorNum."
            ),
            None,
        ));
    };
    if major != 2 || !(MIN_MINOR..=max).contains(&minor) {
        return Err((
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {requested} is not supported by the API. Minimum is 2.{MIN_MINOR} and maximum is 2.{max}."
            ),
            Some(requested.clone()),
        ));
    }
    Ok(minor)
}

/// Nova's answer headers for a version (nova/api/openstack/wsgi.py): the version as the
/// client asked for it, in both headers, and `Vary: OpenStack-API-Version` (as seen on Nova
/// 32.x, the legacy header is not in `Vary`). A 406 for a version out of range carries them
/// too, echoing the version refused; a malformed version gets none.
fn version_headers(headers: &mut HeaderMap, version: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("compute {version}")) {
        headers.insert("OpenStack-API-Version", v);
    }
    if let Ok(v) = HeaderValue::from_str(version) {
        headers.insert("X-OpenStack-Nova-API-Version", v);
    }
    headers.insert("Vary", HeaderValue::from_static("OpenStack-API-Version"));
}

async fn microversion(State(sim): State<Sim>, mut req: Request, next: Next) -> Response {
    let minor = match requested_minor(req.headers(), sim.config().nova_max_minor) {
        Ok(m) => m,
        Err((status, message, refused)) => {
            let mut response = error(status, &message);
            if let Some(version) = refused {
                version_headers(response.headers_mut(), &version);
            }
            return response;
        }
    };
    req.extensions_mut().insert(Microversion(minor));
    let mut response = next.run(req).await;
    version_headers(response.headers_mut(), &format!("2.{minor}"));
    response
}

/// A server with no owner is everybody's (and reported as the caller's); each region's Nova
/// knows only its own servers. Another project's server is a 404, as Nova answers it (its
/// policy scopes a project member to the project), except to an admin.
fn visible(s: &Server, caller: &Caller, region: &Region) -> bool {
    owned_by(s.project_id.as_deref(), caller) && s.region == region.0
}

fn owned_by(project_id: Option<&str>, caller: &Caller) -> bool {
    caller.admin || project_id.is_none_or(|p| p == caller.project_id)
}

/// Where this region's Nova is: `base` for the first region, `base/regions/<r>` for others.
fn region_base(sim: &Sim, region: &Region) -> String {
    if region.0 == sim.config().region {
        sim.base_url()
    } else {
        format!("{}/regions/{}", sim.base_url(), region.0)
    }
}

fn links(base: &str, kind: &str, id: &str) -> Value {
    json!([
        {"href": format!("{base}/compute/v2.1/{kind}/{id}"), "rel": "self"},
        {"href": format!("{base}/compute/{kind}/{id}"), "rel": "bookmark"}
    ])
}

/// What the simulator knows of a flavor from its id: well-known names get their usual
/// sizes, anything else a mid-size machine.
fn flavor_sizes(flavor: &str) -> (u32, u32, u32) {
    match flavor {
        "m1.tiny" | "1" => (1, 512, 1),
        "m1.small" | "2" => (1, 2048, 20),
        "m1.medium" | "3" => (2, 4096, 40),
        "m1.large" | "4" => (4, 8192, 80),
        "m1.xlarge" | "5" => (8, 16384, 160),
        _ => (2, 4096, 40),
    }
}

/// The server's JSON at microversion 2.`mv`, as a project member (not an admin) sees it.
/// `show` adds what only `GET /servers/{id}` (and rebuild) return.
fn server_json(st: &Cloud, base: &str, s: &Server, mv: u16, caller: &Caller, show: bool) -> Value {
    let status = s.status();
    // A server booted from a volume has no image of its own: Nova shows an empty string.
    let image = if s.image_id.is_empty() {
        json!("")
    } else {
        let image_link = format!("{base}/compute/images/{}", s.image_id);
        let mut image =
            json!({"id": s.image_id, "links": [{"href": image_link, "rel": "bookmark"}]});
        if mv >= 98 {
            image["properties"] = json!({"architecture": "x86_64", "os_distro": "fedora-coreos", "hw_rng_model": "virtio"});
        }
        image
    };
    let flavor = if mv >= 47 {
        let (vcpus, ram, disk) = flavor_sizes(&s.flavor_id);
        json!({"vcpus": vcpus, "ram": ram, "disk": disk, "ephemeral": 0, "swap": 0,
               "original_name": s.flavor_id, "extra_specs": {}})
    } else {
        let href = format!("{base}/compute/flavors/{}", s.flavor_id);
        json!({"id": s.flavor_id, "links": [{"href": href, "rel": "bookmark"}]})
    };
    let address = json!({
        "addr": s.address,
        "version": 4,
        "OS-EXT-IPS:type": "fixed",
        "OS-EXT-IPS-MAC:mac_addr": s.mac,
    });
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "status": status,
        "tenant_id": s.project_id.as_deref().unwrap_or(&caller.project_id),
        "user_id": caller.user_id,
        "metadata": s.metadata,
        "hostId": s.host_id,
        "image": image,
        "flavor": flavor,
        "created": time::nova(s.created),
        "updated": time::nova(s.updated),
        "addresses": {"private": [address]},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": links(base, "servers", &s.id),
        "key_name": null,
        "config_drive": "",
        "security_groups": [{"name": "default"}],
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": st.config.availability_zone,
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:vm_state": s.vm_state.as_str(),
        "OS-EXT-STS:power_state": s.power_state,
        "OS-SRV-USG:launched_at": s.launched_at.map(time::nova_usage),
        "OS-SRV-USG:terminated_at": null,
        "os-extended-volumes:volumes_attached": [],
    });
    // A restrictive policy hides the extended status attributes from a project member (they
    // are policy-controlled in Nova): they are absent, not null.
    if st.config.hide_extended_status
        && let Some(o) = v.as_object_mut()
    {
        o.retain(|k, _| !k.starts_with("OS-EXT-STS:"));
    }
    // Nova shows progress only while the status can progress.
    if matches!(
        status,
        "ACTIVE" | "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        v["progress"] = json!(0);
    }
    let by_version: [(u16, &str, Value); 9] = [
        (9, "locked", json!(false)),
        (19, "description", Value::Null),
        (26, "tags", json!([])),
        (63, "trusted_image_certificates", Value::Null),
        (73, "locked_reason", Value::Null),
        (90, "OS-EXT-SRV-ATTR:hostname", json!(s.name)),
        (96, "pinned_availability_zone", Value::Null),
        (100, "scheduler_hints", json!({})),
        (71, "server_groups", json!([])),
    ];
    for (since, key, value) in by_version {
        // server_groups is part of the show (and rebuild) response, not of the list.
        if mv >= since && (key != "server_groups" || show) {
            v[key] = value;
        }
    }
    v
}

fn brief_json(base: &str, s: &Server) -> Value {
    json!({"id": s.id, "name": s.name, "links": links(base, "servers", &s.id)})
}

async fn show_server(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(region): Extension<Region>,
    Extension(mv): Extension<Microversion>,
    Path(id): Path<String>,
) -> Response {
    let base = region_base(&sim, &region);
    sim.read(
        |st| match st.servers.get(&id).filter(|s| visible(s, &caller, &region)) {
            Some(s) => Json(json!({"server": server_json(st, &base, s, mv.0, &caller, true)}))
                .into_response(),
            None => not_found(&id),
        },
    )
}

/// The servers a list request selects: `name` (a regular expression, unanchored as in
/// Nova), `status`, then `marker` and `limit` paging, newest first.
/// Errors are 400 messages.
fn select<'a>(
    st: &'a Cloud,
    caller: &Caller,
    region: &Region,
    query: &HashMap<String, String>,
) -> Result<Vec<&'a Server>, String> {
    let bad = |msg: String| msg;
    let name = match query.get("name") {
        Some(pattern) => {
            Some(regex::Regex::new(pattern).map_err(|e| bad(format!("Invalid name filter: {e}")))?)
        }
        None => None,
    };
    let limit = match query.get("limit") {
        Some(l) => Some(l.parse::<usize>().map_err(|_| {
            bad(format!(
                "Invalid input for query parameters limit. Value: {l}."
            ))
        })?),
        None => None,
    };
    let mut servers: Vec<&Server> = st
        .servers_in_order()
        .into_iter()
        .rev()
        // An admin lists its own project's servers too, unless it asks for all_tenants.
        .filter(|s| {
            let all = caller.admin && query.contains_key("all_tenants");
            s.region == region.0
                && (all
                    || s.project_id
                        .as_deref()
                        .is_none_or(|p| p == caller.project_id))
        })
        .filter(|s| name.as_ref().is_none_or(|re| re.is_match(&s.name)))
        .filter(|s| {
            query
                .get("status")
                .is_none_or(|want| want.eq_ignore_ascii_case(s.status()))
        })
        .collect();
    if let Some(marker) = query.get("marker") {
        let at = servers
            .iter()
            .position(|s| &s.id == marker)
            .ok_or_else(|| bad(format!("marker [{marker}] not found")))?;
        servers.drain(..=at);
    }
    if let Some(limit) = limit {
        servers.truncate(limit);
    }
    Ok(servers)
}

/// `servers_links` when a page was cut at `limit`, as Nova does.
fn paged(
    mut body: Value,
    servers: &[&Server],
    query: &HashMap<String, String>,
    base: &str,
    path: &str,
) -> Value {
    let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok());
    if let (Some(limit), Some(last)) = (limit, servers.last())
        && servers.len() == limit
    {
        let href = format!(
            "{base}/compute/v2.1/{path}?limit={limit}&marker={}",
            last.id
        );
        body["servers_links"] = json!([{"href": href, "rel": "next"}]);
    }
    body
}

async fn list_servers(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(region): Extension<Region>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = region_base(&sim, &region);
    sim.read(|st| match select(st, &caller, &region, &query) {
        Ok(servers) => {
            let list: Vec<Value> = servers.iter().map(|s| brief_json(&base, s)).collect();
            Json(paged(
                json!({"servers": list}),
                &servers,
                &query,
                &base,
                "servers",
            ))
            .into_response()
        }
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    })
}

async fn list_servers_detail(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(region): Extension<Region>,
    Extension(mv): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = region_base(&sim, &region);
    sim.read(|st| match select(st, &caller, &region, &query) {
        Ok(servers) => {
            let list: Vec<Value> = servers
                .iter()
                .map(|s| server_json(st, &base, s, mv.0, &caller, false))
                .collect();
            Json(paged(
                json!({"servers": list}),
                &servers,
                &query,
                &base,
                "servers/detail",
            ))
            .into_response()
        }
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    })
}

fn action_response(result: Result<(), ActionError>, ok: Response) -> Response {
    match result {
        Ok(()) => ok,
        Err(ActionError::NotFound(id)) => not_found(&id),
        Err(ActionError::Conflict(message)) => error(StatusCode::CONFLICT, &message),
    }
}

/// Reads the one action of an action request body.
fn parse_action(body: &Value) -> Result<ServerAction, String> {
    let object = body.as_object().ok_or("Malformed request body")?;
    let (name, args) = object.iter().next().ok_or("Malformed request body")?;
    match name.as_str() {
        "os-stop" => Ok(ServerAction::Stop),
        "os-start" => Ok(ServerAction::Start),
        "reboot" => {
            let kind = args.get("type").and_then(Value::as_str).unwrap_or("");
            match kind.to_ascii_uppercase().as_str() {
                "SOFT" => Ok(ServerAction::Reboot { hard: false }),
                "HARD" => Ok(ServerAction::Reboot { hard: true }),
                _ => Err(format!(
                    "Invalid input for field/attribute type. Value: {kind}. '{kind}' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"
                )),
            }
        }
        "rebuild" => {
            let image = args
                .get("imageRef")
                .and_then(Value::as_str)
                .filter(|i| !i.is_empty());
            let image = image.ok_or_else(|| {
                format!("Invalid input for field/attribute rebuild. Value: {args}. 'imageRef' is a required property")
            })?;
            let name = args.get("name").and_then(Value::as_str).map(str::to_string);
            let metadata = match args.get("metadata") {
                None => None,
                Some(m) => Some(
                    serde_json::from_value::<BTreeMap<String, String>>(m.clone())
                        .map_err(|_| "Invalid input for field/attribute metadata.".to_string())?,
                ),
            };
            Ok(ServerAction::Rebuild {
                image_id: image.to_string(),
                name,
                metadata,
            })
        }
        "shelve" => Ok(ServerAction::Shelve),
        // Since 2.77 unshelve takes an object (an availability zone); the sim has one zone.
        "unshelve" => Ok(ServerAction::Unshelve),
        other => Err(format!("There is no such action: {other}")),
    }
}

async fn server_action(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(region): Extension<Region>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(mv): Extension<Microversion>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Malformed request body");
    };
    let action = match parse_action(&body) {
        Ok(a) => a,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let is_rebuild = matches!(action, ServerAction::Rebuild { .. });
    let base = region_base(&sim, &region);
    let actor = Actor::new(&caller, &request_id);
    sim.with(|st| {
        if !st
            .servers
            .get(&id)
            .is_some_and(|s| visible(s, &caller, &region))
        {
            return not_found(&id);
        }
        let result = st.server_action(&id, action, Instant::now(), &actor);
        // Rebuild answers with the server (as `GET /servers/{id}` shows it); the others
        // with an empty 202.
        let ok = match (is_rebuild, st.servers.get(&id)) {
            (true, Some(s)) => (
                StatusCode::ACCEPTED,
                Json(json!({"server": server_json(st, &base, s, mv.0, &caller, true)})),
            )
                .into_response(),
            _ => StatusCode::ACCEPTED.into_response(),
        };
        action_response(result, ok)
    })
}

async fn delete_server(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(region): Extension<Region>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
) -> Response {
    let actor = Actor::new(&caller, &request_id);
    sim.with(|st| {
        if !st
            .servers
            .get(&id)
            .is_some_and(|s| visible(s, &caller, &region))
        {
            return not_found(&id);
        }
        let result = st.server_action(&id, ServerAction::Delete, Instant::now(), &actor);
        action_response(result, StatusCode::NO_CONTENT.into_response())
    })
}

/// The instance actions of server `id` as this caller may see them: a live server of theirs
/// in this region, or, from microversion 2.21 (`read_deleted='yes'`), a deleted one.
fn actions_of<'a>(
    st: &'a Cloud,
    id: &str,
    caller: &Caller,
    region: &Region,
    mv: Microversion,
) -> Option<&'a [InstanceAction]> {
    if let Some(s) = st.servers.get(id) {
        return visible(s, caller, region).then_some(s.actions.as_slice());
    }
    let d = st.deleted.get(id)?;
    (mv.0 >= 21 && d.region == region.0 && owned_by(d.project_id.as_deref(), caller))
        .then_some(d.actions.as_slice())
}

/// An instance action's JSON (`ACTION_KEYS`, plus `updated_at` from 2.58).
fn action_json(a: &InstanceAction, id: &str, caller: &Caller, mv: Microversion) -> Value {
    let mut v = json!({
        "action": a.action,
        "instance_uuid": id,
        "request_id": a.request_id,
        "user_id": a.user_id,
        "project_id": a.project_id.as_deref().unwrap_or(&caller.project_id),
        "start_time": time::nova_usage(a.start_time),
        "message": a.message,
    });
    if mv.0 >= 58 {
        v["updated_at"] = json!(time::nova_usage(a.updated_at));
    }
    v
}

/// Reads a `changes-since` / `changes-before` time as Nova's `parse_isotime` would.
fn parse_time(name: &str, value: &str) -> Result<jiff::Timestamp, String> {
    value
        .parse::<jiff::Timestamp>()
        .or_else(|_| {
            // A time without a zone is UTC.
            value
                .parse::<jiff::civil::DateTime>()
                .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
                .map(|z| z.timestamp())
        })
        .map_err(|_| format!("Invalid input for query parameters {name}. Value: {value}."))
}

/// `GET /servers/{id}/os-instance-actions`: newest first; from 2.58 with `limit`, `marker`
/// and `changes-since` (2.66: `changes-before`), and `links` to the next page.
async fn list_instance_actions(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(region): Extension<Region>,
    Extension(mv): Extension<Microversion>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let base = region_base(&sim, &region);
    sim.read(|st| {
        let Some(actions) = actions_of(st, &id, &caller, &region, mv) else {
            return not_found(&id);
        };
        let mut selected: Vec<&InstanceAction> = actions.iter().rev().collect();
        let mut next_link = None;
        if mv.0 >= 58 {
            for (name, since) in [("changes-since", true), ("changes-before", false)] {
                let Some(value) = query.get(name) else {
                    continue;
                };
                if !since && mv.0 < 66 {
                    continue;
                }
                let at = match parse_time(name, value) {
                    Ok(t) => t,
                    Err(message) => return error(StatusCode::BAD_REQUEST, &message),
                };
                selected.retain(|a| if since { a.updated_at >= at } else { a.updated_at <= at });
            }
            if let Some(marker) = query.get("marker") {
                let Some(at) = selected.iter().position(|a| &a.request_id == marker) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("Marker {marker} could not be found."),
                    );
                };
                selected.drain(..=at);
            }
            if let Some(limit) = query.get("limit") {
                let Ok(limit) = limit.parse::<usize>() else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("Invalid input for query parameters limit. Value: {limit}."),
                    );
                };
                if selected.len() > limit {
                    selected.truncate(limit);
                }
                if let Some(last) = selected.last().filter(|_| selected.len() == limit) {
                    next_link = Some(format!(
                        "{base}/compute/v2.1/servers/{id}/os-instance-actions?limit={limit}&marker={}",
                        last.request_id
                    ));
                }
            }
        }
        let list: Vec<Value> = selected
            .iter()
            .map(|a| action_json(a, &id, &caller, mv))
            .collect();
        let mut body = json!({"instanceActions": list});
        if let Some(href) = next_link {
            body["links"] = json!([{"href": href, "rel": "next"}]);
        }
        Json(body).into_response()
    })
}

/// `GET /servers/{id}/os-instance-actions/{request_id}`. A project member (the simulator's
/// callers are never admins) sees the events from 2.51, without `traceback`; from 2.62 with
/// `hostId` (the admin-only `host` and the 2.84 `details` stay hidden).
async fn show_instance_action(
    State(sim): State<Sim>,
    Extension(caller): Extension<Caller>,
    Extension(region): Extension<Region>,
    Extension(mv): Extension<Microversion>,
    Path((id, request_id)): Path<(String, String)>,
) -> Response {
    sim.read(|st| {
        let Some(actions) = actions_of(st, &id, &caller, &region, mv) else {
            return not_found(&id);
        };
        let Some(action) = actions.iter().find(|a| a.request_id == request_id) else {
            return error(
                StatusCode::NOT_FOUND,
                &format!("Action {request_id} not found"),
            );
        };
        let mut v = action_json(action, &id, &caller, mv);
        if mv.0 >= 51 {
            // Nova hashes the host with the project; it still knows a deleted server's host.
            let host_id = st
                .servers
                .get(&id)
                .map(|s| s.host_id.clone())
                .or_else(|| st.deleted.get(&id).map(|d| d.host_id.clone()))
                .unwrap_or_default();
            let events: Vec<Value> = action
                .events
                .iter()
                .rev()
                .map(|e| {
                    let mut ev = json!({
                        "event": e.event,
                        "start_time": time::nova_usage(e.start_time),
                        "finish_time": e.finish_time.map(time::nova_usage),
                        "result": e.result,
                    });
                    if mv.0 >= 62 {
                        ev["hostId"] = json!(host_id);
                    }
                    ev
                })
                .collect();
            v["events"] = json!(events);
        }
        Json(json!({"instanceAction": v})).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn microversion_negotiation() {
        assert_eq!(requested_minor(&headers(&[]), MAX_MINOR).ok(), Some(1));
        assert_eq!(
            requested_minor(
                &headers(&[("OpenStack-API-Version", "compute 2.47")]),
                MAX_MINOR
            )
            .ok(),
            Some(47)
        );
        assert_eq!(
            requested_minor(
                &headers(&[("OpenStack-API-Version", "container-infra latest")]),
                MAX_MINOR
            )
            .ok(),
            Some(1)
        );
        let mixed = [(
            "OpenStack-API-Version",
            "container-infra 1.9, compute latest",
        )];
        assert_eq!(
            requested_minor(&headers(&mixed), MAX_MINOR).ok(),
            Some(MAX_MINOR)
        );
        assert_eq!(
            requested_minor(
                &headers(&[("X-OpenStack-Nova-API-Version", "2.60")]),
                MAX_MINOR
            )
            .ok(),
            Some(60)
        );
        let too_new = requested_minor(
            &headers(&[("OpenStack-API-Version", "compute 2.999")]),
            MAX_MINOR,
        )
        .unwrap_err();
        assert_eq!(too_new.0, StatusCode::NOT_ACCEPTABLE);
        let garbage = requested_minor(
            &headers(&[("OpenStack-API-Version", "compute two")]),
            MAX_MINOR,
        )
        .unwrap_err();
        assert_eq!(garbage.0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn actions_are_parsed_like_nova() {
        assert_eq!(
            parse_action(&json!({"os-stop": null})),
            Ok(ServerAction::Stop)
        );
        assert_eq!(
            parse_action(&json!({"reboot": {"type": "hard"}})),
            Ok(ServerAction::Reboot { hard: true })
        );
        assert!(parse_action(&json!({"reboot": {"type": "WARM"}})).is_err());
        assert!(parse_action(&json!({"rebuild": {}})).is_err());
        assert_eq!(
            parse_action(&json!({"unshelve": null})),
            Ok(ServerAction::Unshelve)
        );
        assert_eq!(
            parse_action(&json!({"unshelve": {"availability_zone": "nova"}})),
            Ok(ServerAction::Unshelve)
        );
        assert!(parse_action(&json!({"os-levitate": null})).is_err());
    }
}
