//! The HTTP side of the backend: one `reqwest` client per cloud, the Keystone session shared
//! by every caller, and the one request loop every Nova and Magnum call goes through —
//! timeouts, retries, re-authentication, metrics, logs.
//!
//! # Retries
//!
//! Reads (`GET`) and the token request are retried on transient failures — 5xx, 429,
//! timeouts, connection errors — with capped exponential backoff and jitter, within
//! [`ClientOptions::max_attempts`] and [`ClientOptions::retry_budget`].
//!
//! Actions (stop, start, reboot, rebuild, delete, resize, PATCH) are **not** retried when the
//! outcome is ambiguous: after a timeout or a 5xx the request may have been carried out, and
//! the remediation step machine must never send one action twice for one step. It re-reads
//! the server and decides; [`CloudError::outcome_unknown`] tells it that it must. An action is
//! sent again by the client only when it certainly never arrived: the connection could not be
//! made, or the service refused the token (401) — then we re-authenticate once and resend.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::clouds::{CloudConfig, Secret};
use super::error::{CloudError, Result};
use super::keystone::{self, Session, TokenResponse};
use crate::metrics::Metrics;

/// Timeouts and retry limits. The defaults suit a controller that reconciles often: no
/// single call holds a reconcile for long.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// One HTTP request, from sending to the last byte of the answer.
    pub timeout: Duration,
    /// Establishing a connection (TCP and TLS); capped by `timeout`.
    pub connect_timeout: Duration,
    /// How many times a read (or the token request) is tried at most.
    pub max_attempts: u32,
    /// No retry starts once this long has passed since the first attempt.
    pub retry_budget: Duration,
    /// The first backoff; it doubles per retry up to `backoff_max`, with jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A token is replaced this long before it expires (at most half its lifetime).
    pub token_refresh_margin: Duration,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 4,
            retry_budget: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(4),
            token_refresh_margin: Duration::from_secs(120),
            user_agent: concat!("nodehealer/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A version of Nova's or Magnum's API: what the `OpenStack-API-Version` header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u16,
    pub minor: u16,
}

