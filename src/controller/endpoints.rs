//! Endpoint checks (`spec.endpointChecks`), as magnum-auto-healer's Endpoint check: an HTTP(S)
//! GET of each selected node's InternalIP, port and path, every `interval`, with a `timeout`;
//! a response code outside `okCodes` or no response is a failure. The results (when the
//! check started failing, when it last succeeded) feed the health evaluation, which makes a
//! node unhealthy once a check has failed for its `duration` without a success in between.
//!
//! One task per NodeHealthCheck with checks; it probes at most `MAX_CONCURRENT_PROBES` nodes at
//! once and wakes its NodeHealthCheck only when a check starts or stops failing on a node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::Store;
use tokio::sync::mpsc;

use super::dynamic::Wake;
use crate::api::{EndpointCheck, NodeHealthCheck, Scheme};
use crate::health::EndpointResult;

/// At most this many probes are in flight per NodeHealthCheck.
const MAX_CONCURRENT_PROBES: usize = 32;
/// No check probes more often than this, whatever its interval says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Results by node, then by check name.
pub type NodeResults = HashMap<String, BTreeMap<String, EndpointResult>>;

struct Running {
    /// What the task was started for; a change restarts it.
    checks: Vec<EndpointCheck>,
    selector: Selector,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the endpoint checks of every NodeHealthCheck and keeps their results.
pub struct Prober {
    nodes: Store<Node>,
    nhcs: Mutex<Option<Store<NodeHealthCheck>>>,
    wake: mpsc::UnboundedSender<Wake>,
    results: Arc<Mutex<HashMap<String, NodeResults>>>,
    running: Mutex<HashMap<String, Running>>,
    http_verified: reqwest::Client,
    http_insecure: reqwest::Client,
}

impl Prober {
    pub fn new(nodes: Store<Node>, wake: mpsc::UnboundedSender<Wake>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .tls_backend_rustls()
                .tls_danger_accept_invalid_certs(insecure)
                .user_agent(concat!("nodehealer/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client with default settings")
        };
        Self {
            nodes,
            nhcs: Mutex::new(None),
            wake,
            results: Arc::new(Mutex::new(HashMap::new())),
            running: Mutex::new(HashMap::new()),
            http_verified: build(false),
            http_insecure: build(true),
        }
    }

    /// The NodeHealthCheck cache, so a task can stop when its NodeHealthCheck is gone.
    pub fn set_nhc_store(&self, store: Store<NodeHealthCheck>) {
        *self.nhcs.lock().expect("lock") = Some(store);
    }

    /// Makes sure the checks of `nhc` run as specified (started, restarted after a change, or
    /// stopped when there are none).
    pub fn ensure(&self, nhc: &str, checks: &[EndpointCheck], selector: &Selector) {
        let mut running = self.running.lock().expect("lock");
        if let Some(r) = running.get(nhc) {
            if r.checks == checks && &r.selector == selector && !r.task.is_finished() {
                return;
            }
            r.task.abort();
            running.remove(nhc);
            self.results.lock().expect("lock").remove(nhc);
        }
        if checks.is_empty() {
            return;
        }
        let task = tokio::spawn(probe_loop(ProbeTask {
            nhc: nhc.to_string(),
            checks: checks.to_vec(),
            selector: selector.clone(),
            nodes: self.nodes.clone(),
            nhcs: self.nhcs.lock().expect("lock").clone(),
            wake: self.wake.clone(),
            results: self.results.clone(),
            http_verified: self.http_verified.clone(),
            http_insecure: self.http_insecure.clone(),
        }));
        running.insert(
            nhc.to_string(),
            Running {
                checks: checks.to_vec(),
                selector: selector.clone(),
                task,
            },
        );
    }

