//! The readiness check of every NodeHealthCheck: every few minutes (with jitter) it reads what
//! [`crate::readiness::assess`] needs and writes the `CloudReady` condition and
//! `status.cloudReadiness`. `nodehealer check` runs the same [`check`] once and prints it.
//!
//! Cost: per round, one Secret read and, per Secret version, cloud and region the pools need,
//! one Keystone token and one Nova server list (all its pages), plus one Magnum cluster read
//! per cluster a template names, shared by every NodeHealthCheck that uses them. Nothing is
//! asked per node. Each round builds its own clients, so the token is new: an expired or
//! revoked credential shows at the next round, not when the remediation's cached token runs out.
//!
//! The check only reports: it sends no action, and the NodeHealthCheck and Remediation
//! controllers never read what it writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::SelectorExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::Settings;
use crate::api::conditions::{find_condition, set_condition};
use crate::api::nodehealthcheck::{
    CLOUD_READY_CONDITION, CloudReadinessStatus, MAX_UNMAPPED_NODES_LISTED,
};
use crate::api::{NodeHealthCheck, OpenStackSpec, RemediationTemplate, parse_selector};
use crate::openstack::{ClientOptions, Cloud, CloudConfig, CloudError, OpenStackClient};
use crate::readiness::{
    CloudProbe, CloudRead, ClusterRead, Failure, ListedServer, PoolNode, Reason, Region, Verdict,
    assess, regions,
};

/// The field manager of the readiness check's status writes.
const MANAGER: &str = "nodehealer-readiness";
/// How often the NodeHealthChecks are looked at between rounds (Kubernetes reads only): a new
/// or changed one is checked then, and a condition another status write overwrote is put back.
const LOOK_PERIOD: Duration = Duration::from_secs(10);

/// The readiness check's state.
pub struct Context {
    client: kube::Client,
    settings: Settings,
    openstack_metrics: crate::metrics::Metrics,
    gauges: Gauges,
    interval: Duration,
    /// What was last written, by NodeHealthCheck name.
    written: Mutex<HashMap<String, Written>>,
}

/// A status write of the check, to see whether someone overwrote it.
#[derive(Clone, Debug, PartialEq)]
struct Written {
    generation: Option<i64>,
    ready: bool,
    reason: Reason,
    message: String,
    status: CloudReadinessStatus,
}

impl Written {
    /// What to write for `verdict` of a NodeHealthCheck of `generation`, checked at `now`.
    fn of(verdict: &Verdict, generation: Option<i64>, now: Timestamp) -> Written {
        // Whole seconds, as the apiserver stores a Time: what is read back then equals what
        // was written, and an unchanged status is not written again at every look.
        let checked = Timestamp::from_second(now.as_second()).unwrap_or(now);
        Written {
            generation,
            ready: verdict.is_ready(),
            reason: verdict.reason,
            message: verdict.message(),
            status: CloudReadinessStatus {
                last_checked: Some(Time(checked)),
                unmapped_count: verdict.unmapped.len() as i32,
                unmapped_nodes: verdict
                    .unmapped
                    .iter()
                    .take(MAX_UNMAPPED_NODES_LISTED)
                    .cloned()
                    .collect(),
            },
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NhcLabels {
    nodehealthcheck: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Default)]
struct Gauges {
    ready: Family<NhcLabels, Gauge>,
    unmapped: Family<NhcLabels, Gauge>,
    not_ready: Family<ReasonLabels, Gauge>,
}

impl Gauges {
    fn register(registry: &mut Registry) -> Gauges {
        let g = Gauges::default();
        registry.register(
            "nodehealthcheck_cloud_ready",
            "1 when the last readiness check found the NodeHealthCheck's remediation path \
             working (its CloudReady condition is True), 0 otherwise",
            g.ready.clone(),
        );
        registry.register(
            "nodehealthcheck_cloud_unmapped_nodes",
            "Nodes of the NodeHealthCheck's pool that map to no server its credentials can see",
            g.unmapped.clone(),
        );
        registry.register(
            "nodehealthchecks_not_cloud_ready",
            "NodeHealthChecks whose CloudReady condition is False, by reason",
            g.not_ready.clone(),
        );
        g
    }

    /// Sets every gauge from the verdicts of all NodeHealthChecks, removing the series of
    /// those that are gone (a stale 0 would keep an alert firing for a pool that no longer
    /// exists).
    fn set(&self, verdicts: &BTreeMap<String, (bool, Reason, usize)>, gone: &[String]) {
        for name in gone {
            let labels = NhcLabels {
                nodehealthcheck: name.clone(),
            };
            self.ready.remove(&labels);
            self.unmapped.remove(&labels);
        }
        for (name, (ready, _, unmapped)) in verdicts {
            let labels = NhcLabels {
                nodehealthcheck: name.clone(),
            };
            self.ready.get_or_create(&labels).set(i64::from(*ready));
            self.unmapped.get_or_create(&labels).set(*unmapped as i64);
        }
        for reason in Reason::ALL.into_iter().filter(|r| !r.is_ready()) {
            let count = verdicts.values().filter(|(_, r, _)| *r == reason).count();
            self.not_ready
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str(),
                })
                .set(count as i64);
        }
    }
}

