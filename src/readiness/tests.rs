use super::*;

const A: &str = "8a2bb0fa-5d1b-4bb4-a2e1-1e49a8e9d3f0";
const B: &str = "9168b536-cd40-4630-b43f-b259807c6e87";
const GONE: &str = "00000000-0000-4000-8000-000000000000";
const TARGET: &str = "Secret nh/cloud (cloud openstack)";

fn node(name: &str, provider_id: Option<String>) -> PoolNode {
    PoolNode {
        name: name.into(),
        provider_id,
    }
}

fn by_id(name: &str, id: &str) -> PoolNode {
    node(name, Some(format!("openstack:///{id}")))
}

fn in_region(name: &str, region: &str, id: &str) -> PoolNode {
    node(name, Some(format!("openstack://{region}/{id}")))
}

fn server(id: &str, name: &str) -> ListedServer {
    ListedServer {
        id: id.into(),
        name: name.into(),
    }
}

fn listed(servers: Vec<ListedServer>) -> Result<Vec<ListedServer>, Failure> {
    Ok(servers)
}

fn read(listings: Vec<(Region, Result<Vec<ListedServer>, Failure>)>) -> CloudProbe {
    CloudProbe {
        target: TARGET.into(),
        access: Ok(CloudRead {
            default_region: Some("RegionOne".into()),
            listings: listings.into_iter().collect(),
            cluster: None,
        }),
    }
}

fn with_cluster(mut probe: CloudProbe, cluster: ClusterRead) -> CloudProbe {
    if let Ok(read) = probe.access.as_mut() {
        read.cluster = Some(cluster);
    }
    probe
}

fn failed(reason: Reason, message: &str) -> CloudProbe {
    CloudProbe {
        target: TARGET.into(),
        access: Err(Failure::new(reason, message)),
    }
}

fn both_servers() -> Vec<ListedServer> {
    vec![server(A, "w-1"), server(B, "w-2")]
}

struct Case {
    name: &'static str,
    nodes: Vec<PoolNode>,
    probes: Vec<CloudProbe>,
    reason: Reason,
    unmapped: &'static [&'static str],
    /// Words the message must contain.
    says: &'static [&'static str],
}

#[test]
fn what_the_condition_says() {
    let pool = || vec![by_id("w-1", A), by_id("w-2", B)];
    let cases = vec![
        Case {
            name: "every node maps to a listed server",
            nodes: pool(),
            probes: vec![read(vec![(None, listed(both_servers()))])],
            reason: Reason::Ready,
            unmapped: &[],
            says: &["every node maps"],
        },
        Case {
            name: "an empty pool with working credentials",
            nodes: vec![],
            probes: vec![read(vec![])],
            reason: Reason::Ready,
            unmapped: &[],
            says: &[],
        },
        Case {
            name: "no OpenStack template",
            nodes: pool(),
            probes: vec![],
            reason: Reason::NoOpenStackTemplate,
            unmapped: &[],
            says: &["nothing to check"],
        },
        Case {
            name: "a providerID naming a server that does not exist",
            nodes: vec![by_id("w-1", A), by_id("w-3", GONE)],
            probes: vec![read(vec![(None, listed(both_servers()))])],
            reason: Reason::NodesUnmapped,
            unmapped: &["w-3"],
            says: &["1 of 2 nodes", "w-3"],
        },
        Case {
            name: "ids compare without case, as Nova's UUIDs do",
            nodes: vec![by_id("w-1", &A.to_uppercase())],
            probes: vec![read(vec![(None, listed(both_servers()))])],
            reason: Reason::Ready,
            unmapped: &[],
            says: &[],
        },
        Case {
            name: "a node without providerID found by its name",
            nodes: vec![node("w-2", None)],
            probes: vec![read(vec![(None, listed(both_servers()))])],
            reason: Reason::Ready,
            unmapped: &[],
            says: &[],
        },
        Case {
            name: "a node without providerID and no server of its name",
            nodes: vec![node("w-9", None)],
            probes: vec![read(vec![(None, listed(both_servers()))])],
            reason: Reason::NodesUnmapped,
            unmapped: &["w-9"],
            says: &["w-9"],
        },
        Case {
            name: "two servers of the node's name are no mapping",
            nodes: vec![node("w-1", None)],
            probes: vec![read(vec![(
                None,
                listed(vec![server(A, "w-1"), server(B, "w-1")]),
            )])],
            reason: Reason::NodesUnmapped,
            unmapped: &["w-1"],
            says: &[],
        },
        Case {
            name: "a providerID that is not OpenStack's",
            nodes: vec![node("w-1", Some("aws:///zone/i-1".into()))],
            probes: vec![read(vec![])],
            reason: Reason::NodesUnmapped,
            unmapped: &["w-1"],
            says: &[],
        },
        Case {
            name: "a region the catalog lacks leaves its nodes unmapped",
            nodes: vec![by_id("w-1", A), in_region("w-2", "RegionNowhere", B)],
            probes: vec![read(vec![
                (None, listed(both_servers())),
                (
                    Some("RegionNowhere".into()),
                    Err(Failure::new(
                        Reason::EndpointMissing,
                        "no compute endpoint in region RegionNowhere",
                    )),
                ),
            ])],
            reason: Reason::EndpointMissing,
            unmapped: &["w-2"],
            says: &["region RegionNowhere", "1 nodes are there"],
        },
        Case {
            name: "a server in another region than the providerID's is unmapped",
            nodes: vec![in_region("w-2", "RegionTwo", B)],
            probes: vec![read(vec![(
                Some("RegionTwo".into()),
                listed(vec![server(A, "w-1")]),
            )])],
            reason: Reason::NodesUnmapped,
            unmapped: &["w-2"],
            says: &[],
        },
        Case {
            name: "credentials Keystone refuses",
            nodes: pool(),
            probes: vec![read(vec![(
                None,
                Err(Failure::new(Reason::AuthFailed, "keystone auth: 401")),
            )])],
            reason: Reason::AuthFailed,
            // Nothing is known of the nodes: they are not called unmapped.
            unmapped: &[],
            says: &["keystone auth: 401", "2 nodes are there"],
        },
        Case {
            name: "a missing Secret comes before everything else",
            nodes: vec![by_id("w-3", GONE)],
            probes: vec![
                read(vec![(None, listed(both_servers()))]),
                failed(Reason::SecretMissing, "Secret nh/other not found"),
            ],
            reason: Reason::SecretMissing,
            unmapped: &["w-3"],
            says: &["Secret nh/other not found", "w-3"],
        },
        Case {
            name: "an unparsable clouds.yaml",
            nodes: pool(),
            probes: vec![failed(Reason::SecretInvalid, "no cloud named openstack")],
            reason: Reason::SecretInvalid,
            unmapped: &[],
            says: &["no cloud named openstack"],
        },
        Case {
            name: "a template that cannot be read",
            nodes: pool(),
            probes: vec![failed(Reason::TemplateMissing, "nh/power-cycle not found")],
            reason: Reason::TemplateMissing,
            unmapped: &[],
            says: &["power-cycle"],
        },
        Case {
            name: "a Magnum cluster that does not exist",
            nodes: pool(),
            probes: vec![with_cluster(
                read(vec![(None, listed(both_servers()))]),
                ClusterRead::Missing {
                    cluster: "k8s".into(),
                },
            )],
            reason: Reason::ClusterMissing,
            unmapped: &[],
            says: &["no cluster \"k8s\""],
        },
        Case {
            name: "Magnum unreachable",
            nodes: pool(),
            probes: vec![with_cluster(
                read(vec![(None, listed(both_servers()))]),
                ClusterRead::Failed(Failure::new(Reason::CloudUnreachable, "magnum 503")),
            )],
            reason: Reason::CloudUnreachable,
            unmapped: &[],
            says: &["magnum 503"],
        },
        Case {
            name: "a node must map in every cloud of the escalation",
            nodes: pool(),
            probes: vec![
                read(vec![(None, listed(both_servers()))]),
                read(vec![(None, listed(vec![server(A, "w-1")]))]),
            ],
            reason: Reason::NodesUnmapped,
            unmapped: &["w-2"],
            says: &[],
        },
    ];
    for case in cases {
        let verdict = assess(&case.nodes, &case.probes);
        assert_eq!(verdict.reason, case.reason, "{}: {verdict:#?}", case.name);
        assert_eq!(verdict.is_ready(), case.reason.is_ready(), "{}", case.name);
        let unmapped: Vec<&str> = verdict.unmapped.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(unmapped, case.unmapped, "{}", case.name);
        let message = verdict.message();
        for word in case.says {
            assert!(message.contains(word), "{}: {message}", case.name);
        }
        assert_eq!(
            verdict.problems.is_empty(),
            verdict.is_ready(),
            "{}: a problem for each unready verdict, none otherwise",
            case.name
        );
    }
}

