//! The simulated cloud: identities, servers, clusters and the state machines that move
//! them. Nothing here knows about HTTP; the service modules translate requests into calls
//! on [`State`] and its results into each service's JSON.
//!
//! Time comes in as a parameter (`now`), so every transition is a pure step on plain data;
//! the clock task in `lib.rs` only decides *when* to call [`State::tick`].

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::SimConfig;
use crate::faults::Fault;
use crate::requests::LoggedRequest;

/// Nova's power states (`OS-EXT-STS:power_state`), as `nova.compute.power_state` numbers them.
pub mod power_state {
    pub const NOSTATE: u8 = 0;
    pub const RUNNING: u8 = 1;
    pub const PAUSED: u8 = 3;
    pub const SHUTDOWN: u8 = 4;
    pub const CRASHED: u8 = 6;
    pub const SUSPENDED: u8 = 7;
}
use power_state::{NOSTATE, RUNNING, SHUTDOWN};

// ---------------------------------------------------------------------------------------
// What callers create

/// A server to create directly in Nova (not through a Magnum cluster).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewServer {
    pub name: String,
    pub image_id: String,
    pub flavor_id: String,
    pub metadata: BTreeMap<String, String>,
    /// The owning project. `None`: visible to every project (and reported as the caller's).
    pub project_id: Option<String>,
    /// The region whose Nova holds it (one of [`crate::SimConfig::regions`]); `None`: the
    /// first region.
    pub region: Option<String>,
}

/// A Magnum cluster; its servers are created at once, ACTIVE.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewCluster {
    pub name: String,
    /// Magnum labels, e.g. `auto_healing_enabled: "true"`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The first nodegroup of each role is the cluster's default one for that role.
    pub nodegroups: Vec<NewNodeGroup>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewNodeGroup {
    pub name: String,
    /// `master` or `worker`.
    pub role: String,
    pub node_count: u32,
    pub image_id: String,
    pub flavor_id: String,
}

// ---------------------------------------------------------------------------------------
// What callers see

/// A server as the test bed sees it: Nova's view plus what only the simulator knows
/// (whether the guest really runs, whether its hypervisor is down, counters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    pub id: String,
    pub name: String,
    /// Nova's status: ACTIVE, SHUTOFF, REBOOT, HARD_REBOOT, REBUILD, BUILD, ERROR.
    pub status: String,
    pub task_state: Option<String>,
    pub vm_state: String,
    /// See [`power_state`].
    pub power_state: u8,
    pub image_id: String,
    pub flavor_id: String,
    pub metadata: BTreeMap<String, String>,
    pub project_id: Option<String>,
    /// The region whose Nova holds it.
    pub region: String,
    /// The Magnum cluster uuid, for servers of a cluster.
    pub cluster_id: Option<String>,
    /// The Magnum nodegroup name, for servers of a cluster.
    pub nodegroup: Option<String>,
    /// The fixed IPv4 address on the `private` network.
    pub address: String,
    /// The hypervisor the server runs on.
    pub host: String,
    /// The hypervisor has failed ([`crate::Sim::host_down`], [`crate::Sim::compute_host_down`]).
    pub host_down: bool,
    pub refuse_power_off: bool,
    /// True when the guest OS is up (power RUNNING, host not down, not in the middle of a
    /// reboot or rebuild): this drives the simulated kubelet's heartbeat.
    pub running: bool,
    /// Accepted actions, counted when Nova accepts them (202), not when they complete.
    pub rebuilds: u32,
    pub soft_reboots: u32,
    pub hard_reboots: u32,
    pub stops: u32,
    pub starts: u32,
    pub unshelves: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    pub id: String,
    pub name: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub health_status: Option<String>,
    pub health_status_reason: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub nodegroups: Vec<NodeGroupView>,
    pub master_count: u32,
    pub node_count: u32,
    /// Resizes accepted (by the resize action or a `node_count` PATCH).
    pub resizes: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeGroupView {
    pub id: String,
    pub name: String,
    pub role: String,
    /// The desired count (what Magnum reports), not necessarily the servers that exist yet.
    pub node_count: u32,
    /// Server ids of the nodegroup, oldest first.
    pub servers: Vec<String>,
    pub image_id: String,
    pub flavor_id: String,
    pub is_default: bool,
    pub status: String,
}

/// One of a server's instance actions, as the simulator holds it (Nova's
/// `os-instance-actions`, events included whatever the microversion).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceActionView {
    /// `create`, `stop`, `start`, `reboot`, `rebuild`, `shelve`, `unshelve`, `delete`.
    pub action: String,
    /// The `x-openstack-request-id` of the request that started it.
    pub request_id: String,
    pub user_id: String,
    /// Newest first, as Nova lists them.
    pub events: Vec<ActionEventView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionEventView {
    /// E.g. `compute_terminate_instance`.
    pub event: String,
    /// `Success`, `Error`, or None while it runs.
    pub result: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Identity

#[derive(Clone, Debug)]
pub(crate) struct Domain {
    pub id: String,
    pub name: String,
}

impl Domain {
    /// Keystone's default domain is `{id: default, name: Default}`; any other domain given by
    /// its name gets that name as its id too, so clouds.yaml may use either.
    pub fn from_name(name: &str) -> Domain {
        if name.eq_ignore_ascii_case("default") {
            Domain {
                id: "default".into(),
                name: "Default".into(),
            }
        } else {
            Domain {
                id: name.into(),
                name: name.into(),
            }
        }
    }

    pub fn matches(&self, id: Option<&str>, name: Option<&str>) -> bool {
        match (id, name) {
            (Some(id), _) => id == self.id,
            (None, Some(name)) => name == self.name,
            (None, None) => false,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Project {
    pub id: String,
    pub name: String,
    pub domain: Domain,
}

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
    pub password: String,
    pub domain: Domain,
    /// The only project the user has roles on (`member`, `reader`); also its default project.
    pub project_id: String,
    /// Has the `admin` role: Nova shows it every project's servers.
    pub admin: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct AppCredential {
    pub id: String,
    pub name: String,
    pub secret: String,
    pub user_id: String,
    pub project_id: String,
    /// Keystone's `expires_at`: from then on the credential authenticates nobody. None:
    /// it never expires.
    pub expires_at: Option<Timestamp>,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub user_id: String,
    pub project_id: String,
    pub methods: Vec<&'static str>,
    pub app_cred_id: Option<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub audit_id: String,
}

/// Who is calling Nova or Magnum, from a valid token.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub user_id: String,
    pub project_id: String,
    /// An admin: Nova shows it the servers of every project.
    pub admin: bool,
}

// ---------------------------------------------------------------------------------------
// Compute

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VmState {
    Active,
    Building,
    Stopped,
    Error,
    /// Shelved, its image uploaded, still on its hypervisor: only while Nova offloads it
    /// (`shelving_offloading`; Nova's default `shelved_offload_time = 0` offloads at once).
    Shelved,
    /// Shelved and offloaded: the guest is off and has left its hypervisor.
    ShelvedOffloaded,
    /// The compute host destroyed the guest and is cleaning up (networks, volumes): Nova shows
    /// it DELETED for a few seconds before its record goes (404).
    Deleted,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Active => "active",
            VmState::Building => "building",
            VmState::Stopped => "stopped",
            VmState::Error => "error",
            VmState::Shelved => "shelved",
            VmState::ShelvedOffloaded => "shelved_offloaded",
            VmState::Deleted => "deleted",
        }
    }
}

/// Nova's API status from `vm_state` and `task_state` (the map in
/// `nova/api/openstack/common.py`): e.g. a stopped server being hard-rebooted still reads
/// SHUTOFF, an active one being powered off still reads ACTIVE.
pub(crate) fn nova_status(vm: VmState, task: Option<&str>) -> &'static str {
    match (vm, task) {
        (VmState::Building, _) => "BUILD",
        (_, Some("rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning")) => "REBUILD",
        (VmState::Active, Some("rebooting" | "reboot_pending" | "reboot_started")) => "REBOOT",
        (
            VmState::Active,
            Some("rebooting_hard" | "reboot_pending_hard" | "reboot_started_hard"),
        ) => "HARD_REBOOT",
        (VmState::Active, _) => "ACTIVE",
        (VmState::Stopped, _) => "SHUTOFF",
        (VmState::Error, _) => "ERROR",
        (VmState::Shelved, _) => "SHELVED",
        (VmState::ShelvedOffloaded, _) => "SHELVED_OFFLOADED",
        (VmState::Deleted, _) => "DELETED",
    }
}

