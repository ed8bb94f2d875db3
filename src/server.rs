//! The operator's HTTP endpoints: `/livez`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// What `/readyz` reports: ready once leader election has settled and, on the leader, the
/// controllers' caches are synced. A standby is ready as soon as it knows it is one: it serves
/// and would take over.
#[derive(Clone)]
pub struct Readiness {
    pending_caches: Arc<AtomicUsize>,
    standby: Arc<AtomicBool>,
    election_settled: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness that waits for `caches` controllers to report their caches synced.
    pub fn new(caches: usize) -> Self {
        Self {
            pending_caches: Arc::new(AtomicUsize::new(caches)),
            standby: Arc::new(AtomicBool::new(false)),
            election_settled: Arc::new(AtomicBool::new(false)),
        }
    }
    /// One controller's caches are synced.
    pub fn cache_synced(&self) {
        let _ = self
            .pending_caches
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
    /// Leader election has settled; `standby` when another replica leads.
    pub fn set_election_settled(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
        self.election_settled.store(true, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.election_settled.load(Ordering::SeqCst)
            && (self.standby.load(Ordering::SeqCst)
                || self.pending_caches.load(Ordering::SeqCst) == 0)
    }
}

/// Renders the Prometheus text exposition of every metric.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Clone)]
struct AppState {
    readiness: Readiness,
    metrics: MetricsRenderer,
}

/// Serves the endpoints until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    metrics: MetricsRenderer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { readiness, metrics });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /livez, /readyz, /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: caches syncing or leader election pending",
        )
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        (state.metrics)(),
    )
}
