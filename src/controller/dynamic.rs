//! Watches of kinds known only at run time: the template kinds NodeHealthChecks name and the
//! remediation kinds made from them (ours or a third party's, e.g. medik8s
//! `SelfNodeRemediation`). One reflector per kind, started the first time a NodeHealthCheck
//! names it; each change wakes the NodeHealthChecks concerned. Reconciles read these caches,
//! so a steady cluster costs no API request beyond the watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::ApiCapabilities;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use crate::api::contract::NODE_HEALTH_CHECK_KIND;

/// What a change of a watched object should wake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Every NodeHealthCheck (a template changed, a node changed, ...).
    All,
    /// The NodeHealthCheck of this name (a remediation it owns changed).
    Nhc(String),
}

/// Why a kind cannot be watched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindError {
    /// The API server does not serve the kind (its CRD is not installed).
    NotServed(String),
    /// Discovery failed for another reason (transient).
    Discovery(String),
}

/// A watched kind: its resource and the cache of its objects.
#[derive(Clone)]
pub struct Watched {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub store: Store<DynamicObject>,
}

/// The caches of run-time kinds, started on demand.
pub struct DynamicStores {
    client: kube::Client,
    /// Only objects of this namespace (the operator's `--watch-namespace`).
    namespace: Option<String>,
    kinds: Mutex<HashMap<GroupVersionKind, Watched>>,
    /// Kinds found not served, and when: asked again only after [`NOT_SERVED_RECHECK`], since
    /// every reconcile over the control plane looks for medik8s' kinds, installed or not.
    not_served: Mutex<HashMap<GroupVersionKind, (Instant, String)>>,
    wake: mpsc::UnboundedSender<Wake>,
}

/// How long a kind found not served is taken as not served without asking again.
const NOT_SERVED_RECHECK: Duration = Duration::from_secs(10);

impl DynamicStores {
    pub fn new(
        client: kube::Client,
        namespace: Option<String>,
        wake: mpsc::UnboundedSender<Wake>,
    ) -> Self {
        Self {
            client,
            namespace,
            kinds: Mutex::new(HashMap::new()),
            not_served: Mutex::new(HashMap::new()),
            wake,
        }
    }

    /// The cache of `api_version`/`kind`, started (and waited for) the first time it is asked
    /// for. `owned_objects`: changes wake the owning NodeHealthCheck (remediation kinds);
    /// otherwise every NodeHealthCheck (template kinds).
    pub async fn watch(
        &self,
        api_version: &str,
        kind: &str,
        owned_objects: bool,
    ) -> Result<Watched, KindError> {
        let gvk = gvk_of(api_version, kind);
        let known = self.kinds.lock().expect("kinds lock").get(&gvk).cloned();
        if let Some(w) = known {
            return synced(w, &gvk).await;
        }
        if let Some((_, why)) = self
            .not_served
            .lock()
            .expect("not_served lock")
            .get(&gvk)
            .filter(|(at, _)| at.elapsed() < NOT_SERVED_RECHECK)
        {
            return Err(KindError::NotServed(why.clone()));
        }
        let (resource, caps) = match discover(&self.client, &gvk).await {
            Err(KindError::NotServed(why)) => {
                self.not_served
                    .lock()
                    .expect("not_served lock")
                    .insert(gvk, (Instant::now(), why.clone()));
                return Err(KindError::NotServed(why));
            }
            found => found?,
        };
        let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
        let api: Api<DynamicObject> = match (&self.namespace, namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        };
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let wake = self.wake.clone();
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None),
        )
        .touched_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Ok(object) = event else { continue };
                let targets: Vec<Wake> = if owned_objects {
                    owners(&object).into_iter().map(Wake::Nhc).collect()
                } else {
                    vec![Wake::All]
                };
                for t in targets {
                    if wake.send(t).is_err() {
                        return;
                    }
                }
            }
        });
        let watched = Watched {
            resource,
            namespaced,
            store,
        };
        let watched = self
            .kinds
            .lock()
            .expect("kinds lock")
            .entry(gvk.clone())
            .or_insert(watched)
            .clone();
        synced(watched, &gvk).await
    }
}

/// The cache once it holds its first full list. Deciding on a half-filled cache could create a
/// remediation that already exists, so a cache that does not fill (the operator may not list
/// the kind) is an error the NodeHealthCheck reports, tried again later.
async fn synced(watched: Watched, gvk: &GroupVersionKind) -> Result<Watched, KindError> {
    let wait = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        super::wait_synced(&watched.store),
    );
    match wait.await {
        Ok(()) => Ok(watched),
        Err(_) => Err(KindError::Discovery(format!(
            "the cache of {}/{} {} is not filled yet (may the operator list and watch it?)",
            gvk.group, gvk.version, gvk.kind
        ))),
    }
}

fn gvk_of(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

async fn discover(
    client: &kube::Client,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, ApiCapabilities), KindError> {
    let what = format!("{}/{} {}", gvk.group, gvk.version, gvk.kind);
    match kube::discovery::pinned_kind(client, gvk).await {
        Ok(found) => Ok(found),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(KindError::NotServed(format!(
            "kind {what} is not served by the API server (is its CRD installed?)"
        ))),
        Err(kube::Error::Discovery(e)) => Err(KindError::NotServed(format!(
            "kind {what} is not served by the API server (is its CRD installed?): {e}"
        ))),
        Err(e) => Err(KindError::Discovery(format!("discovering {what}: {e}"))),
    }
}

/// The NodeHealthChecks that own an object.
fn owners(object: &DynamicObject) -> Vec<String> {
    object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.kind == NODE_HEALTH_CHECK_KIND)
        .map(|r| r.name.clone())
        .collect()
}

/// Shared handle.
pub type SharedStores = Arc<DynamicStores>;
