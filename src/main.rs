//! The `nodehealer` operator binary: arguments → telemetry → client → leader election →
//! controllers and the HTTP server, joined, with graceful shutdown on SIGTERM.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};
use kube::api::{Api, ListParams};
use kube::runtime::events::Reporter;

use nodehealer::api::{NodeHealthCheck, Remediation, RemediationTemplate};
use nodehealer::controller::{self, ControllerKind, Settings};
use nodehealer::leader::{self, Authority, ElectionConfig};
use nodehealer::server::{self, Readiness};

/// Keeps the nodes of Kubernetes clusters on OpenStack healthy: detects broken nodes, fences
/// them through OpenStack, frees their workloads with the out-of-service taint, and brings the
/// capacity back.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Kubeconfig to use; in a pod the in-cluster configuration is used when unset.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,

    /// Namespace of the operator itself: its leader-election Lease lives here.
    #[arg(
        long,
        env = "NODEHEALER_NAMESPACE",
        default_value = "nodehealer-system"
    )]
    namespace: String,

    /// Only reconcile Remediations (and create them from templates) in this namespace;
    /// all namespaces when unset.
    #[arg(long, env = "NODEHEALER_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,

    /// Only reconcile NodeHealthChecks whose labels match this selector (to shard pools
    /// between installations); all when unset.
    #[arg(long, env = "NODEHEALER_NHC_SELECTOR")]
    nhc_selector: Option<String>,

    /// Elect a leader through a Lease so that only one replica acts.
    #[arg(long, env = "NODEHEALER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "NODEHEALER_LEASE_NAME",
        default_value = "nodehealer-leader"
    )]
    lease_name: String,

    /// How long the Lease is valid after its last renewal (whole seconds): a standby takes
    /// over this long after the leader's last renewal. Must exceed the renew deadline.
    #[arg(long, env = "NODEHEALER_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,

    /// A leader that could not renew for this long stops acting and exits; each renewal must
    /// answer within it. The leader sends no OpenStack request less than (lease duration -
    /// renew deadline) before its Lease could run out.
    #[arg(long, env = "NODEHEALER_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    renew_deadline_seconds: u64,

    /// How often to try to acquire or renew the Lease; shorter than the renew deadline.
    #[arg(long, env = "NODEHEALER_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    retry_period_seconds: u64,

    /// This replica's identity in leader election (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Address of the HTTP server for /livez, /readyz and /metrics.
    #[arg(long, env = "NODEHEALER_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    http_address: SocketAddr,

    /// Log format.
    #[arg(long, env = "NODEHEALER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,

    /// Log filter, in the `tracing` env-filter syntax (e.g. `info,nodehealer=debug`).
    #[arg(long, env = "NODEHEALER_LOG", default_value = "info")]
    log: String,

    /// Decide and report everything, act on nothing: no remediation is created and no
    /// OpenStack action is sent, whatever the resources say.
    #[arg(long, env = "NODEHEALER_DRY_RUN", default_value_t = false, action = clap::ArgAction::Set)]
    dry_run: bool,

    /// Seconds between two cloud readiness checks of every NodeHealthCheck (the `CloudReady`
    /// condition), plus up to 10% jitter. Each check costs one Keystone token and one Nova
    /// server list per credential and region, whatever the number of nodes.
    #[arg(long, env = "NODEHEALER_CLOUD_CHECK_INTERVAL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    cloud_check_interval_seconds: u64,

    /// Which controllers run in this process (comma-separated).
    #[arg(long, env = "NODEHEALER_CONTROLLERS", value_enum, value_delimiter = ',', default_values_t = [ControllerKind::Nhc, ControllerKind::Remediation])]
    controllers: Vec<ControllerKind>,
}