    /// The latest results of `nhc`'s checks.
    pub fn results(&self, nhc: &str) -> NodeResults {
        self.results
            .lock()
            .expect("lock")
            .get(nhc)
            .cloned()
            .unwrap_or_default()
    }
}

struct ProbeTask {
    nhc: String,
    checks: Vec<EndpointCheck>,
    selector: Selector,
    nodes: Store<Node>,
    nhcs: Option<Store<NodeHealthCheck>>,
    wake: mpsc::UnboundedSender<Wake>,
    results: Arc<Mutex<HashMap<String, NodeResults>>>,
    http_verified: reqwest::Client,
    http_insecure: reqwest::Client,
}

async fn probe_loop(t: ProbeTask) {
    // Each check keeps its own schedule.
    let mut next_due: Vec<tokio::time::Instant> = t
        .checks
        .iter()
        .map(|_| tokio::time::Instant::now())
        .collect();
    loop {
        let gone = t.nhcs.as_ref().is_some_and(|s| {
            s.state()
                .iter()
                .all(|n| n.metadata.name.as_deref() != Some(t.nhc.as_str()))
        });
        if gone {
            t.results.lock().expect("lock").remove(&t.nhc);
            return;
        }
        let now = tokio::time::Instant::now();
        let due: Vec<usize> = (0..t.checks.len())
            .filter(|i| next_due[*i] <= now)
            .collect();
        let mut changed = false;
        for i in due {
            let check = &t.checks[i];
            next_due[i] = now + check.interval.get().max(MIN_INTERVAL);
            changed |= run_check(&t, check).await;
        }
        if changed && t.wake.send(Wake::Nhc(t.nhc.clone())).is_err() {
            return;
        }
        let sleep_until = next_due.iter().min().copied().unwrap_or(now + MIN_INTERVAL);
        tokio::time::sleep_until(sleep_until).await;
    }
}

/// Probes every selected node once; returns whether a node's check started or stopped failing.
async fn run_check(t: &ProbeTask, check: &EndpointCheck) -> bool {
    let targets: Vec<(String, Option<String>)> = t
        .nodes
        .state()
        .iter()
        .filter(|n| {
            t.selector
                .matches(n.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
        })
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), internal_ip(n)))
        .collect();
    let http = if check.insecure_skip_verify {
        &t.http_insecure
    } else {
        &t.http_verified
    };
    let outcomes: Vec<(String, bool)> = futures::stream::iter(targets)
        .map(|(node, ip)| async move {
            let ok = match ip {
                Some(ip) => probe(http, check, &ip).await,
                // No address to probe: the check cannot pass.
                None => false,
            };
            (node, ok)
        })
        .buffer_unordered(MAX_CONCURRENT_PROBES)
        .collect()
        .await;
    let now = Timestamp::now();
    let mut all = t.results.lock().expect("lock");
    let results = all.entry(t.nhc.clone()).or_default();
    let mut changed = false;
    let names: Vec<&String> = outcomes.iter().map(|(n, _)| n).collect();
    results.retain(|node, _| names.contains(&node));
    for (node, ok) in &outcomes {
        let entry = results
            .entry(node.clone())
            .or_default()
            .entry(check.name.clone())
            .or_default();
        changed |= record(entry, *ok, now);
    }
    changed
}

/// Records one probe; returns whether the check started or stopped failing.
pub fn record(result: &mut EndpointResult, ok: bool, now: Timestamp) -> bool {
    if ok {
        result.last_success = Some(now);
        result.failing_since.take().is_some()
    } else if result.failing_since.is_none() {
        result.failing_since = Some(now);
        true
    } else {
        false
    }
}

async fn probe(http: &reqwest::Client, check: &EndpointCheck, ip: &str) -> bool {
    let url = endpoint_url(check, ip);
    match http.get(&url).timeout(check.timeout.get()).send().await {
        Ok(resp) => check.ok_codes.contains(&i32::from(resp.status().as_u16())),
        Err(_) => false,
    }
}

/// The URL a check probes on a node.
pub fn endpoint_url(check: &EndpointCheck, ip: &str) -> String {
    let scheme = match check.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("{scheme}://{host}:{}{}", check.port, check.path)
}

fn internal_ip(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scheme: Scheme) -> EndpointCheck {
        serde_json::from_value(serde_json::json!({
            "name": "api", "scheme": if scheme == Scheme::Http {"HTTP"} else {"HTTPS"},
            "port": 6443, "path": "/healthz"
        }))
        .unwrap()
    }

    #[test]
    fn urls_bracket_ipv6_addresses() {
        assert_eq!(
            endpoint_url(&check(Scheme::Https), "10.0.0.5"),
            "https://10.0.0.5:6443/healthz"
        );
        assert_eq!(
            endpoint_url(&check(Scheme::Http), "fd00::5"),
            "http://[fd00::5]:6443/healthz"
        );
    }

    #[test]
    fn failing_since_is_kept_until_a_success() {
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let mut r = EndpointResult::default();
        assert!(
            !record(&mut r, true, t(0)),
            "a first success changes nothing"
        );
        assert!(record(&mut r, false, t(10)), "the check starts failing");
        assert!(!record(&mut r, false, t(20)), "still failing: no change");
        assert_eq!(
            r.failing_since,
            Some(t(10)),
            "counted from the first failure"
        );
        assert!(record(&mut r, true, t(30)), "a success ends the failure");
        assert_eq!((r.failing_since, r.last_success), (None, Some(t(30))));
    }
}
