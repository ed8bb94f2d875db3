//! Our responses against fixtures written from the published API samples (see
//! `tests/fixtures/README.md`), and the request fixtures sent as they are.

use openstack_sim::NewServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use crate::magnum::cluster_spec;

/// Free-form maps: their keys are data, not schema.
const NOVA_OPAQUE: &[&str] = &[
    "server.metadata",
    "server.image.properties",
    "server.flavor.extra_specs",
    "server.scheduler_hints",
    "servers[].metadata",
    "servers[].image.properties",
    "servers[].flavor.extra_specs",
    "servers[].scheduler_hints",
    // Empty in the samples as in ours: nothing to compare inside.
    "server.os-extended-volumes:volumes_attached",
    "servers[].os-extended-volumes:volumes_attached",
];

#[test]
fn the_comparison_can_fail() {
    let ours = json!({"server": {"id": "x", "links": [{"href": "h"}], "metadata": {}}});
    let f = json!({"server": {"id": "y", "name": "n", "links": [{"href": "h", "rel": "self"}], "metadata": {"k": 1}, "progress": 0}});
    let mut gaps = missing(&f, &ours, &["server.metadata"]);
    gaps.sort();
    assert_eq!(
        gaps,
        [
            "server.links[].rel: missing",
            "server.name: missing",
            "server.progress: missing"
        ]
    );
    let wrong_type = missing(&json!({"a": 1}), &json!({"a": "1"}), &[]);
    assert_eq!(wrong_type, ["a: number in the fixture, string in ours"]);
    let empty = missing(&json!({"a": [{"b": 1}]}), &json!({"a": []}), &[]);
    assert_eq!(empty.len(), 1);
}

#[tokio::test]
async fn keystone_token_responses_cover_the_samples() {
    let env = env().await;
    let mut request = fixture("keystone/auth-password-project-scoped-request.json");
    request["auth"]["identity"]["password"]["user"]["password"] = json!(PASSWORD);
    let r = env.authenticate(&request).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_covers(
        "keystone/auth-password-project-scoped-response.json",
        &r.body,
        &[],
    );

    let id = env
        .sim
        .add_application_credential(&env.user_id, "nodehealer-fencing", "s3cret");
    let mut by_id = fixture("keystone/auth-application-credential-id-request.json");
    by_id["auth"]["identity"]["application_credential"]["id"] = json!(id);
    by_id["auth"]["identity"]["application_credential"]["secret"] = json!("s3cret");
    let r = env.authenticate(&by_id).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_covers(
        "keystone/auth-application-credential-response.json",
        &r.body,
        &[],
    );

    let mut by_name = fixture("keystone/auth-application-credential-name-request.json");
    by_name["auth"]["identity"]["application_credential"]["secret"] = json!("s3cret");
    by_name["auth"]["identity"]["application_credential"]["user"]["id"] = json!(env.user_id);
    let r = env.authenticate(&by_name).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_covers(
        "keystone/auth-application-credential-response.json",
        &r.body,
        &[],
    );
}

fn server() -> NewServer {
    NewServer {
        name: "k8s-prod-node-1".into(),
        image_id: "fedora-coreos-40".into(),
        flavor_id: "m1.medium".into(),
        metadata: [("role".to_string(), "worker".to_string())].into(),
        project_id: None,
        region: None,
    }
}

