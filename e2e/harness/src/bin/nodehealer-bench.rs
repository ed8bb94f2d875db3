//! `make bench`: nodehealer measured on the real control plane of the test bed.
//!
//! For each cluster size (kwok nodes, one pool): the time from a node's unhealthy duration
//! expiring to its Remediation existing, with 1, 10 and 100 nodes failing at once; the
//! operator's peak RSS and CPU seconds; the API requests it sends per minute at steady state
//! and per remediation (from the apiserver's audit log, by the operator's own ServiceAccount).
//! Then the whole PowerCycle failover, split into its parts, against the floor (the
//! out-of-service taint applied by hand at the moment of death). Results go to
//! `target/bench/results.md` and standard output.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use nodehealer_testbed::objects::{create, install_crds_from, nodehealer_resource};
use nodehealer_testbed::workloads::{running_on, stateful_app};
use nodehealer_testbed::{
    CLUSTER_LABEL, ClusterSpec, MAGNUM_ROLE_LABEL, TestBed, procs::free_port, ready_status,
    wait_for,
};
use serde_json::{Value, json};

/// Benchmarks of nodehealer on the test bed.
#[derive(Parser, Debug)]
struct Args {
    /// Cluster sizes (worker nodes), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,1000",
        env = "BENCH_SIZES"
    )]
    sizes: Vec<usize>,
    /// Nodes failing at once, comma-separated (capped at the cluster size).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    failing: Vec<usize>,
    /// How long to count requests at steady state.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,
    /// The operator binary.
    #[arg(long, default_value = "target/debug/nodehealer")]
    operator: PathBuf,
    /// The repository (for `crds/`).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Where the results go.
    #[arg(long, default_value = "target/bench/results.md")]
    out: PathBuf,
}

const UNHEALTHY_SECONDS: u64 = 5;

fn main() -> Result<()> {
    let args = Args::parse();
    // reqwest is built without a default crypto provider: install ring's, as the operator does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tb = TestBed::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&tb, &args));
    tb.stop();
    let report = result?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &report)?;
    println!("{report}");
    println!("(written to {})", args.out.display());
    let _ = std::fs::remove_dir_all(&tb.run_dir);
    Ok(())
}

async fn run(tb: &TestBed, args: &Args) -> Result<String> {
    let client = tb.client().await?;
    install_crds_from(&client, &args.repo.join("crds"), "nodehealer-bench").await?;
    let mut report = String::new();
    report.push_str(&format!(
        "# nodehealer benchmarks\n\nMachine: {} CPUs, {} GiB; Kubernetes v1.36.3 control plane of the test bed, kwok nodes, release build of the operator. Unhealthy duration {UNHEALTHY_SECONDS}s.\n\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        memory_gib()
    ));
    // The failover first, on a quiet control plane: the scale runs leave thousands of nodes
    // behind, whose lifecycle keeps kube-controller-manager busy and slows its detection.
    let failover = failover(tb, &client, args).await?;
    report.push_str("| nodes | failing at once | duration expired → Remediation p50 / p99 / max | API requests by the operator per remediation | steady state: API requests per minute (besides watches and the leader Lease) | watches opened | peak RSS | CPU seconds |\n|---|---|---|---|---|---|---|---|\n");
    for &size in &args.sizes {
        let rows = scale(tb, &client, args, size).await?;
        for row in rows {
            report.push_str(&row);
            report.push('\n');
        }
    }
    report.push('\n');
    report.push_str(&failover);
    Ok(report)
}

fn memory_gib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|k| k.parse::<u64>().ok())
                })
        })
        .map(|kib| (kib + 512 * 1024) / (1024 * 1024))
        .unwrap_or(0)
}

/// A ServiceAccount bound to cluster-admin for the operator, so the audit log tells its
/// requests apart; returns (kubeconfig, audit user name).
async fn operator_identity(
    tb: &TestBed,
    client: &kube::Client,
    ns: &str,
) -> Result<(PathBuf, String)> {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "nodehealer"}}))?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.create(&PostParams::default(), &sa).await?;
    create(client, &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("{ns}-nodehealer")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "nodehealer", "namespace": ns}]}),
    )
    .await?;
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 7200}}))?;
    let token = sas
        .create_token_request("nodehealer", &PostParams::default(), &request)
        .await?
        .status
        .context("token")?
        .token;
    let path = tb.run_dir.join(format!("{ns}.kubeconfig"));
    tb.cp.kubeconfig_for(&path, &token, "nodehealer")?;
    Ok((path, format!("system:serviceaccount:{ns}:nodehealer")))
}