/// The next step of a server's transition, applied by [`State::tick`] when due.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    Spawned,
    Stopped,
    Started,
    /// The compute host took the reboot on (`reboot_pending[_hard]`,
    /// nova/compute/manager.py `reboot_instance`).
    RebootPending {
        hard: bool,
    },
    RebootStarted {
        hard: bool,
    },
    Rebooted,
    /// The compute host rebuilds the disks (`rebuild_block_device_mapping`).
    RebuildBlockDevices {
        stop_after: bool,
    },
    RebuildSpawning {
        stop_after: bool,
    },
    Rebuilt {
        stop_after: bool,
    },
    /// A rebuilt server that was stopped before: Nova saves it ACTIVE with no task first,
    /// then powers it off again (`_do_rebuild_instance` "bringing vm to original state").
    RebuiltPowerOff,
    /// The guest is powered off and its image uploaded; the server leaves its host.
    ShelveUploading,
    ShelveUploaded,
    ShelveOffloaded,
    UnshelveSpawning,
    Deleted,
    /// The delete is done: the record goes (404), and the host records its event's result.
    Purged,
}

#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub due: Instant,
    pub step: Step,
}

/// Who asked Nova for an action: the API caller and the request's id, or the simulator's own
/// operator (a test's `Sim::shelve_server`, Magnum's Heat).
#[derive(Clone, Debug)]
pub(crate) struct Actor {
    pub user_id: String,
    pub project_id: Option<String>,
    pub request_id: String,
}

impl Actor {
    pub fn new(caller: &Caller, request_id: &str) -> Actor {
        Actor {
            user_id: caller.user_id.clone(),
            project_id: Some(caller.project_id.clone()),
            request_id: request_id.to_string(),
        }
    }

    /// Someone outside the API the tests drive: an admin, or Heat for Magnum.
    pub fn internal(user_id: &str) -> Actor {
        Actor {
            user_id: user_id.to_string(),
            project_id: None,
            request_id: format!("req-{}", uuid::Uuid::new_v4()),
        }
    }
}

/// The user behind actions a test starts from Rust or `/_sim` (shelve, create).
pub(crate) const OPERATOR_USER: &str = "admin";
/// The user Magnum's Heat stacks act as (a trustee of the cluster's owner).
pub(crate) const HEAT_USER: &str = "magnum-trustee";

/// An instance action event (`nova.objects.InstanceActionEvent`): recorded by the compute
/// host (or the conductor) when it starts working on the action and when it is done.
#[derive(Clone, Debug)]
pub(crate) struct ActionEvent {
    pub event: &'static str,
    pub start_time: Timestamp,
    pub finish_time: Option<Timestamp>,
    /// `Success` or `Error`; None while it runs.
    pub result: Option<&'static str>,
}

/// An instance action (`nova.objects.InstanceAction`): recorded by nova-api when it accepts
/// the request; kept after the server is deleted.
#[derive(Clone, Debug)]
pub(crate) struct InstanceAction {
    pub action: &'static str,
    pub request_id: String,
    pub user_id: String,
    /// None: the caller's project (for servers visible to every project).
    pub project_id: Option<String>,
    pub start_time: Timestamp,
    pub updated_at: Timestamp,
    /// `Error` once an event failed, as Nova sets it.
    pub message: Option<&'static str>,
    /// Oldest first (rendered newest first).
    pub events: Vec<ActionEvent>,
}

impl InstanceAction {
    pub fn view(&self) -> InstanceActionView {
        InstanceActionView {
            action: self.action.to_string(),
            request_id: self.request_id.clone(),
            user_id: self.user_id.clone(),
            events: self
                .events
                .iter()
                .rev()
                .map(|e| ActionEventView {
                    event: e.event.to_string(),
                    result: e.result.map(str::to_string),
                })
                .collect(),
        }
    }

    fn start_event(&mut self, event: &'static str) {
        let now = Timestamp::now();
        self.events.push(ActionEvent {
            event,
            start_time: now,
            finish_time: None,
            result: None,
        });
        self.updated_at = now;
    }

    /// Ends the running event `event` (starting it first if the compute host never had).
    fn finish_event(&mut self, event: &'static str, result: &'static str) {
        if !self
            .events
            .iter()
            .any(|e| e.event == event && e.result.is_none())
        {
            self.start_event(event);
        }
        let now = Timestamp::now();
        if let Some(e) = self
            .events
            .iter_mut()
            .rev()
            .find(|e| e.event == event && e.result.is_none())
        {
            e.finish_time = Some(now);
            e.result = Some(result);
        }
        if result == "Error" {
            self.message = Some("Error");
        }
        self.updated_at = now;
    }
}

/// The compute-side work in progress for a server: which action's event is due, and whether
/// the compute host has started it (it has not while the host is down).
#[derive(Clone, Debug)]
pub(crate) struct RunningEvent {
    pub request_id: String,
    pub event: &'static str,
    pub started: bool,
}

/// A server Nova no longer shows (404), kept for its instance actions, which Nova lists for
/// deleted servers from microversion 2.21.
#[derive(Clone, Debug)]
pub(crate) struct DeletedServer {
    pub project_id: Option<String>,
    pub region: String,
    pub host_id: String,
    pub actions: Vec<InstanceAction>,
}

#[derive(Clone, Debug)]
pub(crate) struct Server {
    pub id: String,
    pub name: String,
    /// Creation order: Nova lists newest first.
    pub seq: u64,
    pub project_id: Option<String>,
    pub region: String,
    pub image_id: String,
    pub flavor_id: String,
    pub metadata: BTreeMap<String, String>,
    pub vm_state: VmState,
    pub task_state: Option<&'static str>,
    pub power_state: u8,
    pub host: String,
    pub host_id: String,
    pub host_down: bool,
    pub refuse_power_off: bool,
    pub cluster_id: Option<String>,
    pub nodegroup: Option<String>,
    pub address: String,
    pub mac: String,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub launched_at: Option<Timestamp>,
    pub pending: Option<Pending>,
    /// When Nova's power-state sync notices a guest that died on its own.
    pub power_sync_at: Option<Instant>,
    pub rebuilds: u32,
    pub soft_reboots: u32,
    pub hard_reboots: u32,
    pub stops: u32,
    pub starts: u32,
    pub unshelves: u32,
    /// Oldest first.
    pub actions: Vec<InstanceAction>,
    pub running_event: Option<RunningEvent>,
}

