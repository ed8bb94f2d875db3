//! The outermost layer of every request: it decides which service a request is for, applies
//! the injected faults, and records the request in the log tests read
//! ([`crate::Sim::request_log`], `GET /_sim/requests`).

use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::faults::{FaultKind, HANG_LIMIT, Service};
use crate::{Sim, control, keystone, magnum, nova};

/// One API request as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub time: jiff::Timestamp,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub service: Service,
    /// The action of `POST /servers/{id}/action` (`os-stop`, `os-start`, `reboot`,
    /// `rebuild`, ...), of Magnum's `POST /clusters/{id}/actions/{action}` (`resize`), or the
    /// verb of a control request (`crash`, `host-down`, ...).
    pub action: Option<String>,
    pub server_id: Option<String>,
    /// The cluster uuid or name as the path gave it.
    pub cluster_id: Option<String>,
    /// The region whose endpoint the request came to (Nova and Magnum requests).
    #[serde(default)]
    pub region: Option<String>,
    /// The `OpenStack-API-Version` header as sent, e.g. `compute 2.51`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The `x-openstack-request-id` answered (Nova, Magnum, Keystone); a Nova action's
    /// instance action carries the same id.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The status answered; 0 when the request was hung by a fault.
    pub status: u16,
    /// The faults applied, e.g. `#3 error 503`.
    pub fault: Option<String>,
    pub duration_ms: u64,
}

/// The log keeps the newest entries only, so a long test-bed run cannot grow it without
/// bound.
pub const LOG_LIMIT: usize = 100_000;

/// Bodies are small JSON documents; anything bigger is a client bug.
const BODY_LIMIT: usize = 1 << 20;

/// The region whose endpoint a Nova or Magnum request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Region(pub String);

/// The request's `x-openstack-request-id`, known to the handlers so that an instance action
/// carries the id of the request that started it, as in Nova.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub String);

/// The prefix of the Nova endpoints of the extra regions: `/regions/<region>/compute/...`.
const REGIONS: &str = "/regions/";

/// `/regions/<region>/<rest>` as `(region, /<rest>)`.
pub(crate) fn split_region(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(REGIONS)?;
    let at = rest.find('/')?;
    Some((&rest[..at], &rest[at..]))
}

