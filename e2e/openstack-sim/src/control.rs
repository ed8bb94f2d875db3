//! The simulator's own endpoint, `/_sim`, for tests and people driving a running
//! simulator (JSON, no authentication):
//!
//! - `GET /_sim/servers`, `GET /_sim/servers/{id}`: [`crate::ServerView`]s
//! - `POST /_sim/servers/{id}/crash`, `/host-down`, `/host-up`, `/error`: 204
//! - `POST /_sim/servers/{id}/refuse-power-off` with `{"refuse": true|false}` (no body: true)
//! - `GET /_sim/servers/{id}/actions`: its [`crate::InstanceActionView`]s, deleted servers
//!   included
//! - `POST /_sim/hosts/{host}/down`, `/up`: every server on compute host `host` (see
//!   [`crate::ServerView::host`]) loses its hypervisor or gets it back; `{"servers": n}`
//! - `GET /_sim/requests` (the request log), `DELETE /_sim/requests` (clears it)
//! - `GET /_sim/faults`, `POST /_sim/faults` with a [`crate::Fault`] (201 `{"id": n}`),
//!   `DELETE /_sim/faults`
//! - `GET /_sim/clusters/{id}`: a [`crate::ClusterView`];
//!   `POST /_sim/clusters/{id}/status` with `{"status": "UPDATE_IN_PROGRESS"}`

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::{Fault, Sim};

pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route("/_sim/servers", get(servers))
        .route("/_sim/servers/{id}", get(server))
        .route("/_sim/servers/{id}/{verb}", post(server_verb))
        .route("/_sim/servers/{id}/actions", get(instance_actions))
        .route("/_sim/hosts/{host}/{verb}", post(host_verb))
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route(
            "/_sim/faults",
            get(faults).post(add_fault).delete(clear_faults),
        )
        .route("/_sim/clusters/{id}", get(cluster))
        .route("/_sim/clusters/{id}/status", post(cluster_status))
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn servers(State(sim): State<Sim>) -> Response {
    Json(sim.servers()).into_response()
}

async fn server(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.server(&id) {
        Some(s) => Json(s).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no server {id}")),
    }
}

#[derive(Deserialize)]
struct Refuse {
    refuse: bool,
}

async fn server_verb(
    State(sim): State<Sim>,
    Path((id, verb)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if sim.server(&id).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no server {id}"));
    }
    match verb.as_str() {
        "crash" => sim.crash_server(&id),
        "host-down" => sim.host_down(&id),
        "host-up" => sim.host_up(&id),
        "error" => sim.set_server_error(&id),
        "refuse-power-off" => {
            let refuse = if body.iter().all(u8::is_ascii_whitespace) {
                true
            } else {
                match serde_json::from_slice::<Refuse>(&body) {
                    Ok(r) => r.refuse,
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("expected {{\"refuse\": bool}}: {e}"),
                        );
                    }
                }
            };
            sim.refuse_power_off(&id, refuse);
        }
        other => return error(StatusCode::NOT_FOUND, &format!("no server action {other}")),
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn instance_actions(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.instance_actions(&id) {
        Some(actions) => Json(actions).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no server {id}, ever")),
    }
}

async fn host_verb(State(sim): State<Sim>, Path((host, verb)): Path<(String, String)>) -> Response {
    let down = match verb.as_str() {
        "down" => true,
        "up" => false,
        other => return error(StatusCode::NOT_FOUND, &format!("no host action {other}")),
    };
    let servers = sim.compute_host_down(&host, down);
    Json(json!({"host": host, "down": down, "servers": servers})).into_response()
}

async fn requests(State(sim): State<Sim>) -> Response {
    Json(sim.request_log()).into_response()
}

async fn clear_requests(State(sim): State<Sim>) -> StatusCode {
    sim.clear_request_log();
    StatusCode::NO_CONTENT
}

async fn faults(State(sim): State<Sim>) -> Response {
    let list: Vec<_> = sim
        .faults()
        .into_iter()
        .map(|(id, fault)| json!({"id": id, "fault": fault}))
        .collect();
    Json(list).into_response()
}

async fn add_fault(State(sim): State<Sim>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => (
            StatusCode::CREATED,
            Json(json!({"id": sim.add_fault(fault)})),
        )
            .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &format!("not a fault: {e}")),
    }
}

async fn clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn cluster(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.cluster(&id) {
        Some(c) => Json(c).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no cluster {id}")),
    }
}

#[derive(Deserialize)]
struct Status {
    status: String,
}

async fn cluster_status(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Response {
    if sim.cluster(&id).is_none() {
        return error(StatusCode::NOT_FOUND, &format!("no cluster {id}"));
    }
    match serde_json::from_slice::<Status>(&body) {
        Ok(s) => {
            sim.set_cluster_status(&id, &s.status);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            &format!("expected {{\"status\": \"...\"}}: {e}"),
        ),
    }
}
