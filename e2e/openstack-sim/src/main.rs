//! `openstack-sim`: the simulator as a process, for trying a client by hand.
//!
//! ```sh
//! openstack-sim --listen 127.0.0.1:5000 --config cloud.yaml
//! ```
//!
//! The config file (YAML or JSON) describes the cloud:
//!
//! ```yaml
//! transition_delay_ms: 300
//! extra_regions: [RegionTwo]
//! projects: [{name: demo, domain: Default}]
//! users: [{name: demo, password: secret, domain: Default, project: demo}]
//! application_credentials: [{user: demo, name: healer, secret: s3cret}]
//! servers:
//!   - {name: web-0, image_id: fedora, flavor_id: m1.small, project: demo}
//!   - {name: web-1, image_id: fedora, flavor_id: m1.small, project: demo, region: RegionTwo}
//! clusters:
//!   - name: k8s
//!     labels: {auto_healing_enabled: "true"}
//!     nodegroups:
//!       - {name: default-master, role: master, node_count: 1, image_id: fcos, flavor_id: m1.medium}
//!       - {name: default-worker, role: worker, node_count: 3, image_id: fcos, flavor_id: m1.medium}
//! ```

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use openstack_sim::{NewCluster, NewServer, Sim, SimConfig};
use serde::Deserialize;

#[derive(Parser)]
#[command(about = "Simulates the OpenStack Keystone v3, Nova and Magnum APIs")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Region of the catalog's endpoints (overrides the file's).
    #[arg(long)]
    region: Option<String>,
    /// The cloud to simulate: users, servers, clusters (YAML or JSON).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CloudFile {
    region: Option<String>,
    /// More regions, each with its own Nova (`/regions/<name>/compute/v2.1`).
    extra_regions: Vec<String>,
    transition_delay_ms: Option<u64>,
    token_ttl_secs: Option<u64>,
    power_sync_delay_ms: Option<u64>,
    projects: Vec<ProjectSpec>,
    users: Vec<UserSpec>,
    application_credentials: Vec<AppCredSpec>,
    servers: Vec<ServerSpec>,
    clusters: Vec<NewCluster>,
}

fn default_domain() -> String {
    "Default".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectSpec {
    name: String,
    #[serde(default = "default_domain")]
    domain: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    name: String,
    password: String,
    #[serde(default = "default_domain")]
    domain: String,
    /// Project name.
    project: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppCredSpec {
    /// User name.
    user: String,
    name: String,
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    name: String,
    image_id: String,
    flavor_id: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Project name; none: visible to every project.
    #[serde(default)]
    project: Option<String>,
    /// Region name; none: the first region.
    #[serde(default)]
    region: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let file: CloudFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            // YAML is a superset of JSON, so one parser reads both.
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => CloudFile::default(),
    };
    let mut config = SimConfig::default();
    if let Some(region) = args.region.clone().or(file.region.clone()) {
        config.region = region;
    }
    config.extra_regions = file.extra_regions.clone();
    if let Some(ms) = file.transition_delay_ms {
        config.transition_delay = Duration::from_millis(ms);
    }
    if let Some(secs) = file.token_ttl_secs {
        config.token_ttl = Duration::from_secs(secs);
    }
    if let Some(ms) = file.power_sync_delay_ms {
        config.power_sync_delay = Duration::from_millis(ms);
    }
    let sim = Sim::new(config);
    let addr = sim.serve(args.listen).await?;
    populate(&sim, file)?;
    println!("OpenStack simulator on http://{addr}");
    println!("  auth_url: {}", sim.auth_url());
    println!("  control:  {}/_sim/servers", sim.base_url());
    for s in sim.servers() {
        println!("  server {} {} {}", s.id, s.name, s.status);
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn populate(sim: &Sim, file: CloudFile) -> anyhow::Result<()> {
    let mut projects = HashMap::new();
    for p in file.projects {
        projects.insert(p.name.clone(), sim.add_project(&p.name, &p.domain));
    }
    let mut users = HashMap::new();
    for u in file.users {
        let Some(project) = projects.get(&u.project) else {
            bail!("user {}: no project {}", u.name, u.project);
        };
        users.insert(
            u.name.clone(),
            sim.add_user(&u.name, &u.password, &u.domain, project),
        );
        println!(
            "  user {} (domain {}, project {})",
            u.name, u.domain, u.project
        );
    }
    for c in file.application_credentials {
        let Some(user) = users.get(&c.user) else {
            bail!("application credential {}: no user {}", c.name, c.user);
        };
        let id = sim.add_application_credential(user, &c.name, &c.secret);
        println!("  application credential {} ({id}) of {}", c.name, c.user);
    }
    for s in file.servers {
        let project_id = match &s.project {
            Some(name) => Some(
                projects
                    .get(name)
                    .cloned()
                    .with_context(|| format!("server {}: no project {name}", s.name))?,
            ),
            None => None,
        };
        if let Some(region) = &s.region
            && !sim.config().regions().contains(region)
        {
            bail!(
                "server {}: no region {region} (extra_regions lists the others)",
                s.name
            );
        }
        sim.create_server(NewServer {
            name: s.name,
            image_id: s.image_id,
            flavor_id: s.flavor_id,
            metadata: s.metadata,
            project_id,
            region: s.region,
        });
    }
    for c in file.clusters {
        let name = c.name.clone();
        let id = sim.create_cluster(c);
        println!("  cluster {name} ({id})");
    }
    Ok(())
}
