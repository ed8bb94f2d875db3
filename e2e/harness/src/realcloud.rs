//! A real OpenStack as the test bed's cloud: the `cloud.json` that `e2e/openstack/start.sh`
//! writes (see the README's conformance section), plain REST to its Keystone and Nova, and
//! the server list the link polls (the simulator pushes its changes; a real Nova is asked a
//! few times a second).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use openstack_sim::ServerView;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// The real cloud's `cloud.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct CloudJson {
    pub auth_url: String,
    pub region: String,
    pub domain: String,
    pub project: NamedId,
    pub user: User,
    pub application_credential: AppCred,
    pub other: OtherIdentity,
    pub admin: AdminIdentity,
    pub image: String,
    pub rebuild_image: String,
    pub flavor: String,
    pub computes: Vec<String>,
    pub endpoints: Endpoints,
    pub ctl: PathBuf,
    #[serde(default)]
    pub run_dir: Option<String>,
    #[serde(default)]
    pub logs: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct NamedId {
    pub name: String,
    pub id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct User {
    pub name: String,
    pub id: String,
    pub password: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AppCred {
    pub id: String,
    pub secret: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct OtherIdentity {
    pub project: String,
    pub project_id: String,
    pub user: String,
    pub password: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AdminIdentity {
    pub user: String,
    pub password: String,
    pub project: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Endpoints {
    pub compute: String,
    #[serde(rename = "container-infra")]
    pub container_infra: String,
}

impl CloudJson {
    pub fn read(path: &Path) -> Result<CloudJson> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn nova_url(&self) -> String {
        self.endpoints.compute.trim_end_matches('/').to_string()
    }

    /// A clouds.yaml with one cloud, `cloud`, for the operator's user (password auth).
    pub fn clouds_yaml(&self, cloud: &str) -> String {
        format!(
            "clouds:
  {cloud}:
    auth:
      auth_url: {auth}
      username: {user}
      password: \"{password}\"
      project_name: {project}
      user_domain_name: {domain}
      project_domain_name: {domain}
    region_name: {region}
    interface: public
    identity_api_version: 3
",
            auth = self.auth_url,
            user = self.user.name,
            password = self.user.password,
            project = self.project.name,
            domain = self.domain,
            region = self.region,
        )
    }
}

/// Nova of the real cloud, as the operator's user.
#[derive(Clone)]
pub struct RealCloud {
    pub cloud: Arc<CloudJson>,
    http: reqwest::Client,
    token: Arc<Mutex<Option<(String, Instant)>>>,
    /// Server id → (Nova's `updated`, its instance actions' counts), so a server's actions
    /// are read again only when it changed.
    actions: Arc<std::sync::Mutex<BTreeMap<String, (String, ActionCounts)>>>,
    /// Server id → (its last status read, how many times it was seen entering
    /// `HARD_REBOOT`): Nova's actions say `reboot` for both kinds, its status tells them apart
    /// (set by nova-api before it answers 202, so a poll sees it).
    hard: Arc<std::sync::Mutex<BTreeMap<String, (String, u32)>>>,
}

/// How often each kind of boot was asked for (from Nova's instance actions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionCounts {
    pub starts: u32,
    pub reboots: u32,
    /// Of `reboots`, those seen as hard (the server seen `HARD_REBOOT`).
    pub hard_reboots: u32,
    pub rebuilds: u32,
    pub unshelves: u32,
}

/// Tokens are reused this long (Keystone's default life is an hour).
const TOKEN_REUSE: Duration = Duration::from_secs(600);

impl RealCloud {
    pub fn new(cloud: CloudJson) -> RealCloud {
        RealCloud {
            cloud: Arc::new(cloud),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            token: Arc::new(Mutex::new(None)),
            actions: Arc::default(),
            hard: Arc::default(),
        }
    }

    /// A token of the operator's user (cached; `fresh` forces a new one after a 401).
    pub async fn token(&self, fresh: bool) -> Result<String> {
        let mut cached = self.token.lock().await;
        if !fresh && let Some((t, _)) = cached.as_ref().filter(|(_, at)| at.elapsed() < TOKEN_REUSE)
        {
            return Ok(t.clone());
        }
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.cloud.user.name, "domain": {"name": self.cloud.domain},
                "password": self.cloud.user.password}}},
            "scope": {"project": {"name": self.cloud.project.name,
                "domain": {"name": self.cloud.domain}}}
        }});
        let resp = self
            .http
            .post(format!("{}/auth/tokens", self.cloud.auth_url))
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("Keystone refused the operator's user: {}", resp.status());
        }
        let token = resp
            .headers()
            .get("X-Subject-Token")
            .context("no X-Subject-Token")?
            .to_str()?
            .to_string();
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    /// A Nova request as the operator's user: (status, JSON body or Null).
    pub async fn nova(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        microversion: &str,
    ) -> Result<(u16, Value)> {
        for fresh in [false, true] {
            let token = self.token(fresh).await?;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.cloud.nova_url()))
                .header("X-Auth-Token", token)
                .header("OpenStack-API-Version", microversion);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = resp.status().as_u16();
            if status == 401 && !fresh {
                continue;
            }
            let text = resp.text().await?;
            let value = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
                Value::Null
            } else {
                Value::String(text)
            });
            return Ok((status, value));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Boots a plain server (no network: Neutron runs without agents) with `metadata`;
    /// returns its id at once (it is BUILD).
    pub async fn boot(&self, name: &str, metadata: &BTreeMap<String, String>) -> Result<String> {
        let body = json!({"server": {
            "name": name, "imageRef": self.cloud.image, "flavorRef": self.cloud.flavor,
            "networks": "none", "metadata": metadata
        }});
        let (status, answer) = self
            .nova(
                reqwest::Method::POST,
                "/servers",
                Some(body),
                "compute 2.37",
            )
            .await?;
        if status != 202 {
            bail!("booting {name}: HTTP {status} {answer}");
        }
        Ok(answer["server"]["id"]
            .as_str()
            .context("no server id in the boot answer")?
            .to_string())
    }

    /// Sends a server action (`{"os-stop": null}`, ...); fails unless Nova accepts it.
    pub async fn action(&self, id: &str, body: Value) -> Result<()> {
        let (status, answer) = self
            .nova(
                reqwest::Method::POST,
                &format!("/servers/{id}/action"),
                Some(body.clone()),
                "compute 2.1",
            )
            .await?;
        if status != 202 {
            bail!("{body} on {id}: HTTP {status} {answer}");
        }
        Ok(())
    }

    /// Deletes a server; one already gone is fine.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let (status, answer) = self
            .nova(
                reqwest::Method::DELETE,
                &format!("/servers/{id}"),
                None,
                "compute 2.1",
            )
            .await?;
        if status != 204 && status != 404 {
            bail!("deleting {id}: HTTP {status} {answer}");
        }
        Ok(())
    }

    /// The server, None on 404.
    pub async fn server(&self, id: &str) -> Result<Option<ServerView>> {
        let (status, answer) = self
            .nova(
                reqwest::Method::GET,
                &format!("/servers/{id}"),
                None,
                "compute 2.1",
            )
            .await?;
        match status {
            200 => {
                let counts = self.counts(&answer["server"]).await?;
                Ok(Some(view(&answer["server"], &self.cloud.region, counts)))
            }
            404 => Ok(None),
            other => bail!("server {id}: HTTP {other} {answer}"),
        }
    }

    /// The project's servers that `wanted` picks (by id), with their boot counts (the
    /// project may hold many others: another test's, another user's).
    pub async fn servers(&self, wanted: impl Fn(&str) -> bool) -> Result<Vec<ServerView>> {
        let (status, answer) = self
            .nova(reqwest::Method::GET, "/servers/detail", None, "compute 2.1")
            .await?;
        if status != 200 {
            bail!("server list: HTTP {status} {answer}");
        }
        let mut out = Vec::new();
        for s in answer["servers"].as_array().into_iter().flatten() {
            if !wanted(s["id"].as_str().unwrap_or_default()) {
                continue;
            }
            let counts = self.counts(s).await?;
            out.push(view(s, &self.cloud.region, counts));
        }
        Ok(out)
    }

    /// The server's instance actions, oldest first (deleted servers too, from 2.21).
    pub async fn instance_actions(&self, id: &str) -> Result<Vec<String>> {
        let (status, answer) = self
            .nova(
                reqwest::Method::GET,
                &format!("/servers/{id}/os-instance-actions"),
                None,
                "compute 2.21",
            )
            .await?;
        if status != 200 {
            bail!("instance actions of {id}: HTTP {status} {answer}");
        }
        let mut actions: Vec<String> = answer["instanceActions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["action"].as_str().map(str::to_string))
            .collect();
        // Nova lists the newest first.
        actions.reverse();
        Ok(actions)
    }

    async fn counts(&self, server: &Value) -> Result<ActionCounts> {
        let id = server["id"].as_str().unwrap_or_default().to_string();
        let status = server["status"].as_str().unwrap_or_default().to_string();
        let hard_reboots = {
            let mut hard = self.hard.lock().expect("hard lock");
            let entry = hard.entry(id.clone()).or_default();
            if status == "HARD_REBOOT" && entry.0 != "HARD_REBOOT" {
                entry.1 += 1;
            }
            entry.0 = status;
            entry.1
        };
        let mut counts = self.action_counts(&id, server).await?;
        counts.hard_reboots = hard_reboots.min(counts.reboots);
        Ok(counts)
    }

    async fn action_counts(&self, id: &str, server: &Value) -> Result<ActionCounts> {
        let id = id.to_string();
        let updated = server["updated"].as_str().unwrap_or_default().to_string();
        if let Some((seen, counts)) = self.actions.lock().expect("actions lock").get(&id)
            && *seen == updated
        {
            return Ok(*counts);
        }
        let mut counts = ActionCounts::default();
        for action in self.instance_actions(&id).await? {
            match action.as_str() {
                "start" => counts.starts += 1,
                "reboot" => counts.reboots += 1,
                "rebuild" => counts.rebuilds += 1,
                "unshelve" => counts.unshelves += 1,
                _ => {}
            }
        }
        self.actions
            .lock()
            .expect("actions lock")
            .insert(id, (updated, counts));
        Ok(counts)
    }
}

