//! The OpenStack client against the OpenStack simulator (`e2e/openstack-sim`): both auth
//! methods, token reuse and re-authentication, every Nova and Magnum call, the error mapping,
//! what is retried and what never is, timeouts, and that no secret reaches an error.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodehealer::metrics::{self, Metrics};
use nodehealer::openstack::{
    ClientOptions, Cloud, CloudError, DeletionEvidence, HealthStatus, OpenStackClient, RebootType,
    Server, ServerRef, health_report, resolve,
};
use openstack_sim::{
    Fault, FaultKind, LoggedRequest, NewCluster, NewNodeGroup, NewServer, Service, Sim, SimConfig,
};

const PASSWORD: &str = "correct-horse-battery-staple";
const APP_SECRET: &str = "app-cred-secret-9f8e7d";
const USER: &str = "nodehealer";
const PROJECT: &str = "k8s-infra";
const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
const NEW_IMAGE: &str = "a2459075-d96c-40d5-893e-577ff92e721c";
/// Every wait for a simulated transition ends after this long.
const WAIT: Duration = Duration::from_secs(10);

struct Env {
    sim: Sim,
    user_id: String,
}

async fn env_with(config: SimConfig) -> Env {
    let sim = Sim::new(config);
    sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let project_id = sim.add_project(PROJECT, "Default");
    let user_id = sim.add_user(USER, PASSWORD, "Default", &project_id);
    Env { sim, user_id }
}

async fn env() -> Env {
    env_with(SimConfig {
        transition_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
}

/// Fast retries so the suite stays quick; the limits are what the tests count.
fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        max_attempts: 4,
        ..ClientOptions::default()
    }
}

impl Env {
    fn password_yaml(&self, password: &str) -> String {
        format!(
            "clouds:\n  sim:\n    auth:\n      auth_url: {}\n      username: {USER}\n      \
             password: \"{password}\"\n      project_name: {PROJECT}\n      user_domain_name: \
             Default\n      project_domain_name: Default\n    region_name: RegionOne\n",
            self.sim.auth_url()
        )
    }

    fn client_with(&self, yaml: &str, options: ClientOptions) -> (OpenStackClient, Metrics) {
        let metrics = Metrics::default();
        let client =
            OpenStackClient::from_clouds_yaml(yaml, "sim", None, options, metrics.clone()).unwrap();
        (client, metrics)
    }

    fn client(&self) -> OpenStackClient {
        self.client_with(&self.password_yaml(PASSWORD), options()).0
    }

    fn server(&self, name: &str) -> String {
        self.sim.create_server(NewServer {
            name: name.into(),
            image_id: IMAGE.into(),
            flavor_id: "m1.small".into(),
            ..Default::default()
        })
    }

    fn requests(&self, keep: impl Fn(&LoggedRequest) -> bool) -> Vec<LoggedRequest> {
        self.sim.request_log().into_iter().filter(keep).collect()
    }

    fn token_requests(&self) -> usize {
        self.requests(|r| {
            r.service == Service::Keystone && r.method == "POST" && r.path.ends_with("/auth/tokens")
        })
        .len()
    }
}

