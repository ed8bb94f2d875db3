//! The one error type of the operator. Each variant has a static `category()` — the reason of
//! the Warning event and the `error` label of metrics — and says whether retrying can help:
//! transient errors back off per object, invalid input waits for a change and says why.

use std::time::Duration;

/// Everything that can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed or refused a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// A resource's spec cannot work as written (a template that does not exist, a selector
    /// that matches nothing sensible, ...). Nothing is done until it changes.
    #[error("invalid {kind} {name}: {message}")]
    InvalidSpec {
        kind: &'static str,
        name: String,
        message: String,
    },

    /// A Secret the spec names is missing, or lacks the key.
    #[error("secret {namespace}/{name}: {message}")]
    Secret {
        namespace: String,
        name: String,
        message: String,
    },

    /// A node cannot be mapped to an OpenStack server: no action is ever taken on a guess.
    #[error("node {node} cannot be mapped to an OpenStack server: {message}")]
    Unmappable { node: String, message: String },

    /// OpenStack failed or refused a request (the message never carries a credential).
    #[error("{0}")]
    Cloud(#[from] crate::openstack::CloudError),

    /// An object we read was not in the shape we expect.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),

    /// A deleted Remediation waits for its server to finish powering off, to power it on again.
    #[error("waiting for server {server} to finish powering off, to power it on again")]
    PowerRestorePending { server: String },

    /// Adding or removing our finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short, stable name for the kind of failure: the event reason and the metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::Secret { .. } => "CloudSecretError",
            Error::Unmappable { .. } => "ServerNotMappable",
            Error::Cloud(e) => e.category(),
            Error::Serialization(_) => "SerializationError",
            Error::PowerRestorePending { .. } => "PowerRestorePending",
            Error::Finalizer(_) => "FinalizerError",
        }
    }

    /// Whether retrying the same reconcile soon can succeed without anyone changing anything.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Kube(e) => !matches!(e, kube::Error::Api(s) if s.code == 400 || s.code == 422),
            Error::InvalidSpec { .. } | Error::Secret { .. } | Error::Unmappable { .. } => false,
            Error::Cloud(e) => e.retryable(),
            Error::Serialization(_) => false,
            Error::PowerRestorePending { .. } => true,
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.retryable(),
                _ => true,
            },
        }
    }

    /// The HTTP status with which the Kubernetes API refused the request behind this error
    /// (through the finalizer's wrapping), if that is what it is.
    pub fn kube_status(&self) -> Option<u16> {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(kube::Error::Api(s)) => Some(s.code),
            Error::Finalizer(e) => match e.as_ref() {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.kube_status(),
                F::AddFinalizer(kube::Error::Api(s)) | F::RemoveFinalizer(kube::Error::Api(s)) => {
                    Some(s.code)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// How long to wait before the next attempt: soon for transient failures, a while for
    /// input that must be fixed by someone (a watch event on the object retriggers anyway).
    pub fn requeue_after(&self) -> Duration {
        if self.retryable() {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(300)
        }
    }
}

/// The operator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::runtime::finalizer::Error as F;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            Status::failure("refused", "Conflict")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn the_kubernetes_status_is_found_through_the_finalizers_wrapping() {
        assert_eq!(Error::Kube(api(409)).kube_status(), Some(409));
        let wrapped = Error::Finalizer(Box::new(F::ApplyFailed(Error::Kube(api(404)))));
        assert_eq!(wrapped.kube_status(), Some(404));
        let removing = Error::Finalizer(Box::new(F::RemoveFinalizer(api(409))));
        assert_eq!(removing.kube_status(), Some(409));
        let other = Error::PowerRestorePending { server: "s".into() };
        assert_eq!(other.kube_status(), None);
    }
}