/// A real server as the link and the tests see a simulated one. Whether the guest runs is
/// Nova's power state (RUNNING), or its status when the policy hides the power state.
/// Nova's instance actions do not say whether a reboot was soft or hard: a reboot is hard
/// when the poll saw the server `HARD_REBOOT`, soft otherwise.
fn view(s: &Value, region: &str, counts: ActionCounts) -> ServerView {
    let text = |key: &str| s[key].as_str().unwrap_or_default().to_string();
    let status = text("status");
    let power_state = s["OS-EXT-STS:power_state"].as_u64().map(|p| p as u8);
    let running = match power_state {
        Some(p) => p == 1,
        None => status == "ACTIVE",
    };
    let metadata = s["metadata"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    ServerView {
        id: text("id"),
        name: text("name"),
        status,
        task_state: s["OS-EXT-STS:task_state"].as_str().map(str::to_string),
        vm_state: s["OS-EXT-STS:vm_state"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        power_state: power_state.unwrap_or_default(),
        image_id: s["image"]["id"].as_str().unwrap_or_default().to_string(),
        flavor_id: s["flavor"]["id"].as_str().unwrap_or_default().to_string(),
        metadata,
        project_id: s["tenant_id"].as_str().map(str::to_string),
        region: region.to_string(),
        cluster_id: None,
        nodegroup: None,
        address: String::new(),
        host: String::new(),
        host_down: false,
        refuse_power_off: false,
        running,
        rebuilds: counts.rebuilds,
        soft_reboots: counts.reboots - counts.hard_reboots,
        hard_reboots: counts.hard_reboots,
        stops: 0,
        starts: counts.starts,
        unshelves: counts.unshelves,
    }
}
