//! `make demo`: the whole nodehealer story on this machine. Starts the test bed (a real
//! control plane, kwok nodes, the OpenStack simulator) with a 3 control-plane + 3 worker
//! "Magnum cluster", installs nodehealer, applies NodeHealthChecks and RemediationTemplates,
//! runs a StatefulSet with a volume, breaks a node, and prints a live timeline until the
//! cluster is whole again, then a summary of how long each part took.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use nodehealer_testbed::objects::{create, nodehealer_resource};
use nodehealer_testbed::timeline::{Scope, Snapshot, Timeline, snapshot};
use nodehealer_testbed::workloads::{filler_pod, running_on, stateful_app_requesting};
use nodehealer_testbed::{
    CLUSTER_LABEL, ClusterSpec, MAGNUM_ROLE_LABEL, TestBed, TestCluster, procs::free_port, wait_for,
};
use serde_json::{Value, json};

const NAMESPACE: &str = "nodehealer";
const APP_NAMESPACE: &str = "demo";
const CLUSTER: &str = "demo";
const POD: &str = "db-0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// A worker's server crashes: fenced (SHUTOFF confirmed), its pod and volume move with the
    /// out-of-service taint, the server is powered on again.
    PowerCycle,
    /// A worker's kubelet hangs while its server stays ACTIVE: soft, then hard reboot; no fencing.
    KubeletHang,
    /// A worker's hypervisor dies: Magnum replaces the server, the old Node is deleted.
    Replace,
    /// Two of three workers die at once: maxUnhealthy blocks any remediation and the status
    /// says why; the nodes come back by hand.
    Storm,
    /// A control-plane node's server crashes: remediated alone, with etcd quorum kept.
    ControlPlane,
    /// The worker pool runs full and keeps a standby (recovery method ReservedHost): when a
    /// worker's server crashes, the standby is brought into service before the pod is freed,
    /// the pod runs there, and the repaired worker becomes the new standby.
    ReservedHost,
}

/// The label that picks the standby of the ReservedHost story.
const STANDBY_LABEL: &str = "pool.example.com/standby";
/// The CPUs the story's pod asks for (of 32 per node): a node with a filler has no room left.
const BIG_CPU: &str = "20";

/// The whole nodehealer story on a local test bed, as a timeline.
#[derive(Parser, Debug)]
struct Args {
    /// Which story to tell.
    #[arg(long, value_enum, default_value = "power-cycle", env = "SCENARIO")]
    scenario: Scenario,
    /// The operator binary.
    #[arg(long, default_value = "target/debug/nodehealer")]
    operator: PathBuf,
    /// The repository (for `crds/`, `examples/` and `charts/`).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Give up when the cluster is not whole again after this many seconds.
    #[arg(long, default_value_t = 240)]
    timeout: u64,
    /// Keep the test bed's logs (under target/testbed-runs) after a successful run.
    #[arg(long)]
    keep_logs: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!("== nodehealer demo: {:?}", args.scenario);
    println!(
        "-- starting the test bed (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok, OpenStack simulator)"
    );
    let tb = TestBed::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&tb, &args));
    tb.stop();
    match &result {
        Ok(()) if !args.keep_logs => {
            let _ = std::fs::remove_dir_all(&tb.run_dir);
        }
        _ => println!("-- logs of every process: {}", tb.run_dir.display()),
    }
    result
}

