//! The controllers, wired together: the NodeHealthCheck controller decides, the Remediation
//! controller acts. Each keeps its own context; `Controllers` builds and runs them side by side.

pub mod nhc;
pub mod remediation;

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
}

/// Both controllers, ready to run.
pub struct Controllers {
    nhc: Arc<nhc::Context>,
    remediation: Arc<remediation::Context>,
}

impl Controllers {
    /// How many controllers report a cache sync to `Readiness`.
    pub const CACHES: usize = 2;

    /// Builds the controllers' contexts and registers their metrics.
    pub fn new(client: kube::Client, settings: Settings, registry: &mut Registry) -> Self {
        Self {
            nhc: Arc::new(nhc::Context::new(client.clone(), settings.clone(), registry)),
            remediation: Arc::new(remediation::Context::new(client, settings, registry)),
        }
    }

    /// Runs both until `stop` turns true.
    pub async fn run(self, readiness: Readiness, stop: watch::Receiver<bool>) {
        tokio::join!(
            nhc::run(self.nhc, readiness.clone(), stop.clone()),
            remediation::run(self.remediation, readiness, stop),
        );
    }
}
