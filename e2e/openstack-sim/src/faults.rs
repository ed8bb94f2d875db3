//! Failures a test injects into the API: errors, latency, hangs. A fault targets one
//! service (and optionally paths containing a string) for a number of requests or until
//! cleared. The same JSON shape is taken by `POST /_sim/faults`:
//!
//! ```json
//! {"service": "nova", "kind": {"type": "error", "status": 503}, "path_contains": "/action", "remaining": 2}
//! {"service": "keystone", "kind": {"type": "latency", "ms": 1500}}
//! {"service": "magnum", "kind": {"type": "hang"}}
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The API a request is for, by path prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Keystone,
    Nova,
    Magnum,
    /// The simulator's own `/_sim` endpoint (logged, never faulted).
    Control,
}

impl Service {
    pub fn of_path(path: &str) -> Option<Service> {
        // An extra region's endpoints: `/regions/<region>/compute/...`.
        let path = crate::requests::split_region(path).map_or(path, |(_, rest)| rest);
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        if under("/identity") {
            Some(Service::Keystone)
        } else if under("/compute") {
            Some(Service::Nova)
        } else if under("/container-infra") {
            Some(Service::Magnum)
        } else if under("/_sim") {
            Some(Service::Control)
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answers with this status and a body in the service's error shape.
    Error { status: u16 },
    /// Waits, then answers normally. Latency faults add up, and combine with an error.
    Latency { ms: u64 },
    /// Never answers (until [`HANG_LIMIT`]), so the client's timeout is what ends the call.
    Hang,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub service: Service,
    pub kind: FaultKind,
    /// Only requests whose path contains this string.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// How many requests it affects; `None` until cleared.
    #[serde(default)]
    pub remaining: Option<u32>,
}

impl Fault {
    pub fn error(service: Service, status: u16) -> Fault {
        Fault {
            service,
            kind: FaultKind::Error { status },
            path_contains: None,
            remaining: None,
        }
    }

    /// "Keystone is down."
    pub fn keystone_down() -> Fault {
        Fault::error(Service::Keystone, 503)
    }

    pub fn on_path(mut self, contains: &str) -> Fault {
        self.path_contains = Some(contains.into());
        self
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, service: Service, path: &str) -> bool {
        self.service == service
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// A hung request is answered (504) after this long, so nothing waits forever.
pub const HANG_LIMIT: Duration = Duration::from_secs(600);

/// What the matching faults do to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub latency: Duration,
    /// `Some(Error)` or `Some(Hang)`; never `Latency`.
    pub outcome: Option<FaultKind>,
    /// The faults applied, for the request log.
    pub applied: Vec<String>,
}

/// Takes the faults that apply to a request, in the order they were added: latencies add
/// up until an error or a hang decides the outcome. Each fault applied uses up one of its
/// `remaining` requests; a fault with none left is removed.
pub(crate) fn plan(faults: &mut Vec<(u64, Fault)>, service: Service, path: &str) -> Plan {
    let mut plan = Plan::default();
    if service == Service::Control {
        return plan;
    }
    for (id, fault) in faults.iter_mut() {
        if plan.outcome.is_some() || !fault.matches(service, path) {
            continue;
        }
        match &fault.kind {
            FaultKind::Latency { ms } => plan.latency += Duration::from_millis(*ms),
            kind => plan.outcome = Some(kind.clone()),
        }
        plan.applied
            .push(format!("#{id} {}", describe(&fault.kind)));
        if let Some(n) = &mut fault.remaining {
            *n = n.saturating_sub(1);
        }
    }
    faults.retain(|(_, f)| f.remaining != Some(0));
    plan
}

fn describe(kind: &FaultKind) -> String {
    match kind {
        FaultKind::Error { status } => format!("error {status}"),
        FaultKind::Latency { ms } => format!("latency {ms}ms"),
        FaultKind::Hang => "hang".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out_and_latency_adds_to_an_error() {
        let mut faults = vec![
            (
                1,
                Fault {
                    service: Service::Nova,
                    kind: FaultKind::Latency { ms: 10 },
                    path_contains: None,
                    remaining: None,
                },
            ),
            (
                2,
                Fault::error(Service::Nova, 500).on_path("/action").times(1),
            ),
        ];
        let p = plan(&mut faults, Service::Nova, "/compute/v2.1/servers/x/action");
        assert_eq!(p.latency, Duration::from_millis(10));
        assert_eq!(p.outcome, Some(FaultKind::Error { status: 500 }));
        assert_eq!(faults.len(), 1);
        let p = plan(&mut faults, Service::Nova, "/compute/v2.1/servers/x/action");
        assert_eq!(p.outcome, None);
        assert!(
            plan(&mut faults, Service::Keystone, "/identity/v3/auth/tokens")
                .applied
                .is_empty()
        );
    }

    #[test]
    fn the_json_shape_round_trips() {
        let f: Fault =
            serde_json::from_str(r#"{"service":"keystone","kind":{"type":"error","status":503}}"#)
                .unwrap();
        assert_eq!(f, Fault::keystone_down());
        let hang: Fault =
            serde_json::from_str(r#"{"service":"magnum","kind":{"type":"hang"},"remaining":1}"#)
                .unwrap();
        assert_eq!(hang.kind, FaultKind::Hang);
    }
}