/// Requests by `user` in the audit log since `from` (a byte offset), as (requests other than
/// watches and Lease renewals, watches started, the new offset).
fn audit_counts(tb: &TestBed, user: &str, from: u64) -> Result<(usize, usize, u64)> {
    let path = tb.cp.dir.join("audit.log");
    let text = std::fs::read(&path)?;
    let tail = &text[(from as usize).min(text.len())..];
    let mut requests = 0;
    let mut watches = 0;
    for line in tail.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if v["user"]["username"] != user {
            continue;
        }
        let lease = v["objectRef"]["resource"] == "leases";
        match (v["verb"].as_str(), v["stage"].as_str()) {
            (Some("watch"), Some("ResponseStarted")) => watches += 1,
            (Some("watch"), _) => {}
            // Leader election renews its Lease every few seconds: counted apart.
            (_, Some("ResponseComplete")) if lease => {}
            (_, Some("ResponseComplete")) => requests += 1,
            _ => {}
        }
    }
    Ok((requests, watches, text.len() as u64))
}

fn audit_offset(tb: &TestBed) -> u64 {
    std::fs::metadata(tb.cp.dir.join("audit.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Peak RSS (KiB) and CPU seconds of a process.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 14th, stime the 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (hwm, (ticks(11) + ticks(12)) / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One cluster size: detection latency for each batch of failures, requests, memory.
async fn scale(
    tb: &TestBed,
    client: &kube::Client,
    args: &Args,
    size: usize,
) -> Result<Vec<String>> {
    eprintln!("[bench] {size} nodes: creating the cluster");
    let ns = tb.namespace(&format!("bench{size}")).await?;
    let started = Instant::now();
    let cluster = tb
        // NodeHealthCheck at scale: thousands of DaemonSet pods would measure kwok, not us.
        .create_cluster(ClusterSpec {
            realistic: false,
            ..ClusterSpec::magnum(&ns, 0, size as u32)
        })
        .await?;
    eprintln!(
        "[bench] {size} nodes Ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    create(
        client,
        &json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
            "metadata": {"name": "reboot", "namespace": ns},
            "spec": {"template": {"spec": {"action": "Reboot",
                "openstack": {"cloudSecretRef": {"name": "openstack-cloud"}}}}}}),
    )
    .await?;
    create(client, &json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
            "metadata": {"name": format!("{ns}-workers"), "labels": {"bench": ns}},
            "spec": {
                "selector": {"matchLabels": {CLUSTER_LABEL: cluster.name, MAGNUM_ROLE_LABEL: "worker"}},
                "unhealthyConditions": [{"type": "Ready", "status": "False", "duration": format!("{UNHEALTHY_SECONDS}s")}],
                "maxUnhealthy": "100%",
                "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
                    "name": "reboot", "namespace": ns}}}),
    )
    .await?;
    let (kubeconfig, user) = operator_identity(tb, client, &ns).await?;
    let port = free_port()?;
    let mut cmd = Command::new(&args.operator);
    cmd.args([
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--namespace={ns}"),
        format!("--watch-namespace={ns}"),
        format!("--nhc-selector=bench={ns}"),
        format!("--http-address=127.0.0.1:{port}"),
        "--controllers=nhc".into(),
        "--log=info".into(),
    ]);
    let start_offset = audit_offset(tb);
    let op = tb.spawn_process(&format!("{ns}-operator"), cmd)?;
    wait_for(Duration::from_secs(120), "the operator ready", || async {
        Ok(reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success()))
    })
    .await
    .with_context(|| op.log_tail(30))?;

    // Steady state: settle, then count for a minute.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let offset = audit_offset(tb);
    eprintln!(
        "[bench] {size} nodes: counting requests at steady state for {} s",
        args.steady_seconds
    );
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let (steady, _, _) = audit_counts(tb, &user, offset)?;
    let (_, watches, _) = audit_counts(tb, &user, start_offset)?;
    let per_minute = steady as f64 * 60.0 / args.steady_seconds as f64;

    // Watch Ready flips and Remediations from here, with local arrival times.
    // When each node's Ready=False began (its lastTransitionTime, as the API says) and when
    // its Remediation was seen, both on the wall clock of this machine.
    let seen_false: Arc<Mutex<HashMap<String, jiff::Timestamp>>> = Arc::default();
    let seen_rem: Arc<Mutex<HashMap<String, jiff::Timestamp>>> = Arc::default();
    let nodes_api: Api<Node> = Api::all(client.clone());
    let selector = format!("{CLUSTER_LABEL}={}", cluster.name);
    let node_watch = {
        let seen = seen_false.clone();
        let stream = watcher(
            nodes_api.clone(),
            watcher::Config::default().labels(&selector),
        )
        .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(n)) = stream.next().await {
                let name = n.metadata.name.clone().unwrap_or_default();
                let since = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| {
                        cs.iter()
                            .find(|c| c.type_ == "Ready" && c.status == "False")
                    })
                    .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0));
                let mut seen = seen.lock().unwrap();
                match since {
                    Some(at) => {
                        seen.insert(name, at);
                    }
                    None => {
                        seen.remove(&name);
                    }
                }
            }
        })
    };
    let rems: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &nodehealer_resource("Remediation"));
    let rem_watch = {
        let seen = seen_rem.clone();
        let stream = watcher(rems.clone(), watcher::Config::default()).touched_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(r)) = stream.next().await {
                let node = r
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("remediation.medik8s.io/node-name").cloned())
                    .unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .entry(node)
                    .or_insert_with(jiff::Timestamp::now);
            }
        })
    };

    let mut rows = Vec::new();
    let workers = cluster.nodes_with_role("worker");
    for &k in &args.failing {
        let k = k.min(size);
        let victims: Vec<String> = workers.iter().take(k).cloned().collect();
        seen_rem.lock().unwrap().clear();
        let offset = audit_offset(tb);
        eprintln!("[bench] {size} nodes: {k} failing at once");
        for v in &victims {
            tb.kubelet_hang(v).await?;
        }
        wait_for(
            Duration::from_secs(120),
            "every victim's Remediation",
            || async {
                let seen = seen_rem.lock().unwrap();
                Ok(victims.iter().all(|v| seen.contains_key(v)))
            },
        )
        .await?;
        let (requests, _, _) = audit_counts(tb, &user, offset)?;
        let mut latencies: Vec<f64> = {
            let f = seen_false.lock().unwrap();
            let r = seen_rem.lock().unwrap();
            victims
                .iter()
                .filter_map(|v| {
                    let expiry =
                        *f.get(v)? + jiff::SignedDuration::from_secs(UNHEALTHY_SECONDS as i64);
                    let at = *r.get(v)?;
                    Some(at.duration_since(expiry).as_secs_f64())
                })
                .collect()
        };
        latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (rss, cpu) = usage(op.pid());
        rows.push(format!(
            "| {size} | {k} | {:.2} / {:.2} / {:.2} s | {:.1} | {per_minute:.1} | {watches} | {:.0} MiB | {cpu:.1} |",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or(f64::NAN),
            requests as f64 / k as f64,
            rss as f64 / 1024.0,
        ));
        // Back to healthy: the NodeHealthCheck removes the Remediations.
        for v in &victims {
            tb.recover_node(v).await?;
        }
        wait_for(
            Duration::from_secs(120),
            "the Remediations removed",
            || async { Ok(rems.list(&ListParams::default()).await?.items.is_empty()) },
        )
        .await?;
        wait_for(Duration::from_secs(60), "every node Ready", || async {
            let list = nodes_api
                .list(&ListParams::default().labels(&selector))
                .await?;
            Ok(list
                .items
                .iter()
                .all(|n| ready_status(n).as_deref() == Some("True")))
        })
        .await?;
    }
    node_watch.abort();
    rem_watch.abort();
    op.stop(Duration::from_secs(5));
    // Free the control plane for the next size.
    let all: Api<Node> = Api::all(client.clone());
    let _ = all
        .delete_collection(
            &Default::default(),
            &ListParams::default().labels(&selector),
        )
        .await;
    Ok(rows)
}

