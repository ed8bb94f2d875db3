//! The controllers, wired together: the NodeHealthCheck controller decides, the Remediation
//! controller acts. Each keeps its own context; `Controllers` builds and runs them side by side.

pub mod clouds;
pub mod dynamic;
pub mod endpoints;
pub mod nhc;
pub mod readiness;
pub mod remediation;
mod workloads;

use std::sync::Arc;

use kube::runtime::events::Reporter;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::server::Readiness;

/// Settings every controller shares, from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Decide and report, act on nothing.
    pub dry_run: bool,
    /// Only Remediations in this namespace; all when None.
    pub watch_namespace: Option<String>,
    /// Only NodeHealthChecks matching this label selector; all when None.
    pub nhc_selector: Option<String>,
    /// Who writes our events.
    pub reporter: Reporter,
    /// Which controllers run in this process.
    pub enabled: Vec<ControllerKind>,
    /// Whether this replica holds the leader Lease right now: checked before every OpenStack
    /// action leaves.
    pub authority: crate::leader::Authority,
    /// Time between two cloud readiness checks of every NodeHealthCheck (before jitter).
    pub cloud_check_interval: std::time::Duration,
}

/// The controllers of the operator; all run by default, one or the other for split deployments
/// (or a test that drives only one side of the remediation contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ControllerKind {
    /// The NodeHealthCheck controller: detects, decides, creates Remediations.
    Nhc,
    /// The Remediation controller: fences, frees workloads, recovers.
    Remediation,
}

/// The enabled controllers, ready to run.
pub struct Controllers {
    nhc: Option<Arc<nhc::Context>>,
    remediation: Option<Arc<remediation::Context>>,
    readiness: Option<Arc<readiness::Context>>,
}

impl Controllers {
    /// Builds the enabled controllers' contexts and registers their metrics.
    pub fn new(client: kube::Client, settings: Settings, registry: &mut Registry) -> Self {
        let on = |k| settings.enabled.contains(&k);
        let openstack_metrics = crate::metrics::Metrics::register(registry);
        let clouds = Arc::new(clouds::Clouds::new(
            client.clone(),
            openstack_metrics.clone(),
        ));
        Self {
            // The readiness check reports on NodeHealthChecks, so it runs with their controller.
            readiness: on(ControllerKind::Nhc).then(|| {
                Arc::new(readiness::Context::new(
                    client.clone(),
                    settings.clone(),
                    openstack_metrics,
                    settings.cloud_check_interval,
                    registry,
                ))
            }),
            nhc: on(ControllerKind::Nhc).then(|| {
                Arc::new(nhc::Context::new(
                    client.clone(),
                    settings.clone(),
                    clouds.clone(),
                    registry,
                ))
            }),
            remediation: on(ControllerKind::Remediation).then(|| {
                Arc::new(remediation::Context::new(
                    client,
                    settings.clone(),
                    clouds.clone(),
                    registry,
                ))
            }),
        }
    }

    /// How many controllers will report a cache sync to `Readiness`.
    pub fn caches(settings: &Settings) -> usize {
        settings.enabled.len()
    }

    /// Runs the enabled controllers until `stop` turns true.
    pub async fn run(self, readiness: Readiness, stop: watch::Receiver<bool>) {
        let nhc = async {
            if let Some(ctx) = self.nhc {
                nhc::run(ctx, readiness.clone(), stop.clone()).await
            }
        };
        let remediation = async {
            if let Some(ctx) = self.remediation {
                remediation::run(ctx, readiness.clone(), stop.clone()).await
            }
        };
        let cloud_readiness = async {
            if let Some(ctx) = self.readiness {
                readiness::run(ctx, stop.clone()).await
            }
        };
        tokio::join!(nhc, remediation, cloud_readiness);
    }
}

/// Waits until a cache has its first full list. `Store::wait_until_ready` can miss its wake-up
/// when several tasks wait on one store at once (the controller runtime waits on its own
/// store too), so each wait is bounded and tried again.
pub(crate) async fn wait_synced<K>(store: &kube::runtime::reflector::Store<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        let attempt = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            store.wait_until_ready(),
        );
        if attempt.await.is_ok() {
            return;
        }
    }
}

/// A JSON merge patch body that turns `previous` into `next`: fields left out of `next` (empty
/// lists and unset options are not serialized) are set to null, so the patch clears them
/// instead of leaving the old values behind.
pub(crate) fn replacing(
    previous: &serde_json::Value,
    mut next: serde_json::Value,
) -> serde_json::Value {
    if let (Some(old), Some(new)) = (previous.as_object(), next.as_object_mut()) {
        for key in old.keys() {
            new.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    next
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_patch_clears_what_the_new_value_leaves_out() {
        let old = serde_json::json!({"phase": "Fencing", "lastError": "nova down", "steps": [1]});
        let new = serde_json::json!({"phase": "Succeeded", "steps": [1, 2]});
        assert_eq!(
            super::replacing(&old, new),
            serde_json::json!({"phase": "Succeeded", "lastError": null, "steps": [1, 2]})
        );
    }
}
