//! The two clouds the conformance suites (`tests/conformance_*.rs`) run the same test bodies
//! against: the OpenStack simulator (`openstack_sim::Sim`, in process) and a real OpenStack
//! (Keystone, Nova with the fake driver, Glance, Neutron, Placement, Magnum without Heat)
//! described by the `cloud.json` that `NODEHEALER_OPENSTACK` names (see README, "Conformance:
//! the simulator and a real OpenStack").
//!
//! A [`Target`] gives what a test needs and the two clouds do differently: clouds.yaml text
//! for both auth methods, the image and flavor, servers (REST on the real cloud, the
//! simulator's own API on the simulator), a compute host that goes down, a Magnum cluster,
//! the number of token requests. Everything else a test does goes through nodehealer's own
//! client or plain REST, identical on both.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use openstack_sim::{NewCluster, NewNodeGroup, NewServer, Service, Sim, SimConfig};
use serde_json::{Value, json};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// The variable naming the real cloud's `cloud.json`.
pub const REAL_CLOUD_ENV: &str = "NODEHEALER_OPENSTACK";

/// The name of the cloud in every clouds.yaml a target writes.
pub const CLOUD: &str = "conformance";

const SIM_PROJECT: &str = "kubernetes";
const SIM_USER: &str = "nodehealer";
const SIM_OTHER_PROJECT: &str = "other";
const SIM_OTHER_USER: &str = "other";
const SIM_IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
const SIM_REBUILD_IMAGE: &str = "a2459075-d96c-40d5-893e-577ff92e721c";
const SIM_FLAVOR: &str = "m1.small";

pub use nodehealer_testbed::realcloud::CloudJson;

/// Reads the real cloud's description; fails (never skips) when it is not given.
pub fn real_cloud_json() -> Result<CloudJson> {
    let path = std::env::var(REAL_CLOUD_ENV).map_err(|_| {
        anyhow::anyhow!(
            "{REAL_CLOUD_ENV} is not set: the `real` conformance tests run against a real \
             OpenStack and need the path of its cloud.json (`make openstack`, then \
             `e2e/openstack/start.sh --run-dir DIR` writes DIR/cloud.json; `make test` does \
             both). Run only the simulator's variants with `cargo test --test <suite> sim::`."
        )
    })?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{REAL_CLOUD_ENV}={path}: reading the cloud.json"))?;
    serde_json::from_str(&text).with_context(|| format!("{REAL_CLOUD_ENV}={path}: parsing"))
}

/// Taking a compute service down stops every server's actions on that host: the tests that
/// do it hold this exclusively, all the others of the binary share it.
fn computes_lock() -> Arc<RwLock<()>> {
    static LOCK: OnceLock<Arc<RwLock<()>>> = OnceLock::new();
    LOCK.get_or_init(|| Arc::new(RwLock::new(()))).clone()
}

/// One test at a time talks to the real Magnum: its API answers one request after another
/// (seconds each), and tests side by side made each other's calls time out.
pub async fn magnum_turn(t: &Target) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    static MAGNUM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    match t {
        Target::Sim(_) => None,
        Target::Real(_) => Some(MAGNUM.lock().await),
    }
}

enum ComputesGuard {
    Shared(OwnedRwLockReadGuard<()>),
    Exclusive(OwnedRwLockWriteGuard<()>),
}

/// A cloud the same test body runs against.
pub enum Target {
    Sim(SimTarget),
    // Boxed: the cloud.json and the proxy make it several times the simulator's size.
    Real(Box<RealTarget>),
}

pub struct SimTarget {
    pub sim: Sim,
    user_id: String,
    password: String,
    app_cred_id: String,
    app_cred_secret: String,
    other_project_id: String,
    other_password: String,
}

pub struct RealTarget {
    pub cloud: CloudJson,
    http: reqwest::Client,
    proxy: KeystoneProxy,
    /// Held until [`Target::cleanup`] (the target itself lives to the end of the test binary).
    computes: Mutex<Option<ComputesGuard>>,
    /// Servers this test booted (true: in the other project), deleted by [`Target::cleanup`].
    created: Mutex<Vec<(bool, String)>>,
}

