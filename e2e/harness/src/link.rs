//! The link between the simulated cloud and the simulated nodes: what a server's power does
//! to its kubelet. A running server's node heartbeats through kwok; a server that is off,
//! crashed, on a dead hypervisor or deleted goes silent (its node Lease is taken over and
//! kwok stops managing the node, so nothing renews the Lease, nothing plays its pods'
//! stages, and kube-controller-manager marks the node Unknown). A new server
//! of a known cluster registers a new Node, as a booting kubelet would.
//!
//! The link also plays the CSI external attacher: VolumeAttachments of the test bed's CSI
//! driver are marked attached.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use anyhow::Result;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use openstack_sim::{ServerView, Sim};
use serde_json::json;

use crate::nodes::{NodeBlueprint, node_object};

/// The holder written into a silent node's Lease: kwok leaves nodes it does not hold alone.
pub const SILENT_HOLDER: &str = "nodehealer-testbed/server-not-running";
/// The CSI driver whose attachments the link marks attached.
pub const CSI_DRIVER: &str = "block.testbed.nodehealer.io";

/// Which servers belong to which simulated cluster, and what their nodes look like.
#[derive(Default)]
pub struct Registry {
    /// Cluster name → how to build a Node for a server of each role.
    pub clusters: HashMap<String, NodeBlueprint>,
    /// Plain Nova servers (no Magnum cluster): server id → cluster name.
    pub plain_servers: HashMap<String, String>,
    /// Magnum cluster uuid → cluster name.
    pub magnum_ids: HashMap<String, String>,
    /// Server id → node name, for every node the link registered.
    pub nodes: BTreeMap<String, String>,
    /// Clusters whose servers are on the real cloud (plain Nova servers), not the simulator.
    pub real_clusters: HashSet<String>,
    next_ip: u32,
}

/// Where a cluster's servers are: each source has a link loop of its own, which looks after
/// the nodes of its servers only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The in-process simulator (its changes are pushed: `Sim::watch_servers`).
    Sim,
    /// A real OpenStack (its Nova's server list is polled).
    Real,
}

impl Registry {
    /// The next loopback address for a node's InternalIP: 127.10.0.1, 127.10.0.2, ...
    pub fn next_internal_ip(&mut self) -> String {
        self.next_ip += 1;
        let n = self.next_ip;
        format!("127.10.{}.{}", n / 250, n % 250 + 1)
    }

    /// The source of a registered server: the real cloud for the plain servers of a cluster
    /// created there, the simulator for every other.
    pub fn source_of(&self, server_id: &str) -> Source {
        match self.plain_servers.get(server_id) {
            Some(cluster) if self.real_clusters.contains(cluster) => Source::Real,
            _ => Source::Sim,
        }
    }

    fn cluster_of(&self, server: &ServerView) -> Option<String> {
        if let Some(id) = &server.cluster_id {
            return self.magnum_ids.get(id).cloned();
        }
        self.plain_servers.get(&server.id).cloned()
    }
}