async fn run(tb: &TestBed, args: &Args) -> Result<()> {
    let client = tb.client().await?;
    println!(
        "-- helm install nodehealer charts/nodehealer (CRDs, RBAC, ServiceAccount; the operator runs as a local process with the chart's ServiceAccount token: there is no container runtime here)"
    );
    helm_install(&args.repo, &tb.cp.kubeconfig)?;
    for ns in [APP_NAMESPACE] {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &obj)
            .await?;
    }
    let workers = if args.scenario == Scenario::ReservedHost {
        4
    } else {
        3
    };
    println!(
        "-- creating the Magnum cluster {CLUSTER:?}: 3 control-plane nodes, {workers} workers"
    );
    let cluster = tb
        .create_cluster(ClusterSpec::magnum(CLUSTER, 3, workers))
        .await?;
    let magnum_id = cluster.magnum_id.clone().context("a Magnum cluster")?;
    if let Some(realistic) = &cluster.realistic {
        println!(
            "-- the cluster runs what real ones do (namespace {}): DaemonSets that tolerate every taint ({}), Deployments ({}), StatefulSet {} with a volume and a PodDisruptionBudget, a pod with a finalizer",
            realistic.namespace,
            realistic.daemonsets.join(", "),
            realistic.deployments.join(", "),
            realistic.statefulset
        );
    }

    println!(
        "-- installing nodehealer: the clouds.yaml Secret, RemediationTemplates, NodeHealthChecks"
    );
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "openstack-cloud", "namespace": NAMESPACE},
        "stringData": {"clouds.yaml": tb.clouds_yaml("openstack")}
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await?;
    for template in ["power-cycle", "reboot", "replace-magnum"] {
        let mut doc = read_example(&args.repo, &format!("remediationtemplate-{template}.yaml"))?;
        doc["metadata"]["namespace"] = json!(NAMESPACE);
        if let Some(magnum) = doc.pointer_mut("/spec/template/spec/openstack/magnum") {
            magnum["cluster"] = json!(magnum_id);
        }
        if template == "replace-magnum" {
            // A stop not done within half of this (30 s) means the host is gone: remove the
            // server then (the example waits 90 s, for real clouds' clean shutdowns).
            doc["spec"]["template"]["spec"]["timeouts"]["fence"] = json!("60s");
        }
        create(&client, &doc).await?;
    }
    for nhc in health_checks(args.scenario) {
        println!(
            "   NodeHealthCheck {}: {}",
            nhc["metadata"]["name"].as_str().unwrap_or("?"),
            describe(&nhc)
        );
        create(&client, &nhc).await?;
    }
    let kubeconfig = chart_service_account_kubeconfig(tb, &client).await?;
    let operator = start_operator(tb, args, &kubeconfig)?;

    let standby = if args.scenario == Scenario::ReservedHost {
        Some(prepare_full_pool(&client, &cluster).await?)
    } else {
        None
    };
    println!("-- running a StatefulSet with a ReadWriteOnce volume on the workers");
    stateful_app_requesting(
        &client,
        APP_NAMESPACE,
        "db",
        &[(CLUSTER_LABEL, CLUSTER), (MAGNUM_ROLE_LABEL, "worker")],
        standby.as_ref().map(|_| BIG_CPU),
    )
    .await?;
    wait_for(Duration::from_secs(60), "db-0 running", || async {
        Ok(running_on(&client, APP_NAMESPACE, POD).await?.is_some())
    })
    .await?;
    let home = running_on(&client, APP_NAMESPACE, POD)
        .await?
        .context("db-0 placed")?;

    let scope = Scope {
        cluster: CLUSTER.into(),
        remediation_namespace: NAMESPACE.into(),
        pod: Some((APP_NAMESPACE.into(), POD.into())),
    };
    let first = snapshot(&client, &tb.sim, &scope).await?;
    print_tables(&first, &cluster);

    let victims = victims(args.scenario, &cluster, &home);
    let mut timeline = Timeline::new(POD, true);
    timeline.observe(first.clone());
    println!("-- {}", breaking(args.scenario, &victims));
    timeline.restart_clock();
    for v in &victims {
        match args.scenario {
            Scenario::PowerCycle
            | Scenario::ControlPlane
            | Scenario::Storm
            | Scenario::ReservedHost => tb.fail_node(v).await?,
            Scenario::KubeletHang => tb.kubelet_hang(v).await?,
            Scenario::Replace => tb.host_down(v).await?,
        }
    }
    let victim = victims[0].clone();
    let nodes = first.nodes.len();
    let mut recovered_by_hand = false;
    let mut fence_confirmed = false;
    let mut nhc_watch = NhcLines::default();
    loop {
        let snap = snapshot(&client, &tb.sim, &scope).await?;
        let nhc_lines = nhc_watch.changes(&client).await?;
        note_milestones(&mut timeline, &snap, &victim, &home, standby.as_deref());
        timeline.observe(snap.clone());
        for line in nhc_lines {
            timeline.say(line);
        }
        if args.scenario == Scenario::Storm
            && !recovered_by_hand
            && timeline.elapsed() > Duration::from_secs(30)
        {
            timeline.say("nothing was remediated: an operator brings the two workers back by hand");
            for v in &victims {
                tb.recover_node(v).await?;
            }
            recovered_by_hand = true;
        }
        if args.scenario == Scenario::Replace && !fence_confirmed {
            let unproven = snap
                .remediations
                .iter()
                .find(|(_, r)| r.phase == "FenceUnproven")
                .map(|(name, _)| name.clone());
            if let Some(name) = unproven {
                timeline.say(
                    "the stop never completes (its host is down): no proof the guest stopped, so nothing is removed and db-0 stays put",
                );
                timeline.say(format!(
                    "a person checks the hypervisor is off and confirms: kubectl -n {NAMESPACE} annotate remediation {name} nodehealer.io/fence-confirmed=..."
                ));
                let patch = json!({"metadata": {"annotations": {
                    "nodehealer.io/fence-confirmed": "demo: hypervisor confirmed powered off"}}});
                Api::<DynamicObject>::namespaced_with(
                    client.clone(),
                    NAMESPACE,
                    &nodehealer_resource("Remediation"),
                )
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
                fence_confirmed = true;
            }
        }
        let done = snap.whole(nodes) && (args.scenario != Scenario::Storm || recovered_by_hand);
        if done && timeline.at("capacity back").is_some() {
            break;
        }
        if timeline.elapsed() > Duration::from_secs(args.timeout) {
            println!("-- operator log (last lines):\n{}", operator.log_tail(40));
            bail!("the cluster was not whole again within {} s", args.timeout);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = snapshot(&client, &tb.sim, &scope).await?;
    print_tables(&last, &cluster);
    summary(&timeline, args.scenario);
    operator.stop(Duration::from_secs(5));
    Ok(())
}

/// The nodes the scenario breaks.
fn victims(scenario: Scenario, cluster: &TestCluster, home: &str) -> Vec<String> {
    match scenario {
        Scenario::ControlPlane => vec![cluster.nodes_with_role("master")[0].clone()],
        Scenario::Storm => cluster
            .nodes_with_role("worker")
            .into_iter()
            .filter(|n| n != home)
            .take(2)
            .collect(),
        _ => vec![home.to_string()],
    }
}

fn breaking(scenario: Scenario, victims: &[String]) -> String {
    let v = victims.join(" and ");
    match scenario {
        Scenario::PowerCycle => format!("the server of worker {v} (running db-0) crashes"),
        Scenario::KubeletHang => {
            format!("the kubelet of worker {v} hangs; its server stays ACTIVE")
        }
        Scenario::Replace => format!("the hypervisor of worker {v} dies; Nova still says ACTIVE"),
        Scenario::Storm => format!("workers {v} die at once: two of three"),
        Scenario::ControlPlane => format!("the server of control-plane node {v} crashes"),
        Scenario::ReservedHost => {
            format!("the server of worker {v} (running db-0; no room on the other workers) crashes")
        }
    }
}

/// Marks the moments the summary reports.
fn note_milestones(
    t: &mut Timeline,
    snap: &Snapshot,
    victim: &str,
    home: &str,
    standby: Option<&str>,
) {
    if snap.nodes.get(victim).is_some_and(|n| n.ready != "True") {
        t.milestone("node not Ready");
    }
    if let Some(standby) = standby
        && snap.nodes.get(standby).is_some_and(|n| {
            n.ready == "True"
                && !n
                    .taints
                    .iter()
                    .any(|t| t.starts_with("nodehealer.io/reserved"))
        })
    {
        t.milestone("standby in service");
    }
    if !snap.remediations.is_empty() {
        t.milestone("remediation created");
    }
    let fenced = match snap.server_of(victim) {
        None => true,
        Some(s) => s.status == "SHUTOFF",
    };
    if fenced && t.at("remediation created").is_some() {
        t.milestone("server fenced");
    }
    if snap.nodes.get(victim).is_some_and(|n| {
        n.taints
            .iter()
            .any(|t| t.starts_with("node.kubernetes.io/out-of-service"))
    }) {
        t.milestone("out-of-service taint");
    }
    if snap.pod_running_on().is_some_and(|n| n != home) {
        t.milestone("workload running elsewhere");
    }
    if t.at("node not Ready").is_some()
        && snap.whole(snap.nodes.len().max(1))
        && snap.nodes.len() >= 6
    {
        t.milestone("capacity back");
    }
}

fn summary(t: &Timeline, scenario: Scenario) {
    println!("== summary ({scenario:?}), from the moment of the failure");
    if t.at("remediation created").is_none() {
        println!("   no remediation was created: the NodeHealthCheck held back and said why");
    }
    for (name, at) in t.milestones() {
        println!("   {name:<28} {:>6.1} s", at.as_secs_f64());
    }
    let gap = |a: &str, b: &str| match (t.at(a), t.at(b)) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    };
    if let Some(d) = gap("node not Ready", "remediation created") {
        println!(
            "   detection (NotReady → Remediation, the NHC duration): {:.1} s",
            d.as_secs_f64()
        );
    }
    if let Some(d) = gap("remediation created", "server fenced") {
        println!(
            "   time to fence (Remediation → SHUTOFF confirmed): {:.1} s",
            d.as_secs_f64()
        );
    }
    if let Some(d) = gap("server fenced", "workload running elsewhere") {
        println!(
            "   eviction and rescheduling (fenced → pod Running elsewhere): {:.1} s",
            d.as_secs_f64()
        );
    }
}