impl Context {
    /// `interval`: the time between rounds, before jitter.
    pub fn new(
        client: kube::Client,
        settings: Settings,
        openstack_metrics: crate::metrics::Metrics,
        interval: Duration,
        registry: &mut Registry,
    ) -> Self {
        Context {
            client,
            settings,
            openstack_metrics,
            gauges: Gauges::register(registry),
            interval,
            written: Mutex::new(HashMap::new()),
        }
    }
}

/// The verdict of one NodeHealthCheck.
pub struct Checked {
    pub nhc: NodeHealthCheck,
    pub verdict: Verdict,
}

/// What a check reads besides the Kubernetes client.
pub struct Scope<'a> {
    /// Only NodeHealthChecks matching this label selector.
    pub nhc_selector: Option<&'a str>,
    /// Only templates in this namespace; one elsewhere is reported as missing, as the
    /// NodeHealthCheck controller (which cannot see it either) does.
    pub namespace: Option<&'a str>,
    pub metrics: &'a crate::metrics::Metrics,
}

/// Checks the NodeHealthChecks `only` names (all when None) of `scope`.
pub async fn check(
    client: &kube::Client,
    scope: &Scope<'_>,
    only: Option<&BTreeSet<String>>,
) -> crate::error::Result<Vec<Checked>> {
    let mut params = ListParams::default();
    if let Some(selector) = scope.nhc_selector {
        params = params.labels(selector);
    }
    let nhcs = Api::<NodeHealthCheck>::all(client.clone())
        .list(&params)
        .await?
        .items;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut round = Round {
        client,
        scope,
        secrets: HashMap::new(),
        clients: HashMap::new(),
        listings: HashMap::new(),
        clusters: HashMap::new(),
    };
    let mut checked = Vec::new();
    for nhc in nhcs {
        if only.is_some_and(|o| !o.contains(&nhc.name_any())) {
            continue;
        }
        // An invalid selector disables the NodeHealthCheck, and its Disabled condition says
        // why; there is no pool to check.
        let Ok(selector) = parse_selector(&nhc.spec.selector) else {
            continue;
        };
        let empty = BTreeMap::new();
        let pool: Vec<PoolNode> = nodes
            .iter()
            .filter(|n| selector.matches(n.metadata.labels.as_ref().unwrap_or(&empty)))
            .map(|n| PoolNode {
                name: n.name_any(),
                provider_id: n.spec.as_ref().and_then(|s| s.provider_id.clone()),
            })
            .collect();
        let probes = round.probes(&nhc, &pool).await;
        let verdict = assess(&pool, &probes);
        checked.push(Checked { nhc, verdict });
    }
    Ok(checked)
}

/// A Secret version, key and cloud: one set of credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CredentialKey {
    namespace: String,
    secret: String,
    key: String,
    cloud: String,
    resource_version: String,
}

/// What one round has read, shared by its NodeHealthChecks.
struct Round<'a> {
    client: &'a kube::Client,
    scope: &'a Scope<'a>,
    secrets: HashMap<(String, String), Result<Option<Secret>, String>>,
    clients: HashMap<(CredentialKey, Region), Result<Arc<OpenStackClient>, Failure>>,
    listings: HashMap<(CredentialKey, Region), Result<Vec<ListedServer>, Failure>>,
    clusters: HashMap<(CredentialKey, String), ClusterRead>,
}

