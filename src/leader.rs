//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! Every write is a replace carrying the resourceVersion we read, so two replicas can never
//! both believe they took the lease: the loser gets a 409 and reads again. Expiry is judged by
//! when *we* last saw the record change (a local monotonic clock), not by the holder's
//! `renewTime`, so clock skew between nodes cannot make a live leader look expired.
//! A leader that cannot renew within `renew_deadline` reports the loss; the binary then exits,
//! so a stale leader never keeps acting (the new one resumes every remediation from status).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::error::Result;

/// Timing of the election, as client-go's defaults scaled for quick failover.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease is valid after its last renewal seen by a candidate.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long gives up.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

impl ElectionConfig {
    pub fn new(namespace: &str, lease_name: &str, identity: &str) -> Self {
        Self {
            lease_name: lease_name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Held leadership: `lost` turns true when renewing failed past the deadline.
pub struct Leadership {
    pub lost: watch::Receiver<bool>,
    renewer: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    config: ElectionConfig,
}

impl Leadership {
    /// Gives the lease up (on graceful shutdown) so a standby takes over at once.
    pub async fn release(self) {
        self.renewer.abort();
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.lease_name).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                let _ = self
                    .api
                    .replace(&self.config.lease_name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }
}

/// Waits until this replica holds the lease, then keeps renewing it in the background.
pub async fn acquire(client: kube::Client, config: ElectionConfig) -> Result<Leadership> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed: Option<(String, Instant)> = None;
    loop {
        match try_acquire_or_renew(&api, &config, &mut observed).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election: acquiring the lease failed"),
        }
        tokio::time::sleep(config.retry_period).await;
    }
    tracing::info!(identity = %config.identity, lease = %config.lease_name, "became the leader");
    let (tx, lost) = watch::channel(false);
    let renewer = {
        let api = api.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let mut last_renewal = Instant::now();
            let mut observed = None;
            loop {
                tokio::time::sleep(config.retry_period).await;
                match try_acquire_or_renew(&api, &config, &mut observed).await {
                    Ok(true) => last_renewal = Instant::now(),
                    Ok(false) => {
                        tracing::error!("leader election: another replica holds the lease");
                        let _ = tx.send(true);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "leader election: renewing failed"),
                }
                if last_renewal.elapsed() > config.renew_deadline {
                    tracing::error!("leader election: could not renew within the deadline");
                    let _ = tx.send(true);
                    return;
                }
            }
        })
    };
    Ok(Leadership {
        lost,
        renewer,
        api,
        config,
    })
}

/// One attempt. Returns true when we hold the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &ElectionConfig,
    observed: &mut Option<(String, Instant)>,
) -> Result<bool> {
    let now = MicroTime(jiff::Timestamp::now());
    let Some(mut lease) = api.get_opt(&config.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.lease_name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        };
    };

    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = format!(
        "{}/{}",
        lease.metadata.resource_version.clone().unwrap_or_default(),
        holder
    );
    // Remember when the record last changed, by our own clock.
    let changed_at = match observed {
        Some((seen, at)) if *seen == record => *at,
        _ => {
            *observed = Some((record, Instant::now()));
            Instant::now()
        }
    };
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let ours = holder == config.identity;
    let free = holder.is_empty() || changed_at.elapsed() > duration;
    if !ours && !free {
        return Ok(false);
    }

    let new_spec = lease.spec.get_or_insert_with(Default::default);
    if !ours {
        new_spec.holder_identity = Some(config.identity.clone());
        new_spec.acquire_time = Some(now.clone());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    new_spec.lease_duration_seconds = Some(config.lease_duration.as_secs() as i32);
    new_spec.renew_time = Some(now);
    // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api
        .replace(&config.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