impl ApiVersion {
    pub const fn new(major: u16, minor: u16) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// `2.51`, `1.12`; None for anything else (`latest` included).
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(ApiVersion::new(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Nova microversion 2.1 is the base every Nova since Liberty serves, and has all we read of
/// servers: `status`, `OS-EXT-STS:task_state|vm_state|power_state`, `image.id`, `metadata`,
/// `updated`. Later microversions only add fields we do not use (2.47 embeds the flavor,
/// 2.98 adds image properties); `image.id` is in every version (and `image` is `""` for
/// servers booted from a volume, in every version too). Server calls and actions use it.
pub const NOVA_MICROVERSION: ApiVersion = ApiVersion::new(2, 1);
/// The instance actions calls need 2.51 (Pike), and nothing later: 2.21 lists the actions of
/// deleted servers, 2.51 shows a project member their events (without it only admins see
/// them). Later versions add paging (2.58) and host ids (2.62) we do not need. This is the
/// highest microversion we ever send; a Nova whose maximum is lower is told apart before
/// anything is sent ([`CloudError::Unsupported`]).
pub const NOVA_INSTANCE_ACTIONS_MICROVERSION: ApiVersion = ApiVersion::new(2, 51);
/// Magnum 1.9: resize (1.7) with `nodegroup`, and the nodegroups API (1.9). Train and later.
pub const MAGNUM_API_VERSION: ApiVersion = ApiVersion::new(1, 9);
/// What cluster show and the health PATCH need: Magnum's first microversion, the one it
/// serves without a header.
pub const MAGNUM_BASE_VERSION: ApiVersion = ApiVersion::new(1, 1);

/// The versions a service's endpoint serves, from its version document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VersionRange {
    min: ApiVersion,
    max: ApiVersion,
}

/// The services we talk to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Service {
    Nova,
    Magnum,
}

impl Service {
    pub(super) fn name(self) -> &'static str {
        match self {
            Service::Nova => "nova",
            Service::Magnum => "magnum",
        }
    }
    fn catalog_type(self) -> &'static str {
        match self {
            Service::Nova => "compute",
            Service::Magnum => "container-infra",
        }
    }
    /// The service's name in `OpenStack-API-Version`.
    fn header_name(self) -> &'static str {
        self.catalog_type()
    }
    /// The highest version any of our calls needs.
    fn highest_needed(self) -> ApiVersion {
        match self {
            Service::Nova => NOVA_INSTANCE_ACTIONS_MICROVERSION,
            Service::Magnum => MAGNUM_API_VERSION,
        }
    }
    /// What a call needs unless it says otherwise.
    fn base_version(self) -> ApiVersion {
        match self {
            Service::Nova => NOVA_MICROVERSION,
            Service::Magnum => MAGNUM_API_VERSION,
        }
    }
    /// Where the version document of `endpoint` is: Nova's `.../v2.1/` (the catalog may add
    /// a project id after it), Magnum's root before `/v1`.
    fn version_document(self, endpoint: &str) -> Option<String> {
        let trimmed = endpoint.trim_end_matches('/');
        let start = trimmed.find("://")? + 3;
        let (origin, path) = match trimmed[start..].find('/') {
            Some(i) => trimmed.split_at(start + i),
            None => (trimmed, ""),
        };
        let segments: Vec<&str> = path.split('/').collect();
        let (prefix, keep_it) = match self {
            Service::Nova => ("v2", true),
            Service::Magnum => ("v1", false),
        };
        let at = segments
            .iter()
            .rposition(|s| *s == prefix || s.starts_with(&format!("{prefix}.")))?;
        let end = if keep_it { at + 1 } else { at };
        Some(format!("{origin}{}/", segments[..end].join("/")))
    }
    /// The range a version document gives: Nova's `{"version": {"version", "min_version"}}`,
    /// Magnum's `{"versions": [{"id": "v1", "min_version", "max_version"}]}`.
    fn version_range(self, doc: &Value) -> Option<VersionRange> {
        let (entry, max_key) = match self {
            Service::Nova => (doc.get("version")?, "version"),
            Service::Magnum => (
                doc.get("versions")?
                    .as_array()?
                    .iter()
                    .find(|v| v.get("id").and_then(Value::as_str) == Some("v1"))?,
                "max_version",
            ),
        };
        let read = |key: &str| {
            entry
                .get(key)
                .and_then(Value::as_str)
                .and_then(ApiVersion::parse)
        };
        Some(VersionRange {
            min: read("min_version")?,
            max: read(max_key)?,
        })
    }
}

/// One Nova or Magnum request.
pub(super) struct Request {
    pub service: Service,
    /// The metric label and the name in messages, e.g. `server_stop`.
    pub operation: &'static str,
    /// The lowest version that has what the call sends and reads: the service's default
    /// unless the call says otherwise. What is sent is negotiated with the endpoint.
    pub needs: ApiVersion,
    /// What the call is best sent at, when the endpoint serves it (at least `needs`).
    pub prefers: ApiVersion,
    pub method: Method,
    /// Appended to the catalog endpoint; starts with `/`; segments already escaped.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl Request {
    pub fn get(service: Service, operation: &'static str, path: String) -> Request {
        Request {
            service,
            operation,
            needs: service.base_version(),
            prefers: service.base_version(),
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
        }
    }

    /// The same request needing another version.
    pub fn at(mut self, needs: ApiVersion) -> Request {
        self.needs = needs;
        self.prefers = needs;
        self
    }

    /// The same request, best sent at `prefers` where the endpoint serves it.
    pub fn preferring(mut self, prefers: ApiVersion) -> Request {
        self.prefers = prefers.max(self.needs);
        self
    }

    pub fn action(
        service: Service,
        operation: &'static str,
        method: Method,
        path: String,
        body: Option<Value>,
    ) -> Request {
        Request {
            service,
            operation,
            needs: service.base_version(),
            prefers: service.base_version(),
            method,
            path,
            query: Vec::new(),
            body,
        }
    }

    /// Reads may be sent again after any transient failure; actions may not.
    fn is_read(&self) -> bool {
        self.method == Method::GET
    }
}

/// A successful answer.
pub(super) struct Answer {
    pub body: Vec<u8>,
}

