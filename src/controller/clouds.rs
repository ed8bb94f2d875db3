//! OpenStack clients shared by the controllers: one per Secret version, cloud and region, so
//! a token is reused across reconciles (and across controllers) and a changed Secret is
//! picked up at once.
//!
//! The region is the clouds.yaml's `region_name`, or the one a node's providerID names
//! (`openstack://<region>/<id>`): that one wins when they differ, because the server is
//! where the cloud provider found it, and one Keystone (one clouds.yaml) serves all the
//! regions of a cloud. A region the catalog has no endpoint in fails every call with
//! `CloudEndpointMissing`, naming the region and the ones the catalog has.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use tokio::sync::Mutex;

use crate::api::OpenStackSpec;
use crate::error::{Error, Result};
use crate::openstack::{ClientOptions, Cloud, Cluster, OpenStackClient};

/// How long a Magnum cluster read for the NodeHealthCheck's gate is reused: long enough that a
/// storm of failing nodes asks once, short enough that a label change is seen soon.
const CLUSTER_TTL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CloudKey {
    namespace: String,
    secret: String,
    key: String,
    cloud: String,
    resource_version: String,
    /// None: the clouds.yaml's region.
    region: Option<String>,
}

/// A Magnum cluster by the namespace of the template naming it and its name or uuid.
type ClusterKey = (String, String);
/// A Magnum cluster as read, or why it could not be.
type ClusterRead = Result<Cluster, String>;

/// The OpenStack clients, by Secret version and cloud.
pub struct Clouds {
    client: kube::Client,
    metrics: crate::metrics::Metrics,
    clients: Mutex<HashMap<CloudKey, Arc<dyn Cloud>>>,
    clusters: Mutex<HashMap<ClusterKey, (Instant, ClusterRead)>>,
    /// When each cluster's cached read was last dropped because we changed the cluster: a
    /// read that began before then is not cached (it may show the cluster as it was).
    forgotten: Mutex<HashMap<ClusterKey, Instant>>,
}

impl Clouds {
    pub fn new(client: kube::Client, metrics: crate::metrics::Metrics) -> Self {
        Self {
            client,
            metrics,
            clients: Mutex::new(HashMap::new()),
            clusters: Mutex::new(HashMap::new()),
            forgotten: Mutex::new(HashMap::new()),
        }
    }

    /// The client for an `openstack` spec in `namespace`, from the Secret it names, in the
    /// clouds.yaml's region.
    pub async fn for_spec(&self, namespace: &str, spec: &OpenStackSpec) -> Result<Arc<dyn Cloud>> {
        self.for_spec_in_region(namespace, spec, None).await
    }

