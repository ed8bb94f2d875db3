//! nodehealer's test bed: a real Kubernetes control plane (etcd, kube-apiserver with RBAC,
//! kube-controller-manager, kube-scheduler), kwok nodes, and the OpenStack simulator, linked
//! so that a server's power decides whether its node's kubelet heartbeats.
//!
//! One control plane is shared by a whole test binary ([`TestBed::shared`]); each test makes
//! its own namespace and its own simulated cluster, so tests run side by side.
#![forbid(unsafe_code)]

pub mod controlplane;
pub mod link;
pub mod nodes;
pub mod objects;
pub mod procs;
pub mod realcloud;
pub mod timeline;
pub mod workloads;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use k8s_openapi::api::storage::v1::CSIDriver;
use kube::api::{Api, ListParams, PostParams};
use openstack_sim::{NewCluster, NewNodeGroup, NewServer, ServerView, Sim, SimConfig};
use serde_json::json;

pub use controlplane::{ControlPlane, client_from_kubeconfig};
pub use nodes::{
    CLUSTER_LABEL, CONTROL_PLANE_LABEL, MAGNUM_ROLE_LABEL, is_ready, ready_status, taint_strings,
};

use link::Registry;
use nodes::{KUBELET_HANG_LABEL, NodeBlueprint};
use procs::Launcher;

/// The OpenStack identity the test bed creates for the operator.
pub const OS_USER: &str = "nodehealer";
pub const OS_PROJECT: &str = "kubernetes";
pub const OS_DOMAIN: &str = "Default";
pub const OS_REGION: &str = "RegionOne";
/// The simulator's second region: a Nova of its own (`/regions/RegionTwo/compute/v2.1`) in the
/// same Keystone catalog, for clusters whose providerIDs name it ([`ClusterSpec::region`]).
pub const OS_SECOND_REGION: &str = "RegionTwo";

/// A running test bed.
pub struct TestBed {
    pub cp: ControlPlane,
    pub sim: Sim,
    pub run_dir: PathBuf,
    /// The simulated user's password (tests check it never leaks).
    pub os_password: String,
    registry: Arc<Mutex<Registry>>,
    wake_link: Arc<tokio::sync::Notify>,
    /// The real OpenStack clusters can also be created on ([`TestBed::attach_real_cloud`]).
    real: OnceLock<realcloud::RealCloud>,
    wake_real_link: Arc<tokio::sync::Notify>,
    rt: tokio::runtime::Runtime,
    _launcher: Launcher,
}

static SHARED: OnceLock<TestBed> = OnceLock::new();

/// What to simulate: a Magnum cluster (or a plain set of Nova servers) with masters and workers.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub name: String,
    pub masters: u32,
    pub workers: u32,
    /// A Magnum cluster (nodegroups `default-master`/`default-worker`, resize) or plain Nova servers.
    pub magnum: bool,
    /// Labels added to worker nodes (a pool label, say).
    pub worker_labels: BTreeMap<String, String>,
    /// Plain Nova servers booted from a volume (no image of their own); not for Magnum.
    pub volume_backed: bool,
    /// The workloads every real cluster runs (DaemonSets that tolerate every taint, a CSI node
    /// plugin, Deployments, a StatefulSet with a volume and its PodDisruptionBudget, a pod with
    /// a finalizer: [`workloads::realistic_cluster`]). On by default: a remediation must work
    /// with them; off only where a test measures something else at a scale they would swamp.
    pub realistic: bool,
    /// The region whose Nova holds the servers (one of [`OS_REGION`], [`OS_SECOND_REGION`]);
    /// plain Nova servers only (Magnum is in the first region). Its nodes' providerIDs name
    /// it: `openstack://<region>/<id>`. `None`: the first region, and providerIDs that name
    /// none (`openstack:///<id>`), as the default cloud provider writes them.
    pub region: Option<String>,
    /// The region the nodes' providerIDs name when it is not the servers' own: a cloud
    /// provider configured for another region, or a region the catalog does not have.
    /// `None`: as [`ClusterSpec::region`].
    pub provider_id_region: Option<String>,
}

impl ClusterSpec {
    /// A Magnum cluster like the default one: `masters` control-plane nodes, `workers` workers.
    pub fn magnum(name: &str, masters: u32, workers: u32) -> Self {
        Self {
            name: name.to_string(),
            masters,
            workers,
            magnum: true,
            worker_labels: BTreeMap::new(),
            volume_backed: false,
            realistic: true,
            region: None,
            provider_id_region: None,
        }
    }
}