/// Tools besides running the operator.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Check, for every NodeHealthCheck of a cluster, that its remediation path works: the
    /// Secret parses, Keystone accepts the credentials, every node of the pool maps to a
    /// server they can see in its region, the Magnum cluster exists. Prints one line per
    /// problem; exits 1 when a NodeHealthCheck is not ready (or there is none), 2 when the
    /// check itself could not run.
    Check {
        /// Kubeconfig of the cluster; in a pod the in-cluster configuration when unset.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<std::path::PathBuf>,
        /// Only the templates in this namespace (as the operator's --watch-namespace).
        #[arg(long)]
        namespace: Option<String>,
        /// Only NodeHealthChecks whose labels match this selector.
        #[arg(long)]
        nhc_selector: Option<String>,
    },
    /// Convert a magnum-auto-healer configuration (the config.yaml of its ConfigMap) into
    /// NodeHealthChecks, RemediationTemplates and a clouds.yaml Secret, printed as YAML.
    ImportMagnumConfig {
        /// The magnum-auto-healer config.yaml; `-` reads standard input.
        config: std::path::PathBuf,
        /// Namespace of the RemediationTemplates and the Secret.
        #[arg(long = "to-namespace", default_value = "nodehealer")]
        to_namespace: String,
        /// Name of the clouds.yaml Secret.
        #[arg(long, default_value = "openstack-cloud")]
        secret_name: String,
        /// Keys magnum-auto-healer ignored (`okCodes` for `ok-codes`, say): convert what it ran
        /// with (`as-run`: the defaults) or what the key probably meant (`as-meant`).
        #[arg(long, value_enum, default_value = "as-run")]
        ignored_keys: IgnoredKeysArg,
    },
}

