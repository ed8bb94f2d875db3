//! A simulator of the OpenStack APIs nodehealer uses — Keystone v3 (tokens and catalog),
//! Nova (servers, power actions, rebuild, shelve, delete) and Magnum (clusters, nodegroups, resize)
//! — so the operator's real OpenStack client can be tested on this machine, and the test
//! bed can tie each server's power to a simulated Kubernetes node.
//!
//! # The model
//!
//! One `State` (module `state`) behind a mutex holds identities, tokens, servers and clusters.
//! HTTP handlers (`keystone`, `nova`, `magnum`, `control`) turn requests into calls on it
//! and render its data in each service's published JSON shapes. Nova and Magnum accept an
//! action at once (202, as the real APIs do, because they hand the work to a compute host
//! or a conductor) and finish it later: each server carries its next step and when it is
//! due, and a clock task applies due steps (`State::tick`). So clients see what they would
//! see on a real cloud: `task_state: powering-off` on an ACTIVE server, then SHUTOFF; a
//! reboot's REBOOT status; a resize's UPDATE_IN_PROGRESS; and 409s for actions in the wrong
//! state.
//!
//! Besides Nova's own view, each server has what only the simulator knows: whether its
//! guest really runs ([`ServerView::running`]) and whether its hypervisor is down. Failures
//! are injected with [`Sim::crash_server`], [`Sim::host_down`], [`Sim::compute_host_down`],
//! [`Sim::refuse_power_off`] and [`Fault`]s (errors, latency, hangs), from Rust or through
//! the `/_sim` control endpoint. Nova's instance actions are recorded as Nova records them
//! (nova-api when it accepts an action, the compute host's events when it works on it; none
//! for a local delete) and kept after a server is deleted. [`Sim::watch_servers`] publishes a snapshot whenever a server changes, which
//! is what the test bed's kubelet link follows.
//!
//! # Routes (under [`Sim::base_url`])
//!
//! - `/identity/v3/auth/tokens` (POST, GET, DELETE), `/identity`, `/identity/v3`
//! - `/compute`, `/compute/v2.1`, `/compute/v2.1/servers[/detail]`,
//!   `/compute/v2.1/servers/{id}` (GET, DELETE), `/compute/v2.1/servers/{id}/action`,
//!   `/compute/v2.1/servers/{id}/os-instance-actions[/{request_id}]`; the same under
//!   `/regions/<region>` for each of [`SimConfig::extra_regions`]
//! - `/container-infra`, `/container-infra/v1`, `/container-infra/v1/clusters[/{id}]` (GET,
//!   PATCH), `.../clusters/{id}/nodegroups[/{ng}]`, `.../clusters/{id}/actions/resize`
//! - `/_sim/...`: see `control.rs`.
//!
//! Timed transitions need the clock, which [`Sim::serve`] starts on the caller's runtime.

#![forbid(unsafe_code)]

mod control;
mod faults;
mod keystone;
mod magnum;
mod magnum_conductor;
mod nova;
mod pyliteral;
mod requests;
mod state;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use tokio::sync::{Notify, watch};

pub use faults::{Fault, FaultKind, HANG_LIMIT, Service};
pub use requests::{LOG_LIMIT, LoggedRequest};
pub use state::{
    ActionEventView, BusyClusterPolicy, ClusterView, InstanceActionView, NewCluster, NewNodeGroup,
    NewServer, NodeGroupView, ServerView, power_state,
};

use state::State;

