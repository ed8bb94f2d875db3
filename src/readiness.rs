//! Readiness before the bad day: whether a NodeHealthCheck's remediation path works, found out
//! while every node is healthy instead of during an outage. A pure function of what was read:
//! the pool's nodes, and for each cloud its templates act through, whether its Secret parsed,
//! the server list of each region the nodes are in (one list per credential and region,
//! never a request per node), and the Magnum cluster.
//!
//! The controller (`controller::readiness`) gathers that data every few minutes and writes
//! the outcome as the `CloudReady` condition; `nodehealer check` prints it. Neither changes
//! what a remediation does: the check only reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::api::nodehealthcheck::UnmappedNode;
use crate::openstack::{CloudError, ServerRef, server_location};

/// Why a NodeHealthCheck's remediation path works or does not: the `reason` of the
/// `CloudReady` condition. The variants are in order of precedence: when several problems
/// exist the condition names the first, the one to fix first (nothing else can be checked
/// before the Secret parses and Keystone accepts the credentials).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// A template the NodeHealthCheck names cannot be read.
    TemplateMissing,
    /// The Secret a template names does not exist.
    SecretMissing,
    /// The Secret lacks its key, or its clouds.yaml cannot work as written (no such cloud, no
    /// usable credentials, a bad CA bundle, an auth_url without Keystone v3).
    SecretInvalid,
    /// Keystone refused the credentials (a wrong password, an expired or deleted application
    /// credential, a project the user has no role on).
    AuthFailed,
    /// Keystone, Nova or Magnum did not answer, or answered 5xx.
    CloudUnreachable,
    /// The Keystone catalog has no Nova (or Magnum) endpoint in a region the pool needs: the
    /// clouds.yaml's `region_name`, or one a node's providerID names.
    EndpointMissing,
    /// The cloud refused or garbled the read (a 403, an answer we cannot parse).
    CloudRequestFailed,
    /// The Magnum cluster a template names does not exist for these credentials.
    ClusterMissing,
    /// Nodes of the pool map to no server the credentials can see.
    NodesUnmapped,
    /// Everything checked works.
    Ready,
    /// No template of the NodeHealthCheck remediates through OpenStack: nothing to check.
    NoOpenStackTemplate,
}

impl Reason {
    /// Every reason, for metrics that must show zeros.
    pub const ALL: [Reason; 11] = [
        Reason::TemplateMissing,
        Reason::SecretMissing,
        Reason::SecretInvalid,
        Reason::AuthFailed,
        Reason::CloudUnreachable,
        Reason::EndpointMissing,
        Reason::CloudRequestFailed,
        Reason::ClusterMissing,
        Reason::NodesUnmapped,
        Reason::Ready,
        Reason::NoOpenStackTemplate,
    ];

    /// The reason as written in the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TemplateMissing => "TemplateMissing",
            Reason::SecretMissing => "SecretMissing",
            Reason::SecretInvalid => "SecretInvalid",
            Reason::AuthFailed => "AuthFailed",
            Reason::CloudUnreachable => "CloudUnreachable",
            Reason::EndpointMissing => "EndpointMissing",
            Reason::CloudRequestFailed => "CloudRequestFailed",
            Reason::ClusterMissing => "ClusterMissing",
            Reason::NodesUnmapped => "NodesUnmapped",
            Reason::Ready => "Ready",
            Reason::NoOpenStackTemplate => "NoOpenStackTemplate",
        }
    }

    /// Whether the condition is `True` with this reason.
    pub fn is_ready(self) -> bool {
        match self {
            Reason::Ready | Reason::NoOpenStackTemplate => true,
            Reason::TemplateMissing
            | Reason::SecretMissing
            | Reason::SecretInvalid
            | Reason::AuthFailed
            | Reason::CloudUnreachable
            | Reason::EndpointMissing
            | Reason::CloudRequestFailed
            | Reason::ClusterMissing
            | Reason::NodesUnmapped => false,
        }
    }

    /// The reason for a failed cloud call.
    pub fn of_cloud_error(e: &CloudError) -> Reason {
        match e {
            CloudError::Config(_) => Reason::SecretInvalid,
            CloudError::Auth { .. } => Reason::AuthFailed,
            CloudError::Unavailable { .. } => Reason::CloudUnreachable,
            CloudError::EndpointMissing(_) => Reason::EndpointMissing,
            CloudError::Unsupported { .. }
            | CloudError::NotFound { .. }
            | CloudError::Conflict { .. }
            | CloudError::Rejected { .. }
            | CloudError::BadResponse { .. }
            | CloudError::Ambiguous { .. } => Reason::CloudRequestFailed,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that could not be checked or did not work, with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    /// Says what failed, naming the Secret, cloud or region; never a credential.
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
        }
    }

    /// A failed cloud call, its message prefixed with `context`.
    pub fn cloud(context: &str, e: &CloudError) -> Failure {
        Failure::new(Reason::of_cloud_error(e), format!("{context}: {e}"))
    }
}