impl Round<'_> {
    /// One probe per distinct cloud of the NodeHealthCheck's templates; templates of other
    /// remediators (not `RemediationTemplate`) reach no cloud of ours and are left out.
    async fn probes(&mut self, nhc: &NodeHealthCheck, pool: &[PoolNode]) -> Vec<CloudProbe> {
        let mut probes = Vec::new();
        let mut seen: BTreeSet<(String, String, String, String, Option<String>)> = BTreeSet::new();
        for step in nhc.spec.template_steps() {
            let t = step.template;
            let ours = t.kind == "RemediationTemplate"
                && t.api_version.split('/').next() == Some(crate::api::GROUP);
            if !ours {
                continue;
            }
            let described = format!("RemediationTemplate {}/{}", t.namespace, t.name);
            // A template that cannot be used is a probe of its own, with the reason.
            let missing = |why: String| CloudProbe {
                target: described.clone(),
                access: Err(Failure::new(
                    Reason::TemplateMissing,
                    format!("{described} {why}"),
                )),
            };
            if self.scope.namespace.is_some_and(|ns| ns != t.namespace) {
                probes.push(missing("is outside the namespace checked".into()));
                continue;
            }
            let templates: Api<RemediationTemplate> =
                Api::namespaced(self.client.clone(), &t.namespace);
            let spec = match templates.get_opt(&t.name).await {
                Ok(Some(template)) => template.spec.template.spec.openstack,
                Ok(None) => {
                    probes.push(missing("not found".into()));
                    continue;
                }
                Err(e) => {
                    probes.push(missing(format!("cannot be read: {e}")));
                    continue;
                }
            };
            let key = (
                t.namespace.clone(),
                spec.cloud_secret_ref.name.clone(),
                spec.cloud_secret_ref.key.clone(),
                spec.cloud.clone(),
                spec.magnum.as_ref().map(|m| m.cluster.clone()),
            );
            if seen.insert(key) {
                probes.push(self.probe(&t.namespace, &spec, pool).await);
            }
        }
        probes
    }

    /// Reads the cloud of `spec` (a template's, in `namespace`) as far as `pool` needs.
    async fn probe(
        &mut self,
        namespace: &str,
        spec: &OpenStackSpec,
        pool: &[PoolNode],
    ) -> CloudProbe {
        let target = format!(
            "Secret {namespace}/{} (cloud {})",
            spec.cloud_secret_ref.name, spec.cloud
        );
        let access = self.read(namespace, spec, pool, &target).await;
        CloudProbe { target, access }
    }

    async fn read(
        &mut self,
        namespace: &str,
        spec: &OpenStackSpec,
        pool: &[PoolNode],
        target: &str,
    ) -> Result<CloudRead, Failure> {
        let secret = self.secret(namespace, &spec.cloud_secret_ref.name).await;
        let secret = match secret {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(Failure::new(
                    Reason::SecretMissing,
                    format!("{target}: the Secret does not exist"),
                ));
            }
            Err(e) => {
                return Err(Failure::new(
                    Reason::SecretMissing,
                    format!("{target}: the Secret cannot be read: {e}"),
                ));
            }
        };
        let data = secret.data.clone().unwrap_or_default();
        let key = &spec.cloud_secret_ref.key;
        let invalid = |why: String| Failure::new(Reason::SecretInvalid, format!("{target}: {why}"));
        let yaml = data
            .get(key)
            .ok_or_else(|| invalid(format!("the Secret has no key {key:?}")))?;
        let yaml = std::str::from_utf8(&yaml.0)
            .map_err(|_| invalid(format!("key {key:?} is not UTF-8")))?;
        // A CA bundle may sit beside clouds.yaml in the same Secret (as for the remediation).
        let ca = data.get("cacert").map(|b| b.0.clone());
        let config = CloudConfig::from_clouds_yaml(yaml, &spec.cloud, ca)
            .map_err(|e| invalid(e.to_string()))?;
        let credentials = CredentialKey {
            namespace: namespace.to_owned(),
            secret: spec.cloud_secret_ref.name.clone(),
            key: key.clone(),
            cloud: spec.cloud.clone(),
            resource_version: secret.resource_version().unwrap_or_default(),
        };
        let mut needed = regions(pool);
        // The clouds.yaml's region is where Magnum is read, and where an empty pool still
        // shows whether Keystone accepts the credentials.
        if needed.is_empty() || spec.magnum.is_some() {
            needed.insert(None);
        }
        let mut listings = BTreeMap::new();
        for region in needed {
            let listing = self.listing(&credentials, &config, &region).await;
            listings.insert(region, listing);
        }
        // Credentials Keystone refused (or a client that cannot be built) fail Magnum the same
        // way: one problem, and no second token request for it.
        let credentials_refused = matches!(
            listings.get(&None),
            Some(Err(f)) if matches!(f.reason, Reason::AuthFailed | Reason::SecretInvalid)
        );
        let cluster = match &spec.magnum {
            Some(m) if !credentials_refused => {
                Some(self.cluster(&credentials, &config, &m.cluster).await)
            }
            _ => None,
        };
        Ok(CloudRead {
            default_region: config.region_name.clone(),
            listings,
            cluster,
        })
    }

    async fn secret(&mut self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(s) = self.secrets.get(&key) {
            return s.clone();
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let read = secrets.get_opt(name).await.map_err(|e| e.to_string());
        self.secrets.insert(key, read.clone());
        read
    }

    /// This round's client for the credentials in `region`: a new one, so the token is new.
    fn cloud(
        &mut self,
        credentials: &CredentialKey,
        config: &CloudConfig,
        region: &Region,
    ) -> Result<Arc<OpenStackClient>, Failure> {
        let key = (credentials.clone(), region.clone());
        if let Some(c) = self.clients.get(&key) {
            return c.clone();
        }
        let metrics = self.scope.metrics.clone();
        let built = match region {
            None => OpenStackClient::new(config.clone(), ClientOptions::default(), metrics),
            Some(r) => {
                OpenStackClient::new_in_region(config.clone(), r, ClientOptions::default(), metrics)
            }
        };
        let built = built.map(Arc::new).map_err(|e| failure(&e));
        self.clients.insert(key, built.clone());
        built
    }

    async fn listing(
        &mut self,
        credentials: &CredentialKey,
        config: &CloudConfig,
        region: &Region,
    ) -> Result<Vec<ListedServer>, Failure> {
        let key = (credentials.clone(), region.clone());
        if let Some(l) = self.listings.get(&key) {
            return l.clone();
        }
        let listing = match self.cloud(credentials, config, region) {
            Err(f) => Err(f),
            Ok(cloud) => cloud
                .servers()
                .await
                .map(|servers| {
                    servers
                        .into_iter()
                        .map(|s| ListedServer {
                            id: s.id,
                            name: s.name,
                        })
                        .collect()
                })
                .map_err(|e| failure(&e)),
        };
        self.listings.insert(key, listing.clone());
        listing
    }

    async fn cluster(
        &mut self,
        credentials: &CredentialKey,
        config: &CloudConfig,
        cluster: &str,
    ) -> ClusterRead {
        let key = (credentials.clone(), cluster.to_owned());
        if let Some(c) = self.clusters.get(&key) {
            return c.clone();
        }
        let read = match self.cloud(credentials, config, &None) {
            Err(f) => ClusterRead::Failed(f),
            Ok(cloud) => match cloud.cluster(cluster).await {
                Ok(_) => ClusterRead::Found,
                Err(e) if e.is_not_found() => ClusterRead::Missing {
                    cluster: cluster.to_owned(),
                },
                Err(e) => ClusterRead::Failed(failure(&e)),
            },
        };
        self.clusters.insert(key, read.clone());
        read
    }
}