impl Server {
    pub fn status(&self) -> &'static str {
        nova_status(self.vm_state, self.task_state)
    }

    pub fn running(&self) -> bool {
        self.power_state == RUNNING
            && !self.host_down
            && !matches!(
                self.task_state,
                Some("reboot_started" | "reboot_started_hard")
            )
    }

    pub fn view(&self) -> ServerView {
        ServerView {
            id: self.id.clone(),
            name: self.name.clone(),
            status: self.status().to_string(),
            task_state: self.task_state.map(str::to_string),
            vm_state: self.vm_state.as_str().to_string(),
            power_state: self.power_state,
            image_id: self.image_id.clone(),
            flavor_id: self.flavor_id.clone(),
            metadata: self.metadata.clone(),
            project_id: self.project_id.clone(),
            region: self.region.clone(),
            cluster_id: self.cluster_id.clone(),
            nodegroup: self.nodegroup.clone(),
            address: self.address.clone(),
            host: self.host.clone(),
            host_down: self.host_down,
            refuse_power_off: self.refuse_power_off,
            running: self.running(),
            rebuilds: self.rebuilds,
            soft_reboots: self.soft_reboots,
            hard_reboots: self.hard_reboots,
            stops: self.stops,
            starts: self.starts,
            unshelves: self.unshelves,
        }
    }

    /// Nova's `check_instance_state`: the vm_state first, then the task_state.
    fn check(
        &self,
        action: &str,
        vm: &[VmState],
        task: &[Option<&str>],
    ) -> Result<(), ActionError> {
        if !vm.contains(&self.vm_state) {
            return Err(ActionError::Conflict(format!(
                "Cannot '{action}' instance {} while it is in vm_state {}",
                self.id,
                self.vm_state.as_str()
            )));
        }
        if !task.contains(&self.task_state) {
            return Err(ActionError::Conflict(format!(
                "Cannot '{action}' instance {} while it is in task_state {}",
                self.id,
                self.task_state.unwrap_or("None")
            )));
        }
        Ok(())
    }

    fn schedule(&mut self, due: Instant, step: Step) {
        self.pending = Some(Pending { due, step });
    }

    /// nova-api records `action` as accepted; the compute host records `event` when it takes
    /// the work on (at once, or once its host is back). An event still running for an
    /// earlier action is cut short: the new action took the server over.
    fn record(&mut self, actor: &Actor, action: &'static str, event: &'static str) {
        self.abandon_event();
        let now = Timestamp::now();
        self.actions.push(InstanceAction {
            action,
            request_id: actor.request_id.clone(),
            user_id: actor.user_id.clone(),
            project_id: actor.project_id.clone().or_else(|| self.project_id.clone()),
            start_time: now,
            updated_at: now,
            message: None,
            events: Vec::new(),
        });
        self.running_event = Some(RunningEvent {
            request_id: actor.request_id.clone(),
            event,
            started: false,
        });
        if !self.host_down {
            self.start_running_event();
        }
    }

    fn action_mut(&mut self, request_id: &str) -> Option<&mut InstanceAction> {
        self.actions
            .iter_mut()
            .rev()
            .find(|a| a.request_id == request_id)
    }

    /// The compute host takes the pending work on.
    fn start_running_event(&mut self) {
        let Some(running) = self.running_event.clone().filter(|r| !r.started) else {
            return;
        };
        if let Some(a) = self.action_mut(&running.request_id) {
            a.start_event(running.event);
        }
        if let Some(r) = &mut self.running_event {
            r.started = true;
        }
    }

    /// The running event ends with `result`.
    fn finish_running_event(&mut self, result: &'static str) {
        let Some(running) = self.running_event.take() else {
            return;
        };
        if let Some(a) = self.action_mut(&running.request_id) {
            a.finish_event(running.event, result);
        }
    }

    /// The same action goes on with another event (a rebuild that powers a stopped server
    /// off again records `compute_stop_instance` under the rebuild).
    fn next_event(&mut self, event: &'static str) {
        let Some(running) = self.running_event.clone() else {
            return;
        };
        self.finish_running_event("Success");
        self.running_event = Some(RunningEvent {
            request_id: running.request_id,
            event,
            started: false,
        });
        if !self.host_down {
            self.start_running_event();
        }
    }

    /// The work in progress was abandoned (the guest crashed, the operation failed, another
    /// action took over): a started event fails; one never started is dropped.
    fn abandon_event(&mut self) {
        match &self.running_event {
            Some(r) if r.started => self.finish_running_event("Error"),
            _ => self.running_event = None,
        }
    }
}

/// A server action as Nova's API accepts it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ServerAction {
    Stop,
    Start,
    Reboot {
        hard: bool,
    },
    Rebuild {
        image_id: String,
        name: Option<String>,
        metadata: Option<BTreeMap<String, String>>,
    },
    /// Shelve, offloaded at once (Nova's default `shelved_offload_time = 0`).
    Shelve,
    Unshelve,
    Delete,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum ActionError {
    #[error("Instance {0} could not be found.")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

/// Task states during which a hard reboot is still accepted (Nova lets a hard reboot take
/// over a stuck soft one).
const HARD_REBOOT_TASKS: &[Option<&str>] = &[
    None,
    Some("rebooting"),
    Some("reboot_pending"),
    Some("reboot_started"),
    Some("rebooting_hard"),
    Some("reboot_pending_hard"),
    Some("reboot_started_hard"),
];

// ---------------------------------------------------------------------------------------
// Container infra

#[derive(Clone, Debug)]
pub(crate) struct NodeGroup {
    pub uuid: String,
    /// Magnum's integer primary key, shown in the nodegroup detail.
    pub int_id: u32,
    pub name: String,
    pub role: String,
    pub node_count: u32,
    pub image_id: String,
    pub flavor_id: String,
    pub is_default: bool,
    pub min_node_count: u32,
    pub max_node_count: Option<u32>,
    pub status: String,
    pub status_reason: Option<String>,
    pub stack_id: String,
    /// Heat's ResourceGroup never reuses an index: replacements get the next one.
    pub next_index: u32,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ClusterOp {
    /// The resize's Heat stack update runs: at `due` servers are removed and added.
    Resize {
        due: Instant,
        nodegroup: String,
        node_count: u32,
        remove: Vec<String>,
    },
    /// Waiting for the new servers of the nodegroup to become ACTIVE.
    AwaitServers { nodegroup: String },
}

#[derive(Clone, Debug)]
pub(crate) struct Cluster {
    pub uuid: String,
    pub name: String,
    /// The random part Heat puts in server names: `<cluster>-<suffix>-node-N`.
    pub suffix: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub health_status: Option<String>,
    pub health_status_reason: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub nodegroups: Vec<NodeGroup>,
    pub stack_id: String,
    pub template_id: String,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
    pub op: Option<ClusterOp>,
    pub resizes: u32,
    /// Every resize fails in the conductor with this reason (`crate::magnum_conductor`).
    pub failing_updates: Option<String>,
}

impl Cluster {
    pub fn busy(&self) -> bool {
        self.status.ends_with("_IN_PROGRESS")
    }

    pub fn nodegroup(&self, ident: &str) -> Option<&NodeGroup> {
        self.nodegroups
            .iter()
            .find(|ng| ng.uuid == ident || ng.name == ident)
    }

    pub fn default_worker(&self) -> Option<&NodeGroup> {
        self.nodegroups
            .iter()
            .find(|ng| ng.is_default && ng.role != "master")
    }
}

/// A Magnum API error: status and message (rendered in Magnum's `errors` shape).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status}: {message}")]
pub(crate) struct MagnumError {
    pub status: u16,
    pub message: String,
}

impl MagnumError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        MagnumError {
            status,
            message: message.into(),
        }
    }
}

/// What Magnum does with an update (resize, PATCH) of a cluster that is `*_IN_PROGRESS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusyClusterPolicy {
    /// 409, so a client sees at once that it must retry later.
    #[default]
    Conflict,
    /// 202 and the update is dropped: what upstream Magnum does, because its API casts the
    /// update to the conductor, which refuses it ("Updating a cluster when status is ...")
    /// where the client cannot see it.
    Ignored,
}

// ---------------------------------------------------------------------------------------
// The state

