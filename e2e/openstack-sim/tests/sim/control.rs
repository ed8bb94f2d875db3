use openstack_sim::{NewServer, ServerView, power_state};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;
use crate::magnum::cluster_spec;

#[tokio::test]
async fn failures_can_be_injected_over_http() {
    let env = env().await;
    let id = env.sim.create_server(NewServer {
        name: "k8s-node-0".into(),
        ..Default::default()
    });
    let post = |path: String, body: Option<serde_json::Value>| {
        let env = &env;
        async move { env.call(Method::POST, &path, &[], body.as_ref()).await }
    };

    let listed = env.call(Method::GET, "/_sim/servers", &[], None).await;
    let servers: Vec<ServerView> = serde_json::from_value(listed.body).unwrap();
    assert_eq!(servers, env.sim.servers());
    let one = env
        .call(Method::GET, &format!("/_sim/servers/{id}"), &[], None)
        .await;
    assert_eq!(one.body["running"], true);

    assert_eq!(
        post(format!("/_sim/servers/{id}/host-down"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(env.server(&id).host_down);
    assert_eq!(
        post(format!("/_sim/servers/{id}/host-up"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(env.server(&id).running);
    assert_eq!(
        post(
            format!("/_sim/servers/{id}/refuse-power-off"),
            Some(json!({"refuse": true}))
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert!(env.server(&id).refuse_power_off);
    assert_eq!(
        post(
            format!("/_sim/servers/{id}/refuse-power-off"),
            Some(json!({"refuse": false}))
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert!(!env.server(&id).refuse_power_off);
    assert_eq!(
        post(format!("/_sim/servers/{id}/crash"), None).await.status,
        StatusCode::NO_CONTENT
    );
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.power_state),
        ("SHUTOFF", power_state::SHUTDOWN)
    );

    assert_eq!(
        post("/_sim/servers/nope/crash".into(), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(format!("/_sim/servers/{id}/explode"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn faults_and_cluster_status_over_http() {
    let env = env().await;
    let fault =
        json!({"service": "keystone", "kind": {"type": "error", "status": 503}, "remaining": 1});
    let r = env
        .call(Method::POST, "/_sim/faults", &[], Some(&fault))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.body["id"].is_u64());
    let listed = env.call(Method::GET, "/_sim/faults", &[], None).await;
    assert_eq!(listed.body[0]["fault"]["service"], "keystone");
    assert_eq!(
        listed.body[0]["fault"]["kind"],
        json!({"type": "error", "status": 503})
    );
    assert_eq!(
        env.authenticate(&password_auth()).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        env.authenticate(&password_auth()).await.status,
        StatusCode::CREATED
    );

    let forever = json!({"service": "nova", "kind": {"type": "error", "status": 500}});
    env.call(Method::POST, "/_sim/faults", &[], Some(&forever))
        .await;
    assert_eq!(env.sim.faults().len(), 1);
    assert_eq!(
        env.call(Method::DELETE, "/_sim/faults", &[], None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(env.sim.faults().is_empty());
    let bad = env
        .call(
            Method::POST,
            "/_sim/faults",
            &[],
            Some(&json!({"service": "glance"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let id = env.sim.create_cluster(cluster_spec("k8s", 1, 1));
    let status = json!({"status": "UPDATE_IN_PROGRESS"});
    let r = env
        .call(
            Method::POST,
            &format!("/_sim/clusters/{id}/status"),
            &[],
            Some(&status),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(env.sim.cluster(&id).unwrap().status, "UPDATE_IN_PROGRESS");
    let view = env.call(Method::GET, "/_sim/clusters/k8s", &[], None).await;
    assert_eq!(view.body["status"], "UPDATE_IN_PROGRESS");
    let missing = env
        .call(
            Method::POST,
            "/_sim/clusters/nope/status",
            &[],
            Some(&status),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_paths_get_the_service_error_shape() {
    let env = env().await;
    let token = env.token().await;
    let nova = env
        .call(
            Method::GET,
            "/compute/v2.1/flavors",
            &[("X-Auth-Token", &token)],
            None,
        )
        .await;
    assert_eq!(nova.status, StatusCode::NOT_FOUND);
    assert_eq!(nova.body["itemNotFound"]["code"], 404);
    let magnum = env
        .call(
            Method::GET,
            "/container-infra/v1/clustertemplates",
            &[],
            None,
        )
        .await;
    assert_eq!(magnum.body["errors"][0]["status"], 404);
    let keystone = env
        .call(Method::GET, "/identity/v3/projects", &[], None)
        .await;
    assert_eq!(keystone.body["error"]["code"], 404);
}