/// Nova's microversions served: 2.1 up to this minor version (`latest` means it).
pub const NOVA_MAX_MICROVERSION: &str = "2.100";
/// Magnum's API versions served: 1.1 up to this one.
pub const MAGNUM_MAX_VERSION: &str = "1.12";

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The first region: Keystone, Magnum and the Nova at `/compute/v2.1` are in it.
    pub region: String,
    /// More regions, each with a Nova of its own at `/regions/<region>/compute/v2.1` whose
    /// servers are its own (a server of one region is a 404 in another). Keystone lists the
    /// identity endpoint in each; Magnum is only in the first.
    pub extra_regions: Vec<String>,
    /// How long a Keystone token is valid.
    pub token_ttl: Duration,
    /// How long a Nova or Magnum transition takes (stop, start, reboot, rebuild, delete,
    /// build, a resize's stack update). Multi-step ones (reboot, rebuild) split it in two.
    pub transition_delay: Duration,
    /// How long Nova takes to notice a guest that died on its own (its power-state sync):
    /// until then a crashed server reads ACTIVE with power state SHUTDOWN. Zero: at once.
    pub power_sync_delay: Duration,
    /// What Magnum answers to a resize or PATCH while the cluster is `*_IN_PROGRESS`.
    pub busy_cluster_updates: BusyClusterPolicy,
    /// The availability zone servers report.
    pub availability_zone: String,
    /// Nova serves microversions 2.1 to 2.this (at most [`NOVA_MAX_MICROVERSION`]'s): a
    /// lower one plays an older Nova, which answers 406 to anything newer.
    pub nova_max_minor: u16,
    /// Magnum serves 1.1 to 1.this (at most [`MAGNUM_MAX_VERSION`]'s): a lower one plays an
    /// older Magnum.
    pub magnum_max_minor: u16,
    /// Play a policy that hides the `OS-EXT-STS:*` attributes (task, vm and power state) from
    /// the callers: servers are shown without them.
    pub hide_extended_status: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            region: "RegionOne".into(),
            extra_regions: Vec::new(),
            token_ttl: Duration::from_secs(3600),
            transition_delay: Duration::from_millis(300),
            power_sync_delay: Duration::ZERO,
            busy_cluster_updates: BusyClusterPolicy::default(),
            availability_zone: "nova".into(),
            nova_max_minor: nova::MAX_MINOR,
            magnum_max_minor: magnum::MAX_MINOR,
            hide_extended_status: false,
        }
    }
}

impl SimConfig {
    /// Every region, the first one first.
    pub fn regions(&self) -> Vec<String> {
        std::iter::once(self.region.clone())
            .chain(self.extra_regions.iter().cloned())
            .collect()
    }
}

/// Ids that stay the same for the life of a simulator: catalog services and endpoints,
/// roles.
pub(crate) struct Ids {
    pub services: [String; 3],
    /// By service (as `services`), region (as [`SimConfig::regions`]) and interface
    /// (public, internal, admin).
    pub endpoints: Vec<Vec<[String; 3]>>,
    pub roles: [String; 2],
}

impl Ids {
    fn new(regions: usize) -> Ids {
        let id = || uuid::Uuid::new_v4().simple().to_string();
        Ids {
            services: [id(), id(), id()],
            endpoints: (0..3)
                .map(|_| (0..regions).map(|_| [id(), id(), id()]).collect())
                .collect(),
            roles: [id(), id()],
        }
    }
}

struct Inner {
    config: SimConfig,
    state: Mutex<State>,
    servers_tx: watch::Sender<Arc<Vec<ServerView>>>,
    /// Wakes the clock when something new may be due.
    clock: Notify,
    clock_started: AtomicBool,
    base_url: OnceLock<String>,
    ids: Ids,
}