#[tokio::test]
async fn nova_server_responses_cover_the_samples() {
    let env = env().await;
    let id = env.sim.create_server(server());
    let show_21 = env
        .nova(Method::GET, &format!("/servers/{id}"), "2.1", None)
        .await;
    assert_covers("nova/server-get-resp.json", &show_21.body, NOVA_OPAQUE);
    let show = env
        .nova(Method::GET, &format!("/servers/{id}"), "2.100", None)
        .await;
    assert_covers("nova/v2.100/server-get-resp.json", &show.body, NOVA_OPAQUE);
    let detail = env
        .nova(Method::GET, "/servers/detail", "2.100", None)
        .await;
    assert_covers(
        "nova/v2.100/servers-details-resp.json",
        &detail.body,
        NOVA_OPAQUE,
    );
    let list = env.nova(Method::GET, "/servers", "2.100", None).await;
    assert_covers("nova/servers-list-resp.json", &list.body, NOVA_OPAQUE);

    let rebuild = env
        .action(&id, fixture("nova/server-action-rebuild.json"))
        .await;
    assert_eq!(rebuild.status, StatusCode::ACCEPTED, "{}", rebuild.body);
    assert_covers(
        "nova/v2.100/server-action-rebuild-resp.json",
        &rebuild.body,
        NOVA_OPAQUE,
    );
    let s = env.server(&id);
    assert_eq!(
        (
            s.image_id.as_str(),
            s.metadata.get("rebuilt-by").map(String::as_str)
        ),
        ("fedora-coreos-41", Some("nodehealer"))
    );
}

#[tokio::test]
async fn nova_action_request_samples_are_accepted() {
    let env = env().await;
    let id = env.sim.create_server(server());
    for (sample, settles_at) in [
        ("nova/server-action-stop.json", "SHUTOFF"),
        ("nova/server-action-start.json", "ACTIVE"),
        ("nova/server-action-reboot.json", "ACTIVE"),
        ("nova/server-action-rebuild.json", "ACTIVE"),
        ("nova/server-action-shelve.json", "SHELVED_OFFLOADED"),
        ("nova/server-action-unshelve.json", "ACTIVE"),
    ] {
        let r = env.action(&id, fixture(sample)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{sample}: {}", r.body);
        env.wait_status(&id, settles_at).await;
    }
    let actions: Vec<String> = env
        .sim
        .request_log()
        .into_iter()
        .filter_map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        [
            "os-stop", "os-start", "reboot", "rebuild", "shelve", "unshelve"
        ]
    );
}

#[tokio::test]
async fn magnum_responses_cover_the_samples() {
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 3, 3));
    // Set the health first, so the comparison sees its real types rather than nulls.
    let health = fixture("magnum/cluster-update-health-req.json");
    let r = env
        .magnum(
            Method::PATCH,
            &format!("/clusters/{id}"),
            "latest",
            Some(&health),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    let opaque = &[
        "labels",
        "health_status_reason",
        "labels_overridden",
        "labels_added",
        "labels_skipped",
    ];
    let cluster = env
        .magnum(Method::GET, &format!("/clusters/{id}"), "latest", None)
        .await;
    assert_covers("magnum/cluster-get-one-resp.json", &cluster.body, opaque);
    let ng = env
        .magnum(
            Method::GET,
            &format!("/clusters/{id}/nodegroups/default-worker"),
            "latest",
            None,
        )
        .await;
    assert_covers("magnum/nodegroup-get-one-resp.json", &ng.body, &["labels"]);
    let list = env
        .magnum(
            Method::GET,
            &format!("/clusters/{id}/nodegroups"),
            "latest",
            None,
        )
        .await;
    assert_covers("magnum/nodegroup-list-resp.json", &list.body, &[]);
}

#[tokio::test]
async fn magnum_request_samples_are_accepted() {
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 3));
    let victim = env.sim.cluster(&id).unwrap().nodegroups[1].servers[0].clone();
    let mut resize: Value = fixture("magnum/cluster-resize-req.json");
    resize["nodes_to_remove"] = json!([victim]);
    let r = env
        .magnum(
            Method::POST,
            &format!("/clusters/{id}/actions/resize"),
            "latest",
            Some(&resize),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    env.wait_cluster(&id, "UPDATE_COMPLETE").await;
    assert!(env.sim.server(&victim).is_none());

    let update = fixture("magnum/cluster-update-req.json");
    let r = env
        .magnum(
            Method::PATCH,
            &format!("/clusters/{id}"),
            "latest",
            Some(&update),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    env.wait_cluster(&id, "UPDATE_COMPLETE").await;
    assert_eq!(env.sim.cluster(&id).unwrap().node_count, 4);
}