/// Runs forever on the test bed's runtime.
pub async fn run(
    client: kube::Client,
    sim: Sim,
    registry: Arc<Mutex<Registry>>,
    wake: Arc<Notify>,
) {
    let mut rx = sim.watch_servers();
    // Server id → whether its kubelet is currently allowed to heartbeat, as last applied.
    let mut applied: HashMap<String, bool> = HashMap::new();
    // Server id → how often it has booted (soft reboots apart), as last seen.
    let mut boots: HashMap<String, (u32, u32)> = HashMap::new();
    loop {
        let servers = rx.borrow_and_update().clone();
        // The kubelet restarts before kwok manages the node again: kwok v0.8.0 plays a node's
        // stages when it starts managing it and does not reliably play them again when a hang
        // label goes a moment later, so the other order can leave a rebooted node NotReady.
        let mut pending = restart_kubelets(&client, &servers, &registry, &mut boots).await;
        pending |= reconcile(&client, &servers, &registry, &mut applied, Source::Sim).await;
        // Wake on a server change, on a newly registered cluster, or (when something failed,
        // the apiserver being busy, say) soon anyway to retry.
        let retry = if pending {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = wake.notified() => {}
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// How often the real cloud's server list is read: a few times a second, so a power change
/// reaches the kubelet about as fast as on the simulator without loading Nova.
pub const REAL_POLL: Duration = Duration::from_millis(300);

/// [`run`] for a real OpenStack: its Nova's server list, polled every [`REAL_POLL`], feeds
/// the same reconcile. A failed read changes nothing (it would look like every server gone).
pub async fn run_real(
    client: kube::Client,
    cloud: crate::realcloud::RealCloud,
    registry: Arc<Mutex<Registry>>,
    wake: Arc<Notify>,
) {
    let mut applied: HashMap<String, bool> = HashMap::new();
    let mut boots: HashMap<String, (u32, u32)> = HashMap::new();
    loop {
        let ours = |id: &str| {
            let reg = registry.lock().expect("registry lock");
            reg.plain_servers.contains_key(id) && reg.source_of(id) == Source::Real
        };
        match cloud.servers(ours).await {
            Ok(servers) => {
                // As in `run`: the kubelet restarts before kwok manages the node again.
                restart_kubelets(&client, &servers, &registry, &mut boots).await;
                reconcile(&client, &servers, &registry, &mut applied, Source::Real).await;
            }
            Err(e) => tracing::warn!("reading the real cloud's servers: {e:#}"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(REAL_POLL) => {}
        }
    }
}

/// Brings nodes in line with the servers of `source`; returns true when something is left
/// to retry.
async fn reconcile(
    client: &kube::Client,
    servers: &[ServerView],
    registry: &Arc<Mutex<Registry>>,
    applied: &mut HashMap<String, bool>,
    source: Source,
) -> bool {
    let mut pending = false;
    for server in servers {
        let (node_name, blueprint) = {
            let reg = registry.lock().expect("registry lock");
            let Some(cluster) = reg.cluster_of(server) else {
                continue;
            };
            let Some(blueprint) = reg.clusters.get(&cluster).cloned() else {
                continue;
            };
            (reg.nodes.get(&server.id).cloned(), blueprint)
        };
        match node_name {
            None if server.running => {
                // A kubelet registers its Node once the server has booted.
                let ip = registry.lock().expect("registry lock").next_internal_ip();
                let node = node_object(&blueprint, server, &ip);
                match create_node(client, &node).await {
                    Ok(()) => {
                        let mut reg = registry.lock().expect("registry lock");
                        reg.nodes.insert(server.id.clone(), server.name.clone());
                        applied.insert(server.id.clone(), true);
                    }
                    Err(e) => {
                        tracing::warn!(server = %server.name, "registering node: {e:#}");
                        pending = true;
                    }
                }
            }
            None => {}
            Some(node) => {
                if applied.get(&server.id) == Some(&server.running) {
                    continue;
                }
                match set_heartbeat(client, &node, server.running).await {
                    Ok(()) => {
                        applied.insert(server.id.clone(), server.running);
                    }
                    Err(e) => {
                        tracing::warn!(%node, "setting heartbeat: {e:#}");
                        pending = true;
                    }
                }
            }
        }
    }
    // Deleted servers: their kubelets are gone for good.
    let gone: Vec<(String, String)> = {
        let reg = registry.lock().expect("registry lock");
        reg.nodes
            .iter()
            .filter(|(id, _)| reg.source_of(id) == source)
            .filter(|(id, _)| !servers.iter().any(|s| &s.id == *id))
            .map(|(id, node)| (id.clone(), node.clone()))
            .collect()
    };
    for (id, node) in gone {
        if applied.get(&id) == Some(&false) {
            continue;
        }
        match set_heartbeat(client, &node, false).await {
            Ok(()) => {
                applied.insert(id, false);
            }
            Err(e) => {
                tracing::warn!(%node, "silencing deleted server's node: {e:#}");
                pending = true;
            }
        }
    }
    pending
}

/// A server that boots again (start, reboot, rebuild) restarts its kubelet once Nova is done
/// with it (no task left): a hung kubelet
/// is cured by the reboot, as on a real machine. A hung kernel ignores a soft (ACPI) reboot:
/// only a hard reboot, a start or a rebuild cures it.
async fn restart_kubelets(
    client: &kube::Client,
    servers: &[ServerView],
    registry: &Arc<Mutex<Registry>>,
    boots: &mut HashMap<String, (u32, u32)>,
) -> bool {
    let mut pending = false;
    for server in servers {
        // A kubelet starts once the guest has booted: while Nova still works on the server
        // (REBOOT / rebooting, say) the boot is not over, and a node Ready before its
        // server's reboot ends would be a test bed artefact.
        if server.task_state.is_some() {
            continue;
        }
        let count = (
            server.soft_reboots,
            server.starts + server.hard_reboots + server.rebuilds + server.unshelves,
        );
        let Some(previous) = boots
            .insert(server.id.clone(), count)
            .filter(|p| *p != count)
        else {
            continue;
        };
        let node = registry
            .lock()
            .expect("registry lock")
            .nodes
            .get(&server.id)
            .cloned();
        let Some(node) = node else { continue };
        let nodes: Api<Node> = Api::all(client.clone());
        let kernel_hung = match nodes.get_opt(&node).await {
            Ok(n) => n.is_some_and(|n| {
                n.metadata
                    .labels
                    .unwrap_or_default()
                    .contains_key(crate::nodes::KERNEL_HANG_LABEL)
            }),
            Err(e) => {
                tracing::warn!(%node, "reading the node: {e:#}");
                boots.insert(server.id.clone(), previous);
                pending = true;
                continue;
            }
        };
        if kernel_hung && count.1 == previous.1 {
            continue;
        }
        let unhung = [
            (crate::nodes::KUBELET_HANG_LABEL, None),
            (crate::nodes::KERNEL_HANG_LABEL, None),
        ];
        if let Err(e) = crate::nodes::patch_labels(client, &node, &unhung).await {
            tracing::warn!(%node, "restarting the kubelet: {e:#}");
            boots.insert(server.id.clone(), previous);
            pending = true;
        }
    }
    pending
}

async fn create_node(client: &kube::Client, node: &Node) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.create(&PostParams::default(), node).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Lets kwok heartbeat for the node (`alive`) or silences it by taking over its Lease.
///
/// A silent node also loses kwok's management label: kwok v0.8.0 should leave the pods of a
/// node whose Lease it does not hold alone, but it starts its pod and node controllers in
/// map order, and when the pod controller comes first it never learns about Leases. Then
/// it plays a live kubelet for a dead node's pods in about half of the test beds (an evicted
/// pod vanishes at once instead of waiting for a force delete), which is not what a dead
/// machine does.
pub async fn set_heartbeat(client: &kube::Client, node: &str, alive: bool) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    if alive {
        release_lease(&leases, node).await?;
        // kwok manages the node again: it creates a Lease and resumes the pods' stages.
        return set_kwok_managed(client, node, true).await;
    }
    set_kwok_managed(client, node, false).await?;
    take_over_lease(&leases, node).await
}

/// Adds or removes the label kwok manages nodes by. A deleted node needs neither.
async fn set_kwok_managed(client: &kube::Client, node: &str, managed: bool) -> Result<()> {
    let (key, value) = crate::nodes::KWOK_LABEL;
    let label = [(key, managed.then_some(value))];
    match crate::nodes::patch_labels(client, node, &label).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deleting our takeover lets kwok create and renew the Lease again.
async fn release_lease(leases: &Api<Lease>, node: &str) -> Result<()> {
    let Some(lease) = leases.get_opt(node).await? else {
        return Ok(());
    };
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref());
    if holder != Some(SILENT_HOLDER) {
        return Ok(());
    }
    match leases.delete(node, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Holds the node's Lease for an hour, so nothing renews it.
async fn take_over_lease(leases: &Api<Lease>, node: &str) -> Result<()> {
    // MicroTime: the apiserver insists on exactly six fractional digits.
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let body = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": SILENT_HOLDER,
            "leaseDurationSeconds": 3600,
            "renewTime": now,
        }
    });
    leases
        .patch(
            node,
            &PatchParams::apply("nodehealer-testbed").force(),
            &Patch::Apply(body),
        )
        .await?;
    Ok(())
}

/// Plays the CSI external attacher for the test bed's driver: every VolumeAttachment of
/// that driver is reported attached, as soon as it appears.
pub async fn run_attacher(client: kube::Client) {
    use futures::TryStreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    let stream = watcher(api.clone(), watcher::Config::default()).applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(va)) => {
                let attached = va.status.as_ref().map(|s| s.attached).unwrap_or(false);
                if va.spec.attacher != CSI_DRIVER
                    || attached
                    || va.metadata.deletion_timestamp.is_some()
                {
                    continue;
                }
                let name = va.metadata.name.clone().unwrap_or_default();
                let patch = json!({"status": {"attached": true}});
                if let Err(e) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(%name, "marking attached: {e:#}");
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("volumeattachment watch: {e:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
