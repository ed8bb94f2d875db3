//! Invariant 8 on the test bed: only the current leader sends OpenStack requests, and a leader
//! that was paused (SIGSTOP) in the middle of a request sends nothing when it resumes after
//! a standby took its Lease over.
//!
//! The pause has to land between the moment a request is on record in the Remediation's status
//! and the moment it leaves: that is where a stale leader could still send it. A validating
//! admission webhook of the test holds the leader's status write that records the `os-stop`
//! just long enough to freeze the leader, so the write is committed while the leader sleeps.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::State;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use nodehealer::api::{Remediation, RemediationPhase};
use nodehealer_testbed::{ClusterSpec, TestBed, ready_status, wait_for};
use serde_json::{Value, json};
use support::Operator;
use tokio::sync::{Notify, mpsc};

const LEASE: &str = "nodehealer-leader";

/// Holds the first status write of a Remediation that adds a `request` record, until the test
/// lets it go; every other write is allowed at once.
struct HoldingWebhook {
    port: u16,
    /// One message per admission review seen (the test waits for the first to know the
    /// webhook is live) and `true` when the write it holds arrived.
    seen: mpsc::UnboundedReceiver<bool>,
    release: Arc<Notify>,
}

#[derive(Clone)]
struct Hold {
    request: &'static str,
    held: Arc<AtomicBool>,
    seen: mpsc::UnboundedSender<bool>,
    release: Arc<Notify>,
}

fn count_requests(object: &Value, name: &str) -> usize {
    object["status"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["requests"].as_array().into_iter().flatten())
        .filter(|r| r["action"] == name)
        .count()
}

async fn review(State(hold): State<Hold>, Json(review): Json<Value>) -> Json<Value> {
    let request = &review["request"];
    let adds = count_requests(&request["object"], hold.request)
        > count_requests(&request["oldObject"], hold.request);
    let holding = adds && !hold.held.swap(true, Ordering::SeqCst);
    let _ = hold.seen.send(holding);
    if holding {
        hold.release.notified().await;
    }
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": request["uid"], "allowed": true}
    }))
}

/// The apiserver calls webhooks over TLS only: serve with the test bed's own serving
/// certificate for 127.0.0.1, which its CA signed.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(stream) = self.tls.accept(tcp).await {
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl HoldingWebhook {
    async fn start(tb: &TestBed, request: &'static str) -> Result<HoldingWebhook> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let pki = tb.cp.ca_cert.parent().context("the test bed's PKI")?;
        let certs = CertificateDer::pem_file_iter(pki.join("apiserver.crt"))?
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(pki.join("apiserver.key"))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = tcp.local_addr()?.port();
        let listener = TlsListener {
            tcp,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        };
        let (tx, seen) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let hold = Hold {
            request,
            held: Arc::new(AtomicBool::new(false)),
            seen: tx,
            release: release.clone(),
        };
        let app = axum::Router::new()
            .route("/review", axum::routing::post(review))
            .with_state(hold);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(HoldingWebhook {
            port,
            seen,
            release,
        })
    }

    /// Registers the webhook for Remediation status writes in `ns` only. `Ignore`: a webhook
    /// that is gone never blocks anyone.
    async fn register(&self, tb: &TestBed, client: &kube::Client, ns: &str) -> Result<String> {
        let ca = std::fs::read(&tb.cp.ca_cert)?;
        let name = format!("hold-{ns}");
        let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": name},
            "webhooks": [{
                "name": "hold.tests.nodehealer.io",
                "clientConfig": {
                    "url": format!("https://127.0.0.1:{}/review", self.port),
                    "caBundle": k8s_openapi::ByteString(ca),
                },
                "rules": [{
                    "apiGroups": ["nodehealer.io"], "apiVersions": ["*"],
                    "operations": ["UPDATE"], "resources": ["remediations/status"],
                }],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 20,
            }]
        }))?;
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &config)
            .await?;
        Ok(name)
    }
}

/// Sends `signal` (STOP, CONT) to the operator process.
fn signal(op: &Operator, signal: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(op.proc.pid().to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{signal} failed");
    }
    Ok(())
}