/// A Magnum cluster made for a test.
#[derive(Clone, Debug)]
pub struct MagnumCluster {
    pub uuid: String,
    pub name: String,
    /// (server id, server name, role) of every node.
    pub servers: Vec<(String, String, String)>,
}

impl MagnumCluster {
    pub fn workers(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|(_, _, role)| role == "worker")
            .map(|(id, _, _)| id.clone())
            .collect()
    }
}

/// A server's state as a test observes it: (status, task_state).
pub type Seen = (String, Option<String>);

impl Target {
    /// The simulator, with transitions slow enough (200 ms a step) that a quick poll sees
    /// the intermediate states.
    pub async fn sim() -> Target {
        install_crypto();
        let sim = Sim::new(SimConfig {
            transition_delay: Duration::from_millis(200),
            ..SimConfig::default()
        });
        sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let project = sim.add_project(SIM_PROJECT, "Default");
        let password = random_hex();
        let user_id = sim.add_user(SIM_USER, &password, "Default", &project);
        let app_cred_secret = random_hex();
        let app_cred_id = sim.add_application_credential(&user_id, "healer", &app_cred_secret);
        let other_project_id = sim.add_project(SIM_OTHER_PROJECT, "Default");
        let other_password = random_hex();
        sim.add_user(
            SIM_OTHER_USER,
            &other_password,
            "Default",
            &other_project_id,
        );
        Target::Sim(SimTarget {
            sim,
            user_id,
            password,
            app_cred_id,
            app_cred_secret,
            other_project_id,
            other_password,
        })
    }

    /// The real OpenStack of `NODEHEALER_OPENSTACK`; panics with the reason when it is not
    /// given (a real variant never passes silently without its cloud).
    pub async fn real() -> Target {
        Self::real_with(false).await
    }

    /// [`Target::real`] for a test that takes a compute service down: no other test of the
    /// binary runs on the real cloud meanwhile.
    pub async fn real_exclusive() -> Target {
        Self::real_with(true).await
    }

    async fn real_with(exclusive: bool) -> Target {
        install_crypto();
        let cloud = real_cloud_json().unwrap_or_else(|e| panic!("{e:#}"));
        let computes = if exclusive {
            ComputesGuard::Exclusive(computes_lock().write_owned().await)
        } else {
            ComputesGuard::Shared(computes_lock().read_owned().await)
        };
        let proxy = KeystoneProxy::start(&cloud.auth_url)
            .await
            .unwrap_or_else(|e| panic!("starting the Keystone proxy: {e:#}"));
        Target::Real(Box::new(RealTarget {
            cloud,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            proxy,
            computes: Mutex::new(Some(computes)),
            created: Mutex::new(Vec::new()),
        }))
    }

    pub fn is_real(&self) -> bool {
        matches!(self, Target::Real(_))
    }

    /// A name no other test (nor another run on the same real cloud) uses.
    pub fn unique_name(prefix: &str) -> String {
        format!("conf-{prefix}-{}", &random_hex()[..8])
    }

    /// Keystone's v3 URL as the clients see it (on the real cloud: our counting proxy).
    pub fn auth_url(&self) -> String {
        match self {
            Target::Sim(t) => t.sim.auth_url(),
            Target::Real(t) => t.proxy.auth_url(),
        }
    }

    pub fn region(&self) -> String {
        match self {
            Target::Sim(t) => t.sim.config().region.clone(),
            Target::Real(t) => t.cloud.region.clone(),
        }
    }

    fn project_name(&self) -> String {
        match self {
            Target::Sim(_) => SIM_PROJECT.into(),
            Target::Real(t) => t.cloud.project.name.clone(),
        }
    }

    fn user_name(&self) -> String {
        match self {
            Target::Sim(_) => SIM_USER.into(),
            Target::Real(t) => t.cloud.user.name.clone(),
        }
    }

    pub fn password(&self) -> String {
        match self {
            Target::Sim(t) => t.password.clone(),
            Target::Real(t) => t.cloud.user.password.clone(),
        }
    }

    /// clouds.yaml for the operator's user with `password` (the right one: [`Target::password`]).
    pub fn password_yaml_with(&self, password: &str) -> String {
        format!(
            "clouds:\n  {CLOUD}:\n    auth:\n      auth_url: {}\n      username: {}\n      \
             password: \"{password}\"\n      project_name: {}\n      user_domain_name: \
             Default\n      project_domain_name: Default\n    region_name: {}\n",
            self.auth_url(),
            self.user_name(),
            self.project_name(),
            self.region(),
        )
    }