/// Polls the server through the client until `done` holds.
async fn wait_for(cloud: &dyn Cloud, id: &str, what: &str, done: impl Fn(Option<&Server>) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let server = cloud.server(id).await.unwrap();
        if done(server.as_ref()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server {id} not {what} within {WAIT:?}: {server:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn expect_err<T: std::fmt::Debug>(
    f: impl Future<Output = Result<T, CloudError>>,
) -> CloudError {
    f.await.expect_err("an error was expected")
}

#[tokio::test]
async fn password_auth_and_every_nova_call() {
    let env = env().await;
    let id = env.server("k8s-worker-0");
    let cloud: Arc<dyn Cloud> = Arc::new(env.client());

    let s = cloud.server(&id).await.unwrap().expect("the server exists");
    assert_eq!(s.name, "k8s-worker-0");
    assert!(s.is_active(), "{s:?}");
    assert_eq!(s.image_id.as_deref(), Some(IMAGE));
    assert!(s.updated.is_some());

    let by_name = cloud.server_by_name("k8s-worker-0").await.unwrap();
    assert_eq!(by_name.map(|s| s.id), Some(id.clone()));
    let via_ref = resolve(cloud.as_ref(), &ServerRef::Id(id.clone()))
        .await
        .unwrap();
    assert_eq!(via_ref.map(|s| s.id), Some(id.clone()));

    cloud.stop(&id).await.unwrap();
    wait_for(cloud.as_ref(), &id, "off", |s| {
        s.is_some_and(Server::is_off)
    })
    .await;
    assert!(!env.sim.server(&id).unwrap().running);

    cloud.start(&id).await.unwrap();
    wait_for(cloud.as_ref(), &id, "active", |s| {
        s.is_some_and(Server::is_active)
    })
    .await;

    cloud.reboot(&id, RebootType::Soft).await.unwrap();
    wait_for(cloud.as_ref(), &id, "active", |s| {
        s.is_some_and(Server::is_active)
    })
    .await;
    cloud.reboot(&id, RebootType::Hard).await.unwrap();
    wait_for(cloud.as_ref(), &id, "active", |s| {
        s.is_some_and(Server::is_active)
    })
    .await;

    cloud.rebuild(&id, NEW_IMAGE).await.unwrap();
    wait_for(cloud.as_ref(), &id, "rebuilt", |s| {
        s.is_some_and(|s| s.is_active() && s.image_id.as_deref() == Some(NEW_IMAGE))
    })
    .await;

    let view = env.sim.server(&id).unwrap();
    assert_eq!(
        (
            view.stops,
            view.starts,
            view.soft_reboots,
            view.hard_reboots,
            view.rebuilds
        ),
        (1, 1, 1, 1, 1)
    );

    // Someone shelves it: Nova offloads it, and only unshelve boots it again.
    env.sim.shelve_server(&id).unwrap();
    wait_for(cloud.as_ref(), &id, "shelved", |s| {
        s.is_some_and(|s| s.status == "SHELVED_OFFLOADED" && s.task_state.is_none())
    })
    .await;
    assert!(
        expect_err(cloud.start(&id))
            .await
            .to_string()
            .contains("HTTP 409")
    );
    cloud.unshelve(&id).await.unwrap();
    wait_for(cloud.as_ref(), &id, "unshelved", |s| {
        s.is_some_and(Server::is_active)
    })
    .await;
    assert_eq!(env.sim.server(&id).unwrap().unshelves, 1);

    cloud.delete(&id).await.unwrap();
    wait_for(cloud.as_ref(), &id, "gone", |s| s.is_none()).await;

    // Each action was sent exactly once, with the body Nova expects.
    let actions: Vec<String> = env
        .requests(|r| r.action.is_some() && r.service == Service::Nova)
        .into_iter()
        .map(|r| format!("{} {}", r.action.unwrap(), r.status))
        .collect();
    assert_eq!(
        actions,
        [
            "os-stop 202",
            "os-start 202",
            "reboot 202",
            "reboot 202",
            "rebuild 202",
            "os-start 409",
            "unshelve 202"
        ]
    );
    let deletes = env.requests(|r| r.method == "DELETE" && r.service == Service::Nova);
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].status, 204);
}

#[tokio::test]
async fn not_found_is_none_and_wrong_state_is_a_conflict() {
    let env = env().await;
    let id = env.server("worker");
    let cloud = env.client();

    let missing = "00000000-0000-4000-8000-000000000000";
    assert_eq!(cloud.server(missing).await.unwrap(), None);
    assert_eq!(cloud.server_by_name("no-such-node").await.unwrap(), None);
    let e = expect_err(cloud.stop(missing)).await;
    assert!(e.is_not_found(), "{e}");

    // Starting a running server: Nova refuses with 409, which the client does not resend.
    let e = expect_err(cloud.start(&id)).await;
    let CloudError::Conflict {
        service, operation, ..
    } = &e
    else {
        panic!("409 expected, got {e:?}");
    };
    assert_eq!((*service, *operation), ("nova", "server_start"));
    assert!(e.to_string().contains("HTTP 409"), "{e}");
    assert!(e.retryable() && !e.outcome_unknown());
    assert_eq!(e.category(), "CloudConflict");
    assert_eq!(
        env.requests(|r| r.action.as_deref() == Some("os-start"))
            .len(),
        1
    );
}

#[tokio::test]
async fn names_match_exactly_and_ambiguity_is_an_error() {
    let env = env().await;
    let dotted = env.server("node.1");
    env.server("nodeX1"); // would match an unescaped `node.1`
    env.server("node.10"); // would match an unanchored one
    env.server("twin");
    env.server("twin");
    let cloud = env.client();

    let found = cloud.server_by_name("node.1").await.unwrap();
    assert_eq!(found.map(|s| s.id), Some(dotted));
    let e = expect_err(cloud.server_by_name("twin")).await;
    assert!(matches!(e, CloudError::Ambiguous { count: 2, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "server name \"twin\" is ambiguous: 2 match it exactly"
    );
}

#[tokio::test]
async fn application_credentials_by_id_and_by_name() {
    let env = env().await;
    let id = env.server("worker");
    let cred_id = env
        .sim
        .add_application_credential(&env.user_id, "healer", APP_SECRET);
    let auth_url = env.sim.auth_url();
    let by_id = format!(
        "clouds:\n  sim:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: \
         {auth_url}\n      application_credential_id: {cred_id}\n      \
         application_credential_secret: \"{APP_SECRET}\"\n"
    );
    let by_name = format!(
        "clouds:\n  sim:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: \
         {auth_url}\n      application_credential_name: healer\n      username: {USER}\n      \
         user_domain_name: Default\n      application_credential_secret: \"{APP_SECRET}\"\n"
    );
    for yaml in [by_id, by_name] {
        let (cloud, _) = env.client_with(&yaml, options());
        let s = cloud.server(&id).await.unwrap();
        assert_eq!(s.map(|s| s.id), Some(id.clone()));
    }
    assert_eq!(env.token_requests(), 2);

    let wrong = format!(
        "clouds:\n  sim:\n    auth:\n      auth_url: {auth_url}\n      \
         application_credential_id: {cred_id}\n      application_credential_secret: \"nope-{APP_SECRET}\"\n"
    );
    let (cloud, _) = env.client_with(&wrong, options());
    let e = expect_err(cloud.server(&id)).await;
    assert!(
        matches!(
            e,
            CloudError::Auth {
                status: Some(401),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("application_credential credentials"),
        "{e}"
    );
    assert!(!e.to_string().contains(APP_SECRET), "{e}");
}

#[tokio::test]
async fn one_token_serves_concurrent_callers() {
    let env = env().await;
    let ids: Vec<String> = (0..8).map(|i| env.server(&format!("worker-{i}"))).collect();
    let (client, metrics) = env.client_with(&env.password_yaml(PASSWORD), options());
    let cloud: Arc<dyn Cloud> = Arc::new(client);

    // Eight reconciles at once on a cold client: one token request, not eight.
    let calls = ids.iter().map(|id| {
        let cloud = cloud.clone();
        let id = id.clone();
        tokio::spawn(async move { cloud.server(&id).await })
    });
    for result in futures::future::join_all(calls).await {
        assert!(result.unwrap().unwrap().is_some());
    }
    for id in &ids {
        cloud.server(id).await.unwrap();
    }
    assert_eq!(env.token_requests(), 1);
    assert_eq!(
        metrics.openstack_requests_count("keystone", "auth", "ok"),
        1
    );
    assert_eq!(
        metrics.openstack_requests_count("nova", "server_show", "ok"),
        16
    );
}

#[tokio::test]
async fn tokens_are_renewed_before_expiry_and_after_a_401() {
    let env = env_with(SimConfig {
        token_ttl: Duration::from_secs(2),
        transition_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let id = env.server("worker");
    let cloud = env.client();

    cloud.server(&id).await.unwrap();
    cloud.server(&id).await.unwrap();
    assert_eq!(env.token_requests(), 1, "reused while fresh");
    // A 2 s token is replaced after half its life, before Nova would refuse it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cloud.server(&id).await.unwrap();
    assert_eq!(env.token_requests(), 2);
    assert!(
        env.requests(|r| r.service == Service::Nova && r.status == 401)
            .is_empty(),
        "no request went out with a stale token"
    );

    // Keystone revokes the token early: Nova answers 401, the client gets a new token once
    // and sends the same request again — for an action too, since Nova never saw it.
    env.sim.expire_tokens();
    cloud.stop(&id).await.unwrap();
    assert_eq!(env.token_requests(), 3);
    let stops: Vec<u16> = env
        .requests(|r| r.action.as_deref() == Some("os-stop"))
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(stops, [401, 202]);
    assert_eq!(env.sim.server(&id).unwrap().stops, 1);
}

#[tokio::test]
async fn reads_retry_through_a_503_burst() {
    let env = env().await;
    let id = env.server("worker");
    let (cloud, metrics) = env.client_with(&env.password_yaml(PASSWORD), options());
    cloud.server(&id).await.unwrap(); // authenticated; the log below is Nova only
    env.sim.clear_request_log();

    env.sim.add_fault(Fault {
        service: Service::Nova,
        kind: FaultKind::Error { status: 503 },
        path_contains: None,
        remaining: Some(2),
    });
    let s = cloud.server(&id).await.unwrap();
    assert!(s.is_some());
    let statuses: Vec<u16> = env
        .requests(|r| r.service == Service::Nova)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(
        metrics.openstack_requests_count("nova", "server_show", "server_error"),
        2
    );

    // A longer outage than the attempts allow: Unavailable, saying how often it tried.
    env.sim
        .add_fault(Fault::error(Service::Nova, 503).times(10));
    let e = expect_err(cloud.server(&id)).await;
    assert!(
        matches!(
            e,
            CloudError::Unavailable {
                status: Some(503),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.retryable());
    assert!(e.to_string().contains("after 4 attempts"), "{e}");
}

#[tokio::test]
async fn an_action_is_never_resent_after_a_503() {
    let env = env().await;
    let id = env.server("worker");
    let cloud = env.client();
    cloud.server(&id).await.unwrap();

    env.sim
        .add_fault(Fault::error(Service::Nova, 503).on_path("/action").times(1));
    let e = expect_err(cloud.stop(&id)).await;
    assert!(
        matches!(
            e,
            CloudError::Unavailable {
                status: Some(503),
                outcome_unknown: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.outcome_unknown(),
        "the step machine must look before resending"
    );
    let stops = env.requests(|r| r.action.as_deref() == Some("os-stop"));
    assert_eq!(
        stops.len(),
        1,
        "exactly one os-stop left the client: {stops:?}"
    );

    // The same for Magnum's resize and PATCH.
    let uuid = env.sim.create_cluster(cluster_spec());
    let ng = env.sim.cluster(&uuid).unwrap().nodegroups[1].clone();
    env.sim.add_fault(
        Fault::error(Service::Magnum, 500)
            .on_path("/actions/resize")
            .times(1),
    );
    let e = expect_err(cloud.resize(&uuid, &ng.name, ng.node_count, &ng.servers[..1])).await;
    assert!(e.outcome_unknown(), "{e:?}");
    assert_eq!(
        env.requests(|r| r.action.as_deref() == Some("resize"))
            .len(),
        1
    );
}

#[tokio::test]
async fn timeouts_end_hung_calls() {
    let env = env().await;
    let id = env.server("worker");
    let options = ClientOptions {
        timeout: Duration::from_millis(300),
        ..options()
    };
    let (cloud, metrics) = env.client_with(&env.password_yaml(PASSWORD), options);
    cloud.server(&id).await.unwrap();
    env.sim.clear_request_log();

    // One hung read: it times out, the retry gets through.
    env.sim.add_fault(Fault {
        service: Service::Nova,
        kind: FaultKind::Hang,
        path_contains: Some(format!("/servers/{id}")),
        remaining: Some(1),
    });
    let started = Instant::now();
    assert!(cloud.server(&id).await.unwrap().is_some());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.requests(|r| r.method == "GET").len(), 2);
    assert_eq!(
        metrics.openstack_requests_count("nova", "server_show", "timeout"),
        1
    );

    // A hung action: it may have reached Nova, so it is not resent.
    env.sim.add_fault(Fault {
        service: Service::Nova,
        kind: FaultKind::Hang,
        path_contains: Some("/action".into()),
        remaining: Some(1),
    });
    let e = expect_err(cloud.reboot(&id, RebootType::Hard)).await;
    assert!(
        matches!(
            e,
            CloudError::Unavailable {
                status: None,
                outcome_unknown: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("no answer within 300ms"), "{e}");
    assert_eq!(
        env.requests(|r| r.action.as_deref() == Some("reboot"))
            .len(),
        1
    );

    // A slow Magnum: every attempt times out, the call ends with Unavailable.
    let uuid = env.sim.create_cluster(cluster_spec());
    env.sim.add_fault(Fault {
        service: Service::Magnum,
        kind: FaultKind::Latency { ms: 1000 },
        path_contains: None,
        remaining: None,
    });
    let e = expect_err(cloud.cluster(&uuid)).await;
    assert!(matches!(e, CloudError::Unavailable { .. }), "{e:?}");
    assert_eq!(
        metrics.openstack_requests_count("magnum", "cluster_show", "timeout"),
        4
    );
}

#[tokio::test]
async fn keystone_down_or_unreachable_or_refusing() {
    let env = env().await;
    let id = env.server("worker");

    env.sim.add_fault(Fault::keystone_down());
    let (cloud, metrics) = env.client_with(&env.password_yaml(PASSWORD), options());
    let e = expect_err(cloud.server(&id)).await;
    assert!(
        matches!(
            e,
            CloudError::Unavailable {
                service: "keystone",
                operation: "auth",
                status: Some(503),
                ..
            }
        ),
        "{e:?}"
    );
    let message = e.to_string();
    assert!(
        message.starts_with("keystone auth: unavailable (HTTP 503): Keystone at http://"),
        "{message}"
    );
    assert!(message.contains("after 4 attempts"), "{message}");
    assert_eq!(env.token_requests(), 4, "the token request is retried");
    assert_eq!(
        metrics.openstack_requests_count("keystone", "auth", "server_error"),
        4
    );
    assert!(env.requests(|r| r.service == Service::Nova).is_empty());
    env.sim.clear_faults();
    assert!(
        cloud.server(&id).await.unwrap().is_some(),
        "recovers when Keystone is back"
    );

    // Nothing listens at the auth_url.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let yaml = env.password_yaml(PASSWORD).replace(
        &env.sim.auth_url(),
        &format!("http://127.0.0.1:{port}/identity/v3"),
    );
    let (cloud, metrics) = env.client_with(&yaml, options());
    let e = expect_err(cloud.server(&id)).await;
    assert!(
        matches!(
            e,
            CloudError::Unavailable {
                service: "keystone",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert_eq!(
        metrics.openstack_requests_count("keystone", "auth", "connect_error"),
        4
    );

    // Wrong password: refused at once, never retried.
    let before = env.token_requests();
    let wrong = format!("not-{PASSWORD}");
    let (cloud, _) = env.client_with(&env.password_yaml(&wrong), options());
    let e = expect_err(cloud.server(&id)).await;
    assert!(
        matches!(
            e,
            CloudError::Auth {
                status: Some(401),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.category(), "CloudAuthFailed");
    assert!(!e.retryable());
    assert_eq!(env.token_requests(), before + 1);
    assert!(!e.to_string().contains(PASSWORD), "{e}");

    // An auth_url without Keystone behind it.
    let yaml = env.password_yaml(PASSWORD).replace(
        &env.sim.auth_url(),
        &format!("{}/nothing", env.sim.base_url()),
    );
    let (cloud, _) = env.client_with(&yaml, options());
    let e = expect_err(cloud.server(&id)).await;
    assert!(matches!(e, CloudError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("no Keystone v3 token API"), "{e}");
}

#[tokio::test]
async fn region_and_interface_select_the_endpoint() {
    let env = env().await;
    let id = env.server("worker");
    let internal = env.password_yaml(PASSWORD).replace(
        "region_name: RegionOne",
        "region_name: RegionOne\n    interface: internal",
    );
    let (cloud, _) = env.client_with(&internal, options());
    assert!(cloud.server(&id).await.unwrap().is_some());

    let elsewhere = env
        .password_yaml(PASSWORD)
        .replace("region_name: RegionOne", "region_name: RegionNine");
    let (cloud, _) = env.client_with(&elsewhere, options());
    let e = expect_err(cloud.server(&id)).await;
    assert!(
        e.to_string()
            .contains("no public compute endpoint in region RegionNine (it has: admin in RegionOne, internal in RegionOne, public in RegionOne)"),
        "{e}"
    );
    assert_eq!(e.category(), "CloudEndpointMissing");
    assert!(!e.retryable());
}

const TWO: &str = "RegionTwo";

async fn two_regions() -> Env {
    env_with(SimConfig {
        extra_regions: vec![TWO.into()],
        transition_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
}

impl Env {
    /// A client whose clouds.yaml says RegionOne, for the region a node's providerID names.
    fn client_in(&self, region: &str) -> OpenStackClient {
        OpenStackClient::from_clouds_yaml_in_region(
            &self.password_yaml(PASSWORD),
            "sim",
            None,
            region,
            options(),
            Metrics::default(),
        )
        .unwrap()
    }
}

/// The providerID's region wins over the clouds.yaml's `region_name`: the server is where
/// the cloud provider found it, and one Keystone serves every region.
#[tokio::test]
async fn a_provider_id_region_selects_that_regions_nova_over_region_name() {
    let env = two_regions().await;
    let one = env.server("worker-one");
    let two = env.sim.create_server(NewServer {
        name: "worker-two".into(),
        image_id: IMAGE.into(),
        flavor_id: "m1.small".into(),
        region: Some(TWO.into()),
        ..Default::default()
    });
    let in_two = env.client_in(TWO);
    assert_eq!(in_two.region(), Some(TWO));
    let default = env.client();
    assert_eq!(default.region(), Some("RegionOne"));

    assert_eq!(
        in_two.server(&two).await.unwrap().map(|s| s.name),
        Some("worker-two".to_string())
    );
    assert_eq!(
        default.server(&two).await.unwrap(),
        None,
        "not in RegionOne"
    );
    // A server of RegionOne asked for in RegionTwo is a 404 there, and no deletion of it is
    // on record there: the wrong region proves nothing.
    assert_eq!(in_two.server(&one).await.unwrap(), None);
    assert_eq!(
        in_two.deletion_evidence(&one).await.unwrap(),
        DeletionEvidence::UnknownServer
    );
    assert!(default.server(&one).await.unwrap().is_some());

    in_two.stop(&two).await.unwrap();
    wait_for(&in_two, &two, "off", |s| s.is_some_and(Server::is_off)).await;
    let stops = env.requests(|r| r.action.as_deref() == Some("os-stop"));
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].region.as_deref(), Some(TWO));
    assert!(
        stops[0]
            .path
            .starts_with("/regions/RegionTwo/compute/v2.1/"),
        "{}",
        stops[0].path
    );
    assert!(
        env.sim.server(&one).unwrap().running,
        "RegionOne's server untouched"
    );
}

#[tokio::test]
async fn a_region_missing_from_the_catalog_fails_every_call_clearly() {
    let env = two_regions().await;
    let id = env.server("worker");
    let nowhere = env.client_in("RegionNine");
    for e in [
        expect_err(nowhere.server(&id)).await,
        expect_err(nowhere.stop(&id)).await,
        expect_err(nowhere.deletion_evidence(&id)).await,
    ] {
        let CloudError::EndpointMissing(message) = &e else {
            panic!("EndpointMissing expected, got {e:?}");
        };
        assert_eq!(
            message,
            "the Keystone catalog has no public compute endpoint in region RegionNine (it has: \
             admin in RegionOne, admin in RegionTwo, internal in RegionOne, internal in \
             RegionTwo, public in RegionOne, public in RegionTwo); the region is the one the \
             node's providerID names (cloud sim has region_name RegionOne)"
        );
        assert_eq!(e.category(), "CloudEndpointMissing");
        assert!(!e.retryable() && !e.outcome_unknown());
    }
    assert!(
        env.requests(|r| r.service == Service::Nova).is_empty(),
        "nothing was sent to a Nova"
    );
}

#[tokio::test]
async fn deletion_evidence_from_novas_instance_actions() {
    let env = env().await;
    let cloud = env.client();

    // The compute host carried the delete out.
    let by_host = env.server("by-host");
    cloud.delete(&by_host).await.unwrap();
    wait_for(&cloud, &by_host, "gone", |s| s.is_none()).await;
    assert_eq!(
        cloud.deletion_evidence(&by_host).await.unwrap(),
        DeletionEvidence::ComputeTerminated
    );

    // Its compute service is down: nova-api deletes it in its database, 404 at once, and
    // records no delete; the guest may still run.
    let local = env.server("local");
    env.sim.host_down(&local);
    cloud.delete(&local).await.unwrap();
    assert_eq!(cloud.server(&local).await.unwrap(), None, "gone at once");
    assert_eq!(
        cloud.deletion_evidence(&local).await.unwrap(),
        DeletionEvidence::NoDelete
    );

    // Never known to this Nova, or another project's.
    let other = env.sim.add_project("other", "Default");
    let theirs = env.sim.create_server(NewServer {
        name: "theirs".into(),
        project_id: Some(other),
        ..Default::default()
    });
    for unknown in ["00000000-0000-4000-8000-000000000000", theirs.as_str()] {
        assert_eq!(
            cloud.deletion_evidence(unknown).await.unwrap(),
            DeletionEvidence::UnknownServer,
            "{unknown}"
        );
    }

    // Instance actions are read at 2.51, everything else at 2.1; the version document was
    // read once, before the first call.
    let nova = env.requests(|r| r.service == Service::Nova);
    assert!(
        nova.iter()
            .any(|r| r.path.contains("/os-instance-actions/"))
    );
    let (documents, calls): (Vec<_>, Vec<_>) =
        nova.into_iter().partition(|r| r.path == "/compute/v2.1/");
    assert_eq!(documents.len(), 1, "one version document per endpoint");
    for r in calls {
        let want = if r.path.contains("/os-instance-actions") {
            "compute 2.51"
        } else {
            "compute 2.1"
        };
        assert_eq!(
            r.api_version.as_deref(),
            Some(want),
            "{} {}",
            r.method,
            r.path
        );
    }
}

#[tokio::test]
async fn a_delete_the_compute_host_failed_or_never_finished_is_no_evidence() {
    // Transitions never finish on their own here: each state is set up by hand.
    let env = env_with(SimConfig {
        transition_delay: Duration::from_secs(600),
        ..SimConfig::default()
    })
    .await;
    let cloud = env.client();

    // The host failed the delete (ERROR), then died; the next delete was local.
    let failed = env.server("failed");
    cloud.delete(&failed).await.unwrap();
    env.sim.set_server_error(&failed);
    env.sim.host_down(&failed);
    cloud.delete(&failed).await.unwrap();
    assert_eq!(cloud.server(&failed).await.unwrap(), None);
    assert_eq!(
        cloud.deletion_evidence(&failed).await.unwrap(),
        DeletionEvidence::NotByCompute
    );

    // The host took the delete on and died before finishing; the next delete was local.
    let unfinished = env.server("unfinished");
    cloud.delete(&unfinished).await.unwrap();
    env.sim.host_down(&unfinished);
    cloud.delete(&unfinished).await.unwrap();
    assert_eq!(cloud.server(&unfinished).await.unwrap(), None);
    assert_eq!(
        cloud.deletion_evidence(&unfinished).await.unwrap(),
        DeletionEvidence::Terminating
    );
}

#[tokio::test]
async fn a_nova_older_than_2_51_is_refused_clearly() {
    let env = env_with(SimConfig {
        nova_max_minor: 50,
        transition_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let id = env.server("worker");
    let cloud = env.client();
    assert!(
        cloud.server(&id).await.unwrap().is_some(),
        "2.1 still works"
    );
    let e = expect_err(cloud.deletion_evidence(&id)).await;
    let CloudError::Unsupported {
        operation, message, ..
    } = &e
    else {
        panic!("Unsupported expected, got {e:?}");
    };
    assert_eq!(*operation, "server_actions_list");
    // Told apart from the version document: the message says what the cloud serves.
    assert!(message.contains("needs compute 2.51"), "{message}");
    assert!(message.contains("serves compute 2.1 to 2.50"), "{message}");
    assert_eq!(e.category(), "CloudFeatureUnsupported");
    assert!(!e.retryable());
    assert!(
        env.requests(|r| r.path.contains("os-instance-actions"))
            .is_empty(),
        "nothing is sent that the cloud would refuse"
    );
    assert!(env.requests(|r| r.status == 406).is_empty());
}

/// A Nova whose version document cannot be read: each call goes at the version it needs, and
/// a 406 says the rest.
#[tokio::test]
async fn without_a_version_document_the_needed_version_is_sent() {
    let env = env_with(SimConfig {
        nova_max_minor: 50,
        transition_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    // The first Nova request is for the version document: it fails.
    env.sim.add_fault(Fault {
        remaining: Some(1),
        ..Fault::error(Service::Nova, 500)
    });
    let id = env.server("worker");
    let cloud = env.client();
    assert!(cloud.server(&id).await.unwrap().is_some());
    let first = &env.requests(|r| r.service == Service::Nova)[0];
    assert_eq!((first.path.as_str(), first.status), ("/compute/v2.1/", 500));
    let e = expect_err(cloud.deletion_evidence(&id)).await;
    let CloudError::Unsupported { message, .. } = &e else {
        panic!("Unsupported expected, got {e:?}");
    };
    assert!(message.contains("does not serve compute 2.51"), "{message}");
    assert!(message.contains("maximum is 2.50"), "{message}");
}

fn cluster_spec() -> NewCluster {
    NewCluster {
        name: "k8s".into(),
        labels: BTreeMap::from([("auto_healing_enabled".to_string(), "true".to_string())]),
        nodegroups: vec![
            NewNodeGroup {
                name: "default-master".into(),
                role: "master".into(),
                node_count: 1,
                image_id: IMAGE.into(),
                flavor_id: "m1.medium".into(),
            },
            NewNodeGroup {
                name: "default-worker".into(),
                role: "worker".into(),
                node_count: 2,
                image_id: IMAGE.into(),
                flavor_id: "m1.small".into(),
            },
        ],
    }
}

#[tokio::test]
async fn magnum_cluster_nodegroups_resize_and_health() {
    let env = env().await;
    let uuid = env.sim.create_cluster(cluster_spec());
    let cloud = env.client();

    let c = cloud.cluster("k8s").await.unwrap();
    assert_eq!(c.uuid, uuid);
    assert_eq!((c.node_count, c.master_count), (2, 1));
    assert!(c.auto_healing_enabled());
    assert!(c.is_complete() && !c.in_progress());

    let groups = cloud.nodegroups(&uuid).await.unwrap();
    let names: Vec<(&str, &str, u32)> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.role.as_str(), g.node_count))
        .collect();
    assert_eq!(
        names,
        [
            ("default-master", "master", 1),
            ("default-worker", "worker", 2)
        ]
    );
    let missing = expect_err(cloud.cluster("no-such-cluster")).await;
    assert!(missing.is_not_found(), "{missing:?}");

    // Replace one worker: resize with nodes_to_remove, keeping the count.
    let old = env.sim.cluster(&uuid).unwrap().nodegroups[1].servers[0].clone();
    cloud
        .resize(&uuid, "default-worker", 2, std::slice::from_ref(&old))
        .await
        .unwrap();
    assert!(cloud.cluster(&uuid).await.unwrap().in_progress());
    // A second update while the first runs: Magnum says 409, and nothing is resent.
    let e = expect_err(cloud.resize(&uuid, "default-worker", 2, std::slice::from_ref(&old))).await;
    assert!(
        matches!(
            e,
            CloudError::Conflict {
                service: "magnum",
                ..
            }
        ),
        "{e:?}"
    );
    let deadline = Instant::now() + WAIT;
    while cloud.cluster(&uuid).await.unwrap().in_progress() {
        assert!(Instant::now() < deadline, "resize did not finish");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let view = env.sim.cluster(&uuid).unwrap();
    assert_eq!(view.resizes, 1);
    let workers = &view.nodegroups[1].servers;
    assert_eq!(workers.len(), 2);
    assert!(!workers.contains(&old), "the removed server is replaced");
    assert_eq!(cloud.server(&old).await.unwrap(), None);

    // Health, as magnum-auto-healer reports it.
    let now = jiff::Timestamp::now();
    let (status, reason) = health_report(&[("k8s-node-1", "Ready")], false, now);
    cloud.report_health(&uuid, status, &reason).await.unwrap();
    let view = env.sim.cluster(&uuid).unwrap();
    assert_eq!(view.health_status.as_deref(), Some("UNHEALTHY"));
    assert_eq!(view.health_status_reason, reason);
    let c = cloud.cluster(&uuid).await.unwrap();
    assert_eq!(c.health_status.as_deref(), Some("UNHEALTHY"));
    assert_eq!(c.health_status_reason["k8s-node-1.Ready"], "error");

    let (status, reason) = health_report(&[], false, now);
    cloud.report_health(&uuid, status, &reason).await.unwrap();
    assert_eq!(
        env.sim.cluster(&uuid).unwrap().health_status.as_deref(),
        Some(HealthStatus::Healthy.as_str())
    );

    // No action while the cluster is busy: Magnum refuses the PATCH too.
    env.sim.set_cluster_status(&uuid, "UPDATE_IN_PROGRESS");
    let e = expect_err(cloud.report_health(&uuid, status, &reason)).await;
    assert_eq!(e.category(), "CloudConflict");
}

#[tokio::test]
async fn no_secret_in_errors_debug_logs_or_metrics() {
    let env = env().await;
    let id = env.server("worker");
    let mut messages = Vec::new();

    let (cloud, _) = env.client_with(&env.password_yaml(&format!("x{PASSWORD}")), options());
    messages.push(expect_err(cloud.server(&id)).await.to_string());
    messages.push(format!("{cloud:?}"));
    messages.push(format!("{:?}", cloud.config()));

    let (metrics_handle, registry) = Metrics::new();
    let cloud = OpenStackClient::from_clouds_yaml(
        &env.password_yaml(PASSWORD),
        "sim",
        None,
        options(),
        metrics_handle,
    )
    .unwrap();
    messages.push(format!("{cloud:?}"));
    messages.push(format!("{:?}", cloud.config()));
    env.sim
        .add_fault(Fault::error(Service::Nova, 500).times(10));
    messages.push(expect_err(cloud.server(&id)).await.to_string());
    env.sim.clear_faults();
    messages.push(expect_err(cloud.start(&id)).await.to_string());
    env.sim.add_fault(Fault::keystone_down());
    env.sim.expire_tokens();
    messages.push(expect_err(cloud.server(&id)).await.to_string());
    messages.push(metrics::render(&registry));

    for m in &messages {
        assert!(!m.contains(PASSWORD), "{m}");
        // The simulator's tokens look like Fernet tokens.
        assert!(!m.contains("gAAAAAB"), "{m}");
    }
    let rendered = messages.last().unwrap();
    assert!(
        rendered.contains(r#"nodehealer_openstack_requests_total{service="nova",operation="server_show",outcome="server_error"} 4"#),
        "{rendered}"
    );
}

/// Each Magnum call goes at the version it needs (show and PATCH 1.1, resize 1.7, nodegroups
/// 1.9), the PATCH at 1.10 where served (before 1.10 Magnum refuses any PATCH of a cluster
/// without workers); the version document is read once.
#[tokio::test]
async fn magnum_calls_go_at_the_version_they_need() {
    let env = env().await;
    let uuid = env.sim.create_cluster(cluster_spec());
    let cloud = env.client();
    cloud.cluster(&uuid).await.unwrap();
    cloud.nodegroups(&uuid).await.unwrap();
    let (status, reason) = health_report(&[], false, jiff::Timestamp::now());
    cloud.report_health(&uuid, status, &reason).await.unwrap();
    cloud.cluster(&uuid).await.unwrap();
    let magnum = env.requests(|r| r.service == Service::Magnum);
    let seen: Vec<(&str, &str, Option<&str>)> = magnum
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.api_version.as_deref()))
        .collect();
    let cluster = format!("/container-infra/v1/clusters/{uuid}");
    let nodegroups = format!("{cluster}/nodegroups");
    assert_eq!(
        seen,
        [
            ("GET", "/container-infra/", None),
            ("GET", cluster.as_str(), Some("container-infra 1.1")),
            ("GET", nodegroups.as_str(), Some("container-infra 1.9")),
            ("PATCH", cluster.as_str(), Some("container-infra 1.10")),
            ("GET", cluster.as_str(), Some("container-infra 1.1")),
        ]
    );
    // What Magnum stored is the map.
    assert_eq!(env.sim.cluster(&uuid).unwrap().health_status_reason, reason);
}

/// A Magnum older than the nodegroups API: the calls that need it are refused before anything
/// is sent, saying what the cloud serves; the others go at what it serves.
#[tokio::test]
async fn an_older_magnum_is_told_apart_before_anything_is_sent() {
    let env = env_with(SimConfig {
        magnum_max_minor: 8,
        transition_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let uuid = env.sim.create_cluster(cluster_spec());
    let cloud = env.client();
    let e = expect_err(cloud.nodegroups(&uuid)).await;
    let CloudError::Unsupported { message, .. } = &e else {
        panic!("Unsupported expected, got {e:?}");
    };
    assert!(
        message.contains("needs container-infra 1.9") && message.contains("1.1 to 1.8"),
        "{message}"
    );
    assert!(env.requests(|r| r.path.ends_with("/nodegroups")).is_empty());
    let (status, reason) = health_report(&[], false, jiff::Timestamp::now());
    cloud.report_health(&uuid, status, &reason).await.unwrap();
    let patch = env.requests(|r| r.method == "PATCH");
    assert_eq!(patch[0].api_version.as_deref(), Some("container-infra 1.8"));
    assert!(env.requests(|r| r.status == 406).is_empty());
}

/// A policy that hides `OS-EXT-STS:*`: a server being powered off must not read as one with
/// no task (it would look off while the guest still runs); the client says why instead.
#[tokio::test]
async fn a_task_state_hidden_by_policy_is_an_error_not_no_task() {
    let env = env_with(SimConfig {
        hide_extended_status: true,
        transition_delay: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await;
    let id = env.server("worker");
    let cloud = env.client();
    cloud.stop(&id).await.unwrap();
    assert_eq!(
        env.sim.server(&id).unwrap().task_state.as_deref(),
        Some("powering-off")
    );
    let e = expect_err(cloud.server(&id)).await;
    assert!(
        matches!(
            e,
            CloudError::Unsupported {
                operation: "server_show",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("OS-EXT-STS:task_state"), "{e}");
    assert!(!e.retryable());
    let e = expect_err(cloud.server_by_name("worker")).await;
    assert!(matches!(e, CloudError::Unsupported { .. }), "{e:?}");
}

/// A cluster whose default worker nodegroup is empty: Magnum before 1.10 refuses any PATCH of
/// it, so the health report goes at 1.10 (seen on Magnum 21.x: 400 at 1.9, 202 at 1.10).
#[tokio::test]
async fn the_health_of_a_cluster_without_workers_is_reported() {
    let env = env().await;
    let mut spec = cluster_spec();
    spec.nodegroups[1].node_count = 0;
    let uuid = env.sim.create_cluster(spec);
    let cloud = env.client();
    let (status, reason) = health_report(&[], true, jiff::Timestamp::now());
    cloud.report_health(&uuid, status, &reason).await.unwrap();
    let view = env.sim.cluster(&uuid).unwrap();
    assert_eq!(view.health_status.as_deref(), Some("UNHEALTHY"));
    assert_eq!(view.health_status_reason, reason);
}
