//! A readable timeline of a failover: what someone watching `kubectl get nodes`, `openstack
//! server list`, the nodes' taints, the Remediations and the workload's pod would see. The
//! state is sampled ([`snapshot`]), each change becomes one line ([`changes`], a pure
//! function), and [`Timeline`] stamps the lines with the time since the story began.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use openstack_sim::Sim;

use crate::nodes::{CLUSTER_LABEL, ready_status, taint_strings};

/// What to watch: one simulated cluster, and the namespace of its Remediations and workload.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The cluster's name (its nodes carry `CLUSTER_LABEL=<cluster>`, its servers are named
    /// `<cluster>-...`).
    pub cluster: String,
    /// Where the Remediations are created.
    pub remediation_namespace: String,
    /// The workload's pod, as `(namespace, name)`.
    pub pod: Option<(String, String)>,
}

/// A node as `kubectl get nodes` and `kubectl describe node` show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRow {
    /// The Ready condition's status: True, False, Unknown.
    pub ready: String,
    /// `key=value:Effect` strings.
    pub taints: Vec<String>,
}

/// A server as `openstack server list` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerRow {
    pub status: String,
    pub task_state: Option<String>,
}

/// A Remediation's action and phase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemediationRow {
    pub action: String,
    pub phase: String,
}

/// The workload's pod: where it is bound and in which phase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRow {
    pub node: Option<String>,
    pub phase: String,
    pub terminating: bool,
}

/// Everything the timeline shows, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub nodes: BTreeMap<String, NodeRow>,
    pub servers: BTreeMap<String, ServerRow>,
    pub remediations: BTreeMap<String, RemediationRow>,
    pub pod: Option<PodRow>,
}

impl Snapshot {
    /// The server named like the node (servers and nodes share names on OpenStack clusters).
    pub fn server_of(&self, node: &str) -> Option<&ServerRow> {
        self.servers.get(node)
    }

    /// Whether the cluster is whole: `nodes` nodes, every one Ready and free of the taints of
    /// a failure or a remediation, and no Remediation left.
    pub fn whole(&self, nodes: usize) -> bool {
        let failure_taint = |t: &String| {
            t.starts_with("node.kubernetes.io/unreachable")
                || t.starts_with("node.kubernetes.io/not-ready")
                || t.starts_with("node.kubernetes.io/out-of-service")
                // Ours while remediating; a standby's reserved taint is its normal state.
                || (t.starts_with("nodehealer.io/") && !t.starts_with("nodehealer.io/reserved"))
        };
        self.nodes.len() == nodes
            && self
                .nodes
                .values()
                .all(|n| n.ready == "True" && !n.taints.iter().any(failure_taint))
            && self.remediations.is_empty()
    }

    /// The node the pod runs on, when it is Running and not terminating.
    pub fn pod_running_on(&self) -> Option<&str> {
        self.pod
            .as_ref()
            .filter(|p| p.phase == "Running" && !p.terminating)
            .and_then(|p| p.node.as_deref())
    }
}

/// The Remediation kind of `nodehealer.io/v1alpha1`, read without depending on the operator.
fn remediation_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "nodehealer.io",
        "v1alpha1",
        "Remediation",
    ))
}