#[test]
fn regions_are_listed_once_each() {
    let nodes = vec![
        by_id("a", A),
        node("b", None),
        in_region("c", "RegionTwo", B),
        in_region("d", "RegionTwo", A),
        node("e", Some("kind://docker/kind/e".into())),
    ];
    assert_eq!(
        regions(&nodes),
        [None, Some("RegionTwo".to_string())].into_iter().collect()
    );
}

#[test]
fn the_message_names_the_first_problems_and_counts_the_rest() {
    let probes: Vec<CloudProbe> = (0..8)
        .map(|i| failed(Reason::SecretMissing, &format!("Secret nh/s{i} not found")))
        .collect();
    let verdict = assess(&[], &probes);
    let message = verdict.message();
    assert!(
        message.contains("nh/s0") && message.contains("nh/s4"),
        "{message}"
    );
    assert!(!message.contains("nh/s5"), "{message}");
    assert!(message.ends_with("and 3 more problems"), "{message}");
}

#[test]
fn cloud_errors_have_their_reasons() {
    let auth = CloudError::Auth {
        service: "keystone",
        operation: "auth",
        status: Some(401),
        message: "refused".into(),
    };
    assert_eq!(Reason::of_cloud_error(&auth), Reason::AuthFailed);
    let down = CloudError::Unavailable {
        service: "nova",
        operation: "server_list",
        status: None,
        outcome_unknown: false,
        detail: "connection refused".into(),
    };
    assert_eq!(Reason::of_cloud_error(&down), Reason::CloudUnreachable);
    assert_eq!(
        Reason::of_cloud_error(&CloudError::EndpointMissing("x".into())),
        Reason::EndpointMissing
    );
    assert_eq!(
        Reason::of_cloud_error(&CloudError::Config("x".into())),
        Reason::SecretInvalid
    );
    let f = Failure::cloud(TARGET, &auth);
    assert!(f.message.starts_with(TARGET) && f.message.contains("refused"));
    // Every reason has its own name, and only Ready and NoOpenStackTemplate are ready.
    let names: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), Reason::ALL.len());
    let ready: Vec<Reason> = Reason::ALL.into_iter().filter(|r| r.is_ready()).collect();
    assert_eq!(ready, [Reason::Ready, Reason::NoOpenStackTemplate]);
}