/// The leader is frozen (SIGSTOP) while its status write recording the `os-stop` is in
/// flight, for longer than the Lease; the standby takes over, follows the record up and
/// finishes the remediation. The old leader is then resumed (SIGCONT): its write came back
/// long ago, and its very next move would be to send the `os-stop`, to a server that is
/// running again. It must send nothing: each action is accepted exactly once, and the
/// server stays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_mid_request_sends_nothing_after_the_standby_took_over() -> Result<()> {
    let tb = support::testbed().await?;
    let ns = tb.namespace("paused").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 2)).await?;
    let client = tb.client().await?;
    support::cloud_secret(tb, &client, &ns, "cloud-credentials").await?;
    let remediations: Api<Remediation> = Api::namespaced(client.clone(), &ns);

    let mut webhook = HoldingWebhook::start(tb, "os-stop").await?;
    let webhook_name = webhook.register(tb, &client, &ns).await?;
    // The apiserver picks a new webhook up within a moment: probe with a status write of a
    // Remediation nobody reconciles yet, until the webhook sees one.
    support::remediate(
        &client,
        &ns,
        "probe",
        json!({"action": "Reboot",
        "openstack": {"cloudSecretRef": {"name": "cloud-credentials"}, "cloud": "openstack"}}),
    )
    .await?;
    let mut probes = 0u32;
    wait_for(Duration::from_secs(30), "the webhook live", || {
        probes += 1;
        let patch = json!({"status": {"lastError": format!("probe {probes}")}});
        let remediations = remediations.clone();
        let seen = webhook.seen.try_recv().is_ok();
        async move {
            if seen {
                return Ok(true);
            }
            remediations
                .patch_status("probe", &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(false)
        }
    })
    .await?;
    remediations
        .delete("probe", &DeleteParams::default())
        .await?;

    // The first replica leads; the second starts once it does, and stands by.
    let leader = Operator::start_named(tb, &ns, "first", &["--controllers=remediation"])?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = || async {
        let lease = leases.get_opt(LEASE).await?;
        anyhow::Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
    };
    wait_for(
        Duration::from_secs(30),
        "the first replica leading",
        || async { Ok(holder().await?.as_deref() == Some(format!("{ns}-first").as_str())) },
    )
    .await?;
    leader.wait_ready().await?;
    let standby = Operator::start_named(tb, &ns, "second", &["--controllers=remediation"])?;
    standby.wait_ready().await?;

    let victim = cluster.nodes_with_role("worker")[0].clone();
    let server = cluster.servers[&victim].clone();
    tb.kubelet_hang(&victim).await?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    wait_for(Duration::from_secs(30), "the victim not Ready", || async {
        let node = nodes.get(&victim).await?;
        Ok(ready_status(&node).as_deref() != Some("True"))
    })
    .await?;
    support::remediate(
        &client,
        &ns,
        &victim,
        json!({"action": "PowerCycle",
            "openstack": {"cloudSecretRef": {"name": "cloud-credentials"}, "cloud": "openstack"}}),
    )
    .await?;

    // The leader's write of the os-stop record reaches the webhook: freeze the leader, then
    // let the write be committed.
    let held = async {
        while let Some(holding) = webhook.seen.recv().await {
            if holding {
                return Ok(());
            }
        }
        bail!("the webhook stopped")
    };
    tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .context("the os-stop record written")??;
    signal(&leader, "STOP")?;
    webhook.release.notify_one();

    let finished = support::wait_phase(
        &remediations,
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(120),
    )
    .await;
    finished.with_context(|| format!("standby log:\n{}", standby.log_tail()))?;
    assert_eq!(holder().await?, Some(format!("{ns}-second")));
    assert_eq!(
        support::accepted_actions(tb, &server),
        vec!["os-stop", "os-start"]
    );

    // Resumed, the old leader learns it lost the Lease and exits; whatever it was about to
    // send stays unsent.
    signal(&leader, "CONT")?;
    wait_for(Duration::from_secs(30), "the old leader gone", || async {
        Ok(!leader.proc.is_running())
    })
    .await
    .with_context(|| leader.log_tail())?;
    let accepted = support::accepted_actions(tb, &server);
    assert_eq!(
        accepted,
        vec!["os-stop", "os-start"],
        "old leader's log:\n{}",
        leader.log_tail()
    );
    assert_eq!(tb.power_state(&victim).await?.status, "ACTIVE");

    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .delete(&webhook_name, &DeleteParams::default())
        .await?;
    Ok(())
}