fn failure(e: &CloudError) -> Failure {
    Failure::new(Reason::of_cloud_error(e), e.to_string())
}

/// Runs the check until `stop` turns true: a round of every NodeHealthCheck each interval
/// (with up to 10% jitter, so that replicas of many clusters do not ask one cloud at once),
/// and between rounds a look every few seconds for new or changed NodeHealthChecks and for
/// conditions overwritten by another status write.
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut next_round = tokio::time::Instant::now();
    loop {
        if *stop.borrow() {
            return;
        }
        // Only the leader reads the cloud (this runs only once elected), and a round stops
        // where it is when the Lease is lost, as every other OpenStack request does.
        let authority = &ctx.settings.authority;
        if authority.may_act(authority.margin()) {
            let full = tokio::time::Instant::now() >= next_round;
            match authority.while_leading(look(&ctx, full)).await {
                Some(Ok(())) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "the cloud readiness check failed"),
                None => tracing::info!("the cloud readiness check stopped: not the leader"),
            }
            if full {
                next_round = tokio::time::Instant::now() + jittered(ctx.interval);
            }
        }
        let wait = next_round
            .saturating_duration_since(tokio::time::Instant::now())
            .min(LOOK_PERIOD);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// `interval` plus up to 10% of it.
fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    interval + interval.mul_f64(f64::from(nanos % 1000) / 10_000.0)
}

