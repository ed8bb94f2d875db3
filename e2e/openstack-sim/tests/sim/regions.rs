//! A cloud with two regions: one Keystone whose catalog lists a Nova per region, each with
//! its own servers.

use openstack_sim::{NewServer, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

const TWO: &str = "RegionTwo";

async fn two_regions() -> Env {
    env_with(SimConfig {
        extra_regions: vec![TWO.into()],
        ..config()
    })
    .await
}

fn server(name: &str, region: Option<&str>) -> NewServer {
    NewServer {
        name: name.into(),
        image_id: "fedora-coreos-40".into(),
        flavor_id: "m1.medium".into(),
        region: region.map(str::to_string),
        ..Default::default()
    }
}

impl Env {
    /// A Nova call to RegionTwo's endpoint.
    async fn nova_two(&self, method: Method, path: &str) -> Reply {
        let token = self.token().await;
        self.call(
            method,
            &format!("/regions/{TWO}/compute/v2.1{path}"),
            &[
                ("X-Auth-Token", token.as_str()),
                ("OpenStack-API-Version", "compute 2.51"),
            ],
            None,
        )
        .await
    }
}

#[tokio::test]
async fn the_catalog_has_a_nova_per_region_and_magnum_in_the_first() {
    let env = two_regions().await;
    let r = env.authenticate(&password_auth()).await;
    let catalog = r.body["token"]["catalog"].as_array().unwrap().clone();
    let endpoints = |kind: &str| -> Vec<(String, String)> {
        let entry = catalog.iter().find(|e| e["type"] == kind).unwrap();
        entry["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["interface"] == "public")
            .map(|e| {
                (
                    e["region_id"].as_str().unwrap().to_string(),
                    e["url"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let base = env.sim.base_url();
    assert_eq!(
        endpoints("compute"),
        [
            ("RegionOne".to_string(), format!("{base}/compute/v2.1")),
            (
                TWO.to_string(),
                format!("{base}/regions/{TWO}/compute/v2.1")
            ),
        ]
    );
    assert_eq!(
        endpoints("identity"),
        [
            ("RegionOne".to_string(), format!("{base}/identity")),
            (TWO.to_string(), format!("{base}/identity")),
        ]
    );
    assert_eq!(
        endpoints("container-infra"),
        [(
            "RegionOne".to_string(),
            format!("{base}/container-infra/v1")
        )]
    );
}

#[tokio::test]
async fn each_regions_nova_knows_only_its_own_servers() {
    let env = two_regions().await;
    let one = env.sim.create_server(server("in-one", None));
    let two = env.sim.create_server(server("in-two", Some(TWO)));
    assert_eq!(env.server(&one).region, "RegionOne");
    assert_eq!(env.server(&two).region, TWO);

    let r = env.nova_two(Method::GET, &format!("/servers/{two}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["server"]["name"], "in-two");
    assert!(
        r.body["server"]["links"][0]["href"]
            .as_str()
            .unwrap()
            .contains(&format!("/regions/{TWO}/compute/v2.1/servers/{two}")),
        "{}",
        r.body
    );
    // Each Nova's list is its own.
    let list = env.nova_two(Method::GET, "/servers").await;
    let names: Vec<&str> = list.body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["in-two"]);

    // A server of the other region is unknown here: show, action, actions, delete.
    for (status, r) in [
        (
            StatusCode::NOT_FOUND,
            env.nova(Method::GET, &format!("/servers/{two}"), "2.51", None)
                .await,
        ),
        (
            StatusCode::NOT_FOUND,
            env.nova_two(Method::GET, &format!("/servers/{one}")).await,
        ),
        (
            StatusCode::NOT_FOUND,
            env.nova_two(Method::GET, &format!("/servers/{one}/os-instance-actions"))
                .await,
        ),
        (
            StatusCode::NOT_FOUND,
            env.nova_two(Method::DELETE, &format!("/servers/{one}"))
                .await,
        ),
    ] {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.body["itemNotFound"]["code"], 404, "{}", r.body);
    }
    assert!(env.sim.server(&one).is_some(), "not deleted from elsewhere");

    // Actions in RegionTwo work on its server, and the log says where they went.
    env.sim.clear_request_log();
    let token = env.token().await;
    let r = env
        .call(
            Method::POST,
            &format!("/regions/{TWO}/compute/v2.1/servers/{two}/action"),
            &[("X-Auth-Token", token.as_str())],
            Some(&json!({"os-stop": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    env.wait_status(&two, "SHUTOFF").await;
    let stop = env
        .sim
        .request_log()
        .into_iter()
        .find(|l| l.action.as_deref() == Some("os-stop"))
        .unwrap();
    assert_eq!(stop.region.as_deref(), Some(TWO));
    assert_eq!(stop.server_id.as_deref(), Some(two.as_str()));
    let actions = env
        .nova_two(Method::GET, &format!("/servers/{two}/os-instance-actions"))
        .await;
    assert_eq!(actions.body["instanceActions"][0]["action"], "stop");
}

#[tokio::test]
async fn a_region_the_catalog_does_not_list_has_no_endpoint() {
    let env = two_regions().await;
    let one = env.sim.create_server(server("in-one", None));
    let token = env.token().await;
    for prefix in ["/regions/RegionNine", "/regions/RegionOne"] {
        let r = env
            .call(
                Method::GET,
                &format!("{prefix}/compute/v2.1/servers/{one}"),
                &[("X-Auth-Token", token.as_str())],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{prefix}: {}", r.body);
        assert_eq!(r.body["itemNotFound"]["code"], 404);
    }
}