/// The simulator. Cheap to clone; every clone is the same cloud.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        let (servers_tx, _) = watch::channel(Arc::new(Vec::new()));
        Sim {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(config.clone())),
                config: config.clone(),
                servers_tx,
                clock: Notify::new(),
                clock_started: AtomicBool::new(false),
                base_url: OnceLock::new(),
                ids: Ids::new(config.regions().len()),
            }),
        }
    }

    /// Binds `addr` (port 0 picks a free one), spawns the HTTP server and the transition
    /// clock on the current tokio runtime, and returns the bound address.
    pub async fn serve(&self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        if self.inner.base_url.get().is_some() {
            bail!("the simulator is already serving on {}", self.base_url());
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the OpenStack simulator to {addr}"))?;
        let bound = listener.local_addr()?;
        let host = if bound.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            bound.ip().to_string()
        };
        let host = if bound.is_ipv6() && !bound.ip().is_unspecified() {
            format!("[{host}]")
        } else {
            host
        };
        let _ = self
            .inner
            .base_url
            .set(format!("http://{host}:{}", bound.port()));
        self.start_clock();
        let app = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the OpenStack simulator's server stopped: {e}");
            }
        });
        Ok(bound)
    }

    /// `http://127.0.0.1:PORT` once serving; empty before [`Sim::serve`].
    pub fn base_url(&self) -> String {
        self.inner.base_url.get().cloned().unwrap_or_default()
    }

    /// Keystone's v3 root, as a clouds.yaml `auth_url`.
    pub fn auth_url(&self) -> String {
        format!("{}/identity/v3", self.base_url())
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    // --- identity ------------------------------------------------------------------------

    /// Adds a project (or returns the id of the one with that name in that domain). The
    /// domain is given by name; `Default` is Keystone's `{id: default, name: Default}`.
    pub fn add_project(&self, name: &str, domain: &str) -> String {
        self.with_quiet(|st| st.add_project(name, domain))
    }

    /// Adds a user with the roles `member` and `reader` on `project_id`, which is also its
    /// default project (the scope of a token requested without one).
    pub fn add_user(&self, name: &str, password: &str, domain: &str, project_id: &str) -> String {
        self.with_quiet(|st| st.add_user(name, password, domain, project_id))
    }

    /// Adds a user with the `admin` role on `project_id`: Nova shows it (and lets it act on)
    /// the servers of every project, as it does a cloud admin.
    pub fn add_admin(&self, name: &str, password: &str, domain: &str, project_id: &str) -> String {
        self.with_quiet(|st| {
            let id = st.add_user(name, password, domain, project_id);
            if let Some(u) = st.users.get_mut(&id) {
                u.admin = true;
            }
            id
        })
    }

    /// Adds an application credential of `user_id`, bound to the user's project.
    ///
    /// # Panics
    /// If there is no such user: a mistake in the test's set-up.
    pub fn add_application_credential(&self, user_id: &str, name: &str, secret: &str) -> String {
        self.with_quiet(|st| st.add_application_credential(user_id, name, secret))
            .unwrap_or_else(|| panic!("add_application_credential: no user {user_id}"))
    }

    /// The application credential `id` expires now (its `expires_at` has passed): Keystone
    /// refuses it from then on. Tokens it issued before keep their own expiry.
    ///
    /// # Panics
    /// If there is no such credential: a mistake in the test's set-up.
    pub fn expire_application_credential(&self, id: &str) {
        let now = jiff::Timestamp::now();
        self.with_quiet(|st| st.app_creds.get_mut(id).map(|c| c.expires_at = Some(now)))
            .unwrap_or_else(|| panic!("expire_application_credential: no credential {id}"));
    }

    /// Every token issued so far expires now: the next Nova or Magnum call with one is a 401.
    pub fn expire_tokens(&self) {
        let now = jiff::Timestamp::now();
        self.with_quiet(|st| st.tokens.values_mut().for_each(|t| t.expires_at = now));
    }

    // --- compute -------------------------------------------------------------------------

    /// Creates an ACTIVE, running server (in `spec.region`, the first region if None), with
    /// its `create` instance action.
    ///
    /// # Panics
    /// If `spec.region` is not one of the simulator's regions: a mistake in the test's set-up.
    pub fn create_server(&self, spec: NewServer) -> String {
        let actor = state::Actor::internal(state::OPERATOR_USER);
        self.with(|st| st.create_server(spec, None, false, &actor))
    }

    /// The instance actions Nova holds for server `id` (deleted or not), oldest first,
    /// events included; None if Nova never knew it.
    pub fn instance_actions(&self, id: &str) -> Option<Vec<InstanceActionView>> {
        self.read(|st| {
            st.instance_actions(id)
                .map(|actions| actions.iter().map(|a| a.view()).collect())
        })
    }

    pub fn server(&self, id: &str) -> Option<ServerView> {
        self.read(|st| st.servers.get(id).map(|s| s.view()))
    }

    /// Every server, oldest first.
    pub fn servers(&self) -> Vec<ServerView> {
        self.read(|st| st.server_views())
    }

    /// A snapshot of every server that changes whenever one is created, changes status,
    /// task, power or host state, or is deleted (timed transitions included).
    pub fn watch_servers(&self) -> watch::Receiver<Arc<Vec<ServerView>>> {
        let rx = self.inner.servers_tx.subscribe();
        // Make sure the snapshot is current even if nothing changed since `new`.
        self.with(|_| ());
        rx
    }

    /// The guest dies: power off at once; Nova's power sync reports SHUTOFF (at once, or
    /// after [`SimConfig::power_sync_delay`]). Any transition in flight is abandoned.
    pub fn crash_server(&self, id: &str) {
        if !self.with(|st| st.crash_server(id, Instant::now())) {
            tracing::warn!(server = id, "crash_server: no such server");
        }
    }

    /// Someone shelves the server (`openstack server shelve`): Nova powers the guest off and,
    /// with its default `shelved_offload_time = 0`, offloads it: `SHELVED_OFFLOADED` after
    /// the usual transition delay. Returns Nova's refusal, e.g. for a server that is busy.
    pub fn shelve_server(&self, id: &str) -> Result<(), String> {
        let actor = state::Actor::internal(state::OPERATOR_USER);
        self.with(|st| st.server_action(id, state::ServerAction::Shelve, Instant::now(), &actor))
            .map_err(|e| e.to_string())
    }

    /// A Nova operation fails and leaves the server in ERROR (vm_state `error`); the
    /// guest's power is unchanged. The operation in progress (a delete too) stops there and
    /// its instance action event ends in `Error`. Stop, hard reboot, rebuild and delete are
    /// allowed from there, as in Nova.
    pub fn set_server_error(&self, id: &str) {
        if !self.with(|st| st.set_error(id)) {
            tracing::warn!(server = id, "set_server_error: no such server");
        }
    }

    /// The server's hypervisor fails (its nova-compute service is down): the guest no
    /// longer runs but Nova still says ACTIVE; actions are accepted, recorded as instance
    /// actions without an event, and never complete (e.g. `os-stop` stays in
    /// `powering-off`); DELETE is a local delete in nova-api: 404 at once, and no instance
    /// action recorded.
    pub fn host_down(&self, id: &str) {
        if !self.with(|st| st.set_host_down(id, true, Instant::now())) {
            tracing::warn!(server = id, "host_down: no such server");
        }
    }

    /// The hypervisor is back: the guest runs again if it was powered on, and a transition
    /// that was stuck completes after the usual delay.
    pub fn host_up(&self, id: &str) {
        if !self.with(|st| st.set_host_down(id, false, Instant::now())) {
            tracing::warn!(server = id, "host_up: no such server");
        }
    }

    /// Compute host `host` (servers report it in [`ServerView::host`]: `compute-0` ..
    /// `compute-2`) goes down, or comes back: [`Sim::host_down`] / [`Sim::host_up`] for every
    /// server on it, and no new server is placed there while it is down. Returns how many
    /// servers it holds.
    pub fn compute_host_down(&self, host: &str, down: bool) -> usize {
        self.with(|st| st.set_compute_host_down(host, down, Instant::now()))
    }

    /// While set, `os-stop` is accepted (202) but the server never leaves ACTIVE: after the
    /// transition delay the task ends and the guest still runs.
    pub fn refuse_power_off(&self, id: &str, refuse: bool) {
        if !self.with(|st| st.set_refuse_power_off(id, refuse)) {
            tracing::warn!(server = id, "refuse_power_off: no such server");
        }
    }

    // --- faults and the request log ------------------------------------------------------

    /// Adds a fault; returns its id.
    pub fn add_fault(&self, fault: Fault) -> u64 {
        self.with_quiet(|st| {
            let id = st.next_fault_id;
            st.next_fault_id += 1;
            st.faults.push((id, fault));
            id
        })
    }

    /// The faults still active, with their ids.
    pub fn faults(&self) -> Vec<(u64, Fault)> {
        self.read(|st| st.faults.clone())
    }

    pub fn clear_faults(&self) {
        self.with_quiet(|st| st.faults.clear());
    }

    /// Removes one fault (the others, of tests running alongside, stay).
    pub fn remove_fault(&self, id: u64) {
        self.with_quiet(|st| st.faults.retain(|(f, _)| *f != id));
    }

    /// Every API request so far, oldest first (control requests included; the newest
    /// [`LOG_LIMIT`] at most).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.read(|st| st.log.clone())
    }

    pub fn clear_request_log(&self) {
        self.with_quiet(|st| st.log.clear());
    }

    // --- container infra -----------------------------------------------------------------

    /// Creates a CREATE_COMPLETE cluster and its ACTIVE servers.
    pub fn create_cluster(&self, spec: NewCluster) -> String {
        self.with(|st| st.create_cluster(spec))
    }

    pub fn cluster(&self, id_or_name: &str) -> Option<ClusterView> {
        self.read(|st| st.find_cluster(id_or_name).ok().map(|c| st.cluster_view(c)))
    }

    /// Sets a cluster's status, e.g. `UPDATE_IN_PROGRESS` to make it busy.
    /// Sets (or with None removes) a label of a Magnum cluster, e.g. `auto_healing_enabled`.
    pub fn set_cluster_label(&self, id: &str, key: &str, value: Option<&str>) {
        let found = self.with(|st| {
            let uuid = st.find_cluster(id).ok()?.uuid.clone();
            let c = st.clusters.get_mut(&uuid)?;
            match value {
                Some(v) => c.labels.insert(key.to_string(), v.to_string()),
                None => c.labels.remove(key),
            };
            c.updated_at = Some(jiff::Timestamp::now());
            Some(())
        });
        if found.is_none() {
            tracing::warn!(cluster = id, "set_cluster_label: no such cluster");
        }
    }

    pub fn set_cluster_status(&self, id: &str, status: &str) {
        let found = self.with(|st| {
            let uuid = st.find_cluster(id).ok()?.uuid.clone();
            let c = st.clusters.get_mut(&uuid)?;
            c.status = status.to_string();
            c.updated_at = Some(jiff::Timestamp::now());
            Some(())
        });
        if found.is_none() {
            tracing::warn!(cluster = id, "set_cluster_status: no such cluster");
        }
    }

    // --- internals -----------------------------------------------------------------------

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as it was; keep serving.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn ids(&self) -> &Ids {
        &self.inner.ids
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the state, publishes the server snapshot if it changed, and wakes the clock
    /// (the change may have scheduled a step).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = {
            let mut st = self.lock();
            let r = f(&mut st);
            self.publish(&st);
            r
        };
        self.inner.clock.notify_one();
        r
    }

    /// Changes state that no server snapshot or clock depends on (identities, log, faults).
    pub(crate) fn with_quiet<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    fn publish(&self, st: &State) {
        let views = st.server_views();
        self.inner.servers_tx.send_if_modified(|current| {
            if **current == views {
                false
            } else {
                *current = Arc::new(views);
                true
            }
        });
    }

    fn start_clock(&self) {
        if self.inner.clock_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let sim = self.clone();
        tokio::spawn(async move {
            loop {
                let next = {
                    let mut st = sim.lock();
                    let next = st.tick(Instant::now());
                    sim.publish(&st);
                    next
                };
                // Nothing scheduled: sleep until a change wakes us.
                let wait = next
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    _ = tokio::time::sleep_until(wait) => {}
                    _ = sim.inner.clock.notified() => {}
                }
            }
        });
    }

    fn router(&self) -> Router {
        let routes = Router::new()
            .merge(keystone::router())
            .merge(nova::router(self.clone()))
            .merge(magnum::router(self.clone()))
            .merge(control::router())
            .fallback(requests::not_found)
            .with_state(self.clone());
        // `observe` wraps the routes rather than being their layer: it may rewrite an extra
        // region's path, which must happen before the routes are matched.
        Router::new()
            .fallback_service(routes)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                requests::observe,
            ))
    }
}

/// Time in the formats the services use.
pub(crate) mod time {
    use jiff::Timestamp;

    /// Nova's `created`/`updated`: `2013-09-03T04:01:32Z`.
    pub fn nova(t: Timestamp) -> String {
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// Nova's `OS-SRV-USG:launched_at`: `2013-09-23T13:37:00.880302` (no zone).
    pub fn nova_usage(t: Timestamp) -> String {
        t.strftime("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }

    /// Keystone's `expires_at`: `2015-11-07T02:58:43.578887Z`.
    pub fn keystone(t: Timestamp) -> String {
        t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    /// Magnum's `created_at`: `2016-08-29T06:51:31+00:00`.
    pub fn magnum(t: Timestamp) -> String {
        t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    }
}
