//! Nova: show a server, find one by exact name, power actions, rebuild, delete. Wire types
//! stay here; callers see [`Server`].

use std::collections::BTreeMap;

use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::DeletionEvidence;
use super::client::{
    NOVA_INSTANCE_ACTIONS_MICROVERSION, OpenStackClient, Request, Service, parse_json, segment,
};
use super::error::{CloudError, Result};

/// A Nova server, as the remediation needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub id: String,
    pub name: String,
    /// ACTIVE, SHUTOFF, REBOOT, HARD_REBOOT, REBUILD, BUILD, ERROR, DELETED, ...
    pub status: String,
    /// `OS-EXT-STS:task_state`: what Nova is doing to it now (`powering-off`, `rebooting`, ...).
    pub task_state: Option<String>,
    /// `OS-EXT-STS:vm_state`: `active`, `stopped`, `error`, ...
    pub vm_state: Option<String>,
    /// `OS-EXT-STS:power_state`, when the policy lets us see it.
    pub power_state: Option<PowerState>,
    /// The image it was built from; None for a server booted from a volume.
    pub image_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Nova's `updated`: moves whenever the server changes.
    pub updated: Option<Timestamp>,
}

/// Status names Nova uses.
pub mod status {
    pub const ACTIVE: &str = "ACTIVE";
    pub const SHUTOFF: &str = "SHUTOFF";
    pub const ERROR: &str = "ERROR";
    pub const DELETED: &str = "DELETED";
}

impl Server {
    /// Powered off with nothing in progress: the guest cannot write anywhere. (A shelved
    /// server is off too; the step machine's `ServerState::is_shelved` knows it.)
    pub fn is_off(&self) -> bool {
        self.status == status::SHUTOFF && self.task_state.is_none()
    }
    /// Running with nothing in progress.
    pub fn is_active(&self) -> bool {
        self.status == status::ACTIVE && self.task_state.is_none()
    }
    /// Nova is working on it (a task is set): an action now would get a 409.
    pub fn is_busy(&self) -> bool {
        self.task_state.is_some()
    }
    pub fn is_error(&self) -> bool {
        self.status == status::ERROR
    }
}

/// Nova's power states (`nova/compute/power_state.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    NoState,
    Running,
    Paused,
    Shutdown,
    Crashed,
    Suspended,
    Other(u8),
}

impl PowerState {
    pub fn from_code(code: u8) -> PowerState {
        match code {
            0 => PowerState::NoState,
            1 => PowerState::Running,
            3 => PowerState::Paused,
            4 => PowerState::Shutdown,
            6 => PowerState::Crashed,
            7 => PowerState::Suspended,
            other => PowerState::Other(other),
        }
    }
}

/// Soft (ACPI, the guest shuts down cleanly) or hard (power cycle) reboot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebootType {
    Soft,
    Hard,
}

impl RebootType {
    pub fn as_str(self) -> &'static str {
        match self {
            RebootType::Soft => "SOFT",
            RebootType::Hard => "HARD",
        }
    }
}

#[derive(Deserialize)]
struct ServerEnvelope {
    server: ServerWire,
}

#[derive(Deserialize)]
struct ServerList {
    servers: Vec<ServerWire>,
    #[serde(default)]
    servers_links: Vec<Link>,
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    rel: String,
}

#[derive(Deserialize)]
struct ServerWire {
    id: String,
    #[serde(default)]
    name: String,
    status: String,
    /// Outer None: the attribute is absent (a policy hides it), which is not "no task".
    #[serde(
        rename = "OS-EXT-STS:task_state",
        default,
        deserialize_with = "present"
    )]
    task_state: Option<Option<String>>,
    #[serde(rename = "OS-EXT-STS:vm_state", default)]
    vm_state: Option<String>,
    #[serde(rename = "OS-EXT-STS:power_state", default)]
    power_state: Option<u8>,
    /// `{"id": ..., "links": [...]}`, or `""` for a server booted from a volume.
    #[serde(default)]
    image: Value,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    updated: Option<String>,
}

/// A field that is present, null or not: `Some(value)`; absent fields take the default None.
fn present<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl ServerWire {
    /// The server, if Nova showed what the remediation must know. `OS-EXT-STS:task_state` is a
    /// policy-controlled attribute: absent, it says nothing, and reading it as "no task" would
    /// take a server that is powering off for one that is off.
    fn into_server(self, operation: &'static str) -> Result<Server> {
        if self.task_state.is_none() {
            return Err(CloudError::Unsupported {
                service: "nova",
                operation,
                message: format!(
                    "Nova shows server {} without OS-EXT-STS:task_state (a policy hides the \
                     extended status attributes from these credentials): without it a server \
                     being powered off cannot be told from one that is off, so nothing is \
                     decided on it; let this user see the servers' extended status",
                    self.id
                ),
            });
        }
        Ok(self.into())
    }
}