/// The ReservedHost story's pool: the last worker is labelled as the standby (nodehealer
/// taints it), and the two workers besides the first get a pod that takes their room, so the
/// story's pod can run only on the first worker, or on the standby once it is in service.
/// Returns the standby.
async fn prepare_full_pool(client: &kube::Client, cluster: &TestCluster) -> Result<String> {
    let workers = cluster.nodes_with_role("worker");
    let standby = workers.last().context("workers")?.clone();
    println!("-- labelling {standby} {STANDBY_LABEL}=true: nodehealer makes it the pool's standby");
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            &standby,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {STANDBY_LABEL: "true"}}})),
        )
        .await?;
    wait_for(Duration::from_secs(30), "the standby tainted", || async {
        let node = nodes.get(&standby).await?;
        Ok(nodehealer_testbed::taint_strings(&node)
            .iter()
            .any(|t| t.starts_with("nodehealer.io/reserved")))
    })
    .await?;
    for (i, w) in workers.iter().enumerate().skip(1).take(2) {
        println!("-- a pod asking for {BIG_CPU} of 32 CPUs fills {w}");
        filler_pod(client, APP_NAMESPACE, &format!("filler-{i}"), w, BIG_CPU).await?;
    }
    Ok(standby)
}

/// Prints the nodes, the servers (like `openstack server list`) and where the pod runs.
fn print_tables(snap: &Snapshot, cluster: &TestCluster) {
    println!("   {:<34} {:<8} TAINTS", "NODE", "READY");
    for (name, n) in &snap.nodes {
        println!("   {name:<34} {:<8} {}", n.ready, n.taints.join(","));
    }
    println!("   {:<38} {:<34} {:<8} TASK", "SERVER ID", "NAME", "STATUS");
    let ids: BTreeMap<&String, &String> = cluster.servers.iter().collect();
    for (name, s) in &snap.servers {
        let id = ids.get(name).map(|s| s.as_str()).unwrap_or("(new)");
        println!(
            "   {id:<38} {name:<34} {:<8} {}",
            s.status,
            s.task_state.as_deref().unwrap_or("-")
        );
    }
    match snap.pod_running_on() {
        Some(n) => println!("   pod {POD} Running on {n}"),
        None => println!("   pod {POD} not running"),
    }
}