/// One look: every NodeHealthCheck when `full`, otherwise only the new or changed ones (and
/// the ones whose condition someone overwrote are written again, without asking the cloud).
async fn look(ctx: &Context, full: bool) -> crate::error::Result<()> {
    let mut params = ListParams::default();
    if let Some(selector) = &ctx.settings.nhc_selector {
        params = params.labels(selector);
    }
    let api: Api<NodeHealthCheck> = Api::all(ctx.client.clone());
    let nhcs = api.list(&params).await?.items;
    let names: BTreeSet<String> = nhcs.iter().map(|n| n.name_any()).collect();
    let (stale, overwritten): (BTreeSet<String>, Vec<(NodeHealthCheck, Written)>) = {
        let written = ctx.written.lock().expect("written lock");
        let mut stale = BTreeSet::new();
        let mut overwritten = Vec::new();
        for nhc in &nhcs {
            match written.get(&nhc.name_any()) {
                Some(w) if w.generation == nhc.metadata.generation => {
                    if !shows(nhc, w) {
                        overwritten.push((nhc.clone(), w.clone()));
                    }
                }
                _ => {
                    stale.insert(nhc.name_any());
                }
            }
        }
        (stale, overwritten)
    };
    for (nhc, w) in overwritten {
        // Someone wrote the status from a state that lacked the check's last write.
        tracing::info!(nodehealthcheck = %nhc.name_any(), "CloudReady was overwritten: writing it again");
        if let Err(e) = write(ctx, &nhc.name_any(), &w).await {
            tracing::warn!(nodehealthcheck = %nhc.name_any(), error = %e, "writing CloudReady failed");
        }
    }
    if full || !stale.is_empty() {
        let scope = Scope {
            nhc_selector: ctx.settings.nhc_selector.as_deref(),
            namespace: ctx.settings.watch_namespace.as_deref(),
            metrics: &ctx.openstack_metrics,
        };
        let only = (!full).then_some(&stale);
        let now = Timestamp::now();
        for Checked { nhc, verdict } in check(&ctx.client, &scope, only).await? {
            let w = Written::of(&verdict, nhc.metadata.generation, now);
            let previous = nhc
                .status
                .as_ref()
                .and_then(|s| find_condition(&s.conditions, CLOUD_READY_CONDITION));
            if previous.is_some_and(|c| c.reason != w.reason.as_str()) || previous.is_none() {
                tracing::info!(
                    nodehealthcheck = %nhc.name_any(),
                    reason = w.reason.as_str(),
                    message = %w.message,
                    "cloud readiness"
                );
            }
            // One NodeHealthCheck's failed write leaves the others' (and the gauges) alone;
            // it is not recorded as written, so the next look tries again.
            if let Err(e) = write(ctx, &nhc.name_any(), &w).await {
                tracing::warn!(nodehealthcheck = %nhc.name_any(), error = %e, "writing CloudReady failed");
                continue;
            }
            ctx.written
                .lock()
                .expect("written lock")
                .insert(nhc.name_any(), w);
        }
    }
    let (verdicts, gone) = {
        let mut written = ctx.written.lock().expect("written lock");
        let gone: Vec<String> = written
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        written.retain(|n, _| names.contains(n));
        let verdicts: BTreeMap<String, (bool, Reason, usize)> = written
            .iter()
            .map(|(n, w)| {
                (
                    n.clone(),
                    (w.ready, w.reason, w.status.unmapped_count as usize),
                )
            })
            .collect();
        (verdicts, gone)
    };
    ctx.gauges.set(&verdicts, &gone);
    Ok(())
}

/// Whether the NodeHealthCheck's status still shows what the check wrote.
fn shows(nhc: &NodeHealthCheck, w: &Written) -> bool {
    let Some(status) = &nhc.status else {
        return false;
    };
    let condition = find_condition(&status.conditions, CLOUD_READY_CONDITION);
    condition.is_some_and(|c| {
        c.status == if w.ready { "True" } else { "False" }
            && c.reason == w.reason.as_str()
            && c.message == w.message
    }) && status.cloud_readiness.as_ref() == Some(&w.status)
}

