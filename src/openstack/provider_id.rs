//! From a Kubernetes Node to its Nova server. The cloud provider sets
//! `spec.providerID: openstack:///<server-id>` (older releases: `openstack://<region>/<id>`);
//! a node without a providerID is looked up by its name, which is the server's name on
//! OpenStack clusters. Anything else is unmappable: we never guess a machine to power off.

use std::fmt;

/// How to find a node's server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerRef {
    /// The Nova server id, from the providerID.
    Id(String),
    /// No providerID: the server named like the node (an exact, unambiguous match).
    Name(String),
}

impl fmt::Display for ServerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerRef::Id(id) => write!(f, "server {id}"),
            ServerRef::Name(name) => write!(f, "server named {name:?}"),
        }
    }
}

/// Where a node's server is: how to find it, and the region its providerID names (None: the
/// clouds.yaml's region). Build the client for that region with
/// `Clouds::for_spec_in_region`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLocation {
    pub server: ServerRef,
    /// The `<region>` of `openstack://<region>/<id>`.
    pub region: Option<String>,
}

/// A parsed OpenStack providerID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderId {
    /// The region of the old `openstack://<region>/<id>` form.
    pub region: Option<String>,
    pub server_id: String,
}

const SCHEME: &str = "openstack://";

/// Parses `openstack:///<id>` and `openstack://<region>/<id>`; the id must be a UUID, as Nova's
/// are. None for anything else.
pub fn parse_provider_id(provider_id: &str) -> Option<ProviderId> {
    let rest = provider_id.strip_prefix(SCHEME)?;
    let (region, id) = rest.split_once('/')?;
    if !is_uuid(id) || region.contains(|c: char| c.is_whitespace() || c == '/') {
        return None;
    }
    Some(ProviderId {
        region: (!region.is_empty()).then(|| region.to_string()),
        server_id: id.to_string(),
    })
}

/// The Nova server id of an OpenStack providerID.
pub fn server_id_from_provider_id(provider_id: &str) -> Option<String> {
    parse_provider_id(provider_id).map(|p| p.server_id)
}

/// How to find the server of node `node_name` with `spec.providerID` `provider_id`. An empty or
/// absent providerID falls back to the node's name; a providerID that is not a well-formed
/// OpenStack one is an error (the message says why), never a fallback.
pub fn server_ref(node_name: &str, provider_id: Option<&str>) -> Result<ServerRef, String> {
    server_location(node_name, provider_id).map(|l| l.server)
}

/// [`server_ref`] with the region the providerID names: `openstack://RegionTwo/<id>` is
/// server `<id>` in RegionTwo, `openstack:///<id>` and a node found by name are in the
/// clouds.yaml's region.
pub fn server_location(
    node_name: &str,
    provider_id: Option<&str>,
) -> Result<ServerLocation, String> {
    let in_default_region = |server| ServerLocation {
        server,
        region: None,
    };
    match provider_id.map(str::trim).filter(|p| !p.is_empty()) {
        None if node_name.is_empty() => Err("the node has neither a providerID nor a name".into()),
        None => Ok(in_default_region(ServerRef::Name(node_name.to_string()))),
        Some(p) => match parse_provider_id(p) {
            Some(parsed) => Ok(ServerLocation {
                server: ServerRef::Id(parsed.server_id),
                region: parsed.region,
            }),
            None if p.starts_with(SCHEME) => Err(format!(
                "providerID {p:?} is not openstack:///<server-uuid> or \
                 openstack://<region>/<server-uuid>"
            )),
            None => Err(format!(
                "providerID {p:?} is not an OpenStack one: the node is not managed by OpenStack"
            )),
        },
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3f0";

    /// A providerID and what it parses to: `(region, server id)`.
    type Case<'a> = (&'a str, Option<(Option<&'a str>, &'a str)>);

    #[test]
    fn provider_ids() {
        let cases: &[Case] = &[
            (
                "openstack:///8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3f0",
                Some((None, ID)),
            ),
            (
                "openstack://RegionOne/8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3f0",
                Some((Some("RegionOne"), ID)),
            ),
            (
                "openstack:///8A2BB0FA-5D1B-4BB4-A2E1-1E49A8E9D3F0",
                Some((None, "8A2BB0FA-5D1B-4BB4-A2E1-1E49A8E9D3F0")),
            ),
            ("openstack:///", None),
            ("openstack://", None),
            ("openstack:///not-a-uuid", None),
            ("openstack:///8a2bb0fa5d1b4bb4a2e11e49a8e9d3f0", None),
            (
                "openstack:///8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3f0/extra",
                None,
            ),
            ("openstack:///8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3fz", None),
            ("openstack:////8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3f0", None),
            (
                "openstack://Region One/8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3f0",
                None,
            ),
            ("aws:///eu-west-1a/i-0123456789abcdef0", None),
            ("kind://docker/kind/kind-worker", None),
            ("8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3f0", None),
            ("", None),
        ];
        for (given, want) in cases {
            let got = parse_provider_id(given);
            let want = want.map(|(region, id)| ProviderId {
                region: region.map(str::to_string),
                server_id: id.to_string(),
            });
            assert_eq!(got, want, "{given:?}");
            assert_eq!(
                server_id_from_provider_id(given),
                want.map(|p| p.server_id),
                "{given:?}"
            );
        }
    }

    #[test]
    fn nodes_map_by_provider_id_then_by_name() {
        let by_id = format!("openstack:///{ID}");
        assert_eq!(
            server_ref("worker-1", Some(&by_id)),
            Ok(ServerRef::Id(ID.into()))
        );
        assert_eq!(
            server_ref("worker-1", None),
            Ok(ServerRef::Name("worker-1".into()))
        );
        assert_eq!(
            server_ref("worker-1", Some("  ")),
            Ok(ServerRef::Name("worker-1".into()))
        );
        let e = server_ref("worker-1", Some("openstack:///junk")).unwrap_err();
        assert!(e.contains("is not openstack:///<server-uuid>"), "{e}");
        let e = server_ref("worker-1", Some("aws:///zone/i-1")).unwrap_err();
        assert!(e.contains("not an OpenStack one"), "{e}");
        assert!(server_ref("", None).is_err());
    }

    #[test]
    fn the_provider_ids_region_is_where_the_server_is() {
        let in_two = format!("openstack://RegionTwo/{ID}");
        assert_eq!(
            server_location("worker-1", Some(&in_two)),
            Ok(ServerLocation {
                server: ServerRef::Id(ID.into()),
                region: Some("RegionTwo".into()),
            })
        );
        // No region in the providerID, or no providerID: the clouds.yaml's region.
        for provider_id in [Some(format!("openstack:///{ID}")), None] {
            assert_eq!(
                server_location("worker-1", provider_id.as_deref())
                    .unwrap()
                    .region,
                None
            );
        }
        assert_eq!(
            server_ref("worker-1", Some(&in_two)),
            Ok(ServerRef::Id(ID.into()))
        );
        assert!(server_location("worker-1", Some("openstack://RegionTwo/junk")).is_err());
    }
}
