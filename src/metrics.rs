//! The operator's Prometheus metrics (prometheus-client), with bounded labels only: no node,
//! server or cluster names and no error text, so the series count stays fixed whatever the
//! size of the fleet.
//!
//! `Metrics` holds the handles; the families live in a `Registry` (prefix `nodehealer`) that
//! `/metrics` renders. Other modules add their families by adding a field here and registering
//! it in [`Metrics::register`].

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The prefix of every metric name.
pub const PREFIX: &str = "nodehealer";

/// Labels of one OpenStack HTTP request: which service, which operation, how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenStackRequestLabels {
    /// `keystone`, `nova` or `magnum`.
    pub service: &'static str,
    /// e.g. `auth`, `server_show`, `server_stop`, `cluster_resize`.
    pub operation: &'static str,
    /// `ok`, `client_error`, `server_error`, `timeout`, `connect_error`, `transport_error`.
    pub outcome: &'static str,
}

/// Labels of the request-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenStackOperationLabels {
    pub service: &'static str,
    pub operation: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_duration_histogram() -> Histogram {
    // 10 ms .. ~41 s: a Keystone token takes tens of milliseconds, a hung call our timeout.
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

/// Handles to every metric family. Cheap to clone: clones share the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    openstack_requests: Family<OpenStackRequestLabels, Counter>,
    openstack_request_duration: HistogramFamily<OpenStackOperationLabels>,
}

impl Metrics {
    /// A fresh registry (prefix `nodehealer`) with every family registered, and the handles.
    pub fn new() -> (Metrics, Registry) {
        let mut registry = Registry::with_prefix(PREFIX);
        let metrics = Metrics::register(&mut registry);
        (metrics, registry)
    }

    /// Registers every family in `registry` (which carries the prefix) and returns the handles.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            openstack_requests: Family::default(),
            openstack_request_duration: Family::new_with_constructor(request_duration_histogram),
        };
        registry.register(
            "openstack_requests",
            "OpenStack HTTP requests by service, operation and outcome",
            metrics.openstack_requests.clone(),
        );
        registry.register(
            "openstack_request_duration_seconds",
            "Duration of OpenStack HTTP requests by service and operation",
            metrics.openstack_request_duration.clone(),
        );
        metrics
    }

    /// Counts one OpenStack HTTP request and observes its duration.
    pub fn openstack_request(
        &self,
        service: &'static str,
        operation: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        self.openstack_requests
            .get_or_create(&OpenStackRequestLabels {
                service,
                operation,
                outcome,
            })
            .inc();
        self.openstack_request_duration
            .get_or_create(&OpenStackOperationLabels { service, operation })
            .observe(elapsed.as_secs_f64());
    }

    /// How many OpenStack requests were counted with these labels (for tests and diagnostics).
    pub fn openstack_requests_count(
        &self,
        service: &'static str,
        operation: &'static str,
        outcome: &'static str,
    ) -> u64 {
        self.openstack_requests
            .get_or_create(&OpenStackRequestLabels {
                service,
                operation,
                outcome,
            })
            .get()
    }
}

impl Default for Metrics {
    /// Handles registered nowhere: for tests and tools that do not serve `/metrics`.
    fn default() -> Self {
        Metrics::register(&mut Registry::default())
    }
}

/// The registry in the Prometheus text (OpenMetrics) exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openstack_requests_are_rendered_with_their_labels() {
        let (metrics, registry) = Metrics::new();
        metrics.openstack_request("nova", "server_stop", "ok", Duration::from_millis(40));
        metrics.openstack_request("nova", "server_stop", "ok", Duration::from_millis(60));
        let text = render(&registry);
        assert!(
            text.contains(
                r#"nodehealer_openstack_requests_total{service="nova",operation="server_stop",outcome="ok"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"nodehealer_openstack_request_duration_seconds_count{service="nova",operation="server_stop"} 2"#
            ),
            "{text}"
        );
        assert_eq!(
            metrics.openstack_requests_count("nova", "server_stop", "ok"),
            2
        );
    }
}