    pub fn password_yaml(&self) -> String {
        self.password_yaml_with(&self.password())
    }

    /// clouds.yaml with the application credential (by id).
    pub fn app_cred_yaml(&self) -> String {
        let (id, secret) = match self {
            Target::Sim(t) => (t.app_cred_id.clone(), t.app_cred_secret.clone()),
            Target::Real(t) => (
                t.cloud.application_credential.id.clone(),
                t.cloud.application_credential.secret.clone(),
            ),
        };
        format!(
            "clouds:\n  {CLOUD}:\n    auth_type: v3applicationcredential\n    auth:\n      \
             auth_url: {}\n      application_credential_id: {id}\n      \
             application_credential_secret: \"{secret}\"\n    region_name: {}\n",
            self.auth_url(),
            self.region(),
        )
    }

    pub fn image(&self) -> String {
        match self {
            Target::Sim(_) => SIM_IMAGE.into(),
            Target::Real(t) => t.cloud.image.clone(),
        }
    }

    pub fn rebuild_image(&self) -> String {
        match self {
            Target::Sim(_) => SIM_REBUILD_IMAGE.into(),
            Target::Real(t) => t.cloud.rebuild_image.clone(),
        }
    }

    pub fn flavor(&self) -> String {
        match self {
            Target::Sim(_) => SIM_FLAVOR.into(),
            Target::Real(t) => t.cloud.flavor.clone(),
        }
    }

    /// Nova's endpoint (the public one of the catalog).
    pub fn nova_url(&self) -> String {
        match self {
            Target::Sim(t) => format!("{}/compute/v2.1", t.sim.base_url()),
            Target::Real(t) => t.cloud.endpoints.compute.trim_end_matches('/').to_string(),
        }
    }

    /// Magnum's endpoint.
    pub fn magnum_url(&self) -> String {
        match self {
            Target::Sim(t) => format!("{}/container-infra/v1", t.sim.base_url()),
            Target::Real(t) => t
                .cloud
                .endpoints
                .container_infra
                .trim_end_matches('/')
                .to_string(),
        }
    }

    /// How many token requests (`POST /v3/auth/tokens`) clients have sent through
    /// [`Target::auth_url`] so far.
    pub fn token_requests(&self) -> usize {
        match self {
            Target::Sim(t) => t
                .sim
                .request_log()
                .iter()
                .filter(|r| {
                    r.service == Service::Keystone
                        && r.method == "POST"
                        && r.path.ends_with("/auth/tokens")
                })
                .count(),
            Target::Real(t) => t.proxy.token_requests(),
        }
    }

    /// Revokes every token clients got through [`Target::auth_url`]: the simulator's are
    /// expired, the real Keystone's deleted (`DELETE /v3/auth/tokens`).
    pub async fn revoke_tokens(&self) -> Result<()> {
        match self {
            Target::Sim(t) => {
                t.sim.expire_tokens();
                Ok(())
            }
            Target::Real(t) => {
                for token in t.proxy.tokens() {
                    let resp = t
                        .http
                        .delete(format!("{}/auth/tokens", t.cloud.auth_url))
                        .header("X-Auth-Token", &token)
                        .header("X-Subject-Token", &token)
                        .send()
                        .await?;
                    // 404: already revoked or expired.
                    if !resp.status().is_success() && resp.status().as_u16() != 404 {
                        bail!("revoking a token: {}", resp.status());
                    }
                }
                Ok(())
            }
        }
    }

    /// A project-scoped token for the operator's user, straight from Keystone (not counted).
    pub async fn token(&self) -> Result<String> {
        let (url, user, password, project) = match self {
            Target::Sim(t) => (
                t.sim.auth_url(),
                SIM_USER.to_string(),
                t.password.clone(),
                SIM_PROJECT.to_string(),
            ),
            Target::Real(t) => (
                t.cloud.auth_url.clone(),
                t.cloud.user.name.clone(),
                t.cloud.user.password.clone(),
                t.cloud.project.name.clone(),
            ),
        };
        password_token(&url, &user, &password, &project).await
    }