/// A raw answer or a transport failure, from one HTTP exchange.
struct Exchange {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Debug)]
struct Failure {
    /// Nothing reached the service: the connection could not be made.
    not_sent: bool,
    detail: String,
}

/// A region asked for instead of the clouds.yaml's.
#[derive(Clone, Debug)]
struct RegionOverride {
    clouds_yaml_region: Option<String>,
}

/// A cloud's client: Keystone session plus Nova and Magnum calls. Share it as
/// `Arc<dyn Cloud>`; every clone of the `Arc` uses the same token.
pub struct OpenStackClient {
    http: reqwest::Client,
    config: CloudConfig,
    /// Set when the region is not the clouds.yaml's but a node's (from its providerID): the
    /// clouds.yaml's own `region_name`, for messages.
    region_override: Option<RegionOverride>,
    identity_url: String,
    options: ClientOptions,
    metrics: Metrics,
    /// The current token. The lock is held while authenticating, so concurrent callers
    /// wait for one token instead of each asking Keystone for their own.
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// What each endpoint serves, by its version document's URL, read once: None when the
    /// document could not be read (then the needed version is sent as it is).
    versions: std::sync::Mutex<HashMap<String, Option<VersionRange>>>,
}

impl std::fmt::Debug for OpenStackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStackClient")
            .field("cloud", &self.config.name)
            .field("identity_url", &self.identity_url)
            .field("region", &self.config.region_name)
            .field("region_from_provider_id", &self.region_override.is_some())
            .field("interface", &self.config.interface)
            .finish_non_exhaustive()
    }
}