/// The NodeHealthChecks of the scenario, from the examples' shape with demo-sized durations.
fn health_checks(scenario: Scenario) -> Vec<Value> {
    let unhealthy = json!([
        {"type": "Ready", "status": "False", "duration": "10s"},
        {"type": "Ready", "status": "Unknown", "duration": "10s"}
    ]);
    let template = |name: &str| {
        json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
               "namespace": NAMESPACE, "name": name})
    };
    let workers = |remediation: Value, max_unhealthy: &str| {
        let mut spec = json!({
            "selector": {"matchLabels": {CLUSTER_LABEL: CLUSTER, MAGNUM_ROLE_LABEL: "worker"}},
            "unhealthyConditions": unhealthy,
            "maxUnhealthy": max_unhealthy,
            "healthyDelay": "0s"
        });
        for (k, v) in remediation.as_object().expect("object") {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
               "metadata": {"name": "demo-workers"}, "spec": spec})
    };
    let masters = json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
    "metadata": {"name": "demo-control-plane"},
    "spec": {
        "selector": {"matchLabels": {CLUSTER_LABEL: CLUSTER, MAGNUM_ROLE_LABEL: "master"}},
        "unhealthyConditions": unhealthy,
        "maxUnhealthy": 1,
        "healthyDelay": "0s",
        "remediationTemplate": template("power-cycle")
    }});
    let workers = match scenario {
        Scenario::KubeletHang => workers(json!({"remediationTemplate": template("reboot")}), "50%"),
        Scenario::Replace => workers(
            json!({"remediationTemplate": template("replace-magnum")}),
            "1",
        ),
        Scenario::Storm => workers(
            json!({"remediationTemplate": template("power-cycle"), "stormCooldownDuration": "20s"}),
            "1",
        ),
        Scenario::ReservedHost => workers(
            json!({"remediationTemplate": template("power-cycle"),
                   "recovery": {"method": "ReservedHost",
                                "reservedNodeSelector": {"matchLabels": {STANDBY_LABEL: "true"}}}}),
            "50%",
        ),
        _ => workers(
            json!({"remediationTemplate": template("power-cycle")}),
            "50%",
        ),
    };
    vec![workers, masters]
}