/// Writes the condition and `status.cloudReadiness` into the NodeHealthCheck's current
/// status. The patch carries the resourceVersion read, so it never puts back conditions the
/// NodeHealthCheck controller changed in between (a conflict reads again).
async fn write(ctx: &Context, name: &str, w: &Written) -> crate::error::Result<()> {
    let api: Api<NodeHealthCheck> = Api::all(ctx.client.clone());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    for attempt in 0.. {
        let Some(nhc) = api.get_opt(name).await? else {
            return Ok(());
        };
        let mut conditions = nhc
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        set_condition(
            &mut conditions,
            CLOUD_READY_CONDITION,
            w.ready,
            w.reason.as_str(),
            &w.message,
            nhc.metadata.generation,
            Timestamp::now(),
        );
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": nhc.resource_version()},
            "status": {"conditions": conditions, "cloudReadiness": w.status},
        });
        match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 5 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::nodehealthcheck::UnmappedNode;

    /// What the check writes is what it later finds, once the apiserver has stored it (Times
    /// in whole seconds); else it would write the same status again at every look.
    #[test]
    fn a_written_status_is_recognised_as_written() {
        let unmapped: Vec<UnmappedNode> = (0..25)
            .map(|i| UnmappedNode {
                name: format!("w-{i:02}"),
                reason: "no server".into(),
            })
            .collect();
        let verdict = Verdict {
            reason: Reason::NodesUnmapped,
            problems: vec![(Reason::NodesUnmapped, "25 of 25 nodes".into())],
            unmapped,
        };
        let now: Timestamp = "2026-12-02T06:30:15.123456789Z".parse().unwrap();
        let w = Written::of(&verdict, Some(3), now);
        assert_eq!(w.status.unmapped_count, 25);
        assert_eq!(w.status.unmapped_nodes.len(), MAX_UNMAPPED_NODES_LISTED);
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            CLOUD_READY_CONDITION,
            w.ready,
            w.reason.as_str(),
            &w.message,
            Some(3),
            now,
        );
        // As the apiserver stores and returns it: Times to the second.
        let stored = serde_json::json!({
            "metadata": {"name": "workers", "generation": 3},
            "spec": {"selector": {"matchLabels": {"pool": "w"}},
                "remediationTemplate": {"apiVersion": "nodehealer.io/v1alpha1",
                    "kind": "RemediationTemplate", "namespace": "nh", "name": "t"}},
            "status": {
                "conditions": conditions,
                "cloudReadiness": {
                    "lastChecked": "2026-12-02T06:30:15Z",
                    "unmappedCount": 25,
                    "unmappedNodes": w.status.unmapped_nodes,
                }
            }
        });
        let nhc: NodeHealthCheck = serde_json::from_value(stored).unwrap();
        assert!(shows(&nhc, &w));
        let other = Written::of(
            &Verdict {
                reason: Reason::Ready,
                problems: vec![],
                unmapped: vec![],
            },
            Some(3),
            now,
        );
        assert!(!shows(&nhc, &other), "an overwritten status is told apart");
    }

    #[test]
    fn the_gauges_count_not_ready_pools_by_reason_and_forget_deleted_ones() {
        let mut registry = Registry::default();
        let gauges = Gauges::register(&mut registry);
        let verdicts: BTreeMap<String, (bool, Reason, usize)> = [
            ("workers".to_string(), (false, Reason::NodesUnmapped, 2)),
            ("db".to_string(), (false, Reason::AuthFailed, 0)),
            ("gone".to_string(), (true, Reason::Ready, 0)),
        ]
        .into();
        gauges.set(&verdicts, &[]);
        let mut verdicts = verdicts;
        verdicts.remove("gone");
        gauges.set(&verdicts, &["gone".to_string()]);
        let text = crate::metrics::render(&registry);
        for line in [
            r#"nodehealthcheck_cloud_ready{nodehealthcheck="workers"} 0"#,
            r#"nodehealthcheck_cloud_unmapped_nodes{nodehealthcheck="workers"} 2"#,
            r#"nodehealthchecks_not_cloud_ready{reason="AuthFailed"} 1"#,
            r#"nodehealthchecks_not_cloud_ready{reason="NodesUnmapped"} 1"#,
            r#"nodehealthchecks_not_cloud_ready{reason="SecretMissing"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains(r#"nodehealthcheck="gone""#), "{text}");
        assert!(!text.contains(r#"reason="Ready""#), "{text}");
    }
}