impl From<ServerWire> for Server {
    fn from(w: ServerWire) -> Server {
        Server {
            id: w.id,
            name: w.name,
            status: w.status,
            task_state: w.task_state.flatten().filter(|t| !t.is_empty()),
            vm_state: w.vm_state,
            power_state: w.power_state.map(PowerState::from_code),
            image_id: w
                .image
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_string),
            metadata: w.metadata.unwrap_or_default(),
            updated: w.updated.and_then(|u| u.parse().ok()),
        }
    }
}

/// `GET /servers/{id}`; None on 404.
pub(super) async fn show(client: &OpenStackClient, id: &str) -> Result<Option<Server>> {
    const OP: &str = "server_show";
    let req = Request::get(Service::Nova, OP, format!("/servers/{}", segment(id)));
    match client.call(&req).await {
        Ok(answer) => {
            let envelope: ServerEnvelope = parse_json("nova", OP, &answer.body)?;
            envelope.server.into_server(OP).map(Some)
        }
        Err(CloudError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pages of `GET /servers/detail` followed at most this far.
const MAX_PAGES: usize = 50;

/// The server named exactly `name`. Nova's `name` filter is a regular expression matched
/// anywhere in the name, so the name is escaped and anchored, and the answer is filtered for
/// an exact match again. More than one: an error, never a pick.
pub(super) async fn find_by_name(client: &OpenStackClient, name: &str) -> Result<Option<Server>> {
    const OP: &str = "server_list";
    let mut found: Vec<Server> = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut req = Request::get(Service::Nova, OP, "/servers/detail".to_string());
        req.query
            .push(("name", format!("^{}$", escape_regex(name))));
        if let Some(m) = &marker {
            req.query.push(("marker", m.clone()));
        }
        let answer = client.call(&req).await?;
        let page: ServerList = parse_json("nova", OP, &answer.body)?;
        let last = page.servers.last().map(|s| s.id.clone());
        for s in page.servers {
            if s.name == name && s.status != status::DELETED {
                found.push(s.into_server(OP)?);
            }
        }
        let more = page.servers_links.iter().any(|l| l.rel == "next");
        match (more, last) {
            (true, Some(last)) => marker = Some(last),
            _ => break,
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        count => Err(CloudError::Ambiguous {
            what: "server",
            name: name.to_string(),
            count,
        }),
    }
}

/// Every server of the project in this client's region (`GET /servers/detail`, all pages),
/// deleted ones left out: one read that shows which servers these credentials can see, so the
/// readiness check maps a whole pool with it instead of asking once per node. More than
/// [`MAX_PAGES`] pages is an error rather than a partial list, which would make the servers
/// past it look missing.
pub(super) async fn list(client: &OpenStackClient) -> Result<Vec<Server>> {
    const OP: &str = "server_list";
    let mut servers: Vec<Server> = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut req = Request::get(Service::Nova, OP, "/servers/detail".to_string());
        if let Some(m) = &marker {
            req.query.push(("marker", m.clone()));
        }
        let answer = client.call(&req).await?;
        let page: ServerList = parse_json("nova", OP, &answer.body)?;
        let last = page.servers.last().map(|s| s.id.clone());
        servers.extend(
            page.servers
                .into_iter()
                .filter(|s| s.status != status::DELETED)
                .map(Server::from),
        );
        let more = page.servers_links.iter().any(|l| l.rel == "next");
        match (more, last) {
            (true, Some(last)) => marker = Some(last),
            _ => return Ok(servers),
        }
    }
    Err(CloudError::BadResponse {
        service: "nova",
        operation: OP,
        message: format!(
            "the server list has more than {MAX_PAGES} pages; it was not read to the end"
        ),
    })
}

/// `POST /servers/{id}/action`; Nova answers 202 and works on it afterwards.
pub(super) async fn action(
    client: &OpenStackClient,
    operation: &'static str,
    id: &str,
    body: Value,
) -> Result<()> {
    let req = Request::action(
        Service::Nova,
        operation,
        Method::POST,
        format!("/servers/{}/action", segment(id)),
        Some(body),
    );
    client.call(&req).await.map(drop)
}

pub(super) async fn stop(client: &OpenStackClient, id: &str) -> Result<()> {
    action(client, "server_stop", id, json!({"os-stop": null})).await
}

pub(super) async fn start(client: &OpenStackClient, id: &str) -> Result<()> {
    action(client, "server_start", id, json!({"os-start": null})).await
}

/// `unshelve`: brings a shelved (and offloaded) server back onto a host and boots it.
pub(super) async fn unshelve(client: &OpenStackClient, id: &str) -> Result<()> {
    action(client, "server_unshelve", id, json!({"unshelve": null})).await
}

pub(super) async fn reboot(client: &OpenStackClient, id: &str, kind: RebootType) -> Result<()> {
    action(
        client,
        "server_reboot",
        id,
        json!({"reboot": {"type": kind.as_str()}}),
    )
    .await
}

pub(super) async fn rebuild(client: &OpenStackClient, id: &str, image_id: &str) -> Result<()> {
    action(
        client,
        "server_rebuild",
        id,
        json!({"rebuild": {"imageRef": image_id}}),
    )
    .await
}

/// `DELETE /servers/{id}`: 204, and the server goes away soon after.
pub(super) async fn delete(client: &OpenStackClient, id: &str) -> Result<()> {
    let req = Request::action(
        Service::Nova,
        "server_delete",
        Method::DELETE,
        format!("/servers/{}", segment(id)),
        None,
    );
    client.call(&req).await.map(drop)
}

#[derive(Deserialize)]
struct ActionList {
    #[serde(rename = "instanceActions")]
    actions: Vec<ActionWire>,
}

#[derive(Deserialize)]
struct ActionEnvelope {
    #[serde(rename = "instanceAction")]
    action: ActionWire,
}

#[derive(Deserialize)]
struct ActionWire {
    action: String,
    request_id: String,
    /// Absent when Nova does not show the caller the events (before 2.51 for a project
    /// member); always absent in the list.
    #[serde(default)]
    events: Option<Vec<EventWire>>,
}

#[derive(Deserialize)]
struct EventWire {
    event: String,
    /// `Success`, `Error`, or null while the event runs.
    #[serde(default)]
    result: Option<String>,
}

/// The compute host's event for a delete it carries out (`terminate_instance`, wrapped by
/// `wrap_instance_event(prefix='compute')`).
const TERMINATE_EVENT: &str = "compute_terminate_instance";

/// How a server that answers 404 was deleted: see [`DeletionEvidence`]. Reads the actions
/// (one request), then each `delete` action's events (one more per delete, usually one).
pub(super) async fn deletion_evidence(
    client: &OpenStackClient,
    id: &str,
) -> Result<DeletionEvidence> {
    const LIST: &str = "server_actions_list";
    const SHOW: &str = "server_action_show";
    let path = format!("/servers/{}/os-instance-actions", segment(id));
    let list =
        Request::get(Service::Nova, LIST, path.clone()).at(NOVA_INSTANCE_ACTIONS_MICROVERSION);
    let actions: ActionList = match client.call(&list).await {
        Ok(answer) => parse_json("nova", LIST, &answer.body)?,
        // Nova looks the instance up (deleted ones included from 2.21) before its actions.
        Err(CloudError::NotFound { .. }) => return Ok(DeletionEvidence::UnknownServer),
        Err(e) => return Err(e),
    };
    let mut events_of_deletes = Vec::new();
    for delete in actions.actions.iter().filter(|a| a.action == "delete") {
        let show = Request::get(
            Service::Nova,
            SHOW,
            format!("{path}/{}", segment(&delete.request_id)),
        )
        .at(NOVA_INSTANCE_ACTIONS_MICROVERSION);
        let answer = client.call(&show).await?;
        let envelope: ActionEnvelope = parse_json("nova", SHOW, &answer.body)?;
        let events = envelope
            .action
            .events
            .ok_or_else(|| CloudError::Unsupported {
                service: "nova",
                operation: SHOW,
                message: format!(
                    "Nova answered action {} of server {id} without its events: it does not \
                     honour compute {} (from 2.51 Nova shows its events to whoever may read an \
                     action)",
                    delete.request_id, NOVA_INSTANCE_ACTIONS_MICROVERSION
                ),
            })?;
        events_of_deletes.push(events);
    }
    Ok(classify_deletes(&events_of_deletes))
}

/// The evidence in the events of every `delete` action of a server.
fn classify_deletes(deletes: &[Vec<EventWire>]) -> DeletionEvidence {
    if deletes.is_empty() {
        return DeletionEvidence::NoDelete;
    }
    let terminate = || {
        deletes
            .iter()
            .flatten()
            .filter(|e| e.event == TERMINATE_EVENT)
    };
    if terminate().any(|e| e.result.as_deref() == Some("Success")) {
        DeletionEvidence::ComputeTerminated
    } else if terminate().any(|e| e.result.is_none()) {
        DeletionEvidence::Terminating
    } else {
        DeletionEvidence::NotByCompute
    }
}

/// Escapes the characters that mean something in a POSIX or Python regular expression.
fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_from_the_published_sample_shape() {
        let wire: ServerEnvelope = serde_json::from_value(json!({"server": {
            "id": "9168b536-cd40-4630-b43f-b259807c6e87",
            "name": "k8s-worker-0",
            "status": "ACTIVE",
            "OS-EXT-STS:task_state": "powering-off",
            "OS-EXT-STS:vm_state": "active",
            "OS-EXT-STS:power_state": 1,
            "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b", "links": []},
            "metadata": {"magnum_nodegroup": "default-worker"},
            "updated": "2013-09-03T04:01:33Z",
            "flavor": {"id": "1"}
        }}))
        .unwrap();
        let s = Server::from(wire.server);
        assert_eq!(s.task_state.as_deref(), Some("powering-off"));
        assert_eq!(s.power_state, Some(PowerState::Running));
        assert_eq!(
            s.image_id.as_deref(),
            Some("70a599e0-31e7-49b7-b260-868f441e862b")
        );
        assert_eq!(
            s.updated,
            Some("2013-09-03T04:01:33Z".parse::<Timestamp>().unwrap())
        );
        assert!(!s.is_active(), "a task is running");
        assert!(s.is_busy());

        let volume_booted: ServerEnvelope = serde_json::from_value(json!({"server": {
            "id": "x", "name": "n", "status": "SHUTOFF", "image": "",
            "OS-EXT-STS:task_state": null, "OS-EXT-STS:power_state": 4,
            "metadata": {}
        }}))
        .unwrap();
        let s = Server::from(volume_booted.server);
        assert_eq!(s.image_id, None);
        assert!(s.is_off());
        assert_eq!(s.power_state, Some(PowerState::Shutdown));
    }

    #[test]
    fn a_task_state_hidden_by_policy_is_not_read_as_no_task() {
        let hidden: ServerEnvelope = serde_json::from_value(json!({"server": {
            "id": "x", "name": "n", "status": "SHUTOFF", "image": "", "metadata": {}
        }}))
        .unwrap();
        let e = hidden.server.into_server("server_show").unwrap_err();
        assert!(matches!(e, CloudError::Unsupported { .. }), "{e:?}");
        assert!(e.to_string().contains("OS-EXT-STS:task_state"), "{e}");
        let null: ServerEnvelope = serde_json::from_value(json!({"server": {
            "id": "x", "name": "n", "status": "SHUTOFF", "OS-EXT-STS:task_state": null
        }}))
        .unwrap();
        assert!(null.server.into_server("server_show").unwrap().is_off());
    }

    #[test]
    fn deletes_are_evidence_only_when_the_compute_host_terminated_the_guest() {
        let event = |event: &str, result: Option<&str>| EventWire {
            event: event.into(),
            result: result.map(str::to_string),
        };
        let terminated = || event(TERMINATE_EVENT, Some("Success"));
        let cases: Vec<(Vec<Vec<EventWire>>, DeletionEvidence)> = vec![
            (vec![], DeletionEvidence::NoDelete),
            (vec![vec![]], DeletionEvidence::NotByCompute),
            (
                vec![vec![terminated()]],
                DeletionEvidence::ComputeTerminated,
            ),
            (
                vec![vec![event(TERMINATE_EVENT, Some("Error"))]],
                DeletionEvidence::NotByCompute,
            ),
            (
                vec![vec![event(TERMINATE_EVENT, None)]],
                DeletionEvidence::Terminating,
            ),
            // Another event's success is not the compute host's delete.
            (
                vec![vec![event("compute_stop_instance", Some("Success"))]],
                DeletionEvidence::NotByCompute,
            ),
            // A delete that failed, then one the compute host carried out.
            (
                vec![
                    vec![terminated()],
                    vec![event(TERMINATE_EVENT, Some("Error"))],
                ],
                DeletionEvidence::ComputeTerminated,
            ),
        ];
        for (deletes, want) in cases {
            assert_eq!(classify_deletes(&deletes), want);
        }
    }

    #[test]
    fn names_are_matched_literally() {
        assert_eq!(escape_regex("node-1.example"), "node-1\\.example");
        assert_eq!(escape_regex("a+b(c)"), "a\\+b\\(c\\)");
    }
}
