//! The real control plane: etcd, kube-apiserver (RBAC on), kube-controller-manager (fast
//! node monitoring), kube-scheduler and kwok, all on 127.0.0.1 with free ports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::procs::{Launcher, Proc, free_port};

/// How fast kube-controller-manager notices a silent node. The kubelet default is 40 s; the
/// test bed keeps failures quick so scenarios run in seconds.
pub const NODE_MONITOR_GRACE: Duration = Duration::from_secs(10);
/// kwok renews each node's Lease with this duration (kept below the grace period).
pub const NODE_LEASE_SECONDS: u32 = 8;

/// Where the binaries built by `e2e/testbed/build.sh` are.
pub fn binaries_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("NODEHEALER_TESTBED_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join("e2e/testbed/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--dir")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

fn binary(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `make testbed` (it builds the control plane into {})",
            path.display(),
            dir.display()
        );
    }
    Ok(path)
}

/// Files of one control plane: its keys, certificates and kubeconfig.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub api_port: u16,
    pub kubeconfig: PathBuf,
    pub ca_cert: PathBuf,
    pub admin_token: String,
    pub sa_key: PathBuf,
    pub procs: Vec<Proc>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, waits until the apiserver is ready, then starts
    /// kube-controller-manager (without `disabled_controllers`), kube-scheduler and kwok.
    pub fn start(launcher: &Launcher, disabled_controllers: &[String]) -> Result<Self> {
        let bin = binaries_dir()?;
        let dir = launcher.run_dir().to_path_buf();
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        make_pki(&pki)?;

        let admin_token = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(
            pki.join("tokens.csv"),
            format!("{admin_token},testbed-admin,testbed-admin,\"system:masters\"\n"),
        )?;

        let etcd_port = free_port()?;
        let etcd_peer = free_port()?;
        let api_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");

        let mut procs = Vec::new();
        let mut etcd = Command::new(binary(&bin, "etcd")?);
        etcd.args([
            "--name=testbed",
            &format!("--data-dir={}", dir.join("etcd").display()),
            &format!("--listen-client-urls={etcd_url}"),
            &format!("--advertise-client-urls={etcd_url}"),
            &format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            &format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            &format!("--initial-cluster=testbed=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        procs.push(launcher.spawn("etcd", etcd)?);

        let p = |f: &str| pki.join(f).display().to_string();
        let mut api = Command::new(binary(&bin, "kube-apiserver")?);
        api.args([
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--token-auth-file={}", p("tokens.csv")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/24".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            // The bed runs many short scenarios side by side; fairness queuing would only
            // add latency that a real, bigger control plane does not have.
            "--enable-priority-and-fairness=false".into(),
            format!(
                "--audit-policy-file={}",
                write_audit_policy(&pki)?.display()
            ),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
            "--audit-log-maxsize=200".into(),
            "--v=1".into(),
        ]);
        procs.push(launcher.spawn("kube-apiserver", api)?);

        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            api_port,
            &pki.join("ca.crt"),
            &admin_token,
            "testbed-admin",
        )?;
        let cp = Self {
            dir: dir.clone(),
            bin: bin.clone(),
            api_port,
            kubeconfig: kubeconfig.clone(),
            ca_cert: pki.join("ca.crt"),
            admin_token,
            sa_key: pki.join("sa.key"),
            procs,
        };
        cp.wait_ready(Duration::from_secs(60))?;

        let kc = kubeconfig.display().to_string();
        let mut kcm = Command::new(binary(&bin, "kube-controller-manager")?);
        kcm.args([
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            format!("--service-account-private-key-file={}", p("sa.key")),
            format!("--root-ca-file={}", p("ca.crt")),
            format!("--cluster-signing-cert-file={}", p("ca.crt")),
            format!("--cluster-signing-key-file={}", p("ca.key")),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=0".into(),
            std::iter::once("--controllers=*".to_string())
                .chain(disabled_controllers.iter().map(|c| format!("-{c}")))
                .collect::<Vec<_>>()
                .join(","),
            "--node-monitor-period=1s".into(),
            format!(
                "--node-monitor-grace-period={}s",
                NODE_MONITOR_GRACE.as_secs()
            ),
            "--use-service-account-credentials=false".into(),
            "--v=1".into(),
        ]);
        let mut cp = cp;
        cp.procs
            .push(launcher.spawn("kube-controller-manager", kcm)?);

        let mut sched = Command::new(binary(&bin, "kube-scheduler")?);
        sched.args([
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            "--v=1".into(),
        ]);
        cp.procs.push(launcher.spawn("kube-scheduler", sched)?);

        // Our node and pod stages (kubelet behaviour) plus kwok's own pod stages.
        let stages = dir.join("kwok-stages.yaml");
        let mut all = std::fs::read_to_string(repo_root().join("e2e/testbed/stages/nodes.yaml"))?;
        all.push_str("\n---\n");
        all.push_str(&std::fs::read_to_string(
            repo_root().join("e2e/testbed/stages/pods.yaml"),
        )?);
        all.push_str("\n---\n");
        all.push_str(&std::fs::read_to_string(binary(
            &bin,
            "kwok-pod-stages.yaml",
        )?)?);
        std::fs::write(&stages, all)?;
        let mut kwok = Command::new(binary(&bin, "kwok")?);
        kwok.args([
            format!("--kubeconfig={kc}"),
            format!("--config={}", stages.display()),
            "--manage-all-nodes=false".into(),
            "--manage-nodes-with-label-selector=type=kwok".into(),
            format!("--node-lease-duration-seconds={NODE_LEASE_SECONDS}"),
            "--cidr=10.244.0.0/16".into(),
            "--v=WARN".into(),
        ]);
        cp.procs.push(launcher.spawn("kwok", kwok)?);
        Ok(cp)
    }

    /// Polls `/readyz` until the apiserver answers ok.
    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("https://127.0.0.1:{}/readyz", self.api_port);
        loop {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "2", "--cacert"])
                .arg(&self.ca_cert)
                .arg("-H")
                .arg(format!("Authorization: Bearer {}", self.admin_token))
                .arg(&url)
                .output();
            if let Ok(out) = out
                && String::from_utf8_lossy(&out.stdout).trim() == "ok"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let tail = self
                    .procs
                    .iter()
                    .map(|p| format!("--- {}\n{}", p.name, p.log_tail(20)));
                bail!(
                    "kube-apiserver not ready after {timeout:?}:\n{}",
                    tail.collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A client with the admin identity (`system:masters`).
    pub async fn admin_client(&self) -> Result<kube::Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// Writes a kubeconfig for another identity (a ServiceAccount token, say).
    pub fn kubeconfig_for(&self, path: &Path, token: &str, user: &str) -> Result<()> {
        write_kubeconfig(path, self.api_port, &self.ca_cert, token, user)
    }

    pub fn stop(&self) {
        // Reverse order: the apiserver's clients first, etcd last.
        for p in self.procs.iter().rev() {
            p.stop(Duration::from_secs(3));
        }
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(path)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn write_kubeconfig(path: &Path, port: u16, ca: &Path, token: &str, user: &str) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: testbed
  context:
    cluster: testbed
    user: {user}
current-context: testbed
",
        ca = ca.display()
    );
    std::fs::write(path, text)?;
    Ok(())
}

/// Metadata-level audit of every request, so benchmarks can count the operator's requests
/// by user, verb and resource.
fn write_audit_policy(pki: &Path) -> Result<PathBuf> {
    let path = pki.join("audit-policy.yaml");
    std::fs::write(
        &path,
        "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [\"system:kube-controller-manager\", \"system:kube-scheduler\"]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
  namespaces: [kube-node-lease]
- level: Metadata
",
    )?;
    Ok(path)
}

/// A CA, a serving certificate for 127.0.0.1 signed by it, and the service-account key pair.
fn make_pki(dir: &Path) -> Result<()> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl")?;
        if !out.status.success() {
            bail!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    run(&["genrsa", "-out", "ca.key", "2048"])?;
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-sha256",
        "-days",
        "2",
        "-subj",
        "/CN=testbed-ca",
        "-out",
        "ca.crt",
    ])?;
    run(&["genrsa", "-out", "apiserver.key", "2048"])?;
    run(&[
        "req",
        "-new",
        "-key",
        "apiserver.key",
        "-subj",
        "/CN=kube-apiserver",
        "-out",
        "apiserver.csr",
    ])?;
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        "san.ext",
        "-out",
        "apiserver.crt",
    ])?;
    run(&["genrsa", "-out", "sa.key", "2048"])?;
    run(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}