/// A simulated cluster as created.
#[derive(Clone, Debug)]
pub struct TestCluster {
    pub name: String,
    /// The Magnum cluster uuid, for Magnum clusters.
    pub magnum_id: Option<String>,
    /// Node name → server id, for the nodes that existed when it was created.
    pub servers: BTreeMap<String, String>,
    /// Its realistic workloads (see [`ClusterSpec::realistic`]).
    pub realistic: Option<workloads::RealisticCluster>,
}

impl TestCluster {
    /// A label selector for the cluster's workers (`role=worker`).
    pub fn worker_selector(&self) -> String {
        format!("{CLUSTER_LABEL}={},{MAGNUM_ROLE_LABEL}=worker", self.name)
    }
    /// A label selector for the cluster's control plane.
    pub fn master_selector(&self) -> String {
        format!("{CLUSTER_LABEL}={},{MAGNUM_ROLE_LABEL}=master", self.name)
    }
    /// The names of the cluster's nodes of one role, sorted.
    pub fn nodes_with_role(&self, role: &str) -> Vec<String> {
        let marker = if role == "master" {
            "-master-"
        } else {
            "-node-"
        };
        self.servers
            .keys()
            .filter(|n| n.contains(marker))
            .cloned()
            .collect()
    }
}

/// What a test bed runs differently from the default one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestBedOptions {
    /// kube-controller-manager controllers left out (e.g. `pod-garbage-collector-controller`,
    /// to show what the operator does without it).
    pub disabled_controllers: Vec<String>,
}