/// Runs a tool command; the operator itself does not start.
fn run_command(command: &Command) -> Result<()> {
    match command {
        Command::Check { .. } => unreachable!("check runs in main, on the runtime"),
        Command::ImportMagnumConfig {
            config,
            to_namespace,
            secret_name,
            ignored_keys,
        } => {
            let text = if config.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(config)
                    .with_context(|| format!("reading {}", config.display()))?
            };
            let options = nodehealer::import::ImportOptions {
                namespace: to_namespace.clone(),
                secret_name: secret_name.clone(),
                ignored_keys: match ignored_keys {
                    IgnoredKeysArg::AsRun => nodehealer::import::IgnoredKeys::AsRun,
                    IgnoredKeysArg::AsMeant => nodehealer::import::IgnoredKeys::AsMeant,
                },
            };
            let conversion = nodehealer::import::convert(&text, &options)
                .with_context(|| format!("{} cannot be converted", config.display()))?;
            // The notes are in the output as comments; a person piping it to kubectl sees
            // them here as well.
            for note in &conversion.notes {
                eprintln!("note: {note}");
            }
            print!("{}", nodehealer::import::to_yaml(&conversion));
            Ok(())
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum IgnoredKeysArg {
    AsRun,
    AsMeant,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Command::Check {
        kubeconfig,
        namespace,
        nhc_selector,
    }) = &args.command
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let code = match check(
            kubeconfig.as_deref(),
            namespace.as_deref(),
            nhc_selector.as_deref(),
        )
        .await
        {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        };
        std::process::exit(code);
    }
    if let Some(command) = &args.command {
        // A tool's error is for a person at a terminal: one clear line, exit code 2.
        if let Err(e) = run_command(command) {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
        return Ok(());
    }
    init_tracing(&args)?;
    let identity = identity(&args);
    let election = election_config(&args, &identity)?;
    let _ = rustls::crypto::ring::default_provider().install_default();

    let client = make_client(&args).await?;
    check_crds_served(&client).await?;

    // Only the leader acts, and only while its Lease is held with a margin (invariant 8).
    let authority = match &election {
        Some(config) => Authority::elected(config.action_margin()),
        None => Authority::unconditional(),
    };
    let settings = Settings {
        dry_run: args.dry_run,
        watch_namespace: args.watch_namespace.clone(),
        nhc_selector: args.nhc_selector.clone(),
        reporter: Reporter {
            controller: "nodehealer".into(),
            instance: Some(identity.clone()),
        },
        enabled: args.controllers.clone(),
        authority: authority.clone(),
        cloud_check_interval: Duration::from_secs(args.cloud_check_interval_seconds),
    };
    let readiness = Readiness::new(controller::Controllers::caches(&settings));
    let mut registry = prometheus_client::registry::Registry::with_prefix("nodehealer");
    let controllers = controller::Controllers::new(client.clone(), settings, &mut registry);
    let registry = Arc::new(registry);
    let render: server::MetricsRenderer = Arc::new(move || {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(server::serve(
            args.http_address,
            readiness.clone(),
            render,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    };

    // Standbys are ready (they serve and would take over); only the leader acts.
    let leadership = if let Some(config) = election {
        tracing::info!(identity = %config.identity, lease = %args.lease_name, "waiting for leadership");
        readiness.set_election_settled(true);
        let acquired = tokio::select! {
            l = leader::acquire(client.clone(), config, authority.clone()) => Some(l?),
            _ = shutdown_signal() => None,
        };
        match acquired {
            Some(l) => {
                readiness.set_election_settled(false);
                Some(l)
            }
            None => {
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Ok(());
            }
        }
    } else {
        readiness.set_election_settled(false);
        None
    };

    let mut lost = leadership.as_ref().map(|l| l.lost.clone());
    let run = controllers.run(readiness.clone(), stop_rx.clone());
    tokio::pin!(run);
    let outcome = tokio::select! {
        _ = &mut run => "controllers stopped",
        _ = shutdown_signal() => "shutdown requested",
        _ = async { match lost.as_mut() { Some(l) => { let _ = l.wait_for(|v| *v).await; } None => std::future::pending::<()>().await } } => "leadership lost",
    };
    tracing::info!(outcome, "stopping");
    let _ = stop_tx.send(true);
    // Let in-flight reconciles finish their current step (they persist before acting). After
    // a lost Lease `authority` already refuses every OpenStack request, so they send nothing.
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut run).await;
    if outcome == "leadership lost" {
        // Exit non-zero so the pod restarts as a standby; never keep acting without the lease.
        std::process::exit(1);
    }
    if let Some(l) = leadership {
        l.release().await;
    }
    let _ = server.await;
    Ok(())
}

/// `nodehealer check`: one line per NodeHealthCheck that is ready, one per problem of each
/// that is not (one per unmapped node). True when every one is ready.
async fn check(
    kubeconfig: Option<&std::path::Path>,
    namespace: Option<&str>,
    nhc_selector: Option<&str>,
) -> Result<bool> {
    use nodehealer::readiness::Reason;
    let client = client_from(kubeconfig).await?;
    check_crds_served(&client).await?;
    let metrics = nodehealer::metrics::Metrics::default();
    let scope = controller::readiness::Scope {
        nhc_selector,
        namespace,
        metrics: &metrics,
    };
    let checked = controller::readiness::check(&client, &scope, None)
        .await
        .context("reading the NodeHealthChecks")?;
    if checked.is_empty() {
        println!("no NodeHealthCheck found: no node would be healed");
        return Ok(false);
    }
    let mut not_ready = 0;
    for c in &checked {
        let name = kube::ResourceExt::name_any(&c.nhc);
        let verdict = &c.verdict;
        if verdict.is_ready() {
            println!("ok    {name}: {}: {}", verdict.reason, verdict.message());
            continue;
        }
        not_ready += 1;
        for (reason, problem) in &verdict.problems {
            if *reason == Reason::NodesUnmapped {
                for node in &verdict.unmapped {
                    println!(
                        "FAIL  {name}: {reason}: node {}: {}",
                        node.name, node.reason
                    );
                }
            } else {
                println!("FAIL  {name}: {reason}: {problem}");
            }
        }
    }
    println!(
        "{} of {} NodeHealthChecks ready",
        checked.len() - not_ready,
        checked.len()
    );
    Ok(not_ready == 0)
}

fn identity(args: &Args) -> String {
    args.identity
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()))
}

/// The election's timing from the flags, checked; None without leader election.
fn election_config(args: &Args, identity: &str) -> Result<Option<ElectionConfig>> {
    if !args.leader_elect {
        return Ok(None);
    }
    let mut config = ElectionConfig::new(&args.namespace, &args.lease_name, identity);
    config.lease_duration = Duration::from_secs(args.lease_duration_seconds);
    config.renew_deadline = Duration::from_secs(args.renew_deadline_seconds);
    config.retry_period = Duration::from_secs(args.retry_period_seconds);
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("leader election: {e}"))?;
    Ok(Some(config))
}

fn init_tracing(args: &Args) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Plain => builder.init(),
    }
    Ok(())
}

async fn make_client(args: &Args) -> Result<kube::Client> {
    client_from(args.kubeconfig.as_deref()).await
}

async fn client_from(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Fails start-up with a clear message when our CRDs are not installed.
async fn check_crds_served(client: &kube::Client) -> Result<()> {
    let probe = ListParams::default().limit(1);
    let missing = |kind: &str, e: kube::Error| {
        anyhow::anyhow!(
            "the {kind} API (nodehealer.io/v1alpha1) is not served: {e}. Install the CRDs first \
             (`kubectl apply -f crds/` or the Helm chart)"
        )
    };
    Api::<NodeHealthCheck>::all(client.clone())
        .list_metadata(&probe)
        .await
        .map_err(|e| missing("NodeHealthCheck", e))?;
    Api::<RemediationTemplate>::all(client.clone())
        .list_metadata(&probe)
        .await
        .map_err(|e| missing("RemediationTemplate", e))?;
    Api::<Remediation>::all(client.clone())
        .list_metadata(&probe)
        .await
        .map_err(|e| missing("Remediation", e))?;
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "nodehealer".into())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
