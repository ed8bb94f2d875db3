//! The fault suite: the operator killed (SIGKILL) at random moments while twenty nodes are
//! remediated, Nova calls that time out, and twenty-two malformed or hostile objects. In each,
//! every remediation completes or says clearly why it cannot, no OpenStack action is sent twice
//! (checked from the simulator's request log), nothing is released without a confirmed fence,
//! no taint is left behind, and the operator never crash-loops.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use nodehealer::api::{NodeHealthCheck, Remediation, RemediationPhase};
use nodehealer_testbed::objects::{create, nodehealer_resource as resource};
use nodehealer_testbed::{
    CLUSTER_LABEL, ClusterSpec, MAGNUM_ROLE_LABEL, OS_PROJECT, TestBed, TestCluster, ready_status,
    report_timing, wait_for,
};
use openstack_sim::{Fault, FaultKind, Service};
use serde_json::{Value, json};
use support::{Operator, SCOPE_LABEL};

const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// The operator is killed every KILL_MIN_MS + [0, KILL_SPREAD_MS) milliseconds.
const KILL_MIN_MS: u64 = 50;
const KILL_SPREAD_MS: u64 = 350;

struct Bed {
    tb: &'static TestBed,
    ns: String,
    client: kube::Client,
    cluster: TestCluster,
}

impl Bed {
    /// A cluster of `workers` workers (and no control plane), with the credentials Secret
    /// `openstack-cloud`.
    async fn new(prefix: &str, workers: u32) -> Result<Bed> {
        let tb = support::testbed().await?;
        let ns = tb.namespace(prefix).await?;
        let cluster = tb
            .create_cluster(ClusterSpec::magnum(&ns, 0, workers))
            .await?;
        let client = tb.client().await?;
        let bed = Bed {
            tb,
            ns,
            client,
            cluster,
        };
        bed.secret(
            "openstack-cloud",
            json!({"clouds.yaml": tb.clouds_yaml("openstack")}),
        )
        .await?;
        Ok(bed)
    }

    fn workers(&self) -> Vec<String> {
        self.cluster.nodes_with_role("worker")
    }