pub(crate) struct State {
    pub config: SimConfig,
    pub projects: BTreeMap<String, Project>,
    pub users: BTreeMap<String, User>,
    pub app_creds: BTreeMap<String, AppCredential>,
    pub tokens: HashMap<String, Token>,
    pub servers: BTreeMap<String, Server>,
    /// Deleted servers, by id: what Nova still knows of them.
    pub deleted: BTreeMap<String, DeletedServer>,
    pub clusters: BTreeMap<String, Cluster>,
    pub faults: Vec<(u64, Fault)>,
    pub next_fault_id: u64,
    pub log: Vec<LoggedRequest>,
    /// Compute hosts that are down ([`State::set_compute_host_down`]).
    pub down_hosts: std::collections::BTreeSet<String>,
    next_seq: u64,
    next_ng_id: u32,
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl State {
    pub fn new(config: SimConfig) -> State {
        State {
            config,
            projects: BTreeMap::new(),
            users: BTreeMap::new(),
            app_creds: BTreeMap::new(),
            tokens: HashMap::new(),
            servers: BTreeMap::new(),
            deleted: BTreeMap::new(),
            clusters: BTreeMap::new(),
            faults: Vec::new(),
            next_fault_id: 1,
            log: Vec::new(),
            down_hosts: Default::default(),
            next_seq: 0,
            next_ng_id: 0,
        }
    }

    // --- identity ------------------------------------------------------------------------

    pub fn add_project(&mut self, name: &str, domain: &str) -> String {
        let domain = Domain::from_name(domain);
        if let Some(p) = self
            .projects
            .values()
            .find(|p| p.name == name && p.domain.id == domain.id)
        {
            return p.id.clone();
        }
        let id = short_id();
        self.projects.insert(
            id.clone(),
            Project {
                id: id.clone(),
                name: name.into(),
                domain,
            },
        );
        id
    }

    pub fn add_user(
        &mut self,
        name: &str,
        password: &str,
        domain: &str,
        project_id: &str,
    ) -> String {
        let id = short_id();
        self.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                name: name.into(),
                password: password.into(),
                domain: Domain::from_name(domain),
                project_id: project_id.into(),
                admin: false,
            },
        );
        id
    }

    pub fn add_application_credential(
        &mut self,
        user_id: &str,
        name: &str,
        secret: &str,
    ) -> Option<String> {
        let user = self.users.get(user_id)?;
        let id = short_id();
        let cred = AppCredential {
            id: id.clone(),
            name: name.into(),
            secret: secret.into(),
            user_id: user.id.clone(),
            project_id: user.project_id.clone(),
            expires_at: None,
        };
        self.app_creds.insert(id.clone(), cred);
        Some(id)
    }

    /// The caller behind `token`, if the token exists and has not expired.
    pub fn caller(&self, token: &str, now: Timestamp) -> Option<Caller> {
        let t = self.tokens.get(token)?;
        if t.expires_at <= now {
            return None;
        }
        Some(Caller {
            user_id: t.user_id.clone(),
            project_id: t.project_id.clone(),
            admin: self.users.get(&t.user_id).is_some_and(|u| u.admin),
        })
    }

    // --- compute -------------------------------------------------------------------------

    /// Creates a server as `actor` asked; its `create` action is recorded. A region the
    /// simulator does not serve is a mistake in the test's set-up.
    ///
    /// # Panics
    /// If `spec.region` is not one of the simulator's regions.
    pub fn create_server(
        &mut self,
        spec: NewServer,
        cluster: Option<(&str, &str, u32)>,
        building: bool,
        actor: &Actor,
    ) -> String {
        let regions = self.config.regions();
        let region = spec.region.clone().unwrap_or_else(|| regions[0].clone());
        assert!(
            regions.contains(&region),
            "create_server: the simulator has no region {region} (it has {regions:?})"
        );
        let id = uuid::Uuid::new_v4().to_string();
        self.next_seq += 1;
        let seq = self.next_seq;
        // Addresses on the simulated `private` network, 10.0.0.2 onwards; MACs from the
        // OpenStack OUI fa:16:3e as Neutron allocates them.
        let ip = format!("10.0.{}.{}", (seq - 1) / 250, (seq - 1) % 250 + 2);
        let mac = format!(
            "fa:16:3e:{:02x}:{:02x}:{:02x}",
            (seq >> 16) & 0xff,
            (seq >> 8) & 0xff,
            seq & 0xff
        );
        // The scheduler never picks a compute host that is down.
        let host = (0..3)
            .map(|i| format!("compute-{}", (seq + i) % 3))
            .find(|h| !self.down_hosts.contains(h))
            .unwrap_or_else(|| format!("compute-{}", seq % 3));
        let host_id = format!("{}{}", short_id(), &short_id()[..24]);
        let now = Timestamp::now();
        let mut metadata = spec.metadata;
        if let Some((cluster_id, nodegroup, _)) = cluster {
            // Where Magnum's Heat templates would leave a trace on the server.
            metadata.insert("magnum_cluster_uuid".into(), cluster_id.into());
            metadata.insert("magnum_nodegroup".into(), nodegroup.into());
        }
        let server = Server {
            id: id.clone(),
            name: spec.name,
            seq,
            project_id: spec.project_id,
            image_id: spec.image_id,
            flavor_id: spec.flavor_id,
            metadata,
            region,
            vm_state: if building {
                VmState::Building
            } else {
                VmState::Active
            },
            task_state: building.then_some("spawning"),
            power_state: if building { NOSTATE } else { RUNNING },
            host,
            host_id,
            host_down: false,
            refuse_power_off: false,
            cluster_id: cluster.map(|c| c.0.to_string()),
            nodegroup: cluster.map(|c| c.1.to_string()),
            address: ip,
            mac,
            created: now,
            updated: now,
            launched_at: (!building).then_some(now),
            pending: building.then(|| Pending {
                due: Instant::now() + self.config.transition_delay,
                step: Step::Spawned,
            }),
            power_sync_at: None,
            rebuilds: 0,
            soft_reboots: 0,
            hard_reboots: 0,
            stops: 0,
            starts: 0,
            unshelves: 0,
            actions: Vec::new(),
            running_event: None,
        };
        let mut server = server;
        // The conductor schedules it, then the compute host builds it.
        server.record(actor, "create", "conductor_schedule_and_build_instances");
        server.next_event("compute_build_and_run_instance");
        if !building {
            server.finish_running_event("Success");
        }
        self.servers.insert(id.clone(), server);
        id
    }

    /// The server leaves Nova's view (404 from now on); its instance actions stay.
    fn remove_server(&mut self, id: &str) {
        if let Some(s) = self.servers.remove(id) {
            self.deleted.insert(
                id.to_string(),
                DeletedServer {
                    project_id: s.project_id,
                    region: s.region,
                    host_id: s.host_id,
                    actions: s.actions,
                },
            );
        }
    }

    /// A server's instance actions, live or deleted, oldest first.
    pub fn instance_actions(&self, id: &str) -> Option<&[InstanceAction]> {
        match self.servers.get(id) {
            Some(s) => Some(&s.actions),
            None => self.deleted.get(id).map(|d| d.actions.as_slice()),
        }
    }

    /// Heat deletes a server of a nodegroup through Nova's API (a resize that removes it):
    /// as any delete, local when the server's compute service is down. Heat waits for the
    /// delete, so the server is gone when this returns.
    fn heat_delete(&mut self, id: &str) {
        let Some(s) = self.servers.get_mut(id) else {
            return;
        };
        if !s.host_down {
            s.record(
                &Actor::internal(HEAT_USER),
                "delete",
                "compute_terminate_instance",
            );
            s.finish_running_event("Success");
        }
        self.remove_server(id);
    }

    /// Servers in Nova's creation order, oldest first.
    pub fn servers_in_order(&self) -> Vec<&Server> {
        let mut v: Vec<&Server> = self.servers.values().collect();
        v.sort_by_key(|s| s.seq);
        v
    }

    pub fn server_views(&self) -> Vec<ServerView> {
        self.servers_in_order()
            .into_iter()
            .map(Server::view)
            .collect()
    }

    /// Accepts (or refuses) a server action the way nova-api does; the work itself happens
    /// in later steps of [`State::tick`].
    ///
    /// Each accepted action is recorded as an instance action (Nova's `_record_action_start`)
    /// with the compute host's event; a delete while the compute service is down is done in
    /// nova-api's database ("local delete") and records nothing, as Nova does.
    pub fn server_action(
        &mut self,
        id: &str,
        action: ServerAction,
        now: Instant,
        actor: &Actor,
    ) -> Result<(), ActionError> {
        let delay = self.config.transition_delay;
        let half = delay / 2;
        let s = self
            .servers
            .get_mut(id)
            .ok_or_else(|| ActionError::NotFound(id.to_string()))?;
        use VmState::*;
        match action {
            ServerAction::Stop => {
                s.check("stop", &[Active, Error], &[None])?;
                s.record(actor, "stop", "compute_stop_instance");
                s.task_state = Some("powering-off");
                s.stops += 1;
                s.schedule(now + delay, Step::Stopped);
            }
            ServerAction::Start => {
                s.check("start", &[Stopped], &[None])?;
                s.record(actor, "start", "compute_start_instance");
                s.task_state = Some("powering-on");
                s.starts += 1;
                s.schedule(now + delay, Step::Started);
            }
            ServerAction::Reboot { hard: false } => {
                s.check("reboot", &[Active], &[None])?;
                s.record(actor, "reboot", "compute_reboot_instance");
                s.task_state = Some("rebooting");
                s.soft_reboots += 1;
                s.schedule(now + half, Step::RebootPending { hard: false });
            }
            ServerAction::Reboot { hard: true } => {
                s.check("reboot", &[Active, Stopped, Error], HARD_REBOOT_TASKS)?;
                s.record(actor, "reboot", "compute_reboot_instance");
                s.task_state = Some("rebooting_hard");
                s.hard_reboots += 1;
                s.schedule(now + half, Step::RebootPending { hard: true });
            }
            ServerAction::Rebuild {
                image_id,
                name,
                metadata,
            } => {
                s.check("rebuild", &[Active, Stopped, Error], &[None])?;
                s.record(actor, "rebuild", "compute_rebuild_instance");
                // nova-api records the new image at once; the compute host does the rest.
                s.image_id = image_id;
                if let Some(name) = name {
                    s.name = name;
                }
                if let Some(metadata) = metadata {
                    s.metadata = metadata;
                }
                s.task_state = Some("rebuilding");
                s.rebuilds += 1;
                // Nova brings a server that was stopped back to stopped after the rebuild.
                let stop_after = s.vm_state == Stopped;
                s.schedule(now + half, Step::RebuildBlockDevices { stop_after });
            }
            ServerAction::Shelve => {
                s.check("shelve", &[Active, Stopped], &[None])?;
                s.record(actor, "shelve", "compute_shelve_instance");
                s.task_state = Some("shelving");
                s.schedule(now + half / 2, Step::ShelveUploading);
            }
            ServerAction::Unshelve => {
                s.check("unshelve", &[ShelvedOffloaded], &[None])?;
                s.record(actor, "unshelve", "compute_unshelve_instance");
                s.task_state = Some("unshelving");
                s.unshelves += 1;
                s.schedule(now + half, Step::UnshelveSpawning);
            }
            ServerAction::Delete => {
                if s.host_down {
                    // nova-api deletes locally when the compute service is down: gone at
                    // once, the guest untouched, and no instance action recorded. An event
                    // the host had started stays unfinished, as in Nova's database.
                    self.remove_server(id);
                    return Ok(());
                }
                // A second delete while the first runs is ignored, and not recorded.
                if s.task_state != Some("deleting") && s.vm_state != Deleted {
                    s.record(actor, "delete", "compute_terminate_instance");
                    s.task_state = Some("deleting");
                    s.schedule(now + delay, Step::Deleted);
                }
            }
        }
        s.updated = Timestamp::now();
        Ok(())
    }

    /// The guest dies on its own: power off now; Nova notices through its power-state sync
    /// (at once, or after `power_sync_delay`) and marks the server stopped.
    pub fn crash_server(&mut self, id: &str, now: Instant) -> bool {
        let sync = self.config.power_sync_delay;
        let Some(s) = self.servers.get_mut(id) else {
            return false;
        };
        s.power_state = SHUTDOWN;
        if !matches!(
            s.pending,
            Some(Pending {
                step: Step::Deleted | Step::Purged,
                ..
            })
        ) {
            s.pending = None;
            s.task_state = None;
            s.abandon_event();
        }
        if sync.is_zero() {
            sync_power_state(s);
        } else {
            s.power_sync_at = Some(now + sync);
        }
        s.updated = Timestamp::now();
        true
    }

    /// A failed operation leaves the server in ERROR; its guest's power is unchanged. The
    /// operation in progress, a delete included, ends there and its event fails (Nova's
    /// `_set_instance_obj_error_state`).
    pub fn set_error(&mut self, id: &str) -> bool {
        let Some(s) = self.servers.get_mut(id) else {
            return false;
        };
        s.vm_state = VmState::Error;
        s.pending = None;
        s.task_state = None;
        s.abandon_event();
        s.updated = Timestamp::now();
        true
    }

    pub fn set_host_down(&mut self, id: &str, down: bool, now: Instant) -> bool {
        let delay = self.config.transition_delay;
        let Some(s) = self.servers.get_mut(id) else {
            return false;
        };
        if s.host_down && !down {
            // nova-compute starts again and resumes what it was doing.
            if let Some(p) = &mut s.pending {
                p.due = now + delay;
            }
        }
        s.host_down = down;
        if !down {
            // The queued request reaches the compute host at last.
            s.start_running_event();
        }
        s.updated = Timestamp::now();
        true
    }

    /// Every server on compute host `host` (`compute-0` ...) loses its hypervisor, or gets
    /// it back; while it is down no new server is scheduled there.
    pub fn set_compute_host_down(&mut self, host: &str, down: bool, now: Instant) -> usize {
        if down {
            self.down_hosts.insert(host.to_string());
        } else {
            self.down_hosts.remove(host);
        }
        let ids: Vec<String> = self
            .servers
            .values()
            .filter(|s| s.host == host)
            .map(|s| s.id.clone())
            .collect();
        for id in &ids {
            self.set_host_down(id, down, now);
        }
        ids.len()
    }

    pub fn set_refuse_power_off(&mut self, id: &str, refuse: bool) -> bool {
        let Some(s) = self.servers.get_mut(id) else {
            return false;
        };
        s.refuse_power_off = refuse;
        true
    }

    // --- container infra -----------------------------------------------------------------

    pub fn create_cluster(&mut self, spec: NewCluster) -> String {
        let uuid = uuid::Uuid::new_v4().to_string();
        let suffix: String = short_id()[..12].to_string();
        let now = Timestamp::now();
        let mut nodegroups = Vec::new();
        let mut seen_roles: Vec<String> = Vec::new();
        for ng in &spec.nodegroups {
            let is_default = !seen_roles.contains(&ng.role);
            seen_roles.push(ng.role.clone());
            self.next_ng_id += 1;
            nodegroups.push(NodeGroup {
                uuid: uuid::Uuid::new_v4().to_string(),
                int_id: self.next_ng_id,
                name: ng.name.clone(),
                role: ng.role.clone(),
                node_count: ng.node_count,
                image_id: ng.image_id.clone(),
                flavor_id: ng.flavor_id.clone(),
                is_default,
                min_node_count: if ng.role == "master" { 1 } else { 0 },
                max_node_count: None,
                status: "CREATE_COMPLETE".into(),
                status_reason: Some("Stack CREATE completed successfully".into()),
                stack_id: uuid::Uuid::new_v4().to_string(),
                next_index: 0,
                created_at: now,
                updated_at: None,
            });
        }
        let cluster = Cluster {
            uuid: uuid.clone(),
            name: spec.name,
            suffix,
            status: "CREATE_COMPLETE".into(),
            status_reason: Some("Stack CREATE completed successfully".into()),
            health_status: None,
            health_status_reason: BTreeMap::new(),
            labels: spec.labels,
            nodegroups,
            stack_id: uuid::Uuid::new_v4().to_string(),
            template_id: uuid::Uuid::new_v4().to_string(),
            created_at: now,
            updated_at: None,
            op: None,
            resizes: 0,
            failing_updates: None,
        };
        self.clusters.insert(uuid.clone(), cluster);
        let groups: Vec<(String, u32)> = spec
            .nodegroups
            .iter()
            .map(|ng| (ng.name.clone(), ng.node_count))
            .collect();
        for (ng, count) in groups {
            for _ in 0..count {
                self.add_cluster_server(&uuid, &ng, false);
            }
        }
        uuid
    }

    /// Creates the next server of a nodegroup, named the way Magnum's Heat templates name
    /// them: `<cluster>-<suffix>-master-N` / `-node-N` (non-default worker groups put their
    /// name in between).
    fn add_cluster_server(
        &mut self,
        cluster_id: &str,
        nodegroup: &str,
        building: bool,
    ) -> Option<String> {
        let c = self.clusters.get_mut(cluster_id)?;
        let ng = c.nodegroups.iter_mut().find(|n| n.name == nodegroup)?;
        let index = ng.next_index;
        ng.next_index += 1;
        let kind = if ng.role == "master" {
            "master"
        } else {
            "node"
        };
        let name = if ng.is_default {
            format!("{}-{}-{kind}-{index}", c.name, c.suffix)
        } else {
            format!("{}-{}-{}-{kind}-{index}", c.name, c.suffix, ng.name)
        };
        let spec = NewServer {
            name,
            image_id: ng.image_id.clone(),
            flavor_id: ng.flavor_id.clone(),
            metadata: BTreeMap::new(),
            project_id: None,
            region: None,
        };
        let cid = c.uuid.clone();
        Some(self.create_server(
            spec,
            Some((&cid, nodegroup, index)),
            building,
            &Actor::internal(HEAT_USER),
        ))
    }

    /// Resolves a cluster by uuid or name; a name shared by several clusters is a 409, as
    /// in Magnum.
    pub fn find_cluster(&self, ident: &str) -> Result<&Cluster, MagnumError> {
        if let Some(c) = self.clusters.get(ident) {
            return Ok(c);
        }
        let mut named = self.clusters.values().filter(|c| c.name == ident);
        match (named.next(), named.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(MagnumError::new(
                409,
                "Multiple clusters exist with same name. Please use the cluster uuid instead.",
            )),
            _ => Err(MagnumError::new(
                404,
                format!("Cluster {ident} could not be found."),
            )),
        }
    }

    /// Server ids of a nodegroup, oldest first.
    pub fn nodegroup_servers(&self, cluster_id: &str, nodegroup: &str) -> Vec<&Server> {
        self.servers_in_order()
            .into_iter()
            .filter(|s| {
                s.cluster_id.as_deref() == Some(cluster_id)
                    && s.nodegroup.as_deref() == Some(nodegroup)
            })
            .collect()
    }

    pub fn cluster_view(&self, c: &Cluster) -> ClusterView {
        let nodegroups: Vec<NodeGroupView> = c
            .nodegroups
            .iter()
            .map(|ng| NodeGroupView {
                id: ng.uuid.clone(),
                name: ng.name.clone(),
                role: ng.role.clone(),
                node_count: ng.node_count,
                servers: self
                    .nodegroup_servers(&c.uuid, &ng.name)
                    .iter()
                    .map(|s| s.id.clone())
                    .collect(),
                image_id: ng.image_id.clone(),
                flavor_id: ng.flavor_id.clone(),
                is_default: ng.is_default,
                status: ng.status.clone(),
            })
            .collect();
        let count = |master: bool| {
            c.nodegroups
                .iter()
                .filter(|ng| (ng.role == "master") == master)
                .map(|ng| ng.node_count)
                .sum()
        };
        ClusterView {
            id: c.uuid.clone(),
            name: c.name.clone(),
            status: c.status.clone(),
            status_reason: c.status_reason.clone(),
            health_status: c.health_status.clone(),
            health_status_reason: c.health_status_reason.clone(),
            labels: c.labels.clone(),
            nodegroups,
            master_count: count(true),
            node_count: count(false),
            resizes: c.resizes,
        }
    }

    /// Refuses an update of a busy cluster per the configured policy: `Ok(true)` means go
    /// ahead, `Ok(false)` means answer 202 and drop it.
    pub fn admit_cluster_update(&self, cluster_id: &str) -> Result<bool, MagnumError> {
        let c = &self.clusters[cluster_id];
        if !c.busy() {
            return Ok(true);
        }
        match self.config.busy_cluster_updates {
            BusyClusterPolicy::Ignored => Ok(false),
            BusyClusterPolicy::Conflict => Err(MagnumError::new(
                409,
                format!(
                    "Updating a cluster when status is \"{}\" is not supported.",
                    c.status
                ),
            )),
        }
    }

    /// Starts a resize of one nodegroup (Magnum's `actions/resize`, or a `node_count` PATCH
    /// of the default worker nodegroup). Validation has been done by the caller.
    pub fn start_resize(
        &mut self,
        cluster_id: &str,
        nodegroup: &str,
        node_count: u32,
        remove: Vec<String>,
        now: Instant,
    ) {
        let delay = self.config.transition_delay;
        let Some(c) = self.clusters.get_mut(cluster_id) else {
            return;
        };
        c.resizes += 1;
        if crate::magnum_conductor::fail_resize(c, nodegroup) {
            return;
        }
        let stamp = Timestamp::now();
        c.status = "UPDATE_IN_PROGRESS".into();
        c.status_reason = None;
        c.updated_at = Some(stamp);
        if let Some(ng) = c.nodegroups.iter_mut().find(|n| n.name == nodegroup) {
            // The conductor records the new size before Heat starts working.
            ng.node_count = node_count;
            ng.status = "UPDATE_IN_PROGRESS".into();
            ng.status_reason = None;
            ng.updated_at = Some(stamp);
        }
        c.op = Some(ClusterOp::Resize {
            due: now + delay,
            nodegroup: nodegroup.into(),
            node_count,
            remove,
        });
    }

    // --- the clock -----------------------------------------------------------------------

    /// Applies every step that is due at `now`; returns when the next one is due.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        // A zero delay makes a chain of steps due at once: run until nothing is due.
        for _ in 0..16 {
            if !self.apply_due(now) {
                break;
            }
        }
        let servers = self.servers.values().flat_map(|s| {
            let pending = s.pending.as_ref().filter(|_| !s.host_down).map(|p| p.due);
            pending.into_iter().chain(s.power_sync_at)
        });
        let clusters = self.clusters.values().filter_map(|c| match &c.op {
            Some(ClusterOp::Resize { due, .. }) => Some(*due),
            _ => None,
        });
        servers.chain(clusters).min()
    }

    fn apply_due(&mut self, now: Instant) -> bool {
        let delay = self.config.transition_delay;
        let mut changed = false;
        let mut deleted = Vec::new();
        for s in self.servers.values_mut() {
            if let Some(at) = s.power_sync_at
                && at <= now
            {
                s.power_sync_at = None;
                sync_power_state(s);
                changed = true;
            }
            // A dead hypervisor finishes nothing (delete is handled by nova-api itself).
            if s.host_down {
                continue;
            }
            let Some(p) = s.pending.take_if(|p| p.due <= now) else {
                continue;
            };
            changed = true;
            s.updated = Timestamp::now();
            match p.step {
                Step::Spawned => {
                    s.vm_state = VmState::Active;
                    s.task_state = None;
                    s.power_state = RUNNING;
                    s.launched_at = Some(Timestamp::now());
                    s.finish_running_event("Success");
                }
                Step::Stopped => {
                    s.task_state = None;
                    if s.refuse_power_off {
                        // The guest ignored the shutdown and the compute host gave up: the
                        // task ends, the server stays ACTIVE and running.
                        s.vm_state = VmState::Active;
                        s.power_state = RUNNING;
                        s.finish_running_event("Error");
                    } else {
                        s.vm_state = VmState::Stopped;
                        s.power_state = SHUTDOWN;
                        s.finish_running_event("Success");
                    }
                }
                Step::Started | Step::Rebooted => {
                    s.vm_state = VmState::Active;
                    s.task_state = None;
                    s.power_state = RUNNING;
                    s.finish_running_event("Success");
                }
                // Real Nova (seen on 32.x's fake driver): rebooting[_hard] while the API has it,
                // then reboot_pending[_hard] and reboot_started[_hard] on the compute host.
                Step::RebootPending { hard } => {
                    s.task_state = Some(if hard {
                        "reboot_pending_hard"
                    } else {
                        "reboot_pending"
                    });
                    s.schedule(now + delay / 4, Step::RebootStarted { hard });
                }
                Step::RebootStarted { hard } => {
                    s.task_state = Some(if hard {
                        "reboot_started_hard"
                    } else {
                        "reboot_started"
                    });
                    s.schedule(now + (delay - delay / 2 - delay / 4), Step::Rebooted);
                }
                // Real Nova: rebuilding, rebuild_block_device_mapping, rebuild_spawning; a
                // stopped server stays vm_state stopped, powered off, until it is spawned.
                Step::RebuildBlockDevices { stop_after } => {
                    s.task_state = Some("rebuild_block_device_mapping");
                    s.schedule(now + delay / 4, Step::RebuildSpawning { stop_after });
                }
                Step::RebuildSpawning { stop_after } => {
                    s.task_state = Some("rebuild_spawning");
                    if !stop_after {
                        s.power_state = NOSTATE;
                    }
                    s.schedule(
                        now + (delay - delay / 2 - delay / 4),
                        Step::Rebuilt { stop_after },
                    );
                }
                Step::Rebuilt { stop_after } => {
                    // Saved ACTIVE with no task in both cases: a client that takes this for
                    // the end of a rebuild of a stopped server is wrong about it.
                    s.vm_state = VmState::Active;
                    s.power_state = RUNNING;
                    s.launched_at = Some(Timestamp::now());
                    s.task_state = None;
                    if stop_after {
                        s.schedule(now + delay / 2, Step::RebuiltPowerOff);
                    } else {
                        s.finish_running_event("Success");
                    }
                }
                Step::RebuiltPowerOff => {
                    s.task_state = Some("powering-off");
                    s.next_event("compute_stop_instance");
                    s.schedule(now + delay, Step::Stopped);
                }
                // As seen on Nova 32.x: ACTIVE / shelving → ACTIVE / shelving_image_uploading →
                // SHELVED / shelving_offloading (powered off) → SHELVED_OFFLOADED.
                Step::ShelveUploading => {
                    s.task_state = Some("shelving_image_uploading");
                    s.schedule(now + delay / 4, Step::ShelveUploaded);
                }
                Step::ShelveUploaded => {
                    s.vm_state = VmState::Shelved;
                    s.power_state = SHUTDOWN;
                    s.task_state = Some("shelving_offloading");
                    s.schedule(now + (delay - delay / 2), Step::ShelveOffloaded);
                }
                Step::ShelveOffloaded => {
                    s.vm_state = VmState::ShelvedOffloaded;
                    s.task_state = None;
                    s.power_state = NOSTATE;
                    s.finish_running_event("Success");
                }
                Step::UnshelveSpawning => {
                    s.task_state = Some("spawning");
                    s.schedule(now + (delay - delay / 2), Step::Started);
                }
                // As seen on Nova 32.x: SHUTOFF or ACTIVE / deleting, then DELETED with no task
                // while the host cleans up, then 404.
                Step::Deleted => {
                    s.vm_state = VmState::Deleted;
                    s.task_state = None;
                    s.power_state = NOSTATE;
                    s.schedule(now + delay / 2, Step::Purged);
                }
                Step::Purged => {
                    // The compute host records its event's result once the instance is gone.
                    s.finish_running_event("Success");
                    deleted.push(s.id.clone());
                }
            }
        }
        for id in deleted {
            self.remove_server(&id);
        }
        changed | self.advance_clusters(now)
    }

    fn advance_clusters(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let ids: Vec<String> = self.clusters.keys().cloned().collect();
        for id in ids {
            let op = self.clusters[&id].op.clone();
            match op {
                Some(ClusterOp::Resize {
                    due,
                    nodegroup,
                    node_count,
                    remove,
                }) if due <= now => {
                    changed = true;
                    let members: Vec<String> = self
                        .nodegroup_servers(&id, &nodegroup)
                        .iter()
                        .map(|s| s.id.clone())
                        .collect();
                    // Heat's removal policy takes the named members (unknown ids are
                    // ignored), then the newest ones if the group is still too big.
                    let (named, mut members): (Vec<String>, Vec<String>) =
                        members.into_iter().partition(|m| remove.contains(m));
                    for m in named {
                        self.heat_delete(&m);
                    }
                    while members.len() > node_count as usize {
                        if let Some(m) = members.pop() {
                            self.heat_delete(&m);
                        }
                    }
                    for _ in members.len()..node_count as usize {
                        self.add_cluster_server(&id, &nodegroup, true);
                    }
                    if let Some(c) = self.clusters.get_mut(&id) {
                        c.op = Some(ClusterOp::AwaitServers { nodegroup });
                    }
                }
                Some(ClusterOp::AwaitServers { nodegroup }) => {
                    let building = self
                        .nodegroup_servers(&id, &nodegroup)
                        .iter()
                        .any(|s| s.vm_state == VmState::Building);
                    if building {
                        continue;
                    }
                    changed = true;
                    let stamp = Timestamp::now();
                    if let Some(c) = self.clusters.get_mut(&id) {
                        c.op = None;
                        c.status = "UPDATE_COMPLETE".into();
                        c.status_reason = Some("Stack UPDATE completed successfully".into());
                        c.updated_at = Some(stamp);
                        if let Some(ng) = c.nodegroups.iter_mut().find(|n| n.name == nodegroup) {
                            ng.status = "UPDATE_COMPLETE".into();
                            ng.status_reason = Some("Stack UPDATE completed successfully".into());
                            ng.updated_at = Some(stamp);
                        }
                    }
                }
                _ => {}
            }
        }
        changed
    }
}