fn describe(nhc: &Value) -> String {
    let spec = &nhc["spec"];
    let what = match spec.get("remediationTemplate") {
        Some(t) => format!("template {}", t["name"].as_str().unwrap_or("?")),
        None => format!(
            "escalating {}",
            spec["escalatingRemediations"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|e| e["remediationTemplate"]["name"]
                        .as_str()
                        .unwrap_or("?")
                        .to_string())
                    .collect::<Vec<_>>()
                    .join(" → "))
                .unwrap_or_default()
        ),
    };
    format!(
        "Ready=False/Unknown for 10s, maxUnhealthy {}, {what}",
        spec["maxUnhealthy"]
    )
}

/// Lines for what the NodeHealthChecks say: phase and reason, and why each unhealthy node is
/// (or is no longer) blocked. Remembers what it printed.
#[derive(Default)]
struct NhcLines {
    last: BTreeMap<String, String>,
}

impl NhcLines {
    async fn changes(&mut self, client: &kube::Client) -> Result<Vec<String>> {
        let api: Api<DynamicObject> =
            Api::all_with(client.clone(), &nodehealer_resource("NodeHealthCheck"));
        let mut now: BTreeMap<String, String> = BTreeMap::new();
        for nhc in api.list(&Default::default()).await?.items {
            let name = nhc.metadata.name.clone().unwrap_or_default();
            let text = |p: &str| {
                nhc.data
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            now.insert(
                name.clone(),
                format!("{}: {}", text("/status/phase"), text("/status/reason")),
            );
            let unhealthy = nhc
                .data
                .pointer("/status/unhealthyNodes")
                .and_then(Value::as_array);
            for node in unhealthy.into_iter().flatten() {
                if let Some(why) = node.get("blockedReason").and_then(Value::as_str) {
                    let node_name = node.get("name").and_then(Value::as_str).unwrap_or("?");
                    now.insert(format!("{name} {node_name}"), format!("blocked: {why}"));
                }
            }
        }
        let mut lines = Vec::new();
        for (key, text) in &now {
            if self.last.get(key) != Some(text) {
                lines.push(format!("nodehealthcheck {key}: {text}"));
            }
        }
        for key in self
            .last
            .keys()
            .filter(|k| !now.contains_key(*k) && k.contains(' '))
        {
            lines.push(format!("nodehealthcheck {key}: no longer blocked"));
        }
        self.last = now;
        Ok(lines)
    }
}

fn read_example(repo: &Path, name: &str) -> Result<Value> {
    let path = repo.join("examples").join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_yaml::from_str(&text)?)
}

/// Runs the operator as a local process (there is no container runtime on this machine).
/// `helm install` of the chart into the demo's control plane, with no replicas (kwok nodes
/// run no containers); the CRDs come from the chart.
fn helm_install(repo: &std::path::Path, kubeconfig: &std::path::Path) -> Result<()> {
    let helm = nodehealer_testbed::controlplane::binaries_dir()?.join("helm");
    let home = std::env::temp_dir().join("nodehealer-helm-home");
    let out = Command::new(helm)
        .args(["install", "nodehealer"])
        .arg(repo.join("charts/nodehealer"))
        .args([
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--set",
            "replicaCount=0",
            "--wait=false",
        ])
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", kubeconfig)
        .output()?;
    if !out.status.success() {
        bail!("helm install: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A kubeconfig with a token of the chart's ServiceAccount, so the operator has exactly the
/// chart's permissions.
async fn chart_service_account_kubeconfig(tb: &TestBed, client: &kube::Client) -> Result<PathBuf> {
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), NAMESPACE);
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 7200}}))?;
    let token = sas
        .create_token_request("nodehealer", &PostParams::default(), &request)
        .await?
        .status
        .context("token")?
        .token;
    let path = tb.run_dir.join("operator.kubeconfig");
    tb.cp.kubeconfig_for(&path, &token, "nodehealer")?;
    Ok(path)
}

fn start_operator(
    tb: &TestBed,
    args: &Args,
    kubeconfig: &std::path::Path,
) -> Result<nodehealer_testbed::procs::Proc> {
    if !args.operator.exists() {
        bail!(
            "the operator binary {} does not exist: build it first (make demo does)",
            args.operator.display()
        );
    }
    let port = free_port()?;
    let mut cmd = Command::new(&args.operator);
    cmd.args([
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--namespace={NAMESPACE}"),
        format!("--http-address=127.0.0.1:{port}"),
        "--leader-elect=true".to_string(),
        "--log=info".to_string(),
    ]);
    println!(
        "   operator: {} (metrics on http://127.0.0.1:{port}/metrics)",
        args.operator.display()
    );
    tb.spawn_process("operator", cmd)
}
