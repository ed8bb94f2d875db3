//! Scaffolding: replaced by the real controller.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use super::Settings;
use crate::server::Readiness;

pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
}

impl Context {
    pub fn new(client: kube::Client, settings: Settings, _registry: &mut Registry) -> Self {
        Self { client, settings }
    }
}

pub async fn run(_ctx: Arc<Context>, readiness: Readiness, mut stop: watch::Receiver<bool>) {
    readiness.cache_synced();
    let _ = stop.wait_for(|s| *s).await;
}