/// A node of the pool, as far as mapping it to a server goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolNode {
    pub name: String,
    pub provider_id: Option<String>,
}

/// A server of a list, as far as mapping a node to it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedServer {
    pub id: String,
    pub name: String,
}

/// A region of the pool: the clouds.yaml's (None) or one a providerID names.
pub type Region = Option<String>;

/// One cloud the NodeHealthCheck's templates act through (a Secret, its key and a cloud of
/// the clouds.yaml), and what was read of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudProbe {
    /// Names it in messages, e.g. `Secret nh/cloud (cloud openstack)`.
    pub target: String,
    /// What was read, or why nothing could be (the template or the Secret).
    pub access: Result<CloudRead, Failure>,
}

/// What was read of one cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudRead {
    /// The clouds.yaml's `region_name`, to name the default region in messages.
    pub default_region: Option<String>,
    /// The server list of each region the nodes need (see [`regions`]).
    pub listings: BTreeMap<Region, Result<Vec<ListedServer>, Failure>>,
    /// The Magnum cluster, when a template names one.
    pub cluster: Option<ClusterRead>,
}

/// What became of reading a Magnum cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterRead {
    Found,
    /// Magnum answered 404 for this name or uuid.
    Missing {
        cluster: String,
    },
    Failed(Failure),
}

/// The outcome of one check of a NodeHealthCheck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The first problem's reason (see [`Reason`]'s order), or `Ready`.
    pub reason: Reason,
    /// Every problem, one sentence each, in order of precedence; empty when ready.
    pub problems: Vec<(Reason, String)>,
    /// Every node that maps to no server, by name.
    pub unmapped: Vec<UnmappedNode>,
}

/// Problems named in the condition's message; the rest are counted.
const MAX_PROBLEMS_IN_MESSAGE: usize = 5;

impl Verdict {
    pub fn is_ready(&self) -> bool {
        self.reason.is_ready()
    }

    /// The condition's message: what works, or the first problems.
    pub fn message(&self) -> String {
        match self.reason {
            Reason::Ready => "the Secret parses, Keystone accepts the credentials and every \
                              node maps to a server they can see"
                .to_owned(),
            Reason::NoOpenStackTemplate => {
                "no template of this NodeHealthCheck remediates through OpenStack: nothing to \
                 check"
                    .to_owned()
            }
            _ => {
                let mut parts: Vec<&str> = self
                    .problems
                    .iter()
                    .take(MAX_PROBLEMS_IN_MESSAGE)
                    .map(|(_, m)| m.as_str())
                    .collect();
                let more = self.problems.len().saturating_sub(MAX_PROBLEMS_IN_MESSAGE);
                let more = format!("and {more} more problems");
                if self.problems.len() > MAX_PROBLEMS_IN_MESSAGE {
                    parts.push(&more);
                }
                parts.join("; ")
            }
        }
    }
}

/// The regions the pool's nodes are in, so that each is listed once: the clouds.yaml's
/// (None) for `openstack:///<id>` and nodes found by name, the named one for
/// `openstack://<region>/<id>`. Nodes whose providerID is not OpenStack's need none.
pub fn regions(nodes: &[PoolNode]) -> BTreeSet<Region> {
    nodes
        .iter()
        .filter_map(|n| server_location(&n.name, n.provider_id.as_deref()).ok())
        .map(|l| l.region)
        .collect()
}