    /// [`Clouds::for_spec`] in `region` (a node's providerID names it): the client's endpoints
    /// are that region's from the Keystone catalog, whatever the clouds.yaml's `region_name`
    /// says. None: the clouds.yaml's region.
    pub async fn for_spec_in_region(
        &self,
        namespace: &str,
        spec: &OpenStackSpec,
        region: Option<&str>,
    ) -> Result<Arc<dyn Cloud>> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret_err = |message: String| Error::Secret {
            namespace: namespace.to_owned(),
            name: spec.cloud_secret_ref.name.clone(),
            message,
        };
        let secret = secrets
            .get_opt(&spec.cloud_secret_ref.name)
            .await?
            .ok_or_else(|| secret_err("not found".into()))?;
        let key = CloudKey {
            namespace: namespace.to_owned(),
            secret: spec.cloud_secret_ref.name.clone(),
            key: spec.cloud_secret_ref.key.clone(),
            cloud: spec.cloud.clone(),
            resource_version: secret.resource_version().unwrap_or_default(),
            region: region.map(str::to_owned),
        };
        let mut clients = self.clients.lock().await;
        if let Some(cloud) = clients.get(&key) {
            return Ok(cloud.clone());
        }
        let data = secret.data.unwrap_or_default();
        let yaml = data
            .get(&key.key)
            .ok_or_else(|| secret_err(format!("has no key {:?}", key.key)))?;
        let yaml = String::from_utf8(yaml.0.clone())
            .map_err(|_| secret_err(format!("key {:?} is not UTF-8", key.key)))?;
        // A CA bundle may sit beside clouds.yaml in the same Secret.
        let ca = data.get("cacert").map(|b| b.0.clone());
        let client = match region {
            None => OpenStackClient::from_clouds_yaml(
                &yaml,
                &key.cloud,
                ca,
                ClientOptions::default(),
                self.metrics.clone(),
            )?,
            Some(region) => OpenStackClient::from_clouds_yaml_in_region(
                &yaml,
                &key.cloud,
                ca,
                region,
                ClientOptions::default(),
                self.metrics.clone(),
            )?,
        };
        let cloud: Arc<dyn Cloud> = Arc::new(client);
        // Old versions of this Secret are not needed any more (its other regions' clients of
        // this version are).
        clients.retain(|k, _| {
            !(k.namespace == key.namespace
                && k.secret == key.secret
                && k.resource_version != key.resource_version)
        });
        clients.insert(key, cloud.clone());
        Ok(cloud)
    }

    /// The Magnum cluster an `openstack` spec names, read at most every few seconds; the error
    /// as text (never with credentials) when it cannot be read.
    pub async fn cluster(&self, namespace: &str, spec: &OpenStackSpec) -> Option<ClusterRead> {
        let name = spec.magnum.as_ref()?.cluster.clone();
        let key = (namespace.to_owned(), name.clone());
        if let Some((at, cached)) = self.clusters.lock().await.get(&key)
            && at.elapsed() < CLUSTER_TTL
        {
            return Some(cached.clone());
        }
        let began = Instant::now();
        let read = match self.for_spec(namespace, spec).await {
            Ok(cloud) => cloud.cluster(&name).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.remember(key, began, read.clone()).await;
        Some(read)
    }

    /// The Magnum cluster `name` (of a template in `namespace`) through `cloud`, as a
    /// Remediation reads it on its passes: from the same cache as [`Clouds::cluster`], so a
    /// cluster is read at most every [`CLUSTER_TTL`] however many remediations and passes look
    /// at it. An error is not taken from the cache: it comes with its category.
    pub async fn cluster_through(
        &self,
        namespace: &str,
        name: &str,
        cloud: &dyn Cloud,
    ) -> Result<(Cluster, Instant)> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some((at, Ok(cached))) = self.clusters.lock().await.get(&key)
            && at.elapsed() < CLUSTER_TTL
        {
            return Ok((cached.clone(), *at));
        }
        let began = Instant::now();
        let read = cloud.cluster(name).await;
        let cached = match &read {
            Ok(c) => Ok(c.clone()),
            Err(e) => Err(e.to_string()),
        };
        self.remember(key, began, cached).await;
        Ok((read?, began))
    }

    /// The cluster as last read (however long ago), if a read of it worked.
    pub async fn last_known_cluster(&self, namespace: &str, name: &str) -> Option<Cluster> {
        let key = (namespace.to_owned(), name.to_owned());
        match self.clusters.lock().await.get(&key) {
            Some((_, Ok(c))) => Some(c.clone()),
            _ => None,
        }
    }

    /// Drops the cached read of cluster `name`: we just changed it (a resize), and the next
    /// look must see Magnum's answer to that.
    pub async fn forget_cluster(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(entry) = self.clusters.lock().await.get_mut(&key) {
            // Expired, so the next look reads afresh; kept as the last known state.
            entry.0 = Instant::now().checked_sub(CLUSTER_TTL).unwrap_or(entry.0);
        }
        self.forgotten.lock().await.insert(key, Instant::now());
    }

    async fn remember(&self, key: ClusterKey, began: Instant, read: ClusterRead) {
        let stale = self
            .forgotten
            .lock()
            .await
            .get(&key)
            .is_some_and(|at| began < *at);
        if !stale {
            // Stamped with when the read began: what it shows is at least that recent.
            self.clusters.lock().await.insert(key, (began, read));
        }
    }
}