/// Samples the cluster, the simulator, the Remediations and the pod.
pub async fn snapshot(client: &kube::Client, sim: &Sim, scope: &Scope) -> Result<Snapshot> {
    let nodes: Api<Node> = Api::all(client.clone());
    let selector = format!("{CLUSTER_LABEL}={}", scope.cluster);
    let nodes = nodes
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .map(|n| {
            let row = NodeRow {
                ready: ready_status(&n).unwrap_or_else(|| "-".into()),
                taints: taint_strings(&n),
            };
            (n.metadata.name.unwrap_or_default(), row)
        })
        .collect();
    let prefix = format!("{}-", scope.cluster);
    let servers = sim
        .servers()
        .into_iter()
        .filter(|s| s.name.starts_with(&prefix))
        .map(|s| {
            let row = ServerRow {
                status: s.status,
                task_state: s.task_state,
            };
            (s.name, row)
        })
        .collect();
    let rems: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &scope.remediation_namespace,
        &remediation_resource(),
    );
    let remediations = rems
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|r| {
            let text = |v: Option<&serde_json::Value>| {
                v.and_then(|v| v.as_str()).unwrap_or("-").to_string()
            };
            let row = RemediationRow {
                action: text(r.data.pointer("/spec/action")),
                phase: text(r.data.pointer("/status/phase")),
            };
            (r.metadata.name.unwrap_or_default(), row)
        })
        .collect();
    let pod = match &scope.pod {
        None => None,
        Some((ns, name)) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            pods.get_opt(name).await?.map(|p| PodRow {
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                phase: p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "-".into()),
                terminating: p.metadata.deletion_timestamp.is_some(),
            })
        }
    };
    Ok(Snapshot {
        nodes,
        servers,
        remediations,
        pod,
    })
}

fn server_text(s: &ServerRow) -> String {
    match &s.task_state {
        Some(task) => format!("{} ({task})", s.status),
        None => s.status.clone(),
    }
}

fn pod_text(p: &PodRow) -> String {
    let place = p
        .node
        .as_deref()
        .map(|n| format!(" on {n}"))
        .unwrap_or_else(|| " (not scheduled)".into());
    let ending = if p.terminating { ", terminating" } else { "" };
    format!("{}{place}{ending}", p.phase)
}

/// One line per difference between two snapshots, in a stable order: nodes, servers,
/// Remediations, then the pod.
pub fn changes(before: &Snapshot, after: &Snapshot, pod_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, now) in &after.nodes {
        match before.nodes.get(name) {
            None => out.push(format!("node {name}: registered, Ready={}", now.ready)),
            Some(was) => {
                if was.ready != now.ready {
                    out.push(format!("node {name}: Ready {} → {}", was.ready, now.ready));
                }
                for t in now.taints.iter().filter(|t| !was.taints.contains(t)) {
                    out.push(format!("node {name}: + taint {t}"));
                }
                for t in was.taints.iter().filter(|t| !now.taints.contains(t)) {
                    out.push(format!("node {name}: - taint {t}"));
                }
            }
        }
    }
    for name in before
        .nodes
        .keys()
        .filter(|n| !after.nodes.contains_key(*n))
    {
        out.push(format!("node {name}: deleted"));
    }
    for (name, now) in &after.servers {
        match before.servers.get(name) {
            None => out.push(format!("server {name}: created, {}", server_text(now))),
            Some(was) if was != now => out.push(format!(
                "server {name}: {} → {}",
                server_text(was),
                server_text(now)
            )),
            Some(_) => {}
        }
    }
    for name in before
        .servers
        .keys()
        .filter(|n| !after.servers.contains_key(*n))
    {
        out.push(format!("server {name}: deleted"));
    }
    for (name, now) in &after.remediations {
        match before.remediations.get(name) {
            None => out.push(format!(
                "remediation {name}: created, action {}, phase {}",
                now.action, now.phase
            )),
            Some(was) if was.phase != now.phase => {
                out.push(format!("remediation {name}: {} → {}", was.phase, now.phase))
            }
            Some(_) => {}
        }
    }
    for name in before
        .remediations
        .keys()
        .filter(|n| !after.remediations.contains_key(*n))
    {
        out.push(format!("remediation {name}: deleted"));
    }
    match (&before.pod, &after.pod) {
        (Some(was), Some(now)) if was != now => out.push(format!(
            "pod {pod_name}: {} → {}",
            pod_text(was),
            pod_text(now)
        )),
        (None, Some(now)) => out.push(format!("pod {pod_name}: created, {}", pod_text(now))),
        (Some(_), None) => out.push(format!("pod {pod_name}: deleted")),
        _ => {}
    }
    out
}