/// Nova's `_sync_instance_power_state`: an ACTIVE server whose guest is off and that has no
/// task running is stopped through the API.
fn sync_power_state(s: &mut Server) {
    if s.vm_state == VmState::Active && s.task_state.is_none() && s.power_state != RUNNING {
        s.vm_state = VmState::Stopped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn state(delay_ms: u64) -> State {
        State::new(SimConfig {
            transition_delay: Duration::from_millis(delay_ms),
            ..SimConfig::default()
        })
    }

    fn server(st: &mut State) -> String {
        st.create_server(
            NewServer {
                name: "s".into(),
                ..Default::default()
            },
            None,
            false,
            &op(),
        )
    }

    fn op() -> Actor {
        Actor::internal(OPERATOR_USER)
    }

    /// An event's name and result.
    type Event = (String, Option<String>);

    /// `(action, [(event, result)])`, oldest action first, as Nova holds them.
    fn actions(st: &State, id: &str) -> Vec<(String, Vec<Event>)> {
        st.instance_actions(id)
            .unwrap_or_default()
            .iter()
            .map(|a| {
                let v = a.view();
                let events = v.events.into_iter().map(|e| (e.event, e.result)).collect();
                (v.action, events)
            })
            .collect()
    }

    fn ev(event: &str, result: Option<&str>) -> Event {
        (event.to_string(), result.map(str::to_string))
    }

    #[test]
    fn status_map_follows_nova() {
        assert_eq!(nova_status(VmState::Active, Some("powering-off")), "ACTIVE");
        assert_eq!(
            nova_status(VmState::Stopped, Some("rebooting_hard")),
            "SHUTOFF"
        );
        assert_eq!(nova_status(VmState::Stopped, Some("rebuilding")), "REBUILD");
        assert_eq!(
            nova_status(VmState::Active, Some("reboot_started_hard")),
            "HARD_REBOOT"
        );
    }

    #[test]
    fn a_stop_completes_only_when_due() {
        let mut st = state(100);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.server_action(&id, ServerAction::Stop, t0, &op())
            .unwrap();
        st.tick(t0 + Duration::from_millis(50));
        assert_eq!(st.servers[&id].status(), "ACTIVE");
        assert_eq!(st.servers[&id].task_state, Some("powering-off"));
        st.tick(t0 + Duration::from_millis(100));
        assert_eq!(st.servers[&id].status(), "SHUTOFF");
        assert_eq!(st.servers[&id].power_state, SHUTDOWN);
    }

    #[test]
    fn a_shelved_server_is_offloaded_and_only_unshelve_starts_it() {
        let mut st = state(0);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.server_action(&id, ServerAction::Shelve, t0, &op())
            .unwrap();
        st.tick(t0);
        let s = &st.servers[&id];
        assert_eq!(
            (s.status(), s.vm_state, s.power_state, s.running()),
            (
                "SHELVED_OFFLOADED",
                VmState::ShelvedOffloaded,
                NOSTATE,
                false
            )
        );
        for refused in [
            ServerAction::Stop,
            ServerAction::Start,
            ServerAction::Reboot { hard: true },
        ] {
            let err = st.server_action(&id, refused, t0, &op()).unwrap_err();
            assert!(
                err.to_string().contains("vm_state shelved_offloaded"),
                "{err}"
            );
        }
        st.server_action(&id, ServerAction::Unshelve, t0, &op())
            .unwrap();
        assert_eq!(st.servers[&id].task_state, Some("unshelving"));
        st.tick(t0);
        let s = &st.servers[&id];
        assert_eq!((s.status(), s.running(), s.unshelves), ("ACTIVE", true, 1));
    }

    #[test]
    fn rebuilding_a_stopped_server_leaves_it_stopped() {
        let mut st = state(0);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.server_action(&id, ServerAction::Stop, t0, &op())
            .unwrap();
        st.tick(t0);
        let rebuild = ServerAction::Rebuild {
            image_id: "img-2".into(),
            name: None,
            metadata: None,
        };
        st.server_action(&id, rebuild, t0, &op()).unwrap();
        st.tick(t0);
        let s = &st.servers[&id];
        assert_eq!(
            (s.status(), s.image_id.as_str(), s.rebuilds),
            ("SHUTOFF", "img-2", 1)
        );
        // Nova's rebuild powers the stopped server off again under the same action.
        let rebuild = actions(&st, &id).pop().unwrap();
        assert_eq!(
            rebuild,
            (
                "rebuild".to_string(),
                vec![
                    ev("compute_stop_instance", Some("Success")),
                    ev("compute_rebuild_instance", Some("Success")),
                ]
            )
        );
    }

    #[test]
    fn a_rebuilt_stopped_server_is_active_without_a_task_before_it_powers_off() {
        let mut st = state(100);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.server_action(&id, ServerAction::Stop, t0, &op())
            .unwrap();
        st.tick(t0 + Duration::from_millis(100));
        let rebuild = ServerAction::Rebuild {
            image_id: "img-2".into(),
            name: None,
            metadata: None,
        };
        let t1 = t0 + Duration::from_millis(200);
        st.server_action(&id, rebuild, t1, &op()).unwrap();
        let seen = |st: &State| {
            let s = &st.servers[&id];
            (s.status(), s.task_state)
        };
        assert_eq!(seen(&st), ("REBUILD", Some("rebuilding")));
        assert_eq!(
            st.servers[&id].vm_state,
            VmState::Stopped,
            "as Nova shows it"
        );
        st.tick(t1 + Duration::from_millis(50));
        assert_eq!(seen(&st), ("REBUILD", Some("rebuild_block_device_mapping")));
        st.tick(t1 + Duration::from_millis(75));
        assert_eq!(seen(&st), ("REBUILD", Some("rebuild_spawning")));
        assert_eq!(st.servers[&id].power_state, SHUTDOWN, "still off");
        st.tick(t1 + Duration::from_millis(100));
        assert_eq!(seen(&st), ("ACTIVE", None));
        st.tick(t1 + Duration::from_millis(150));
        assert_eq!(seen(&st), ("ACTIVE", Some("powering-off")));
        st.tick(t1 + Duration::from_millis(250));
        assert_eq!(seen(&st), ("SHUTOFF", None));
    }

    #[test]
    fn a_deleted_server_shows_deleted_before_it_is_gone() {
        // As seen on Nova 32.x: deleting, then DELETED with no task for a while, then 404.
        let mut st = state(100);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.server_action(&id, ServerAction::Delete, t0, &op())
            .unwrap();
        assert_eq!(st.servers[&id].task_state, Some("deleting"));
        st.tick(t0 + Duration::from_millis(100));
        let s = &st.servers[&id];
        assert_eq!(
            (s.status(), s.task_state, s.power_state),
            ("DELETED", None, NOSTATE)
        );
        let err = st
            .server_action(&id, ServerAction::Stop, t0, &op())
            .unwrap_err();
        assert!(err.to_string().contains("vm_state deleted"), "{err}");
        st.tick(t0 + Duration::from_millis(150));
        assert!(!st.servers.contains_key(&id));
        assert_eq!(
            actions(&st, &id).pop().unwrap().1,
            [ev("compute_terminate_instance", Some("Success"))]
        );
    }

    #[test]
    fn reboots_go_through_nova_s_task_states() {
        // As seen on Nova 32.x: rebooting, reboot_pending, reboot_started (and the _hard
        // ones), status REBOOT or HARD_REBOOT until ACTIVE.
        for (hard, status, tasks) in [
            (
                false,
                "REBOOT",
                ["rebooting", "reboot_pending", "reboot_started"],
            ),
            (
                true,
                "HARD_REBOOT",
                [
                    "rebooting_hard",
                    "reboot_pending_hard",
                    "reboot_started_hard",
                ],
            ),
        ] {
            let mut st = state(100);
            let id = server(&mut st);
            let t0 = Instant::now();
            st.server_action(&id, ServerAction::Reboot { hard }, t0, &op())
                .unwrap();
            let mut seen = vec![];
            for ms in [0, 50, 75, 100] {
                st.tick(t0 + Duration::from_millis(ms));
                let s = &st.servers[&id];
                seen.push((s.status(), s.task_state));
            }
            assert_eq!(
                seen,
                [
                    (status, Some(tasks[0])),
                    (status, Some(tasks[1])),
                    (status, Some(tasks[2])),
                    ("ACTIVE", None)
                ]
            );
        }
    }

    #[test]
    fn actions_and_events_are_recorded_as_nova_does() {
        let mut st = state(0);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.server_action(&id, ServerAction::Stop, t0, &op())
            .unwrap();
        st.tick(t0);
        st.server_action(&id, ServerAction::Start, t0, &op())
            .unwrap();
        st.tick(t0);
        st.server_action(&id, ServerAction::Reboot { hard: true }, t0, &op())
            .unwrap();
        st.tick(t0);
        st.server_action(&id, ServerAction::Delete, t0, &op())
            .unwrap();
        st.tick(t0);
        assert!(!st.servers.contains_key(&id), "deleted");
        assert_eq!(
            actions(&st, &id),
            [
                (
                    "create".to_string(),
                    vec![
                        ev("compute_build_and_run_instance", Some("Success")),
                        ev("conductor_schedule_and_build_instances", Some("Success")),
                    ]
                ),
                (
                    "stop".to_string(),
                    vec![ev("compute_stop_instance", Some("Success"))]
                ),
                (
                    "start".to_string(),
                    vec![ev("compute_start_instance", Some("Success"))]
                ),
                (
                    "reboot".to_string(),
                    vec![ev("compute_reboot_instance", Some("Success"))]
                ),
                (
                    "delete".to_string(),
                    vec![ev("compute_terminate_instance", Some("Success"))]
                ),
            ]
        );
    }

    #[test]
    fn a_delete_while_the_host_is_down_is_local_and_records_nothing() {
        let mut st = state(0);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.set_host_down(&id, true, t0);
        // A stop is accepted and recorded, but the compute host never starts on it.
        st.server_action(&id, ServerAction::Stop, t0, &op())
            .unwrap();
        st.tick(t0);
        assert_eq!(st.servers[&id].task_state, Some("powering-off"));
        st.server_action(&id, ServerAction::Delete, t0, &op())
            .unwrap();
        assert!(!st.servers.contains_key(&id), "gone at once");
        let recorded = actions(&st, &id);
        let names: Vec<&str> = recorded.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(names, ["create", "stop"], "no delete action");
        assert_eq!(recorded[1].1, [], "the stop never reached the host");
    }

    #[test]
    fn a_delete_the_host_took_on_before_it_died_stays_unfinished() {
        let mut st = state(100);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.server_action(&id, ServerAction::Delete, t0, &op())
            .unwrap();
        st.set_host_down(&id, true, t0);
        st.tick(t0 + Duration::from_millis(200));
        assert_eq!(st.servers[&id].task_state, Some("deleting"));
        // A second delete: local now, and not recorded.
        st.server_action(&id, ServerAction::Delete, t0, &op())
            .unwrap();
        assert!(!st.servers.contains_key(&id));
        let recorded = actions(&st, &id);
        assert_eq!(recorded.len(), 2, "create and the first delete");
        assert_eq!(
            recorded[1],
            (
                "delete".to_string(),
                vec![ev("compute_terminate_instance", None)]
            )
        );
    }

    #[test]
    fn an_action_queued_on_a_down_host_starts_when_it_is_back() {
        let mut st = state(0);
        let id = server(&mut st);
        let t0 = Instant::now();
        st.set_host_down(&id, true, t0);
        st.server_action(&id, ServerAction::Stop, t0, &op())
            .unwrap();
        st.tick(t0);
        assert_eq!(actions(&st, &id)[1].1, []);
        st.set_host_down(&id, false, t0);
        assert_eq!(actions(&st, &id)[1].1, [ev("compute_stop_instance", None)]);
        st.tick(t0);
        assert_eq!(st.servers[&id].status(), "SHUTOFF");
        assert_eq!(
            actions(&st, &id)[1].1,
            [ev("compute_stop_instance", Some("Success"))]
        );
    }
}
