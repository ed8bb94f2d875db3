use std::time::{Duration, Instant};

use openstack_sim::{Fault, FaultKind, NewServer, Service};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;
use crate::magnum::cluster_spec;

#[tokio::test]
async fn an_error_fault_answers_in_the_service_shape_for_its_count() {
    let env = env().await;
    let id = env.sim.create_server(NewServer {
        name: "k8s-node-0".into(),
        ..Default::default()
    });
    let token = env.token().await;
    let fault = env.sim.add_fault(
        Fault::error(Service::Nova, 503)
            .on_path("/servers")
            .times(2),
    );
    let auth = [("X-Auth-Token", token.as_str())];
    let get = || env.call(Method::GET, "/compute/v2.1/servers/detail", &auth, None);
    for _ in 0..2 {
        let r = get().await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.body["serviceUnavailable"]["code"], 503);
    }
    assert_eq!(get().await.status, StatusCode::OK, "the fault is used up");
    assert!(env.sim.faults().is_empty());

    let faulted: Vec<_> = env
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.fault.is_some())
        .collect();
    assert_eq!(faulted.len(), 2);
    assert_eq!(
        faulted[0].fault.as_deref(),
        Some(format!("#{fault} error 503").as_str())
    );
    assert_eq!(faulted[0].status, 503);

    // Only matching paths are affected.
    env.sim
        .add_fault(Fault::error(Service::Nova, 500).on_path("/action"));
    assert_eq!(get().await.status, StatusCode::OK);
    let r = env.action(&id, json!({"os-stop": null})).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.body["computeFault"]["code"], 500);
    assert_eq!(
        env.server(&id).stops,
        0,
        "a faulted request never reaches Nova"
    );
    env.sim.clear_faults();
    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn keystone_down_and_magnum_errors() {
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s", 1, 1));
    let token = env.token().await;
    env.sim.add_fault(Fault::keystone_down());
    let r = env.authenticate(&password_auth()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["error"]["code"], 503);
    assert_eq!(r.body["error"]["title"], "Service Unavailable");
    // Tokens already issued keep working while Keystone is down.
    let nova = env
        .call(
            Method::GET,
            "/compute/v2.1/servers",
            &[("X-Auth-Token", &token)],
            None,
        )
        .await;
    assert_eq!(nova.status, StatusCode::OK);
    env.sim.clear_faults();
    assert_eq!(
        env.authenticate(&password_auth()).await.status,
        StatusCode::CREATED
    );

    env.sim
        .add_fault(Fault::error(Service::Magnum, 502).times(1));
    let r = env
        .magnum(Method::GET, &format!("/clusters/{id}"), "latest", None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.body["errors"][0]["status"], 502);
    assert_eq!(r.body["errors"][0]["code"], "server");
    assert_eq!(
        env.magnum(Method::GET, &format!("/clusters/{id}"), "latest", None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_latency_fault_delays_but_answers() {
    let env = env().await;
    env.sim.add_fault(Fault {
        service: Service::Keystone,
        kind: FaultKind::Latency { ms: 300 },
        path_contains: Some("/auth/tokens".into()),
        remaining: Some(1),
    });
    let started = Instant::now();
    let r = env.authenticate(&password_auth()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let log = env.sim.request_log();
    assert!(log.last().unwrap().duration_ms >= 300);
}

#[tokio::test]
async fn a_hang_fault_never_answers_until_the_client_gives_up() {
    let env = env().await;
    let token = env.token().await;
    env.sim.add_fault(Fault {
        service: Service::Nova,
        kind: FaultKind::Hang,
        path_contains: None,
        remaining: Some(1),
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = impatient
        .get(env.url("/compute/v2.1/servers"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");
    let hung = env
        .sim
        .request_log()
        .into_iter()
        .find(|r| r.fault.as_deref().is_some_and(|f| f.ends_with("hang")))
        .expect("logged");
    assert_eq!((hung.status, hung.service), (0, Service::Nova));
    let again = env
        .call(
            Method::GET,
            "/compute/v2.1/servers",
            &[("X-Auth-Token", &token)],
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "the hang was for one request");
}

#[tokio::test]
async fn the_request_log_names_service_action_server_and_status() {
    let env = env().await;
    let id = env.sim.create_server(NewServer {
        name: "k8s-node-0".into(),
        ..Default::default()
    });
    let cluster = env.sim.create_cluster(cluster_spec("k8s", 1, 2));
    env.action(&id, json!({"reboot": {"type": "HARD"}})).await;
    env.nova(Method::GET, &format!("/servers/{id}"), "", None)
        .await;
    env.magnum(
        Method::POST,
        &format!("/clusters/{cluster}/actions/resize"),
        "latest",
        Some(&json!({"node_count": 3})),
    )
    .await;
    env.call(
        Method::POST,
        &format!("/_sim/servers/{id}/crash"),
        &[],
        None,
    )
    .await;

    let log = env.sim.request_log();
    let token = log.iter().find(|r| r.service == Service::Keystone).unwrap();
    assert_eq!(
        (token.method.as_str(), token.path.as_str(), token.status),
        ("POST", "/identity/v3/auth/tokens", 201)
    );
    let reboot = log
        .iter()
        .find(|r| r.action.as_deref() == Some("reboot"))
        .unwrap();
    assert_eq!(
        (reboot.service, reboot.server_id.as_deref(), reboot.status),
        (Service::Nova, Some(id.as_str()), 202)
    );
    let show = log
        .iter()
        .find(|r| r.method == "GET" && r.service == Service::Nova)
        .unwrap();
    assert_eq!(
        (
            show.server_id.as_deref(),
            show.action.as_deref(),
            show.status
        ),
        (Some(id.as_str()), None, 200)
    );
    let resize = log
        .iter()
        .find(|r| r.action.as_deref() == Some("resize"))
        .unwrap();
    assert_eq!(
        (resize.service, resize.cluster_id.as_deref(), resize.status),
        (Service::Magnum, Some(cluster.as_str()), 202)
    );
    let crash = log.iter().find(|r| r.service == Service::Control).unwrap();
    assert_eq!(
        (
            crash.action.as_deref(),
            crash.server_id.as_deref(),
            crash.status
        ),
        (Some("crash"), Some(id.as_str()), 204)
    );
    assert!(log.windows(2).all(|w| w[0].time <= w[1].time));

    // The same log over HTTP.
    let over_http = env.call(Method::GET, "/_sim/requests", &[], None).await;
    let entries: Vec<openstack_sim::LoggedRequest> =
        serde_json::from_value(over_http.body).unwrap();
    assert_eq!(entries.len(), log.len());
    env.sim.clear_request_log();
    assert!(env.sim.request_log().is_empty());
}
