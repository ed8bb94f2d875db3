//! Shared set-up: a served simulator with one project and one user, an HTTP client, and
//! the fixture comparison.

use std::sync::Once;
use std::time::{Duration, Instant};

use openstack_sim::{ServerView, Sim, SimConfig};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Fast transitions keep the suite quick; every wait below is bounded by [`WAIT`].
pub const DELAY: Duration = Duration::from_millis(50);
pub const WAIT: Duration = Duration::from_secs(5);
/// For tests that look at a transition half-way: wide enough that a busy machine does not
/// skip past the intermediate state between two requests.
pub const SLOW: Duration = Duration::from_millis(500);
pub const PROJECT: &str = "k8s-infra";
pub const USER: &str = "nodehealer";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub sim: Sim,
    pub http: reqwest::Client,
    pub project_id: String,
    pub user_id: String,
}

/// The response of a call: status, headers and the JSON body (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn config() -> SimConfig {
    SimConfig {
        transition_delay: DELAY,
        ..SimConfig::default()
    }
}

pub async fn env() -> Env {
    env_with(config()).await
}

pub async fn slow_env() -> Env {
    env_with(SimConfig {
        transition_delay: SLOW,
        ..SimConfig::default()
    })
    .await
}

pub async fn env_with(config: SimConfig) -> Env {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let sim = Sim::new(config);
    sim.serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("serve");
    let project_id = sim.add_project(PROJECT, "Default");
    let user_id = sim.add_user(USER, PASSWORD, "Default", &project_id);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Env {
        sim,
        http,
        project_id,
        user_id,
    }
}

pub fn password_auth() -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": USER, "domain": {"name": "Default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": PROJECT, "domain": {"name": "Default"}}}
    }})
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn authenticate(&self, body: &Value) -> Reply {
        self.call(Method::POST, "/identity/v3/auth/tokens", &[], Some(body))
            .await
    }

    /// A token of another user of the project (`Sim::add_user`, `Sim::add_admin`).
    pub async fn token_of(&self, user: &str, password: &str) -> String {
        let auth = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": PROJECT, "domain": {"name": "Default"}}}
        }});
        let r = self.authenticate(&auth).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.header("X-Subject-Token")
            .expect("X-Subject-Token")
            .to_string()
    }

    pub async fn token(&self) -> String {
        let r = self.authenticate(&password_auth()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.header("X-Subject-Token")
            .expect("X-Subject-Token")
            .to_string()
    }

    /// A Nova call with a fresh token at microversion `mv` (e.g. "2.100"; "" for none).
    pub async fn nova(&self, method: Method, path: &str, mv: &str, body: Option<&Value>) -> Reply {
        let token = self.token().await;
        let version = format!("compute {mv}");
        let mut headers = vec![("X-Auth-Token", token.as_str())];
        if !mv.is_empty() {
            headers.push(("OpenStack-API-Version", version.as_str()));
        }
        self.call(method, &format!("/compute/v2.1{path}"), &headers, body)
            .await
    }

    pub async fn action(&self, id: &str, body: Value) -> Reply {
        self.nova(
            Method::POST,
            &format!("/servers/{id}/action"),
            "2.100",
            Some(&body),
        )
        .await
    }

    /// A Magnum call with a fresh token at `version` (e.g. "latest"; "" for none).
    pub async fn magnum(
        &self,
        method: Method,
        path: &str,
        version: &str,
        body: Option<&Value>,
    ) -> Reply {
        let token = self.token().await;
        let header = format!("container-infra {version}");
        let mut headers = vec![("X-Auth-Token", token.as_str())];
        if !version.is_empty() {
            headers.push(("OpenStack-API-Version", header.as_str()));
        }
        self.call(
            method,
            &format!("/container-infra/v1{path}"),
            &headers,
            body,
        )
        .await
    }

    pub fn server(&self, id: &str) -> ServerView {
        self.sim.server(id).expect("server exists")
    }

    /// Waits until the server satisfies `cond`; panics with its last state otherwise.
    pub async fn wait_server(
        &self,
        id: &str,
        what: &str,
        cond: impl Fn(Option<&ServerView>) -> bool,
    ) {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.sim.server(id);
            if cond(s.as_ref()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_status(&self, id: &str, status: &str) {
        self.wait_server(id, status, |s| {
            s.is_some_and(|s| s.status == status && s.task_state.is_none())
        })
        .await;
    }

    pub async fn wait_cluster(&self, id: &str, status: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let c = self.sim.cluster(id).expect("cluster");
            if c.status == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for cluster {status}: {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn fixture(path: &str) -> Value {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What of `fixture` is missing from `ours`: every key, recursively, with its JSON type.
/// A `null` on either side matches any type (the samples use null for "not set").
/// `opaque` paths (like `server.metadata`) hold free-form maps: only their type is checked.
/// Array elements of ours are each checked against the fixture's first element; an empty
/// array of ours cannot show its elements' keys, so it only passes if the fixture's is empty
/// too or the path is opaque.
pub fn missing(fixture: &Value, ours: &Value, opaque: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    walk(fixture, ours, opaque, "", &mut out);
    out
}

fn walk(f: &Value, o: &Value, opaque: &[&str], path: &str, out: &mut Vec<String>) {
    if f.is_null() || o.is_null() {
        return;
    }
    if kind(f) != kind(o) {
        out.push(format!(
            "{path}: {} in the fixture, {} in ours",
            kind(f),
            kind(o)
        ));
        return;
    }
    if opaque.contains(&path) {
        return;
    }
    match (f, o) {
        (Value::Object(fm), Value::Object(om)) => {
            for (k, fv) in fm {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match om.get(k) {
                    Some(ov) => walk(fv, ov, opaque, &p, out),
                    None => out.push(format!("{p}: missing")),
                }
            }
        }
        (Value::Array(fa), Value::Array(oa)) => {
            let Some(first) = fa.first() else { return };
            if oa.is_empty() {
                out.push(format!(
                    "{path}: empty in ours, cannot compare its elements"
                ));
            }
            for ov in oa {
                walk(first, ov, opaque, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

pub fn assert_covers(fixture_path: &str, ours: &Value, opaque: &[&str]) {
    let gaps = missing(&fixture(fixture_path), ours, opaque);
    assert!(
        gaps.is_empty(),
        "our response does not cover {fixture_path}:\n  {}\nours: {ours:#}",
        gaps.join("\n  ")
    );
}
