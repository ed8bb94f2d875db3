//! The cloud: Keystone v3, Nova and Magnum behind one trait, [`Cloud`], so the remediation
//! controller works the same against a real cloud, the simulator or a test fake.
//!
//! # Why our own small client, not `openstack_sdk`
//!
//! `openstack_sdk` (0.22, OpenStack's own Rust SDK) covers clouds.yaml, every auth plugin and
//! every service, and it is async on tokio. We use ten Nova calls, four Magnum calls and one
//! Keystone call, and for those the SDK costs more than it gives:
//!
//! - **Weight and TLS.** Its default features pull in every service crate and a dozen auth
//!   plugin crates (its lock file lists over 500 packages), `chrono` next to our `jiff`, and
//!   a `reqwest` with its own TLS feature set, where this operator compiles exactly one
//!   crypto provider (rustls with ring).
//! - **Control over what matters here.** Fencing needs per-request timeouts, retries of reads
//!   only, never an automatic resend of an action whose outcome is unknown (invariant 4 of
//!   the design), metrics per service, operation and outcome, and error messages that can
//!   never carry a secret. Those are the parts a general SDK decides for you; in our client
//!   they are one request loop ([`client`]) we can read, test and reason about.
//! - **Testability.** Our plain domain types ([`Server`], [`Cluster`], [`NodeGroup`]) and the
//!   object-safe [`Cloud`] trait make fakes trivial, and the whole client is tested against
//!   the OpenStack simulator (`e2e/openstack-sim`), including faults.
//!
//! The cost is a few hundred lines of wire types and a clouds.yaml reader for the auth types
//! we support (password and application credentials, project-scoped).
//!
//! # Layout
//!
//! `clouds` (clouds.yaml), `keystone` (token request, catalog, token lifetime), `client` (the
//! HTTP loop: timeouts, retries, re-auth on 401, metrics, logs), `nova`, `magnum`,
//! `provider_id` (Node → server), `error` (the one error type).

mod client;
pub mod clouds;
mod error;
mod keystone;
mod magnum;
mod nova;
pub mod provider_id;

use std::collections::BTreeMap;

use futures::future::BoxFuture;

pub use client::{
    ApiVersion, ClientOptions, MAGNUM_API_VERSION, MAGNUM_BASE_VERSION,
    NOVA_INSTANCE_ACTIONS_MICROVERSION, NOVA_MICROVERSION, OpenStackClient,
};
pub use clouds::{CloudConfig, Credentials, Interface, Secret};
pub use error::{CloudError, Result};
pub use magnum::{AUTO_HEALING_LABEL, Cluster, HealthStatus, NodeGroup, health_report};
pub use nova::{PowerState, RebootType, Server, status};
pub use provider_id::{
    ServerLocation, ServerRef, parse_provider_id, server_id_from_provider_id, server_location,
    server_ref,
};

/// What Nova's instance actions say about how a server that now answers 404 was deleted.
/// Only [`DeletionEvidence::ComputeTerminated`] shows that the guest stopped: Nova deletes an
/// instance in its own database when the server's compute service is down (a "local delete",
/// after which the guest may still run), and a 404 alone can also mean the wrong region,
/// project or endpoint.
///
/// Read from `GET /servers/{id}/os-instance-actions[/{request_id}]` at microversion 2.51,
/// the first at which a project member sees the actions' events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionEvidence {
    /// A `delete` action whose `compute_terminate_instance` event succeeded: the compute
    /// host itself destroyed the guest.
    ComputeTerminated,
    /// A `delete` action whose `compute_terminate_instance` event has started and not
    /// finished (the host records the result just after the instance is gone): ask again.
    /// One that never finishes is no evidence.
    Terminating,
    /// A `delete` action without a successful `compute_terminate_instance` event: the event
    /// failed, or the compute host never took the delete on (a later delete was then done
    /// locally). The guest may still run.
    NotByCompute,
    /// Nova knows the server but has no `delete` action for it. Nova records none for a local
    /// delete (compute service down), nor for a server that was never scheduled to a host.
    /// The guest may still run.
    NoDelete,
    /// Nova has no record of the server at all (its instance actions answer 404): another
    /// region, project or endpoint, or its records were archived. Proves nothing.
    UnknownServer,
}