impl OpenStackClient {
    /// A client for `config`. Nothing is sent yet: the first call authenticates.
    pub fn new(config: CloudConfig, options: ClientOptions, metrics: Metrics) -> Result<Self> {
        // rustls with ring is the only provider compiled in; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let identity_url = keystone::identity_v3_url(&config.auth_url)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout.min(options.timeout))
            .user_agent(options.user_agent.clone());
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                CloudError::Config(format!(
                    "cloud {}: the CA bundle is not valid PEM: {e}",
                    config.name
                ))
            })?;
            if certs.is_empty() {
                return Err(CloudError::Config(format!(
                    "cloud {}: the CA bundle holds no certificate",
                    config.name
                )));
            }
            // As openstacksdk does with `cacert`: trust these CAs, and only these.
            builder = builder.tls_certs_only(certs);
        }
        if !config.verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| {
            // With a CA bundle, a certificate in it that does not parse is the usual cause.
            let hint = if config.ca_pem.is_some() {
                format!(" (check the CA bundle of cloud {})", config.name)
            } else {
                String::new()
            };
            CloudError::Config(format!(
                "cannot build the HTTP client{hint}: {}",
                error_chain(&e)
            ))
        })?;
        Ok(OpenStackClient {
            http,
            config,
            region_override: None,
            identity_url,
            options,
            metrics,
            session: tokio::sync::Mutex::new(None),
            versions: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// A client for `config` whose endpoints are those of `region` (a node's providerID
    /// names it), whatever `config.region_name` says: the server is where its providerID
    /// says, and one Keystone serves every region of a cloud.
    pub fn new_in_region(
        mut config: CloudConfig,
        region: &str,
        options: ClientOptions,
        metrics: Metrics,
    ) -> Result<Self> {
        let clouds_yaml_region = config.region_name.replace(region.to_string());
        if clouds_yaml_region.as_deref().is_some_and(|r| r != region) {
            tracing::debug!(
                cloud = %config.name,
                region,
                clouds_yaml_region = clouds_yaml_region.as_deref(),
                "using the providerID's region, not the clouds.yaml's"
            );
        }
        let mut client = OpenStackClient::new(config, options, metrics)?;
        client.region_override = Some(RegionOverride { clouds_yaml_region });
        Ok(client)
    }

    /// The cloud's configuration (its `Debug` hides the secrets).
    pub fn config(&self) -> &CloudConfig {
        &self.config
    }

    /// The region whose endpoints this client uses; None: the catalog's only one.
    pub fn region(&self) -> Option<&str> {
        self.config.region_name.as_deref()
    }

    /// `service_type`'s endpoint in our region; a miss says where the region came from.
    fn endpoint(&self, session: &Session, service_type: &str) -> Result<String> {
        keystone::select_endpoint(
            &session.catalog,
            service_type,
            self.config.interface,
            self.config.region_name.as_deref(),
        )
        .map_err(|e| match (e, &self.region_override) {
            (CloudError::EndpointMissing(message), Some(o)) => {
                CloudError::EndpointMissing(format!(
                    "{message}; the region is the one the node's providerID names{}",
                    o.clouds_yaml_region
                        .as_deref()
                        .map(|r| format!(" (cloud {} has region_name {r})", self.config.name))
                        .unwrap_or_default()
                ))
            }
            (e, _) => e,
        })
    }

    /// Gets a token now (or reuses the current one): checks the credentials and the catalog
    /// up front, e.g. when a Secret changes.
    pub async fn authenticate(&self) -> Result<()> {
        let session = self.session().await?;
        self.endpoint(&session, Service::Nova.catalog_type())
            .map(drop)
    }

    /// The current session, authenticating when there is none or it is about to expire.
    async fn session(&self) -> Result<Arc<Session>> {
        let mut current = self.session.lock().await;
        if let Some(s) = current.as_ref().filter(|s| s.fresh(Instant::now())) {
            return Ok(s.clone());
        }
        let fresh = Arc::new(self.new_session().await?);
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops `stale` after a service refused its token, unless someone already replaced it.
    async fn invalidate(&self, stale: &Arc<Session>) {
        let mut current = self.session.lock().await;
        if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *current = None;
        }
    }

    async fn new_session(&self) -> Result<Session> {
        const SERVICE: &str = "keystone";
        const OPERATION: &str = "auth";
        let url = format!("{}/auth/tokens", self.identity_url);
        let body = keystone::token_request(&self.config.credentials);
        let mut retry = Retry::new(&self.options);
        loop {
            let request = self
                .http
                .post(&url)
                .header(ACCEPT, "application/json")
                .json(&body);
            let outcome = self
                .exchange(SERVICE, OPERATION, &Method::POST, &url, request)
                .await;
            let answer = match outcome {
                Ok(a) => a,
                Err(failure) => {
                    if let Some(delay) = retry.next_delay() {
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(CloudError::Unavailable {
                        service: SERVICE,
                        operation: OPERATION,
                        status: None,
                        outcome_unknown: false,
                        detail: format!(
                            "Keystone at {} {}",
                            self.identity_url,
                            retry.after(&failure.detail)
                        ),
                    });
                }
            };
            let status = answer.status;
            if status.is_success() {
                let received = Instant::now();
                let token = answer
                    .headers
                    .get("X-Subject-Token")
                    .and_then(|v| v.to_str().ok())
                    .filter(|t| !t.is_empty())
                    .map(Secret::new)
                    .ok_or_else(|| CloudError::BadResponse {
                        service: SERVICE,
                        operation: OPERATION,
                        message: format!(
                            "HTTP {} without an X-Subject-Token header",
                            status.as_u16()
                        ),
                    })?;
                let parsed: TokenResponse = parse_json(SERVICE, OPERATION, &answer.body)?;
                return keystone::session(
                    token,
                    parsed.token,
                    received,
                    self.options.token_refresh_margin,
                )
                .map_err(|message| CloudError::BadResponse {
                    service: SERVICE,
                    operation: OPERATION,
                    message,
                });
            }
            let message = self.scrub(&service_message(&answer.body), None);
            if is_transient(status) {
                if let Some(delay) = retry.next_delay() {
                    tokio::time::sleep(delay).await;
                    continue;
                }
                return Err(CloudError::Unavailable {
                    service: SERVICE,
                    operation: OPERATION,
                    status: Some(status.as_u16()),
                    outcome_unknown: false,
                    detail: format!(
                        "Keystone at {} {}",
                        self.identity_url,
                        retry.after(&format!("answered HTTP {}: {message}", status.as_u16()))
                    ),
                });
            }
            if status == StatusCode::NOT_FOUND {
                return Err(CloudError::Config(format!(
                    "cloud {}: no Keystone v3 token API at {url} (HTTP 404); check auth_url",
                    self.config.name
                )));
            }
            return Err(CloudError::Auth {
                service: SERVICE,
                operation: OPERATION,
                status: Some(status.as_u16()),
                message: format!(
                    "Keystone at {} refused the {} credentials of cloud {}: {message}",
                    self.identity_url,
                    self.config.credentials.method(),
                    self.config.name
                ),
            });
        }
    }

    /// Sends a Nova or Magnum request; see the module doc for what is retried. Non-2xx
    /// answers come back as errors.
    pub(super) async fn call(&self, req: &Request) -> Result<Answer> {
        let service = req.service.name();
        let mut retry = Retry::new(&self.options);
        let mut reauthenticated = false;
        loop {
            let session = self.session().await?;
            let base = self.endpoint(&session, req.service.catalog_type())?;
            let version = self.version_for(req, &base, &session).await?;
            let url = format!("{base}{}", req.path);
            let mut builder = self
                .http
                .request(req.method.clone(), &url)
                .header("X-Auth-Token", session.token.expose())
                .header(
                    "OpenStack-API-Version",
                    format!("{} {version}", req.service.header_name()),
                )
                .header(ACCEPT, "application/json");
            if !req.query.is_empty() {
                builder = builder.query(&req.query);
            }
            if let Some(body) = &req.body {
                builder = builder.json(body);
            }
            let answer = match self
                .exchange(service, req.operation, &req.method, &url, builder)
                .await
            {
                Ok(answer) => answer,
                Err(failure) => {
                    if (req.is_read() || failure.not_sent)
                        && let Some(delay) = retry.next_delay()
                    {
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(CloudError::Unavailable {
                        service,
                        operation: req.operation,
                        status: None,
                        outcome_unknown: !req.is_read() && !failure.not_sent,
                        detail: retry.after(&failure.detail),
                    });
                }
            };
            let status = answer.status;
            if status.is_success() {
                return Ok(Answer { body: answer.body });
            }
            if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                // Keystone revoked or expired the token early: the service did not act.
                tracing::debug!(
                    service,
                    operation = req.operation,
                    "token refused; re-authenticating"
                );
                self.invalidate(&session).await;
                reauthenticated = true;
                continue;
            }
            let message = self.scrub(&service_message(&answer.body), Some(&session.token));
            if is_transient(status)
                && req.is_read()
                && let Some(delay) = retry.next_delay()
            {
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(status_error(
                req,
                version,
                status,
                if is_transient(status) {
                    retry.after(&message)
                } else {
                    message
                },
            ));
        }
    }

    /// The version to send for `req` to the endpoint `base`: what the call needs, or the
    /// endpoint's minimum if that is higher. The endpoint's range comes from its version
    /// document, read once per endpoint. A call that needs more than the endpoint's maximum
    /// is refused here, before anything is sent, saying what the cloud serves; an endpoint
    /// whose document cannot be read gets the needed version (a 406 then says it all).
    async fn version_for(
        &self,
        req: &Request,
        base: &str,
        session: &Session,
    ) -> Result<ApiVersion> {
        let Some(doc_url) = req.service.version_document(base) else {
            return Ok(req.prefers);
        };
        let cached = self.lock_versions().get(&doc_url).copied();
        let range = match cached {
            Some(range) => range,
            None => {
                let range = self.read_versions(req.service, &doc_url, session).await;
                match range {
                    Some(r) if r.max < req.service.highest_needed() => {
                        tracing::warn!(
                            service = req.service.name(),
                            endpoint = %doc_url,
                            max = %r.max,
                            needed = %req.service.highest_needed(),
                            "the cloud's API is older than what nodehealer uses: the calls that need more are refused"
                        );
                    }
                    Some(r) => tracing::debug!(
                        service = req.service.name(),
                        endpoint = %doc_url,
                        min = %r.min,
                        max = %r.max,
                        "API versions negotiated"
                    ),
                    None => tracing::debug!(
                        service = req.service.name(),
                        endpoint = %doc_url,
                        "no version document: sending each call's version as it is"
                    ),
                }
                self.lock_versions().insert(doc_url.clone(), range);
                range
            }
        };
        let Some(range) = range else {
            return Ok(req.prefers);
        };
        if req.prefers > range.max && req.needs <= range.max {
            tracing::debug!(
                service = req.service.name(),
                operation = req.operation,
                prefers = %req.prefers,
                max = %range.max,
                "sending the endpoint's maximum version instead of the preferred one"
            );
        }
        if req.needs > range.max {
            let name = req.service.header_name();
            tracing::warn!(
                service = req.service.name(),
                operation = req.operation,
                needs = %req.needs,
                max = %range.max,
                "the cloud's API is too old for this call; not sent"
            );
            return Err(CloudError::Unsupported {
                service: req.service.name(),
                operation: req.operation,
                message: format!(
                    "{} needs {name} {}, and {doc_url} serves {name} {} to {}: nothing was sent",
                    req.operation, req.needs, range.min, range.max
                ),
            });
        }
        Ok(req.prefers.min(range.max).max(req.needs).max(range.min))
    }

    fn lock_versions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<VersionRange>>> {
        // A panic while holding it leaves a map that is still right.
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `GET` of a version document (with our token: some deployments put it behind
    /// authentication); None when it cannot be read or understood.
    async fn read_versions(
        &self,
        service: Service,
        url: &str,
        session: &Session,
    ) -> Option<VersionRange> {
        let request = self
            .http
            .get(url)
            .header("X-Auth-Token", session.token.expose())
            .header(ACCEPT, "application/json");
        let answer = self
            .exchange(service.name(), "versions", &Method::GET, url, request)
            .await
            .ok()?;
        if !answer.status.is_success() {
            return None;
        }
        let doc: Value = serde_json::from_slice(&answer.body).ok()?;
        service.version_range(&doc)
    }

    /// One HTTP exchange: sends, reads the whole answer, counts it, logs it (without headers
    /// or bodies, so without tokens or passwords).
    async fn exchange(
        &self,
        service: &'static str,
        operation: &'static str,
        method: &Method,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> std::result::Result<Exchange, Failure> {
        let started = Instant::now();
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Exchange {
                status,
                headers,
                body,
            })
        }
        .await;
        let elapsed = started.elapsed();
        match result {
            Ok(exchange) => {
                let outcome = if exchange.status.is_server_error() {
                    "server_error"
                } else if exchange.status.is_client_error() {
                    "client_error"
                } else {
                    "ok"
                };
                self.metrics
                    .openstack_request(service, operation, outcome, elapsed);
                tracing::debug!(
                    service,
                    operation,
                    %method,
                    url,
                    status = exchange.status.as_u16(),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "OpenStack request"
                );
                Ok(exchange)
            }
            Err(e) => {
                let (outcome, detail) = if e.is_timeout() {
                    (
                        "timeout",
                        format!("no answer within {:?}", self.options.timeout),
                    )
                } else if e.is_connect() {
                    (
                        "connect_error",
                        format!("cannot connect: {}", error_chain(&e)),
                    )
                } else {
                    ("transport_error", error_chain(&e))
                };
                self.metrics
                    .openstack_request(service, operation, outcome, elapsed);
                tracing::debug!(
                    service,
                    operation,
                    %method,
                    url,
                    outcome,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "OpenStack request failed"
                );
                Err(Failure {
                    not_sent: e.is_connect(),
                    detail: self.scrub(&detail, None),
                })
            }
        }
    }

    /// Removes our secrets from text that came from elsewhere (a service's error message).
    fn scrub(&self, text: &str, token: Option<&Secret>) -> String {
        let mut out = text.to_string();
        let secrets = [Some(self.config.credentials.secret()), token];
        for secret in secrets.into_iter().flatten() {
            if !secret.expose().is_empty() {
                out = out.replace(secret.expose(), "***");
            }
        }
        out
    }
}

fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// The error for a non-2xx answer (after re-authentication and retries).
fn status_error(
    req: &Request,
    version: ApiVersion,
    status: StatusCode,
    message: String,
) -> CloudError {
    let service = req.service.name();
    let operation = req.operation;
    match status.as_u16() {
        401 => CloudError::Auth {
            service,
            operation,
            status: Some(401),
            message: format!("a fresh token was refused too: {message}"),
        },
        404 => CloudError::NotFound {
            service,
            operation,
            message,
        },
        409 => CloudError::Conflict {
            service,
            operation,
            message,
        },
        // Nova and Magnum answer 406 to a microversion they do not serve.
        406 => CloudError::Unsupported {
            service,
            operation,
            message: format!(
                "the service does not serve {} {version}: {message}",
                req.service.header_name()
            ),
        },
        s if is_transient(status) => CloudError::Unavailable {
            service,
            operation,
            status: Some(s),
            // A 5xx may come after the service acted; a 429 is a refusal before it did.
            outcome_unknown: !req.is_read() && status.is_server_error(),
            detail: message,
        },
        s if status.is_client_error() => CloudError::Rejected {
            service,
            operation,
            status: s,
            message,
        },
        s => CloudError::BadResponse {
            service,
            operation,
            message: format!("unexpected HTTP {s}: {message}"),
        },
    }
}

/// Reads a JSON body into `T`.
pub(super) fn parse_json<T: DeserializeOwned>(
    service: &'static str,
    operation: &'static str,
    body: &[u8],
) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| CloudError::BadResponse {
        service,
        operation,
        message: format!("cannot read the JSON answer: {e}"),
    })
}

const MESSAGE_LIMIT: usize = 300;

/// The message of an OpenStack error body: Keystone `{"error": {"message"}}`, Nova
/// `{"<fault>": {"message"}}`, Magnum `{"errors": [{"detail"}]}`; else the start of the text.
pub(super) fn service_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        if let Some(first) = v.get("errors").and_then(|e| e.get(0)) {
            // Magnum's microversion refusal keeps webob's `description` instead of `detail`.
            return first
                .get("detail")
                .or_else(|| first.get("description"))
                .or_else(|| first.get("title"))
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        let object = v.as_object()?;
        object.values().find_map(|inner| {
            inner
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    });
    let text = from_json.unwrap_or_else(|| {
        String::from_utf8_lossy(body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    });
    let text = if text.is_empty() {
        "no message".to_string()
    } else {
        text
    };
    if text.chars().count() > MESSAGE_LIMIT {
        let cut: String = text.chars().take(MESSAGE_LIMIT).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// An error with its sources: reqwest's own message is only "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Attempts and backoff for one call.
struct Retry<'a> {
    options: &'a ClientOptions,
    attempts: u32,
    started: Instant,
}

impl<'a> Retry<'a> {
    fn new(options: &'a ClientOptions) -> Self {
        Retry {
            options,
            attempts: 1,
            started: Instant::now(),
        }
    }

    /// The wait before the next attempt, or None when the attempts or the budget are spent.
    fn next_delay(&mut self) -> Option<Duration> {
        if self.attempts >= self.options.max_attempts {
            return None;
        }
        let exp = self
            .options
            .backoff_initial
            .saturating_mul(1 << (self.attempts - 1).min(16));
        let cap = exp.min(self.options.backoff_max);
        // "Equal jitter": half the backoff, plus a random part of the other half, so callers
        // that failed together do not come back together.
        let delay = cap / 2 + cap.mul_f64(jitter() / 2.0);
        if self.started.elapsed() + delay > self.options.retry_budget {
            return None;
        }
        self.attempts += 1;
        Some(delay)
    }

    /// `detail`, saying how many attempts it took when there were several.
    fn after(&self, detail: &str) -> String {
        if self.attempts > 1 {
            format!("{detail} (after {} attempts)", self.attempts)
        } else {
            detail.to_string()
        }
    }
}

/// A number in [0, 1): std's randomly keyed hasher is random enough for jitter.
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Escapes one path segment (an id or a name from elsewhere).
pub(super) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_messages_in_each_shape() {
        assert_eq!(
            service_message(
                br#"{"itemNotFound": {"code": 404, "message": "Instance x could not be found."}}"#
            ),
            "Instance x could not be found."
        );
        assert_eq!(
            service_message(br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#),
            "The request you have made requires authentication."
        );
        assert_eq!(
            service_message(br#"{"errors": [{"status": 409, "title": "Conflict", "detail": "Updating a cluster when status is \"UPDATE_IN_PROGRESS\" is not supported."}]}"#),
            "Updating a cluster when status is \"UPDATE_IN_PROGRESS\" is not supported."
        );
        assert_eq!(
            service_message(b"<html>\n<body>502 Bad Gateway</body>\n</html>"),
            "<html> <body>502 Bad Gateway</body> </html>"
        );
        assert_eq!(service_message(b""), "no message");
        assert!(service_message("x".repeat(1000).as_bytes()).ends_with('…'));
    }

    #[test]
    fn backoff_grows_capped_and_stops_at_the_limits() {
        let options = ClientOptions {
            max_attempts: 6,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            retry_budget: Duration::from_secs(60),
            ..Default::default()
        };
        let mut retry = Retry::new(&options);
        let delays: Vec<Duration> = std::iter::from_fn(|| retry.next_delay()).collect();
        assert_eq!(delays.len(), 5);
        let bounds = [(50, 100), (100, 200), (150, 300), (150, 300), (150, 300)];
        for (d, (lo, hi)) in delays.iter().zip(bounds) {
            assert!(
                *d >= Duration::from_millis(lo) && *d <= Duration::from_millis(hi),
                "{d:?}"
            );
        }
        let tight = ClientOptions {
            retry_budget: Duration::from_millis(10),
            backoff_initial: Duration::from_millis(100),
            ..Default::default()
        };
        assert_eq!(Retry::new(&tight).next_delay(), None);
    }

    #[test]
    fn a_ca_bundle_that_is_not_pem_is_a_config_error() {
        let yaml = "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: p\n      project_id: x\n";
        for pem in [&b"not a certificate"[..], b""] {
            let config = CloudConfig::from_clouds_yaml(yaml, "c", Some(pem.to_vec())).unwrap();
            let e = OpenStackClient::new(config, ClientOptions::default(), Metrics::default())
                .unwrap_err();
            assert!(matches!(e, CloudError::Config(_)), "{e:?}");
            assert!(e.to_string().contains("cloud c: the CA bundle"), "{e}");
        }
    }

    #[test]
    fn version_documents_are_found_from_the_catalog_endpoints() {
        let nova = |e: &str| Service::Nova.version_document(e);
        assert_eq!(
            nova("http://127.0.0.1:8774/v2.1").as_deref(),
            Some("http://127.0.0.1:8774/v2.1/")
        );
        assert_eq!(
            nova("https://cloud/compute/v2.1/8a2b9c/").as_deref(),
            Some("https://cloud/compute/v2.1/"),
            "a project id after the version"
        );
        assert_eq!(nova("https://cloud/compute"), None);
        let magnum = |e: &str| Service::Magnum.version_document(e);
        assert_eq!(
            magnum("http://127.0.0.1:9511/v1").as_deref(),
            Some("http://127.0.0.1:9511/")
        );
        assert_eq!(
            magnum("https://cloud/container-infra/v1/").as_deref(),
            Some("https://cloud/container-infra/")
        );
        let range = |service: Service, doc: Value| service.version_range(&doc);
        assert_eq!(
            range(
                Service::Nova,
                serde_json::json!({"version": {"id": "v2.1", "version": "2.100", "min_version": "2.1"}})
            ),
            Some(VersionRange {
                min: ApiVersion::new(2, 1),
                max: ApiVersion::new(2, 100)
            })
        );
        assert_eq!(
            range(
                Service::Magnum,
                serde_json::json!({"versions": [{"id": "v1", "min_version": "1.1", "max_version": "1.12"}]})
            )
            .map(|r| r.max),
            Some(ApiVersion::new(1, 12))
        );
        // A Nova before microversions (`version` empty) gives no range: nothing is assumed.
        assert_eq!(
            range(
                Service::Nova,
                serde_json::json!({"version": {"version": "", "min_version": ""}})
            ),
            None
        );
        assert!(ApiVersion::new(2, 51) > ApiVersion::new(2, 9));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("8a2b-x_y.z~"), "8a2b-x_y.z~");
        assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
    }
}