/// Whether the NodeHealthCheck's remediation path works, from what was read.
pub fn assess(nodes: &[PoolNode], probes: &[CloudProbe]) -> Verdict {
    if probes.is_empty() {
        return Verdict {
            reason: Reason::NoOpenStackTemplate,
            problems: Vec::new(),
            unmapped: Vec::new(),
        };
    }
    let mut problems: Vec<(Reason, String)> = Vec::new();
    let mut unmapped: BTreeMap<String, String> = BTreeMap::new();
    for probe in probes {
        let read = match &probe.access {
            Ok(read) => read,
            Err(f) => {
                problems.push((f.reason, f.message.clone()));
                continue;
            }
        };
        let region_name = |region: &Region| match region {
            Some(r) => format!("region {r}"),
            None => match &read.default_region {
                Some(r) => format!("region {r}"),
                None => "the clouds.yaml's region".to_owned(),
            },
        };
        for (region, listing) in &read.listings {
            if let Err(f) = listing {
                let affected = nodes
                    .iter()
                    .filter(|n| {
                        server_location(&n.name, n.provider_id.as_deref())
                            .is_ok_and(|l| &l.region == region)
                    })
                    .count();
                problems.push((
                    f.reason,
                    format!(
                        "{} cannot list the servers of {} ({affected} nodes are there): {}",
                        probe.target,
                        region_name(region),
                        f.message
                    ),
                ));
            }
        }
        match &read.cluster {
            None | Some(ClusterRead::Found) => {}
            Some(ClusterRead::Missing { cluster }) => problems.push((
                Reason::ClusterMissing,
                format!(
                    "{}: Magnum has no cluster {cluster:?} (a Replace through Magnum and health \
                     reports would fail)",
                    probe.target
                ),
            )),
            Some(ClusterRead::Failed(f)) => problems.push((
                f.reason,
                format!(
                    "{}: the Magnum cluster cannot be read: {}",
                    probe.target, f.message
                ),
            )),
        }
        for node in nodes {
            if unmapped.contains_key(&node.name) {
                continue;
            }
            if let Some(why) = unmapped_because(node, read, &probe.target, &region_name) {
                unmapped.insert(node.name.clone(), why);
            }
        }
    }
    if !unmapped.is_empty() {
        let names: Vec<&str> = unmapped.keys().map(String::as_str).take(3).collect();
        let more = unmapped.len().saturating_sub(names.len());
        problems.push((
            Reason::NodesUnmapped,
            format!(
                "{} of {} nodes map to no server the credentials can see ({}{}; see \
                 status.cloudReadiness)",
                unmapped.len(),
                nodes.len(),
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        ));
    }
    // A stable sort: problems of one reason keep the order they were found in.
    problems.sort_by_key(|(reason, _)| *reason);
    Verdict {
        reason: problems.first().map_or(Reason::Ready, |(r, _)| *r),
        problems,
        unmapped: unmapped
            .into_iter()
            .map(|(name, reason)| UnmappedNode { name, reason })
            .collect(),
    }
}

/// Why `node` maps to no server of `read`, or None when it maps to exactly one. A region
/// whose list failed for another reason than a missing endpoint says nothing about the node
/// (that failure is a problem of its own): only a region the catalog lacks, where the
/// credentials can see no server at all, leaves its nodes unmapped.
fn unmapped_because(
    node: &PoolNode,
    read: &CloudRead,
    target: &str,
    region_name: &dyn Fn(&Region) -> String,
) -> Option<String> {
    let location = match server_location(&node.name, node.provider_id.as_deref()) {
        Ok(l) => l,
        Err(why) => return Some(why),
    };
    let servers = match read.listings.get(&location.region) {
        Some(Ok(servers)) => servers,
        Some(Err(f)) if f.reason == Reason::EndpointMissing => {
            return Some(format!(
                "{target} has no Nova endpoint in {}, where its providerID puts it",
                region_name(&location.region)
            ));
        }
        // Not read (or not readable): nothing is known about the node.
        Some(Err(_)) | None => return None,
    };
    match &location.server {
        ServerRef::Id(id) => (!servers.iter().any(|s| s.id.eq_ignore_ascii_case(id))).then(|| {
            format!(
                "{target} sees no server {id} in {} ({} servers there)",
                region_name(&location.region),
                servers.len()
            )
        }),
        ServerRef::Name(name) => match servers.iter().filter(|s| &s.name == name).count() {
            1 => None,
            0 => Some(format!(
                "no providerID, and {target} sees no server named {name:?} in {}",
                region_name(&location.region)
            )),
            n => Some(format!(
                "no providerID, and {n} servers are named {name:?} in {}: we never pick one",
                region_name(&location.region)
            )),
        },
    }
}

#[cfg(test)]
mod tests;