    async fn secret(&self, name: &str, string_data: Value) -> Result<()> {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": string_data
        }))?;
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(())
    }

    fn openstack(secret: &str) -> Value {
        json!({"cloudSecretRef": {"name": secret}, "cloud": "openstack"})
    }

    async fn template(&self, name: &str, spec: Value, annotations: Value) -> Result<()> {
        create(
            &self.client,
            &json!({
                "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
                "metadata": {"name": name, "namespace": self.ns, "annotations": annotations},
                "spec": {"template": {"spec": spec}}
            }),
        )
        .await?;
        Ok(())
    }

    fn template_ref(&self, name: &str) -> Value {
        json!({"apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
               "name": name, "namespace": self.ns})
    }

    async fn nhc(&self, name: &str, spec: Value) -> Result<String> {
        let name = format!("{}-{name}", self.ns);
        create(
            &self.client,
            &json!({
                "apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
                "metadata": {"name": name, "labels": {SCOPE_LABEL: self.ns}},
                "spec": spec
            }),
        )
        .await?;
        Ok(name)
    }

    fn pool_selector(&self) -> Value {
        json!({"matchLabels": {CLUSTER_LABEL: self.cluster.name, MAGNUM_ROLE_LABEL: "worker"}})
    }

    fn remediations(&self) -> Api<Remediation> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates a Remediation for `node` as a NodeHealthCheck would.
    async fn remediate(&self, node: &str, spec: Value) -> Result<()> {
        support::remediate(&self.client, &self.ns, node, spec).await
    }

    async fn hang_all(&self, nodes: &[String]) -> Result<()> {
        for n in nodes {
            self.tb.kubelet_hang(n).await?;
        }
        wait_for(Duration::from_secs(60), "the nodes not Ready", || async {
            for n in nodes {
                if self.ready(n).await? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        Ok(())
    }

    async fn node(&self, name: &str) -> Result<Option<Node>> {
        Ok(Api::<Node>::all(self.client.clone()).get_opt(name).await?)
    }

    async fn ready(&self, name: &str) -> Result<bool> {
        Ok(self
            .node(name)
            .await?
            .and_then(|n| ready_status(&n))
            .as_deref()
            == Some("True"))
    }

    async fn taints(&self, name: &str) -> Result<Vec<String>> {
        support::node_taints(&self.client, name).await
    }

    /// Every accepted OpenStack action on the cluster's servers, by server (servers with none
    /// left out).
    fn accepted_actions(&self) -> BTreeMap<String, Vec<String>> {
        self.cluster
            .servers
            .values()
            .map(|s| (s.clone(), support::accepted_actions(self.tb, s)))
            .filter(|(_, actions)| !actions.is_empty())
            .collect()
    }

    async fn events(&self) -> Result<Vec<(String, String)>> {
        support::events(&self.client, &self.ns).await
    }
}

/// A tiny deterministic generator (the seed is printed, so a failing run can be replayed).
struct Lcg(u64);

impl Lcg {
    fn next_below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Twenty hung workers are power-cycled by one operator (both controllers) that is killed with
/// SIGKILL at random moments and started again each time. All twenty finish; each server got
/// exactly one `os-stop` and one `os-start`; no taint is left; nothing was freed before its
/// server was SHUTOFF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_remediations_survive_an_operator_killed_at_random_moments() -> Result<()> {
    let bed = Bed::new("kill20", 22).await?;
    bed.template(
        "power-cycle",
        json!({"action": "PowerCycle", "openstack": Bed::openstack("openstack-cloud")}),
        json!({}),
    )
    .await?;
    bed.nhc(
        "workers",
        json!({
            "selector": bed.pool_selector(),
            "unhealthyConditions": [
                {"type": "Ready", "status": "False", "duration": "2s"},
                {"type": "Ready", "status": "Unknown", "duration": "2s"}
            ],
            "maxUnhealthy": 20,
            "healthyDelay": "0s",
            "remediationTemplate": bed.template_ref("power-cycle")
        }),
    )
    .await?;
    let mut op = Operator::start(bed.tb, &bed.ns, &[])?;
    op.wait_ready().await?;
    let victims: Vec<String> = bed.workers().into_iter().take(20).collect();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    println!("[kill20] seed {seed}");
    let mut rng = Lcg(seed);
    let started = Instant::now();
    bed.hang_all(&victims).await?;

    let rems = bed.remediations();
    let mut kills = 0;
    let mut freed_too_early = Vec::new();
    let mut saw_remediations = false;
    let mut next_kill =
        Instant::now() + Duration::from_millis(KILL_MIN_MS + rng.next_below(KILL_SPREAD_MS));
    loop {
        let list = rems.list(&ListParams::default()).await?.items;
        saw_remediations |= !list.is_empty();
        for v in &victims {
            if bed
                .taints(v)
                .await?
                .iter()
                .any(|t| t.starts_with(OUT_OF_SERVICE))
            {
                let server = bed.tb.sim.server(&bed.cluster.servers[v]);
                if server.as_ref().map(|s| s.status.as_str()) != Some("SHUTOFF") {
                    freed_too_early.push((v.clone(), server.map(|s| s.status)));
                }
            }
        }
        let mut all_back = saw_remediations && list.is_empty();
        for v in &victims {
            all_back &= bed.ready(v).await?;
        }
        if all_back {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let stuck: Vec<String> = list
                .iter()
                .map(|r| {
                    let node = r.metadata.name.clone().unwrap_or_default();
                    let server = bed
                        .cluster
                        .servers
                        .get(&node)
                        .and_then(|id| bed.tb.sim.server(id));
                    format!("{node}: status {:#?}\n  server {server:?}", r.status)
                })
                .collect();
            bail!(
                "not finished after {kills} kills (seed {seed}):\n{}\nlog:\n{}",
                stuck.join("\n"),
                op.log_tail()
            );
        }
        // Kill at random moments from the failure on (while the NodeHealthCheck creates the
        // remediations, while they fence, free and recover), ten times at most.
        if kills < 30 && Instant::now() >= next_kill {
            op.restart(bed.tb)?;
            kills += 1;
            next_kill = Instant::now()
                + Duration::from_millis(KILL_MIN_MS + rng.next_below(KILL_SPREAD_MS));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        kills >= 3,
        "the operator was killed {kills} times (seed {seed})"
    );
    assert!(
        freed_too_early.is_empty(),
        "out-of-service taint before SHUTOFF: {freed_too_early:?}"
    );
    let actions = bed.accepted_actions();
    for v in &victims {
        let server = &bed.cluster.servers[v];
        assert_eq!(
            actions.get(server).cloned().unwrap_or_default(),
            vec!["os-stop", "os-start"],
            "{v} (seed {seed})"
        );
        let left: Vec<String> = bed
            .taints(v)
            .await?
            .into_iter()
            .filter(|t| t.starts_with("nodehealer.io/") || t.starts_with(OUT_OF_SERVICE))
            .collect();
        assert!(left.is_empty(), "{v}: {left:?}");
    }
    report_timing(
        &format!(
            "twenty remediations, the operator SIGKILLed {kills} times: kubelets hang -> all nodes Ready"
        ),
        started.elapsed(),
    );
    Ok(())
}

/// Nova calls that hang until the client's timeout (the server's show and its first action):
/// the fence is only delayed; the stop is sent again only once the server shows it never
/// arrived, so it is accepted once; nothing is freed before SHUTOFF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nova_timeouts_delay_the_fence_but_nothing_is_freed_early_or_sent_twice() -> Result<()> {
    let bed = Bed::new("novatimeout", 2).await?;
    let op = Operator::start(bed.tb, &bed.ns, &["--controllers=remediation"])?;
    let victim = bed.workers()[0].clone();
    let server = bed.cluster.servers[&victim].clone();
    bed.hang_all(std::slice::from_ref(&victim)).await?;
    let hang = |path: String, times: u32| Fault {
        service: Service::Nova,
        kind: FaultKind::Hang,
        path_contains: Some(path),
        remaining: Some(times),
    };
    let show = bed.tb.sim.add_fault(hang(format!("servers/{server}"), 1));
    let action = bed
        .tb
        .sim
        .add_fault(hang(format!("servers/{server}/action"), 1));
    let started = Instant::now();
    bed.remediate(
        &victim,
        json!({"action": "PowerCycle", "openstack": Bed::openstack("openstack-cloud")}),
    )
    .await?;
    let mut freed_early = Vec::new();
    loop {
        let rem = bed.remediations().get(&victim).await?;
        let phase = rem.status.as_ref().and_then(|s| s.phase);
        if bed
            .taints(&victim)
            .await?
            .iter()
            .any(|t| t.starts_with(OUT_OF_SERVICE))
        {
            let status = bed.tb.sim.server(&server).map(|s| s.status);
            if status.as_deref() != Some("SHUTOFF") {
                freed_early.push(status);
            }
        }
        if phase == Some(RemediationPhase::Succeeded) {
            break;
        }
        if phase.is_some_and(|p| p.is_final()) || started.elapsed() > Duration::from_secs(150) {
            bail!(
                "ended {phase:?} after {:?}; status {:#?}\nlog:\n{}",
                started.elapsed(),
                rem.status,
                op.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let remaining: Vec<u64> = bed.tb.sim.faults().into_iter().map(|(id, _)| id).collect();
    assert!(
        !remaining.contains(&show) && !remaining.contains(&action),
        "both hangs were hit"
    );
    assert!(freed_early.is_empty(), "freed while {freed_early:?}");
    assert_eq!(
        bed.accepted_actions()
            .get(&server)
            .cloned()
            .unwrap_or_default(),
        vec!["os-stop", "os-start"]
    );
    report_timing(
        "PowerCycle with a hung show and a hung os-stop (10 s client timeout each) -> Succeeded",
        started.elapsed(),
    );
    Ok(())
}

/// One bad object, and what the operator must say about it.
struct Hostile {
    what: &'static str,
    /// A fragment of the message in the Remediation's `lastError` or the NodeHealthCheck's
    /// status (`reason` when Disabled, else the node's `blockedReason`).
    says: &'static str,
}

/// Twenty-odd malformed or hostile objects, all accepted by the API server's validation: each
/// gets a clear message in its status and an event, no OpenStack action is sent, nothing is
/// freed, and the operator keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_objects_get_a_clear_message_and_no_action() -> Result<()> {
    let bed = Bed::new("hostile", 14).await?;
    let workers = bed.workers();
    let op = Operator::start(bed.tb, &bed.ns, &[])?;
    bed.hang_all(&workers).await?;

    // Secrets, each broken in its own way.
    let auth_url = bed.tb.sim.auth_url();
    let cloud = |auth: Value| {
        serde_yaml::to_string(
            &json!({"clouds": {"openstack": {"auth": auth, "region_name": "RegionOne"}}}),
        )
        .unwrap()
    };
    bed.secret("no-key", json!({"other.yaml": "x"})).await?;
    bed.secret(
        "not-yaml",
        json!({"clouds.yaml": "clouds: [this is: not a mapping"}),
    )
    .await?;
    bed.secret(
        "other-cloud",
        json!({"clouds.yaml": "clouds:\n  elsewhere:\n    auth: {auth_url: 'http://127.0.0.1:1/v3'}\n"}),
    )
    .await?;
    bed.secret(
        "wrong-password",
        json!({"clouds.yaml": cloud(json!({
            "auth_url": auth_url, "username": "nodehealer", "password": "not-the-password",
            "project_name": OS_PROJECT, "user_domain_name": "Default", "project_domain_name": "Default"
        }))}),
    )
    .await?;
    bed.secret(
        "wrong-app-credential",
        json!({"clouds.yaml": cloud(json!({
            "auth_url": auth_url, "application_credential_id": "0123456789abcdef",
            "application_credential_secret": "nope"
        }))}),
    )
    .await?;
    bed.secret(
        "dead-keystone",
        json!({"clouds.yaml": cloud(json!({
            "auth_url": format!("http://127.0.0.1:{}/v3", nodehealer_testbed::procs::free_port()?),
            "username": "u", "password": "p", "project_name": "k8s",
            "user_domain_name": "Default", "project_domain_name": "Default"
        }))}),
    )
    .await?;
    bed.secret("huge", json!({"clouds.yaml": "x".repeat(900 * 1024)}))
        .await?;
    bed.secret(
        "bad-ca",
        json!({"clouds.yaml": bed.tb.clouds_yaml("openstack"),
               "cacert": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"}),
    )
    .await?;
    // Nodes that are not OpenStack servers (no kwok heartbeat: never Ready).
    let foreign = [
        (
            format!("{}-aws", bed.ns),
            "aws:///us-east-1a/i-0123456789abcdef0",
        ),
        (
            format!("{}-badid", bed.ns),
            "openstack:///not-a-server-uuid",
        ),
    ];
    for (name, provider_id) in &foreign {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"providerID": provider_id}
        }))?;
        Api::<Node>::all(bed.client.clone())
            .create(&PostParams::default(), &node)
            .await?;
    }
    bed.secret(
        "no-auth-url",
        json!({"clouds.yaml": cloud(json!({"username": "u", "password": "p"}))}),
    )
    .await?;

    // Remediations, one per hung worker.
    let power_cycle =
        |secret: &str| json!({"action": "PowerCycle", "openstack": Bed::openstack(secret)});
    let remediations: Vec<(String, Value, Hostile)> = vec![
        (
            workers[0].clone(),
            power_cycle("no-such-secret"),
            Hostile {
                what: "a missing Secret",
                says: "not found",
            },
        ),
        (
            workers[1].clone(),
            power_cycle("no-key"),
            Hostile {
                what: "a Secret without clouds.yaml",
                says: "has no key",
            },
        ),
        (
            workers[2].clone(),
            power_cycle("not-yaml"),
            Hostile {
                what: "a clouds.yaml that is not YAML",
                says: "clouds.yaml",
            },
        ),
        (
            workers[3].clone(),
            power_cycle("other-cloud"),
            Hostile {
                what: "a clouds.yaml without the cloud",
                says: "openstack",
            },
        ),
        (
            workers[4].clone(),
            power_cycle("wrong-password"),
            Hostile {
                what: "a wrong password",
                says: "401",
            },
        ),
        (
            workers[5].clone(),
            power_cycle("wrong-app-credential"),
            Hostile {
                what: "a wrong application credential",
                says: "401",
            },
        ),
        (
            workers[6].clone(),
            power_cycle("dead-keystone"),
            Hostile {
                what: "an auth_url nobody answers",
                says: "keystone",
            },
        ),
        (
            workers[7].clone(),
            power_cycle("huge"),
            Hostile {
                what: "a 900 KiB clouds.yaml of garbage",
                says: "clouds.yaml",
            },
        ),
        (
            workers[8].clone(),
            power_cycle("no-auth-url"),
            Hostile {
                what: "a cloud without auth_url",
                says: "auth_url",
            },
        ),
        (
            "no-such-node".into(),
            power_cycle("openstack-cloud"),
            Hostile {
                what: "a node that does not exist",
                says: "no-such-node",
            },
        ),
        (
            workers[11].clone(),
            power_cycle("bad-ca"),
            Hostile {
                what: "a CA bundle that is not a certificate",
                says: "CA bundle",
            },
        ),
        (
            foreign[0].0.clone(),
            power_cycle("openstack-cloud"),
            Hostile {
                what: "a node of another cloud",
                says: "not an OpenStack one",
            },
        ),
        (
            foreign[1].0.clone(),
            power_cycle("openstack-cloud"),
            Hostile {
                what: "a malformed OpenStack providerID",
                says: "is not openstack:///<server-uuid>",
            },
        ),
        (
            workers[9].clone(),
            json!({"action": "Replace", "openstack": {
                "cloudSecretRef": {"name": "openstack-cloud"}, "cloud": "openstack",
                "magnum": {"cluster": "no-such-cluster"}}}),
            Hostile {
                what: "a Magnum cluster that does not exist",
                says: "no-such-cluster",
            },
        ),
    ];
    for (node, spec, _) in &remediations {
        bed.remediate(node, spec.clone()).await?;
    }

    // NodeHealthChecks that cannot work.
    bed.template(
        "power-cycle",
        json!({"action": "PowerCycle", "openstack": Bed::openstack("openstack-cloud")}),
        json!({}),
    )
    .await?;
    bed.template(
        "reboot",
        json!({"action": "Reboot", "openstack": Bed::openstack("openstack-cloud")}),
        json!({}),
    )
    .await?;
    bed.template(
        "ghost-magnum",
        json!({"action": "PowerCycle", "openstack": {
            "cloudSecretRef": {"name": "openstack-cloud"}, "cloud": "openstack",
            "magnum": {"cluster": "ghost-cluster"}}}),
        json!({}),
    )
    .await?;
    let nobody = json!({"matchLabels": {"nodehealer.io/nothing": "here"}});
    let huge_values: Vec<String> = (0..400).map(|i| format!("{i:0>60}")).collect();
    let mut other_ns = bed.template_ref("power-cycle");
    other_ns["namespace"] = json!("kube-system");
    let nhcs: Vec<(Value, Hostile)> = vec![
        (
            json!({"selector": nobody, "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1",
                   "kind": "RemediationTemplate", "name": "missing", "namespace": bed.ns}}),
            Hostile {
                what: "a template that does not exist",
                says: "not found",
            },
        ),
        (
            json!({"selector": nobody, "remediationTemplate": {"apiVersion": "ghost.example.com/v1",
                   "kind": "GhostTemplate", "name": "x", "namespace": bed.ns}}),
            Hostile {
                what: "a template kind nobody serves",
                says: "ghost.example.com",
            },
        ),
        (
            json!({"selector": nobody, "escalatingRemediations": [
                {"remediationTemplate": bed.template_ref("reboot"), "order": 1, "timeout": "60s"},
                {"remediationTemplate": bed.template_ref("power-cycle"), "order": 2, "timeout": "60s"}]}),
            Hostile {
                what: "two templates of one kind without multiple-templates support",
                says: "multiple-templates-support",
            },
        ),
        (
            json!({"selector": nobody, "remediationTemplate": other_ns}),
            Hostile {
                what: "a template outside the watched namespace",
                says: "outside the namespace",
            },
        ),
        (
            json!({"selector": {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
                   "remediationTemplate": bed.template_ref("power-cycle")}),
            Hostile {
                what: "a selector with an empty In",
                says: "invalid selector",
            },
        ),
        (
            json!({"selector": nobody, "remediationTemplate": bed.template_ref("power-cycle"),
                   "recovery": {"method": "ReservedHost", "reservedNodeSelector":
                       {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}}}),
            Hostile {
                what: "a reservedNodeSelector with values for Exists",
                says: "invalid recovery.reservedNodeSelector",
            },
        ),
        (
            json!({"selector": {"matchLabels": {"kubernetes.io/hostname": workers[10]}},
                   "unhealthyConditions": [{"type": "Ready", "status": "False", "duration": "1s"}],
                   "maxUnhealthy": 1,
                   "remediationTemplate": bed.template_ref("ghost-magnum")}),
            Hostile {
                what: "a template naming a Magnum cluster that does not exist",
                says: "ghost-cluster could not be read",
            },
        ),
        (
            json!({"selector": {"matchExpressions": [
                    {"key": "nodehealer.io/huge", "operator": "In", "values": huge_values}]},
                   "remediationTemplate": bed.template_ref("power-cycle")}),
            Hostile {
                what: "a 25 KB selector (selects nothing; works)",
                says: "enabled, no remediation in progress",
            },
        ),
    ];
    let mut nhc_names = Vec::new();
    for (i, (spec, _)) in nhcs.iter().enumerate() {
        nhc_names.push(bed.nhc(&format!("bad-{i}"), spec.clone()).await?);
    }
    let total = remediations.len() + nhcs.len();
    assert!(total >= 20, "{total} hostile objects");

    // Every one says what is wrong.
    let nhc_api: Api<NodeHealthCheck> = Api::all(bed.client.clone());
    for (node, _, hostile) in &remediations {
        let said = wait_for(Duration::from_secs(60), hostile.what, || async {
            let rem = bed.remediations().get(node).await?;
            Ok(rem
                .status
                .and_then(|s| s.last_error)
                .is_some_and(|e| e.contains(hostile.says)))
        })
        .await;
        if said.is_err() {
            let rem = bed.remediations().get(node).await?;
            bail!(
                "{}: wanted a lastError containing {:?}, status {:#?}\nlog:\n{}",
                hostile.what,
                hostile.says,
                rem.status,
                op.log_tail()
            );
        }
    }
    for (name, (_, hostile)) in nhc_names.iter().zip(&nhcs) {
        let said = wait_for(Duration::from_secs(60), hostile.what, || async {
            let status = nhc_api.get(name).await?.status.unwrap_or_default();
            let mut texts: Vec<String> = status.reason.into_iter().collect();
            texts.extend(
                status
                    .unhealthy_nodes
                    .into_iter()
                    .filter_map(|u| u.blocked_reason),
            );
            Ok(texts.iter().any(|t| t.contains(hostile.says)))
        })
        .await;
        if said.is_err() {
            let status = nhc_api.get(name).await?.status;
            bail!(
                "{}: wanted {:?} in the status, got {status:#?}",
                hostile.what,
                hostile.says
            );
        }
    }

    // Warnings were written, nothing was done, the operator runs on.
    let events = bed.events().await?;
    for reason in ["CloudSecretError", "CloudConfigInvalid", "CloudAuthFailed"] {
        assert!(
            events.iter().any(|(r, _)| r == reason),
            "a {reason} event; got {:?}",
            events.iter().map(|(r, _)| r).collect::<Vec<_>>()
        );
    }
    let password_leaked = events.iter().any(|(_, m)| {
        m.contains("not-the-password") || m.contains(&bed.tb.clouds_yaml("openstack"))
    });
    assert!(!password_leaked, "a credential in an event");
    assert_eq!(
        bed.accepted_actions(),
        BTreeMap::new(),
        "no OpenStack action"
    );
    for w in &workers {
        assert!(
            !bed.taints(w)
                .await?
                .iter()
                .any(|t| t.starts_with(OUT_OF_SERVICE)),
            "{w} freed"
        );
    }
    assert!(op.proc.is_running(), "the operator keeps running");
    op.wait_ready().await?;

    // Cleaning up works too: deleting the objects removes our taints.
    bed.remediations()
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    wait_for(Duration::from_secs(30), "the Remediations gone", || async {
        Ok(bed
            .remediations()
            .list(&ListParams::default())
            .await?
            .items
            .is_empty())
    })
    .await?;
    let templates: Api<DynamicObject> = Api::namespaced_with(
        bed.client.clone(),
        &bed.ns,
        &resource("RemediationTemplate"),
    );
    templates
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    for name in &nhc_names {
        nhc_api.delete(name, &DeleteParams::default()).await?;
    }
    for (name, _) in &foreign {
        Api::<Node>::all(bed.client.clone())
            .delete(name, &DeleteParams::default())
            .await?;
    }
    for w in &workers {
        let ours: Vec<String> = bed
            .taints(w)
            .await?
            .into_iter()
            .filter(|t| t.starts_with("nodehealer.io/"))
            .collect();
        assert!(ours.is_empty(), "{w}: {ours:?}");
    }
    Ok(())
}

/// Magnum is updating the cluster when a Replace starts: nothing is sent to it and nothing is
/// freed until the update ends; then exactly one resize removes the server and the Remediation
/// succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_magnum_cluster_holds_a_replace_until_it_settles() -> Result<()> {
    let bed = Bed::new("magnumbusy", 2).await?;
    let op = Operator::start(bed.tb, &bed.ns, &["--controllers=remediation"])?;
    let cluster = bed.cluster.magnum_id.clone().expect("a Magnum cluster");
    let victim = bed.workers()[0].clone();
    let server = bed.cluster.servers[&victim].clone();
    bed.hang_all(std::slice::from_ref(&victim)).await?;
    bed.tb
        .sim
        .set_cluster_status(&cluster, "UPDATE_IN_PROGRESS");
    let mut openstack = Bed::openstack("openstack-cloud");
    openstack["magnum"] = json!({"cluster": cluster});
    bed.remediate(
        &victim,
        json!({"action": "Replace", "openstack": openstack}),
    )
    .await?;
    let resizes = || {
        bed.tb
            .sim
            .request_log()
            .into_iter()
            .filter(|r| {
                r.path.contains(&cluster)
                    && r.path.ends_with("/actions/resize")
                    && (200..300).contains(&r.status)
            })
            .count()
    };
    let held = wait_for(
        Duration::from_secs(30),
        "the step waits for Magnum",
        || async {
            let rem = bed.remediations().get(&victim).await?;
            Ok(rem
                .status
                .and_then(|s| s.steps.last().and_then(|st| st.message.clone()))
                .is_some_and(|m| m.contains("UPDATE_IN_PROGRESS")))
        },
    )
    .await;
    if let Err(e) = held {
        bail!("{e}\nlog:\n{}", op.log_tail());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(resizes(), 0, "nothing is sent to a busy cluster");
    assert!(bed.tb.sim.server(&server).is_some());
    assert!(
        !bed.taints(&victim)
            .await?
            .iter()
            .any(|t| t.starts_with(OUT_OF_SERVICE)),
        "nothing freed"
    );

    bed.tb.sim.set_cluster_status(&cluster, "UPDATE_COMPLETE");
    support::wait_phase(
        &bed.remediations(),
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(120),
    )
    .await
    .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    assert_eq!(resizes(), 1, "exactly one resize");
    assert!(bed.tb.sim.server(&server).is_none(), "the server is gone");
    Ok(())
}