pub(crate) async fn observe(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let time = jiff::Timestamp::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let Some(service) = Service::of_path(&path) else {
        return next.run(req).await;
    };
    let api_version = req
        .headers()
        .get("OpenStack-API-Version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // An extra region's Nova: served by the same routes, on that region's servers.
    let region = match split_region(&path) {
        Some((name, _))
            if service == Service::Nova && sim.config().extra_regions.iter().any(|r| r == name) =>
        {
            Some(name.to_string())
        }
        Some(_) => None,
        None => {
            matches!(service, Service::Nova | Service::Magnum).then(|| sim.config().region.clone())
        }
    };
    let (mut parts, body) = req.into_parts();
    // A region the catalog does not list has no endpoint: 404.
    let mut unknown_region = false;
    if let Some((_, inner)) = split_region(&path) {
        let inner = match &query {
            Some(q) => format!("{inner}?{q}"),
            None => inner.to_string(),
        };
        match inner.parse::<Uri>() {
            Ok(uri) if region.is_some() => parts.uri = uri,
            _ => unknown_region = true,
        }
    }
    let request_id = (service != Service::Control).then(|| format!("req-{}", uuid::Uuid::new_v4()));
    if let Some(r) = &region {
        parts.extensions.insert(Region(r.clone()));
    }
    if let Some(id) = &request_id {
        parts.extensions.insert(RequestId(id.clone()));
    }
    let bytes = match to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let action = action_of(service, &method, &path, &bytes);
    let server_id = server_id_of(service, &path);
    let cluster_id = cluster_id_of(service, &path);
    let plan = sim.with_quiet(|st| crate::faults::plan(&mut st.faults, service, &path));
    let fault = (!plan.applied.is_empty()).then(|| plan.applied.join(", "));
    let mut entry = LoggedRequest {
        time,
        method,
        path,
        query,
        service,
        action,
        server_id,
        cluster_id,
        region,
        api_version,
        request_id: request_id.clone(),
        status: 0,
        fault,
        duration_ms: 0,
    };

    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    let mut response = match plan.outcome {
        Some(FaultKind::Hang) => {
            // Logged now: the client usually gives up long before the limit.
            sim.with_quiet(|st| st.log.push(entry.clone()));
            tokio::time::sleep(HANG_LIMIT).await;
            return error_for(
                service,
                StatusCode::GATEWAY_TIMEOUT,
                "The simulated service did not answer.",
            );
        }
        Some(FaultKind::Error { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error_for(
                service,
                status,
                "Fault injected by the OpenStack simulator.",
            )
        }
        _ if unknown_region => error_for(
            service,
            StatusCode::NOT_FOUND,
            "The resource could not be found.",
        ),
        _ => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    if let Some(id) = &request_id
        && let Ok(v) = HeaderValue::from_str(id)
    {
        response.headers_mut().insert("x-openstack-request-id", v);
    }
    entry.status = response.status().as_u16();
    entry.duration_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(method = %entry.method, path = %entry.path, status = entry.status, "request");
    sim.with_quiet(|st| {
        if st.log.len() >= LOG_LIMIT {
            st.log.drain(..LOG_LIMIT / 10);
        }
        st.log.push(entry);
    });
    response
}

/// An error in the shape the service uses.
pub(crate) fn error_for(service: Service, status: StatusCode, message: &str) -> Response {
    match service {
        Service::Keystone => keystone::error(status, message),
        Service::Nova => nova::error(status, message),
        Service::Magnum => magnum::error(status, message),
        Service::Control => control::error(status, message),
    }
}

/// Answers requests no route matched, in the shape of the service the path belongs to.
pub(crate) async fn not_found(req: Request) -> Response {
    let service = Service::of_path(req.uri().path()).unwrap_or(Service::Control);
    error_for(
        service,
        StatusCode::NOT_FOUND,
        "The resource could not be found.",
    )
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// The segment after `key` in the path, if any.
fn after<'a>(segs: &[&'a str], key: &str) -> Option<&'a str> {
    segs.iter()
        .position(|s| *s == key)
        .and_then(|i| segs.get(i + 1))
        .copied()
}

fn action_of(service: Service, method: &str, path: &str, body: &[u8]) -> Option<String> {
    let segs = segments(path);
    match service {
        Service::Nova if method == "POST" && segs.last() == Some(&"action") => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            v.as_object()?.keys().next().cloned()
        }
        Service::Magnum if method == "POST" => after(&segs, "actions").map(str::to_string),
        Service::Control if method == "POST" && segs.len() == 4 => {
            segs.last().map(|s| s.to_string())
        }
        _ => None,
    }
}

fn server_id_of(service: Service, path: &str) -> Option<String> {
    if !matches!(service, Service::Nova | Service::Control) {
        return None;
    }
    after(&segments(path), "servers")
        .filter(|s| *s != "detail")
        .map(str::to_string)
}

fn cluster_id_of(service: Service, path: &str) -> Option<String> {
    if !matches!(service, Service::Magnum | Service::Control) {
        return None;
    }
    after(&segments(path), "clusters")
        .filter(|s| *s != "detail")
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_ids_come_from_path_and_body() {
        let body = br#"{"reboot": {"type": "HARD"}}"#;
        assert_eq!(
            action_of(
                Service::Nova,
                "POST",
                "/compute/v2.1/servers/abc/action",
                body
            )
            .as_deref(),
            Some("reboot")
        );
        assert_eq!(
            server_id_of(Service::Nova, "/compute/v2.1/servers/abc/action").as_deref(),
            Some("abc")
        );
        assert_eq!(
            server_id_of(Service::Nova, "/compute/v2.1/servers/detail"),
            None
        );
        let resize = "/container-infra/v1/clusters/k8s/actions/resize";
        assert_eq!(
            action_of(Service::Magnum, "POST", resize, b"{}").as_deref(),
            Some("resize")
        );
        assert_eq!(
            cluster_id_of(Service::Magnum, resize).as_deref(),
            Some("k8s")
        );
        assert_eq!(
            action_of(Service::Control, "POST", "/_sim/servers/abc/crash", b"").as_deref(),
            Some("crash")
        );
    }
}