/// The PowerCycle failover split into its parts, against the floor.
async fn failover(tb: &TestBed, client: &kube::Client, args: &Args) -> Result<String> {
    // The floor: the out-of-service taint applied by hand at the moment of death.
    let floor = {
        let ns = tb.namespace("floor").await?;
        let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 3)).await?;
        stateful_app(
            client,
            &ns,
            "db",
            &[
                (CLUSTER_LABEL, &cluster.name),
                (MAGNUM_ROLE_LABEL, "worker"),
            ],
        )
        .await?;
        wait_for(Duration::from_secs(60), "db-0", || async {
            Ok(running_on(client, &ns, "db-0").await?.is_some())
        })
        .await?;
        let home = running_on(client, &ns, "db-0").await?.context("placed")?;
        tb.fail_node(&home).await?;
        let t0 = Instant::now();
        let nodes: Api<Node> = Api::all(client.clone());
        let taint = json!({"spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}]}});
        nodes
            .patch(&home, &PatchParams::default(), &Patch::Merge(&taint))
            .await?;
        wait_for(Duration::from_secs(90), "db-0 elsewhere", || async {
            Ok(running_on(client, &ns, "db-0")
                .await?
                .is_some_and(|n| n != home))
        })
        .await?;
        t0.elapsed()
    };

    let ns = tb.namespace("failover").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 3)).await?;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openstack-cloud", "namespace": ns},
        "stringData": {"clouds.yaml": tb.clouds_yaml("openstack")}});
    create(client, &secret).await?;
    create(
        client,
        &json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
            "metadata": {"name": "power-cycle", "namespace": ns},
            "spec": {"template": {"spec": {"action": "PowerCycle",
                "openstack": {"cloudSecretRef": {"name": "openstack-cloud"}}}}}}),
    )
    .await?;
    create(client, &json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
            "metadata": {"name": format!("{ns}-workers"), "labels": {"bench": ns}},
            "spec": {
                "selector": {"matchLabels": {CLUSTER_LABEL: cluster.name, MAGNUM_ROLE_LABEL: "worker"}},
                "unhealthyConditions": [{"type": "Ready", "status": "Unknown", "duration": format!("{UNHEALTHY_SECONDS}s")}],
                "maxUnhealthy": 1,
                "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
                    "name": "power-cycle", "namespace": ns}}}),
    )
    .await?;
    let port = free_port()?;
    let mut cmd = Command::new(&args.operator);
    cmd.args([
        format!("--kubeconfig={}", tb.cp.kubeconfig.display()),
        format!("--namespace={ns}"),
        format!("--watch-namespace={ns}"),
        format!("--nhc-selector=bench={ns}"),
        format!("--http-address=127.0.0.1:{port}"),
        "--log=warn".into(),
    ]);
    let op = tb.spawn_process(&format!("{ns}-operator"), cmd)?;
    stateful_app(
        client,
        &ns,
        "db",
        &[
            (CLUSTER_LABEL, &cluster.name),
            (MAGNUM_ROLE_LABEL, "worker"),
        ],
    )
    .await?;
    wait_for(Duration::from_secs(60), "db-0", || async {
        Ok(running_on(client, &ns, "db-0").await?.is_some())
    })
    .await?;
    let home = running_on(client, &ns, "db-0").await?.context("placed")?;
    let server = cluster.servers[&home].clone();
    tb.sim.clear_request_log();
    let nodes: Api<Node> = Api::all(client.clone());
    let rems: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &nodehealer_resource("Remediation"));
    tb.fail_node(&home).await?;
    let t0 = Instant::now();
    let mut marks: BTreeMap<&str, Duration> = BTreeMap::new();
    while t0.elapsed() < Duration::from_secs(120) {
        let node = nodes.get(&home).await?;
        if ready_status(&node).as_deref() == Some("Unknown") {
            marks
                .entry("1 node NotReady (Kubernetes detection)")
                .or_insert(t0.elapsed());
        }
        if !rems.list(&ListParams::default()).await?.items.is_empty() {
            marks
                .entry("2 Remediation created (+ unhealthy duration)")
                .or_insert(t0.elapsed());
        }
        let taints = nodehealer_testbed::taint_strings(&node);
        if taints
            .iter()
            .any(|t| t.starts_with("node.kubernetes.io/out-of-service"))
        {
            marks
                .entry("3 fence confirmed, out-of-service taint")
                .or_insert(t0.elapsed());
        }
        if running_on(client, &ns, "db-0")
            .await?
            .is_some_and(|n| n != home)
        {
            marks
                .entry("4 pod Running elsewhere")
                .or_insert(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    op.stop(Duration::from_secs(5));
    if marks.len() < 4 {
        bail!("the failover did not complete: {marks:?}");
    }
    let openstack_requests = tb
        .sim
        .request_log()
        .iter()
        .filter(|r| {
            r.server_id.as_deref() == Some(server.as_str()) || r.path.contains("/auth/tokens")
        })
        .count();
    let mut out = String::from(
        "## PowerCycle failover, from the server's death\n\n| milestone | at | step |\n|---|---|---|\n",
    );
    let mut last = Duration::ZERO;
    for (name, at) in &marks {
        out.push_str(&format!(
            "| {} | {:.1} s | +{:.1} s |\n",
            &name[2..],
            at.as_secs_f64(),
            (*at - last).as_secs_f64()
        ));
        last = *at;
    }
    let total = marks["4 pod Running elsewhere"];
    let taint = marks["3 fence confirmed, out-of-service taint"];
    out.push_str(&format!(
        "\nFloor (out-of-service taint by hand at the moment of death → pod Running elsewhere): {:.1} s. \
         nodehealer: taint → pod Running elsewhere {:.1} s; death → taint {:.1} s ({}s unhealthy duration + detection + fence). \
         OpenStack requests for the remediation (Keystone and the server): {openstack_requests}.\n",
        floor.as_secs_f64(),
        (total - taint).as_secs_f64(),
        taint.as_secs_f64(),
        UNHEALTHY_SECONDS
    ));
    Ok(out)
}