/// What the operator asks of OpenStack. Object-safe: share it as `Arc<dyn Cloud>`.
///
/// Actions return when the service has accepted them (Nova and Magnum work on them
/// afterwards); callers look at the server or cluster to see them finish. An action that
/// fails with [`CloudError::outcome_unknown`] may have been carried out: look before
/// sending it again.
pub trait Cloud: Send + Sync {
    /// The server, or None if Nova does not know it (404).
    fn server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Server>>>;
    /// The server named exactly `name`; None if there is none, [`CloudError::Ambiguous`] if
    /// there are several.
    fn server_by_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Server>>>;
    /// Every server these credentials see in the client's region (deleted ones left out),
    /// for the readiness check. Clouds that cannot list answer [`CloudError::Unsupported`].
    fn servers(&self) -> BoxFuture<'_, Result<Vec<Server>>> {
        Box::pin(async {
            Err(CloudError::Unsupported {
                service: "nova",
                operation: "server_list",
                message: "this cloud does not list servers".into(),
            })
        })
    }
    /// `os-stop`: power off (the fence).
    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// `os-start`: power on.
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// `unshelve`: power on a shelved server (`os-start` does not apply to one).
    fn unshelve<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    fn reboot<'a>(&'a self, id: &'a str, kind: RebootType) -> BoxFuture<'a, Result<()>>;
    /// Rebuild from `image_id` (the server's own image, for a clean re-install).
    fn rebuild<'a>(&'a self, id: &'a str, image_id: &'a str) -> BoxFuture<'a, Result<()>>;
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
    /// How the server `id` was deleted, from its instance actions; ask once it answers 404.
    /// Fails with [`CloudError::Unsupported`] when this Nova cannot show a project member the
    /// actions' events (it is older than microversion 2.51).
    fn deletion_evidence<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<DeletionEvidence>>;
    /// The Magnum cluster by uuid or name.
    fn cluster<'a>(&'a self, id_or_name: &'a str) -> BoxFuture<'a, Result<Cluster>>;
    fn nodegroups<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Vec<NodeGroup>>>;
    /// Magnum resize of `nodegroup` to `node_count`, removing the servers `nodes_to_remove`
    /// (Nova ids): with the count unchanged, Magnum replaces them.
    fn resize<'a>(
        &'a self,
        cluster: &'a str,
        nodegroup: &'a str,
        node_count: u32,
        nodes_to_remove: &'a [String],
    ) -> BoxFuture<'a, Result<()>>;
    /// Sets the cluster's `health_status` and `health_status_reason`, as magnum-auto-healer
    /// does (see [`health_report`]).
    fn report_health<'a>(
        &'a self,
        cluster: &'a str,
        status: HealthStatus,
        reason: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<()>>;
}

/// The server a [`ServerRef`] points at: by id, or by exact, unambiguous name.
pub async fn resolve(cloud: &dyn Cloud, server: &ServerRef) -> Result<Option<Server>> {
    match server {
        ServerRef::Id(id) => cloud.server(id).await,
        ServerRef::Name(name) => cloud.server_by_name(name).await,
    }
}

impl OpenStackClient {
    /// A client for cloud `cloud` of a clouds.yaml; see [`CloudConfig::from_clouds_yaml`].
    pub fn from_clouds_yaml(
        yaml: &str,
        cloud: &str,
        ca_pem: Option<Vec<u8>>,
        options: ClientOptions,
        metrics: crate::metrics::Metrics,
    ) -> Result<Self> {
        OpenStackClient::new(
            CloudConfig::from_clouds_yaml(yaml, cloud, ca_pem)?,
            options,
            metrics,
        )
    }

    /// [`OpenStackClient::from_clouds_yaml`] in `region` instead of the clouds.yaml's
    /// `region_name`; see [`OpenStackClient::new_in_region`].
    pub fn from_clouds_yaml_in_region(
        yaml: &str,
        cloud: &str,
        ca_pem: Option<Vec<u8>>,
        region: &str,
        options: ClientOptions,
        metrics: crate::metrics::Metrics,
    ) -> Result<Self> {
        OpenStackClient::new_in_region(
            CloudConfig::from_clouds_yaml(yaml, cloud, ca_pem)?,
            region,
            options,
            metrics,
        )
    }
}

impl Cloud for OpenStackClient {
    fn server<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Server>>> {
        Box::pin(nova::show(self, id))
    }
    fn server_by_name<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Server>>> {
        Box::pin(nova::find_by_name(self, name))
    }
    fn servers(&self) -> BoxFuture<'_, Result<Vec<Server>>> {
        Box::pin(nova::list(self))
    }
    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(nova::stop(self, id))
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(nova::start(self, id))
    }
    fn unshelve<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(nova::unshelve(self, id))
    }
    fn reboot<'a>(&'a self, id: &'a str, kind: RebootType) -> BoxFuture<'a, Result<()>> {
        Box::pin(nova::reboot(self, id, kind))
    }
    fn rebuild<'a>(&'a self, id: &'a str, image_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(nova::rebuild(self, id, image_id))
    }
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(nova::delete(self, id))
    }
    fn deletion_evidence<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<DeletionEvidence>> {
        Box::pin(nova::deletion_evidence(self, id))
    }
    fn cluster<'a>(&'a self, id_or_name: &'a str) -> BoxFuture<'a, Result<Cluster>> {
        Box::pin(magnum::cluster(self, id_or_name))
    }
    fn nodegroups<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<Vec<NodeGroup>>> {
        Box::pin(magnum::nodegroups(self, cluster))
    }
    fn resize<'a>(
        &'a self,
        cluster: &'a str,
        nodegroup: &'a str,
        node_count: u32,
        nodes_to_remove: &'a [String],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(magnum::resize(
            self,
            cluster,
            nodegroup,
            node_count,
            nodes_to_remove,
        ))
    }
    fn report_health<'a>(
        &'a self,
        cluster: &'a str,
        status: HealthStatus,
        reason: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(magnum::report_health(self, cluster, status, reason))
    }
}