impl TestBed {
    /// The test bed shared by every test of this binary, started on first use. It is torn
    /// down by its watchdog when the test binary exits, even after a panic.
    pub fn shared() -> &'static TestBed {
        Self::shared_with(TestBedOptions::default())
    }

    /// [`TestBed::shared`] with options; the first call of the binary decides them, so every
    /// test of a binary must pass the same.
    pub fn shared_with(options: TestBedOptions) -> &'static TestBed {
        SHARED.get_or_init(|| {
            // Started on a thread of its own: callers are usually inside a tokio runtime,
            // where blocking start-up (and owning another runtime) is not allowed.
            std::thread::spawn(move || {
                TestBed::start_with(&options)
                    .unwrap_or_else(|e| panic!("starting the test bed: {e:#}"))
            })
            .join()
            .expect("test bed start-up thread")
        })
    }

    /// Starts a test bed. Blocking: call it outside any async runtime.
    pub fn start() -> Result<TestBed> {
        Self::start_with(&TestBedOptions::default())
    }

    /// [`TestBed::start`] with options.
    pub fn start_with(options: &TestBedOptions) -> Result<TestBed> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TESTBED_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let started = Instant::now();
        let run_dir = runs_dir().join(format!(
            "{}-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S"),
            std::process::id()
        ));
        let launcher = Launcher::new(&run_dir)?;
        let cp = ControlPlane::start(&launcher, &options.disabled_controllers)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("testbed")
            .build()?;
        let sim = Sim::new(SimConfig {
            region: OS_REGION.into(),
            extra_regions: vec![OS_SECOND_REGION.into()],
            ..SimConfig::default()
        });
        let os_password = uuid::Uuid::new_v4().simple().to_string();
        let registry = Arc::new(Mutex::new(Registry::default()));
        let wake_link = Arc::new(tokio::sync::Notify::new());
        rt.block_on(async {
            sim.serve("127.0.0.1:0".parse()?).await?;
            let project = sim.add_project(OS_PROJECT, OS_DOMAIN);
            sim.add_user(OS_USER, &os_password, OS_DOMAIN, &project);
            let client = cp.admin_client().await?;
            let csi: Api<CSIDriver> = Api::all(client.clone());
            let driver: CSIDriver = serde_json::from_value(json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSIDriver",
                "metadata": {"name": link::CSI_DRIVER},
                "spec": {"attachRequired": true, "podInfoOnMount": false}
            }))?;
            csi.create(&PostParams::default(), &driver).await?;
            tokio::spawn(link::run(
                client.clone(),
                sim.clone(),
                registry.clone(),
                wake_link.clone(),
            ));
            tokio::spawn(link::run_attacher(client.clone()));
            tokio::spawn(workloads::run_finalizer(client));
            anyhow::Ok(())
        })?;
        eprintln!(
            "[testbed] control plane on https://127.0.0.1:{}, simulator on {}, ready in {:.1} s (logs: {})",
            cp.api_port,
            sim.base_url(),
            started.elapsed().as_secs_f64(),
            run_dir.display()
        );
        Ok(TestBed {
            cp,
            sim,
            run_dir,
            os_password,
            registry,
            wake_link,
            real: OnceLock::new(),
            wake_real_link: Arc::new(tokio::sync::Notify::new()),
            rt,
            _launcher: launcher,
        })
    }

    /// Stops every process of the test bed now (the watchdog would do it at exit anyway).
    pub fn stop(&self) {
        self.cp.stop();
    }

    /// Starts a process of the test's own (the operator, say) in the run folder, watched by the
    /// test bed's watchdog like every other process.
    pub fn spawn_process(&self, name: &str, cmd: std::process::Command) -> Result<procs::Proc> {
        self._launcher.spawn(name, cmd)
    }

    /// A new admin client, bound to the caller's runtime.
    pub async fn client(&self) -> Result<kube::Client> {
        self.cp.admin_client().await
    }

    /// Runs a future on the test bed's own runtime (where the simulator and link live).
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(fut)
    }

    /// A `clouds.yaml` with one cloud, `cloud`, for the operator's OpenStack identity.
    pub fn clouds_yaml(&self, cloud: &str) -> String {
        format!(
            "clouds:
  {cloud}:
    auth:
      auth_url: {auth}
      username: {OS_USER}
      password: {password}
      project_name: {OS_PROJECT}
      user_domain_name: {OS_DOMAIN}
      project_domain_name: {OS_DOMAIN}
    region_name: {OS_REGION}
    interface: public
    identity_api_version: 3
",
            auth = self.sim.auth_url(),
            password = self.os_password,
        )
    }

    /// Creates a namespace named `<prefix>-<random>` and waits for its default ServiceAccount.
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        let client = self.client().await?;
        let name = format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client, &name);
        wait_for(
            Duration::from_secs(30),
            "the namespace's default ServiceAccount",
            || async { Ok(sas.get_opt("default").await?.is_some()) },
        )
        .await?;
        Ok(name)
    }

    /// Simulates a cluster: servers in the simulator (a Magnum cluster or plain Nova servers)
    /// whose kubelets register Nodes; returns once every node is Ready.
    pub async fn create_cluster(&self, spec: ClusterSpec) -> Result<TestCluster> {
        if spec.magnum && spec.region.as_deref().is_some_and(|r| r != OS_REGION) {
            bail!("a Magnum cluster is in the first region ({OS_REGION}) only");
        }
        let roles: BTreeMap<String, String> =
            [("default-master", "master"), ("default-worker", "worker")]
                .map(|(a, b)| (a.into(), b.into()))
                .into();
        let blueprint = NodeBlueprint {
            cluster: spec.name.clone(),
            region: spec.region.clone().unwrap_or_else(|| OS_REGION.into()),
            provider_id_region: spec.provider_id_region.clone().or(spec.region.clone()),
            nodegroup_roles: roles,
            extra_labels: [("worker".to_string(), spec.worker_labels.clone())].into(),
        };
        self.registry
            .lock()
            .expect("registry lock")
            .clusters
            .insert(spec.name.clone(), blueprint);
        let magnum_id = if spec.magnum {
            let group = |name: &str, role: &str, count: u32| NewNodeGroup {
                name: name.into(),
                role: role.into(),
                node_count: count,
                image_id: TESTBED_IMAGE.into(),
                flavor_id: TESTBED_FLAVOR.into(),
            };
            let mut groups = Vec::new();
            if spec.masters > 0 {
                groups.push(group("default-master", "master", spec.masters));
            }
            groups.push(group("default-worker", "worker", spec.workers));
            let id = self.sim.create_cluster(NewCluster {
                name: spec.name.clone(),
                labels: [("auto_healing_enabled".to_string(), "true".to_string())].into(),
                nodegroups: groups,
            });
            self.registry
                .lock()
                .expect("registry lock")
                .magnum_ids
                .insert(id.clone(), spec.name.clone());
            Some(id)
        } else {
            for (role, count, marker) in [
                ("master", spec.masters, "master"),
                ("worker", spec.workers, "node"),
            ] {
                for i in 0..count {
                    let id = self.sim.create_server(NewServer {
                        name: format!("{}-{marker}-{i}", spec.name),
                        image_id: if spec.volume_backed {
                            String::new()
                        } else {
                            TESTBED_IMAGE.into()
                        },
                        flavor_id: TESTBED_FLAVOR.into(),
                        metadata: [("role".to_string(), role.to_string())].into(),
                        region: spec.region.clone(),
                        ..Default::default()
                    });
                    self.registry
                        .lock()
                        .expect("registry lock")
                        .plain_servers
                        .insert(id, spec.name.clone());
                }
            }
            None
        };
        self.wake_link.notify_one();
        self.cluster_ready(spec, magnum_id).await
    }

    /// Waits until every node of the cluster `spec` describes is Ready; the cluster as made.
    async fn cluster_ready(
        &self,
        spec: ClusterSpec,
        magnum_id: Option<String>,
    ) -> Result<TestCluster> {
        let expected = (spec.masters + spec.workers) as usize;
        let client = self.client().await?;
        let nodes: Api<Node> = Api::all(client.clone());
        let selector = format!("{CLUSTER_LABEL}={}", spec.name);
        wait_for(
            // A few thousand nodes take a while to register through the link.
            Duration::from_secs(60 + expected as u64 / 10),
            "the cluster's nodes to be Ready",
            || async {
                let list = nodes.list(&ListParams::default().labels(&selector)).await?;
                Ok(list.items.len() == expected && list.items.iter().all(is_ready))
            },
        )
        .await?;
        let list = nodes.list(&ListParams::default().labels(&selector)).await?;
        let servers = list
            .items
            .iter()
            .filter_map(|n| {
                let name = n.metadata.name.clone()?;
                let id = server_id_of(n)?;
                Some((name, id))
            })
            .collect();
        let realistic = if spec.realistic {
            Some(workloads::realistic_cluster(&client, &spec.name, spec.workers).await?)
        } else {
            None
        };
        Ok(TestCluster {
            name: spec.name,
            magnum_id,
            servers,
            realistic,
        })
    }

    /// Lets clusters be created on the real OpenStack `cloud` ([`TestBed::create_real_cluster`]):
    /// a second link loop polls its Nova. The first call of the binary decides the cloud.
    pub fn attach_real_cloud(&self, cloud: realcloud::CloudJson) -> Result<&realcloud::RealCloud> {
        let wanted = cloud.auth_url.clone();
        let mut failed = None;
        let real = self.real.get_or_init(|| {
            let real = realcloud::RealCloud::new(cloud);
            // The link's apiserver client must live on the test bed's runtime (a client
            // made on a test's runtime dies with it); made on a thread of its own because
            // the caller is usually inside a runtime, where blocking on another is refused.
            let client = std::thread::scope(|s| {
                s.spawn(|| self.rt.block_on(self.cp.admin_client()))
                    .join()
                    .expect("apiserver client thread")
            });
            match client {
                Ok(client) => {
                    self.rt.spawn(link::run_real(
                        client,
                        real.clone(),
                        self.registry.clone(),
                        self.wake_real_link.clone(),
                    ));
                }
                Err(e) => failed = Some(e),
            }
            real
        });
        if let Some(e) = failed {
            return Err(e.context("the real cloud's link has no apiserver client"));
        }
        if real.cloud.auth_url != wanted {
            bail!(
                "the test bed is attached to the real cloud at {}, not {wanted}",
                real.cloud.auth_url
            );
        }
        Ok(real)
    }

    /// The attached real cloud.
    pub fn real_cloud(&self) -> Result<&realcloud::RealCloud> {
        self.real
            .get()
            .context("no real cloud attached (TestBed::attach_real_cloud)")
    }

    /// [`TestBed::create_cluster`] on the attached real cloud: plain Nova servers booted
    /// through its API (Magnum there has no Heat to create clusters), whose kubelets follow
    /// the real servers' state.
    pub async fn create_real_cluster(&self, spec: ClusterSpec) -> Result<TestCluster> {
        if spec.magnum || spec.volume_backed || spec.region.is_some() {
            bail!("a real-cloud cluster is plain, image-backed Nova servers in its one region");
        }
        let real = self.real_cloud()?;
        let blueprint = NodeBlueprint {
            cluster: spec.name.clone(),
            region: real.cloud.region.clone(),
            provider_id_region: spec.provider_id_region.clone(),
            nodegroup_roles: BTreeMap::new(),
            extra_labels: [("worker".to_string(), spec.worker_labels.clone())].into(),
        };
        {
            let mut reg = self.registry.lock().expect("registry lock");
            reg.clusters.insert(spec.name.clone(), blueprint);
            reg.real_clusters.insert(spec.name.clone());
        }
        for (role, count, marker) in [
            ("master", spec.masters, "master"),
            ("worker", spec.workers, "node"),
        ] {
            for i in 0..count {
                let metadata = [("role".to_string(), role.to_string())].into();
                let id = real
                    .boot(&format!("{}-{marker}-{i}", spec.name), &metadata)
                    .await?;
                self.registry
                    .lock()
                    .expect("registry lock")
                    .plain_servers
                    .insert(id, spec.name.clone());
            }
        }
        self.wake_real_link.notify_one();
        self.cluster_ready(spec, None).await
    }

    /// Deletes the servers of a cluster made on the real cloud (a test's clean-up).
    pub async fn delete_real_cluster(&self, cluster: &TestCluster) -> Result<()> {
        let real = self.real_cloud()?;
        let ids: Vec<String> = {
            let reg = self.registry.lock().expect("registry lock");
            reg.plain_servers
                .iter()
                .filter(|(_, c)| **c == cluster.name)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in ids {
            real.delete(&id).await?;
        }
        Ok(())
    }

    /// The server behind a node, from its providerID.
    pub async fn server_of(&self, node: &str) -> Result<ServerView> {
        let client = self.client().await?;
        let n = Api::<Node>::all(client).get(node).await?;
        let id =
            server_id_of(&n).with_context(|| format!("node {node} has no OpenStack providerID"))?;
        self.sim
            .server(&id)
            .with_context(|| format!("server {id} of node {node} is not in the simulator"))
    }

    /// The node's server dies (the guest crashes; Nova reports SHUTOFF): its kubelet goes silent.
    pub async fn fail_node(&self, node: &str) -> Result<()> {
        let server = self.server_of(node).await?;
        self.sim.crash_server(&server.id);
        Ok(())
    }

    /// Someone shelves the node's server (`openstack server shelve`): the guest powers off
    /// and leaves its hypervisor (`SHELVED_OFFLOADED`); only `unshelve` boots it again.
    pub async fn shelve_node(&self, node: &str) -> Result<()> {
        let server = self.server_of(node).await?;
        self.sim
            .shelve_server(&server.id)
            .map_err(|e| anyhow::anyhow!("shelving {node}'s server: {e}"))
    }

    /// The node's hypervisor fails: its kubelet goes silent while Nova still says ACTIVE.
    pub async fn host_down(&self, node: &str) -> Result<()> {
        let server = self.server_of(node).await?;
        self.sim.host_down(&server.id);
        Ok(())
    }

    /// The node's kubelet hangs: Ready=False while the server stays ACTIVE.
    pub async fn kubelet_hang(&self, node: &str) -> Result<()> {
        self.label_node(node, KUBELET_HANG_LABEL, Some("true"))
            .await
    }

    /// The node's guest kernel hangs: Ready=False, the server stays ACTIVE, and a soft reboot
    /// is ignored (only a hard reboot, a start or a rebuild brings it back).
    pub async fn kernel_hang(&self, node: &str) -> Result<()> {
        self.label_node(node, nodes::KERNEL_HANG_LABEL, Some("true"))
            .await?;
        self.label_node(node, KUBELET_HANG_LABEL, Some("true"))
            .await
    }

    /// Undoes whatever broke the node: the kubelet is unhung, the hypervisor is back, and a
    /// server that is off is powered on through the Nova API (as an operator would).
    pub async fn recover_node(&self, node: &str) -> Result<()> {
        self.label_node(node, KUBELET_HANG_LABEL, None).await?;
        self.label_node(node, nodes::KERNEL_HANG_LABEL, None)
            .await?;
        let server = self.server_of(node).await?;
        self.sim.host_up(&server.id);
        if server.status == "SHUTOFF" {
            self.nova_action(&server.id, json!({"os-start": null}))
                .await?;
        }
        Ok(())
    }

    /// The node's server as Nova reports it (status, power state, task state).
    pub async fn power_state(&self, node: &str) -> Result<ServerView> {
        self.server_of(node).await
    }

    /// A Keystone token for the operator's OpenStack identity.
    pub async fn os_token(&self) -> Result<String> {
        let auth = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": OS_USER, "domain": {"name": OS_DOMAIN}, "password": self.os_password}}},
            "scope": {"project": {"name": OS_PROJECT, "domain": {"name": OS_DOMAIN}}}
        }});
        let resp = reqwest::Client::new()
            .post(format!("{}/auth/tokens", self.sim.auth_url()))
            .json(&auth)
            .send()
            .await?;
        Ok(resp
            .headers()
            .get("X-Subject-Token")
            .context("no X-Subject-Token from the simulator")?
            .to_str()?
            .to_string())
    }

    /// Sends a Nova server action with the operator's OpenStack identity, to the Nova of the
    /// server's region.
    pub async fn nova_action(&self, server_id: &str, body: serde_json::Value) -> Result<()> {
        let region = self.sim.server(server_id).map(|s| s.region);
        let url = format!(
            "{}/servers/{server_id}/action",
            self.nova_url(region.as_deref().unwrap_or(OS_REGION))
        );
        self.os_post(&url, &body).await
    }

    /// The Nova endpoint of a region: `/compute/v2.1` in the first region,
    /// `/regions/<region>/compute/v2.1` in the others (as the catalog lists them).
    pub fn nova_url(&self, region: &str) -> String {
        if region == OS_REGION {
            format!("{}/compute/v2.1", self.sim.base_url())
        } else {
            format!("{}/regions/{region}/compute/v2.1", self.sim.base_url())
        }
    }

    /// Asks Magnum to resize a nodegroup, removing the given servers (as a replacement does).
    pub async fn magnum_resize(
        &self,
        cluster_id: &str,
        nodegroup: &str,
        node_count: u32,
        remove: &[&str],
    ) -> Result<()> {
        let url = format!(
            "{}/container-infra/v1/clusters/{cluster_id}/actions/resize",
            self.sim.base_url()
        );
        let body =
            json!({"node_count": node_count, "nodes_to_remove": remove, "nodegroup": nodegroup});
        self.os_post(&url, &body).await
    }

    async fn os_post(&self, url: &str, body: &serde_json::Value) -> Result<()> {
        let token = self.os_token().await?;
        let resp = reqwest::Client::new()
            .post(url)
            .header("X-Auth-Token", token)
            .header("OpenStack-API-Version", "container-infra latest")
            .json(body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "POST {url} {body}: {} {}",
                resp.status(),
                resp.text().await?
            );
        }
        Ok(())
    }

    async fn label_node(&self, node: &str, key: &str, value: Option<&str>) -> Result<()> {
        let client = self.client().await?;
        nodes::patch_labels(&client, node, &[(key, value)]).await?;
        Ok(())
    }
}