    async fn other_token(&self) -> Result<String> {
        match self {
            Target::Sim(t) => {
                password_token(
                    &t.sim.auth_url(),
                    SIM_OTHER_USER,
                    &t.other_password,
                    SIM_OTHER_PROJECT,
                )
                .await
            }
            Target::Real(t) => {
                password_token(
                    &t.cloud.auth_url,
                    &t.cloud.other.user,
                    &t.cloud.other.password,
                    &t.cloud.other.project,
                )
                .await
            }
        }
    }

    async fn admin_token(t: &RealTarget) -> Result<String> {
        password_token(
            &t.cloud.auth_url,
            &t.cloud.admin.user,
            &t.cloud.admin.password,
            &t.cloud.admin.project,
        )
        .await
    }

    /// Keystone's catalog for the operator's user: (service type, interface, region, url).
    pub async fn catalog(&self) -> Result<Vec<(String, String, String, String)>> {
        let url = match self {
            Target::Sim(t) => t.sim.auth_url(),
            Target::Real(t) => t.cloud.auth_url.clone(),
        };
        let body = password_auth_body(&self.user_name(), &self.password(), &self.project_name());
        let resp = reqwest::Client::new()
            .post(format!("{url}/auth/tokens"))
            .json(&body)
            .send()
            .await?;
        let token: Value = resp.error_for_status()?.json().await?;
        let mut out = Vec::new();
        for service in token["token"]["catalog"].as_array().into_iter().flatten() {
            let kind = service["type"].as_str().unwrap_or_default();
            for ep in service["endpoints"].as_array().into_iter().flatten() {
                out.push((
                    kind.to_string(),
                    ep["interface"].as_str().unwrap_or_default().to_string(),
                    ep["region_id"]
                        .as_str()
                        .or(ep["region"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                    ep["url"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        Ok(out)
    }

    /// Boots a server of the operator's project named `name` and waits until it is ACTIVE.
    pub async fn create_server(&self, name: &str) -> Result<String> {
        match self {
            Target::Sim(t) => Ok(t.sim.create_server(NewServer {
                name: name.into(),
                image_id: SIM_IMAGE.into(),
                flavor_id: SIM_FLAVOR.into(),
                ..Default::default()
            })),
            Target::Real(t) => {
                let token = self.token().await?;
                let id = self.boot(&token, name).await?;
                t.created.lock().unwrap().push((false, id.clone()));
                Ok(id)
            }
        }
    }

    /// Boots a server in the other project (one the operator's user cannot see).
    pub async fn create_other_projects_server(&self, name: &str) -> Result<String> {
        match self {
            Target::Sim(t) => Ok(t.sim.create_server(NewServer {
                name: name.into(),
                image_id: SIM_IMAGE.into(),
                flavor_id: SIM_FLAVOR.into(),
                project_id: Some(t.other_project_id.clone()),
                ..Default::default()
            })),
            Target::Real(t) => {
                let token = self.other_token().await?;
                let id = self.boot(&token, name).await?;
                t.created.lock().unwrap().push((true, id.clone()));
                Ok(id)
            }
        }
    }

    /// Deletes the other project's server `id` (the clean-up of
    /// [`Target::create_other_projects_server`]).
    pub async fn delete_other_projects_server(&self, id: &str) -> Result<()> {
        if let Target::Real(_) = self {
            let token = self.other_token().await?;
            self.delete_with(&token, id).await?;
        }
        Ok(())
    }

    async fn boot(&self, token: &str, name: &str) -> Result<String> {
        // No network: Neutron runs without agents (microversion 2.37 allows `none`).
        let body = json!({"server": {
            "name": name, "imageRef": self.image(), "flavorRef": self.flavor(),
            "networks": "none"
        }});
        let (status, answer) = self
            .rest(
                token,
                reqwest::Method::POST,
                &format!("{}/servers", self.nova_url()),
                Some(body),
                "compute 2.37",
            )
            .await?;
        if status != 202 {
            bail!("booting {name}: HTTP {status} {answer}");
        }
        let id = answer["server"]["id"]
            .as_str()
            .context("no server id in the boot answer")?
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, s) = self
                .rest(
                    token,
                    reqwest::Method::GET,
                    &format!("{}/servers/{id}", self.nova_url()),
                    None,
                    "compute 2.1",
                )
                .await?;
            let st = s["server"]["status"].as_str().unwrap_or_default();
            if status == 200 && st == "ACTIVE" && s["server"]["OS-EXT-STS:task_state"].is_null() {
                return Ok(id);
            }
            if st == "ERROR" {
                bail!("server {name} ({id}) went to ERROR: {s}");
            }
            if Instant::now() > deadline {
                bail!("server {name} ({id}) not ACTIVE within 120 s: {s}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes a server of the operator's project (clean-up: a 404 is fine).
    pub async fn delete_server(&self, id: &str) -> Result<()> {
        match self {
            Target::Sim(_) => Ok(()),
            Target::Real(_) => {
                let token = self.token().await?;
                self.delete_with(&token, id).await
            }
        }
    }

    async fn delete_with(&self, token: &str, id: &str) -> Result<()> {
        let (status, body) = self
            .rest(
                token,
                reqwest::Method::DELETE,
                &format!("{}/servers/{id}", self.nova_url()),
                None,
                "compute 2.1",
            )
            .await?;
        if status != 204 && status != 404 {
            bail!("deleting server {id}: HTTP {status} {body}");
        }
        Ok(())
    }

    /// Someone shelves the server (`openstack server shelve`); returns once Nova accepted it.
    pub async fn shelve(&self, id: &str) -> Result<()> {
        match self {
            Target::Sim(t) => t
                .sim
                .shelve_server(id)
                .map_err(|e| anyhow::anyhow!("shelving {id}: {e}")),
            Target::Real(_) => {
                let token = self.token().await?;
                let (status, body) = self
                    .rest(
                        &token,
                        reqwest::Method::POST,
                        &format!("{}/servers/{id}/action", self.nova_url()),
                        Some(json!({"shelve": null})),
                        "compute 2.1",
                    )
                    .await?;
                if status != 202 {
                    bail!("shelving {id}: HTTP {status} {body}");
                }
                Ok(())
            }
        }
    }

    /// The compute service of the server's host goes down (stopped and forced down, so a
    /// delete is a local delete). Returns the host, for [`Target::compute_up`].
    pub async fn compute_down(&self, server_id: &str) -> Result<String> {
        match self {
            Target::Sim(t) => {
                t.sim.host_down(server_id);
                Ok(server_id.to_string())
            }
            Target::Real(t) => {
                assert!(
                    matches!(
                        *t.computes.lock().unwrap(),
                        Some(ComputesGuard::Exclusive(_))
                    ),
                    "a test that takes a compute down needs Target::real_exclusive"
                );
                let admin = Self::admin_token(t).await?;
                let (status, s) = self
                    .rest(
                        &admin,
                        reqwest::Method::GET,
                        &format!("{}/servers/{server_id}", self.nova_url()),
                        None,
                        "compute 2.1",
                    )
                    .await?;
                if status != 200 {
                    bail!("admin show of {server_id}: HTTP {status} {s}");
                }
                let host = s["server"]["OS-EXT-SRV-ATTR:host"]
                    .as_str()
                    .context("no OS-EXT-SRV-ATTR:host for admin")?
                    .to_string();
                t.ctl(&["compute-down", &host]).await?;
                Ok(host)
            }
        }
    }

    /// Undoes [`Target::compute_down`] (`host` as it returned).
    pub async fn compute_up(&self, host: &str) -> Result<()> {
        match self {
            Target::Sim(t) => {
                t.sim.host_up(host);
                Ok(())
            }
            Target::Real(t) => t.ctl(&["compute-up", host]).await.map(drop),
        }
    }

    /// A Magnum cluster (CREATE_COMPLETE, `auto_healing_enabled=true` on the simulator)
    /// with `masters` control-plane nodes and `workers` workers in nodegroups
    /// `default-master` and `default-worker`.
    pub async fn magnum_cluster(
        &self,
        name: &str,
        masters: u32,
        workers: u32,
    ) -> Result<MagnumCluster> {
        match self {
            Target::Sim(t) => {
                let group = |name: &str, role: &str, count: u32| NewNodeGroup {
                    name: name.into(),
                    role: role.into(),
                    node_count: count,
                    image_id: SIM_IMAGE.into(),
                    flavor_id: SIM_FLAVOR.into(),
                };
                let uuid = t.sim.create_cluster(NewCluster {
                    name: name.into(),
                    labels: BTreeMap::from([(
                        "auto_healing_enabled".to_string(),
                        "true".to_string(),
                    )]),
                    nodegroups: vec![
                        group("default-master", "master", masters),
                        group("default-worker", "worker", workers),
                    ],
                });
                let view = t.sim.cluster(&uuid).context("the new cluster")?;
                let mut servers = Vec::new();
                for ng in &view.nodegroups {
                    for id in &ng.servers {
                        let s = t.sim.server(id).context("a cluster server")?;
                        servers.push((id.clone(), s.name, ng.role.clone()));
                    }
                }
                Ok(MagnumCluster {
                    uuid,
                    name: name.into(),
                    servers,
                })
            }
            Target::Real(t) => {
                let out = t
                    .ctl(&[
                        "magnum-cluster",
                        name,
                        "--masters",
                        &masters.to_string(),
                        "--workers",
                        &workers.to_string(),
                    ])
                    .await?;
                let uuid = out["uuid"].as_str().context("ctl: no uuid")?.to_string();
                let servers = out["servers"]
                    .as_array()
                    .context("ctl: no servers")?
                    .iter()
                    .map(|s| {
                        (
                            s["id"].as_str().unwrap_or_default().to_string(),
                            s["name"].as_str().unwrap_or_default().to_string(),
                            s["role"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect::<Vec<(String, String, String)>>();
                t.created
                    .lock()
                    .unwrap()
                    .extend(servers.iter().map(|(id, _, _)| (false, id.clone())));
                Ok(MagnumCluster {
                    uuid,
                    name: name.into(),
                    servers,
                })
            }
        }
    }

    /// Deletes every server the test booted on the real cloud (those already gone are fine).
    pub async fn cleanup(&self) -> Result<()> {
        let Target::Real(t) = self else {
            return Ok(());
        };
        let created = std::mem::take(&mut *t.created.lock().unwrap());
        let mut result = Ok(());
        for (other, id) in created {
            let token = if other {
                self.other_token().await
            } else {
                self.token().await
            };
            if let Err(e) = async { self.delete_with(&token?, &id).await }.await {
                result = Err(e);
            }
        }
        // Lets the binary's other real-cloud tests (or the one that needs them all) go on.
        drop(t.computes.lock().unwrap().take());
        result
    }

    /// Sets the cluster's status as Magnum's conductor would (a resize that failed, say).
    pub async fn set_cluster_status(&self, uuid: &str, status: &str) -> Result<()> {
        match self {
            Target::Sim(t) => {
                t.sim.set_cluster_status(uuid, status);
                Ok(())
            }
            Target::Real(t) => t.ctl(&["magnum-status", uuid, status]).await.map(drop),
        }
    }

    /// Deletes the cluster's servers (clean-up; the real Magnum cannot delete the cluster
    /// record without Heat).
    pub async fn delete_cluster_servers(&self, cluster: &MagnumCluster) -> Result<()> {
        for (id, _, _) in &cluster.servers {
            self.delete_server(id).await?;
        }
        Ok(())
    }

    /// Whether Magnum has Heat behind it: the simulator carries resizes out, the real
    /// cloud's Magnum accepts them and its conductor fails them.
    pub fn magnum_has_heat(&self) -> bool {
        match self {
            Target::Sim(_) => true,
            Target::Real(_) => false,
        }
    }

    /// A plain REST request with `token`; returns the status and the JSON body (Null when
    /// there is none).
    pub async fn rest(
        &self,
        token: &str,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
        api_version: &str,
    ) -> Result<(u16, Value)> {
        let mut req = reqwest::Client::new()
            .request(method.clone(), url)
            .header("X-Auth-Token", token)
            .header("OpenStack-API-Version", api_version)
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        Ok((status, value))
    }
}

impl RealTarget {
    /// Runs the cloud's `ctl` with `args`; its JSON answer.
    async fn ctl(&self, args: &[&str]) -> Result<Value> {
        let out = tokio::process::Command::new(&self.cloud.ctl)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", self.cloud.ctl.display()))?;
        if !out.status.success() {
            bail!(
                "ctl {args:?}: {}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(serde_json::from_str(text.trim()).unwrap_or(Value::Null))
    }
}

fn password_auth_body(user: &str, password: &str, project: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}
    }})
}

/// A project-scoped token from Keystone at `auth_url` (v3).
pub async fn password_token(
    auth_url: &str,
    user: &str,
    password: &str,
    project: &str,
) -> Result<String> {
    let resp = reqwest::Client::new()
        .post(format!("{auth_url}/auth/tokens"))
        .json(&password_auth_body(user, password, project))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("token for {user} in {project}: {}", resp.status());
    }
    Ok(resp
        .headers()
        .get("X-Subject-Token")
        .context("no X-Subject-Token")?
        .to_str()?
        .to_string())
}

/// Polls `look` every `every` until `done`; returns every distinct state seen, in order
/// (consecutive repeats folded), once `done` holds for them.
pub async fn observe<F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut look: F,
    done: impl Fn(&[Option<Seen>]) -> bool,
) -> Result<Vec<Option<Seen>>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<Seen>>>,
{
    let deadline = Instant::now() + timeout;
    let mut seen: Vec<Option<Seen>> = Vec::new();
    loop {
        let now = look().await?;
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if done(&seen) {
            return Ok(seen);
        }
        if Instant::now() > deadline {
            bail!("{what}: not done within {timeout:?}; seen {seen:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Whether `seen` is an in-order subsequence of `expected` (a quick poll may miss a short
/// state, never reorder them), with its last element `expected`'s last.
pub fn follows(seen: &[Option<Seen>], expected: &[Option<Seen>]) -> bool {
    let mut rest = expected.iter();
    for s in seen {
        if !rest.any(|e| e == s) {
            return false;
        }
    }
    seen.last() == expected.last()
}

/// `(status, task_state)` literal helper: `st("REBOOT", Some("rebooting"))`.
pub fn st(status: &str, task: Option<&str>) -> Option<Seen> {
    Some((status.to_string(), task.map(str::to_string)))
}

/// A pass-through proxy in front of the real Keystone that counts token requests and keeps
/// the tokens it hands out, so a test can count re-authentications and revoke the tokens a
/// client holds (nodehealer's client never shows its token).
pub struct KeystoneProxy {
    addr: std::net::SocketAddr,
    /// The path of the real auth_url after its origin (`/v3`, `/identity/v3`).
    path: String,
    state: Arc<Mutex<ProxyState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    token_requests: usize,
    tokens: Vec<String>,
}

impl Drop for KeystoneProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeystoneProxy {
    pub async fn start(auth_url: &str) -> Result<KeystoneProxy> {
        let parsed = reqwest::Url::parse(auth_url)?;
        let origin = parsed.origin().ascii_serialization();
        let path = parsed.path().trim_end_matches('/').to_string();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::new();
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let http = http.clone();
            let origin = origin.clone();
            let state = shared.clone();
            async move { forward(http, origin, state, req).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(KeystoneProxy {
            addr,
            path,
            state,
            task,
        })
    }

    pub fn auth_url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    pub fn tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.clone()
    }
}

async fn forward(
    http: reqwest::Client,
    origin: String,
    state: Arc<Mutex<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let is_token_request = method == axum::http::Method::POST && path.ends_with("/auth/tokens");
    let mut out = http.request(method, format!("{origin}{path}"));
    for (k, v) in req.headers() {
        if k != axum::http::header::HOST && k != axum::http::header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let body = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    if is_token_request {
        let mut st = state.lock().unwrap();
        st.token_requests += 1;
        if let Some(t) = headers.get("X-Subject-Token").and_then(|v| v.to_str().ok()) {
            st.tokens.push(t.to_string());
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut answer = axum::response::Response::new(axum::body::Body::from(bytes));
    *answer.status_mut() = status;
    for (k, v) in &headers {
        if k != axum::http::header::CONTENT_LENGTH && k != axum::http::header::TRANSFER_ENCODING {
            answer.headers_mut().append(k, v.clone());
        }
    }
    answer
}

/// 16 random hex digits (std's hasher keys are random per process and per call).
pub fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

/// reqwest is built without a TLS provider of its own: the process installs ring's.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