/// The lines of a story, stamped with the time since it began.
pub struct Timeline {
    start: Instant,
    last: Option<Snapshot>,
    pod_name: String,
    /// Print each line as it happens (the demo), or only keep them (tests print on failure).
    echo: bool,
    pub lines: Vec<(Duration, String)>,
    milestones: Vec<(String, Duration)>,
}

impl Timeline {
    pub fn new(pod_name: &str, echo: bool) -> Timeline {
        Timeline {
            start: Instant::now(),
            last: None,
            pod_name: pod_name.to_string(),
            echo,
            lines: Vec::new(),
            milestones: Vec::new(),
        }
    }

    /// Time since the story began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Restarts the clock (the moment the failure is injected).
    pub fn restart_clock(&mut self) {
        self.start = Instant::now();
    }

    /// Records what changed since the last snapshot.
    pub fn observe(&mut self, snap: Snapshot) {
        let at = self.elapsed();
        let lines = match &self.last {
            None => Vec::new(),
            Some(before) => changes(before, &snap, &self.pod_name),
        };
        for line in lines {
            self.say_at(at, line);
        }
        self.last = Some(snap);
    }

    /// Adds a line of narration.
    pub fn say(&mut self, line: impl Into<String>) {
        let at = self.elapsed();
        self.say_at(at, line.into());
    }

    fn say_at(&mut self, at: Duration, line: String) {
        if self.echo {
            println!("[{:>6.1} s] {line}", at.as_secs_f64());
        }
        self.lines.push((at, line));
    }

    /// Notes the first time something happened; later calls for the same name are ignored.
    pub fn milestone(&mut self, name: &str) {
        if !self.milestones.iter().any(|(n, _)| n == name) {
            let at = self.elapsed();
            self.milestones.push((name.to_string(), at));
        }
    }

    /// When a milestone was reached, if it was.
    pub fn at(&self, name: &str) -> Option<Duration> {
        self.milestones
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| *d)
    }

    /// The milestones in the order they were reached.
    pub fn milestones(&self) -> &[(String, Duration)] {
        &self.milestones
    }

    /// The whole timeline as text.
    pub fn render(&self) -> String {
        self.lines
            .iter()
            .map(|(at, l)| format!("[{:>6.1} s] {l}\n", at.as_secs_f64()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, taints: &[&str]) -> NodeRow {
        NodeRow {
            ready: ready.into(),
            taints: taints.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn each_change_is_one_line_in_a_stable_order() {
        let mut before = Snapshot::default();
        before.nodes.insert("n1".into(), node("True", &[]));
        before.nodes.insert("n2".into(), node("True", &[]));
        before.servers.insert(
            "n1".into(),
            ServerRow {
                status: "ACTIVE".into(),
                task_state: None,
            },
        );
        before.pod = Some(PodRow {
            node: Some("n1".into()),
            phase: "Running".into(),
            terminating: false,
        });
        let mut after = before.clone();
        after.nodes.insert(
            "n1".into(),
            node("Unknown", &["node.kubernetes.io/unreachable:NoExecute"]),
        );
        after.nodes.remove("n2");
        after.servers.insert(
            "n1".into(),
            ServerRow {
                status: "ACTIVE".into(),
                task_state: Some("powering-off".into()),
            },
        );
        after.remediations.insert(
            "n1".into(),
            RemediationRow {
                action: "PowerCycle".into(),
                phase: "Fencing".into(),
            },
        );
        after.pod.as_mut().unwrap().terminating = true;
        assert_eq!(
            changes(&before, &after, "db-0"),
            vec![
                "node n1: Ready True → Unknown",
                "node n1: + taint node.kubernetes.io/unreachable:NoExecute",
                "node n2: deleted",
                "server n1: ACTIVE → ACTIVE (powering-off)",
                "remediation n1: created, action PowerCycle, phase Fencing",
                "pod db-0: Running on n1 → Running on n1, terminating",
            ]
        );
        assert!(changes(&after, &after, "db-0").is_empty());
        assert!(!after.whole(1));
        assert_eq!(before.pod_running_on(), Some("n1"));
        assert_eq!(after.pod_running_on(), None);
    }
}