/// The image and flavor every simulated server boots from.
pub const TESTBED_IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
pub const TESTBED_FLAVOR: &str = "m1.medium";

/// The server id in a node's `spec.providerID` (`openstack:///<id>` or `openstack://<region>/<id>`).
pub fn server_id_of(node: &Node) -> Option<String> {
    let pid = node.spec.as_ref()?.provider_id.as_ref()?;
    let rest = pid.strip_prefix("openstack://")?;
    let id = rest.rsplit('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// Where test bed runs keep their logs: `target/testbed-runs/`.
pub fn runs_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| controlplane::repo_root().join("target"));
    target.join("testbed-runs")
}

/// Records a measured duration: printed, and appended to `target/test-timings.txt`, which
/// `make test` prints at the end (libtest hides the output of passing tests).
pub fn report_timing(what: &str, took: Duration) {
    use std::io::Write;
    let line = format!("{what}: {:.1} s", took.as_secs_f64());
    eprintln!("[timing] {line}");
    let path = runs_dir().parent().map(|p| p.join("test-timings.txt"));
    if let Some(path) = path
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Records a scenario's timeline: written to `target/test-timelines/<name>.txt`, which
/// `make test` prints at the end (libtest hides the output of passing tests).
pub fn report_timeline(name: &str, timeline: &str) {
    if let Some(dir) = runs_dir().parent().map(|p| p.join("test-timelines")) {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.txt")), timeline);
    }
    eprintln!("timeline of {name}:\n{timeline}");
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > timeout {
            match last_err {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
