//! The one error type of the OpenStack backend. Messages name the service, the operation and
//! the HTTP status; they never carry a password, a secret or a token (the client scrubs the
//! services' own messages before they get here).

/// Everything that can go wrong talking to OpenStack.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The clouds.yaml or the client options cannot work as written (a missing field, an
    /// unknown cloud, no usable credentials, several regions and no `region_name`). Nothing
    /// changes until someone fixes the input.
    #[error("OpenStack configuration: {0}")]
    Config(String),

    /// The Keystone catalog has no endpoint for a service in the interface and region asked
    /// for (the clouds.yaml's `region_name`, or the region a node's providerID names). The
    /// message names the region and what the catalog has. Nothing changes until the catalog,
    /// the credentials' project or the node does.
    #[error("{0}")]
    EndpointMissing(String),

    /// This cloud cannot do what a feature needs: Nova does not serve the microversion (for
    /// instance action events, 2.51), or its policy hides what we must read. Nothing changes
    /// until the cloud does.
    #[error("{service} {operation}: not supported by this cloud: {message}")]
    Unsupported {
        service: &'static str,
        operation: &'static str,
        message: String,
    },

    /// Keystone refused the credentials, or a service refused a token Keystone just issued.
    #[error("{service} {operation}: authentication failed{}: {message}", http(*status))]
    Auth {
        service: &'static str,
        operation: &'static str,
        status: Option<u16>,
        message: String,
    },

    /// The resource does not exist (HTTP 404).
    #[error("{service} {operation}: not found (HTTP 404): {message}")]
    NotFound {
        service: &'static str,
        operation: &'static str,
        message: String,
    },

    /// The request conflicts with the resource's state (HTTP 409), e.g. `os-stop` on a server
    /// that is already stopping, or a resize of a cluster whose update is in progress. Nothing
    /// was changed.
    #[error("{service} {operation}: conflict (HTTP 409): {message}")]
    Conflict {
        service: &'static str,
        operation: &'static str,
        message: String,
    },

    /// Any other 4xx: the service understood the request and refused it. Nothing was changed.
    #[error("{service} {operation}: rejected (HTTP {status}): {message}")]
    Rejected {
        service: &'static str,
        operation: &'static str,
        status: u16,
        message: String,
    },

    /// The service could not be reached or did not answer in time, or answered 5xx or 429.
    /// `outcome_unknown` is true when an action may have reached the service anyway (a timeout
    /// or an error after the request was sent): the caller must look at the resource before it
    /// decides to send the action again.
    #[error("{service} {operation}: unavailable{}: {detail}", http(*status))]
    Unavailable {
        service: &'static str,
        operation: &'static str,
        status: Option<u16>,
        outcome_unknown: bool,
        detail: String,
    },

    /// The service answered with something we cannot read.
    #[error("{service} {operation}: unexpected response: {message}")]
    BadResponse {
        service: &'static str,
        operation: &'static str,
        message: String,
    },

    /// A lookup by name found more than one resource: we never pick one.
    #[error("{what} name {name:?} is ambiguous: {count} match it exactly")]
    Ambiguous {
        what: &'static str,
        name: String,
        count: usize,
    },
}

fn http(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

impl CloudError {
    /// A short, stable name for the kind of failure: the event reason and the metric label.
    pub fn category(&self) -> &'static str {
        match self {
            CloudError::Config(_) => "CloudConfigInvalid",
            CloudError::EndpointMissing(_) => "CloudEndpointMissing",
            CloudError::Unsupported { .. } => "CloudFeatureUnsupported",
            CloudError::Auth { .. } => "CloudAuthFailed",
            CloudError::NotFound { .. } => "CloudNotFound",
            CloudError::Conflict { .. } => "CloudConflict",
            CloudError::Rejected { .. } => "CloudRequestRejected",
            CloudError::Unavailable { .. } => "CloudUnavailable",
            CloudError::BadResponse { .. } => "CloudBadResponse",
            CloudError::Ambiguous { .. } => "CloudNameAmbiguous",
        }
    }

    /// Whether the same call may succeed later without anyone changing anything: the
    /// service was unavailable, or the resource was busy (409).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            CloudError::Unavailable { .. } | CloudError::Conflict { .. }
        )
    }

    /// Whether an action that failed with this error may still have been carried out: a
    /// timeout or a 5xx after the request left. Every other error means the service did not
    /// act (it refused, or the request never left).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            CloudError::Unavailable {
                outcome_unknown: true,
                ..
            }
        )
    }

    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CloudError::NotFound { .. })
    }
}

/// The OpenStack backend's result type.
pub type Result<T, E = CloudError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_service_operation_and_status() {
        let e = CloudError::Unavailable {
            service: "nova",
            operation: "server_stop",
            status: Some(503),
            outcome_unknown: true,
            detail: "Service Unavailable".into(),
        };
        assert_eq!(
            e.to_string(),
            "nova server_stop: unavailable (HTTP 503): Service Unavailable"
        );
        assert!(e.retryable());
        assert!(e.outcome_unknown());
        assert_eq!(e.category(), "CloudUnavailable");

        let e = CloudError::Conflict {
            service: "nova",
            operation: "server_start",
            message: "Instance is in task_state powering-off".into(),
        };
        assert!(e.to_string().contains("HTTP 409"));
        assert!(e.retryable());
        assert!(!e.outcome_unknown());

        let e = CloudError::Auth {
            service: "keystone",
            operation: "auth",
            status: Some(401),
            message: "The request you have made requires authentication.".into(),
        };
        assert_eq!(
            e.to_string(),
            "keystone auth: authentication failed (HTTP 401): The request you have made requires authentication."
        );
        assert!(!e.retryable());
    }
}
