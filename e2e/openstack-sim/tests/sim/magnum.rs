use std::collections::BTreeMap;

use openstack_sim::{BusyClusterPolicy, NewCluster, NewNodeGroup, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

pub fn cluster_spec(name: &str, masters: u32, workers: u32) -> NewCluster {
    let group = |name: &str, role: &str, node_count: u32| NewNodeGroup {
        name: name.into(),
        role: role.into(),
        node_count,
        image_id: "fedora-coreos-40".into(),
        flavor_id: "m1.large".into(),
    };
    NewCluster {
        name: name.into(),
        labels: BTreeMap::from([("auto_healing_enabled".to_string(), "true".to_string())]),
        nodegroups: vec![
            group("default-master", "master", masters),
            group("default-worker", "worker", workers),
        ],
    }
}

fn assert_magnum_error(r: &Reply, status: u16, detail_contains: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    let e = &r.body["errors"][0];
    assert_eq!(e["status"], status);
    assert_eq!(e["code"], if status >= 500 { "server" } else { "client" });
    assert!(
        e["detail"].as_str().unwrap().contains(detail_contains),
        "{}",
        e["detail"]
    );
    assert!(e["title"].is_string() && e["links"].is_array() && e["request_id"].is_string());
}

fn worker_ids(env: &Env, cluster: &str) -> Vec<String> {
    let c = env.sim.cluster(cluster).unwrap();
    c.nodegroups
        .iter()
        .find(|ng| ng.name == "default-worker")
        .unwrap()
        .servers
        .clone()
}

#[tokio::test]
async fn a_cluster_is_created_with_servers_named_like_magnum_does() {
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 2));
    let servers = env.sim.servers();
    assert_eq!(servers.len(), 3);
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    let suffix = names[0]
        .trim_start_matches("k8s-prod-")
        .trim_end_matches("-master-0");
    assert_eq!(suffix.len(), 12, "{names:?}");
    assert_eq!(
        names,
        [
            format!("k8s-prod-{suffix}-master-0"),
            format!("k8s-prod-{suffix}-node-0"),
            format!("k8s-prod-{suffix}-node-1")
        ]
    );
    for s in &servers {
        assert_eq!(s.cluster_id.as_deref(), Some(id.as_str()));
        assert_eq!(s.metadata.get("magnum_cluster_uuid"), Some(&id));
        assert_eq!(s.status, "ACTIVE");
        assert!(s.running);
    }
    assert_eq!(servers[0].nodegroup.as_deref(), Some("default-master"));
    assert_eq!(servers[1].nodegroup.as_deref(), Some("default-worker"));

    let view = env.sim.cluster("k8s-prod").unwrap();
    assert_eq!(
        (view.id.as_str(), view.master_count, view.node_count),
        (id.as_str(), 1, 2)
    );
    assert_eq!(view.status, "CREATE_COMPLETE");
}

#[tokio::test]
async fn get_a_cluster_by_uuid_or_name() {
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 2));
    let by_id = env
        .magnum(Method::GET, &format!("/clusters/{id}"), "latest", None)
        .await;
    assert_eq!(by_id.status, StatusCode::OK);
    let by_name = env
        .magnum(Method::GET, "/clusters/k8s-prod", "latest", None)
        .await;
    assert_eq!(by_name.body["uuid"], json!(id));
    let c = &by_id.body;
    assert_eq!(c["status"], "CREATE_COMPLETE");
    assert_eq!(c["labels"]["auto_healing_enabled"], "true");
    assert_eq!(
        (c["master_count"].as_u64(), c["node_count"].as_u64()),
        (Some(1), Some(2))
    );
    let servers = env.sim.servers();
    assert_eq!(c["master_addresses"], json!([servers[0].address]));
    assert_eq!(
        c["node_addresses"],
        json!([servers[1].address, servers[2].address])
    );
    assert_eq!(
        c["api_address"],
        json!(format!("https://{}:6443", servers[0].address))
    );
    assert_eq!(c["health_status"], json!(null));

    let missing = env
        .magnum(Method::GET, "/clusters/nope", "latest", None)
        .await;
    assert_magnum_error(&missing, 404, "Cluster nope could not be found.");
    env.sim.create_cluster(cluster_spec("k8s-prod", 1, 1));
    let ambiguous = env
        .magnum(Method::GET, "/clusters/k8s-prod", "latest", None)
        .await;
    assert_magnum_error(&ambiguous, 409, "Multiple clusters exist with same name");
}

#[tokio::test]
async fn a_health_status_reason_that_is_an_object_is_refused_as_magnum_refuses_it() {
    // magnum/api/controllers/v1/types.py: a JSON-patch value is MultiType(wtypes.text, int).
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 2));
    let patch = json!([
        {"op": "replace", "path": "/health_status", "value": "UNHEALTHY"},
        {"op": "replace", "path": "/health_status_reason", "value": {"k8s-prod-node-1.Ready": "False"}}
    ]);
    for cluster in [id.as_str(), "no-such-cluster"] {
        let r = env
            .magnum(
                Method::PATCH,
                &format!("/clusters/{cluster}"),
                "latest",
                Some(&patch),
            )
            .await;
        // The body is read before the cluster is looked up: a 400 even for a missing one.
        assert_magnum_error(
            &r,
            400,
            "Invalid input for field/attribute value. Value: '{'k8s-prod-node-1.Ready': 'False'}'. \
             Wrong type. Expected '(<class 'str'>, <class 'int'>)', got '<class 'dict'>'",
        );
        assert_eq!(
            r.body["errors"][0]["title"],
            "Invalid input for field/attribute value"
        );
    }
    let c = env.sim.cluster(&id).unwrap();
    assert_eq!((c.health_status, c.health_status_reason.len()), (None, 0));
    // A string that is not a dict of strings is refused too; nothing is stored.
    for value in ["{'a': b}", "['a']", "{'a': 1}", "5"] {
        let patch = json!([{"op": "replace", "path": "/health_status_reason", "value": value}]);
        let r = env
            .magnum(
                Method::PATCH,
                &format!("/clusters/{id}"),
                "latest",
                Some(&patch),
            )
            .await;
        assert_eq!(r.status.as_u16(), 400, "{value}: {}", r.body);
    }
    assert!(
        env.sim
            .cluster(&id)
            .unwrap()
            .health_status_reason
            .is_empty()
    );
}

#[tokio::test]
async fn before_1_10_a_cluster_without_workers_takes_no_patch() {
    // As Magnum 21.x answers: every PATCH before 1.10 checks the node count, a health update
    // of a cluster whose default worker nodegroup is empty too.
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 0));
    let patch = json!([{"op": "replace", "path": "/health_status", "value": "UNHEALTHY"}]);
    let path = format!("/clusters/{id}");
    let old = env.magnum(Method::PATCH, &path, "1.9", Some(&patch)).await;
    assert_magnum_error(
        &old,
        400,
        "Resizing a nodegroup to zero is not supported in the provided microversion.",
    );
    assert_eq!(env.sim.cluster(&id).unwrap().health_status, None);
    let new = env.magnum(Method::PATCH, &path, "1.10", Some(&patch)).await;
    assert_eq!(new.status, StatusCode::ACCEPTED, "{}", new.body);
    assert_eq!(
        env.sim.cluster(&id).unwrap().health_status.as_deref(),
        Some("UNHEALTHY")
    );
}

#[tokio::test]
async fn the_health_status_is_patched() {
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 2));
    // The reason as magnum-auto-healer sends it: a string that Magnum reads as a Python dict.
    let patch = json!([
        {"op": "replace", "path": "/health_status", "value": "UNHEALTHY"},
        {"op": "replace", "path": "/health_status_reason", "value": "{'k8s-prod-node-1.Ready': 'False'}"}
    ]);
    let r = env
        .magnum(
            Method::PATCH,
            &format!("/clusters/{id}"),
            "latest",
            Some(&patch),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body, json!({"uuid": id}));
    let c = env
        .magnum(Method::GET, &format!("/clusters/{id}"), "latest", None)
        .await
        .body;
    assert_eq!(c["health_status"], "UNHEALTHY");
    assert_eq!(
        c["health_status_reason"],
        json!({"k8s-prod-node-1.Ready": "False"})
    );
    assert_eq!(
        c["status"], "CREATE_COMPLETE",
        "a health update starts no stack update"
    );
    assert_eq!(
        env.sim.cluster(&id).unwrap().health_status.as_deref(),
        Some("UNHEALTHY")
    );

    for (doc, detail) in [
        (
            json!([{"op": "replace", "path": "/stack_id", "value": "x"}]),
            "internal attribute",
        ),
        (
            json!([{"op": "replace", "path": "/labels", "value": "{}"}]),
            "cannot change cluster property",
        ),
        (
            json!([{"op": "replace", "path": "/no_such_thing", "value": 1}]),
            "non-existent object",
        ),
        (
            json!([{"op": "replace", "path": "/health_status", "value": "SICK"}]),
            "health_status",
        ),
        (json!({"op": "replace"}), "list of operations"),
    ] {
        let r = env
            .magnum(
                Method::PATCH,
                &format!("/clusters/{id}"),
                "latest",
                Some(&doc),
            )
            .await;
        assert_magnum_error(&r, 400, detail);
    }
}

#[tokio::test]
async fn a_node_count_patch_resizes_the_default_workers() {
    let env = slow_env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 2));
    let doc = json!([{"op": "replace", "path": "/node_count", "value": 3}]);
    assert_eq!(
        env.magnum(
            Method::PATCH,
            &format!("/clusters/{id}"),
            "latest",
            Some(&doc)
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(env.sim.cluster(&id).unwrap().status, "UPDATE_IN_PROGRESS");
    env.wait_cluster(&id, "UPDATE_COMPLETE").await;
    let workers = worker_ids(&env, &id);
    assert_eq!(workers.len(), 3);
    assert!(workers.iter().all(|w| env.server(w).status == "ACTIVE"));
    assert!(env.server(&workers[2]).name.ends_with("-node-2"));
}

#[tokio::test]
async fn nodegroups_are_listed_and_shown() {
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 2));
    let list = env
        .magnum(
            Method::GET,
            &format!("/clusters/{id}/nodegroups"),
            "1.9",
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let groups = list.body["nodegroups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1]["name"], "default-worker");
    assert_eq!(groups[1]["role"], "worker");
    assert_eq!(groups[1]["node_count"], 2);
    assert_eq!(groups[1]["is_default"], true);
    assert!(
        groups[1].get("node_addresses").is_none(),
        "the list is Magnum's brief form"
    );
    let masters = env
        .magnum(
            Method::GET,
            &format!("/clusters/{id}/nodegroups?role=master"),
            "latest",
            None,
        )
        .await;
    assert_eq!(masters.body["nodegroups"].as_array().unwrap().len(), 1);

    let by_name = env
        .magnum(
            Method::GET,
            "/clusters/k8s-prod/nodegroups/default-worker",
            "latest",
            None,
        )
        .await;
    assert_eq!(by_name.status, StatusCode::OK);
    let ng = &by_name.body;
    assert_eq!(ng["cluster_id"], json!(id));
    let addresses: Vec<String> = env.sim.servers()[1..]
        .iter()
        .map(|s| s.address.clone())
        .collect();
    assert_eq!(ng["node_addresses"], json!(addresses));
    let uuid = ng["uuid"].as_str().unwrap();
    let by_uuid = env
        .magnum(
            Method::GET,
            &format!("/clusters/{id}/nodegroups/{uuid}"),
            "latest",
            None,
        )
        .await;
    assert_eq!(by_uuid.body["name"], "default-worker");
    let missing = env
        .magnum(
            Method::GET,
            &format!("/clusters/{id}/nodegroups/gpu"),
            "latest",
            None,
        )
        .await;
    assert_magnum_error(&missing, 404, "Nodegroup gpu could not be found.");

    // Nodegroups came in 1.9; without a version header Magnum serves 1.1.
    let old = env
        .magnum(Method::GET, &format!("/clusters/{id}/nodegroups"), "", None)
        .await;
    assert_magnum_error(&old, 406, "is not supported for this version");
}

#[tokio::test]
async fn versions_are_negotiated() {
    let env = env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 1));
    let path = format!("/clusters/{id}");
    let default = env.magnum(Method::GET, &path, "", None).await;
    assert_eq!(
        default.header("OpenStack-API-Version"),
        Some("container-infra 1.1")
    );
    assert_eq!(
        default.header("OpenStack-API-Minimum-Version"),
        Some("container-infra 1.1")
    );
    let max = format!("container-infra {}", openstack_sim::MAGNUM_MAX_VERSION);
    assert_eq!(
        default.header("OpenStack-API-Maximum-Version"),
        Some(max.as_str())
    );
    assert_eq!(default.header("Vary"), Some("OpenStack-API-Version"));
    let latest = env.magnum(Method::GET, &path, "latest", None).await;
    assert_eq!(latest.header("OpenStack-API-Version"), Some(max.as_str()));
    // magnum/api/http_error.py: HTTPNotAcceptableAPIVersion, which the error middleware keeps
    // as it is (it carries min_version).
    let too_new = env.magnum(Method::GET, &path, "1.99", None).await;
    assert_eq!(too_new.status.as_u16(), 406, "{}", too_new.body);
    let e = &too_new.body["errors"][0];
    assert_eq!(e["code"], "magnum.microversion-unsupported");
    assert_eq!(e["max_version"], openstack_sim::MAGNUM_MAX_VERSION);
    assert_eq!(e["min_version"], "1.1");
    // As Magnum 21.x answers: the refused version echoed, with the range.
    assert_eq!(
        too_new.header("OpenStack-API-Version"),
        Some("container-infra 1.99")
    );
    assert_eq!(
        too_new.header("OpenStack-API-Maximum-Version"),
        Some(max.as_str())
    );
    assert!(
        e["description"].as_str().unwrap().contains(
            "The supported version range is: [container-infra 1.1, container-infra 1.12]"
        ),
        "{e}"
    );
    // Magnum reads one `service version` pair: a list of services is refused.
    let listed = env
        .call(
            Method::GET,
            &format!("/container-infra/v1{path}"),
            &[
                ("X-Auth-Token", &env.token().await),
                ("OpenStack-API-Version", "compute 2.1, container-infra 1.9"),
            ],
            None,
        )
        .await;
    assert_eq!(listed.status.as_u16(), 406, "{}", listed.body);
    let e = &listed.body["errors"][0];
    assert_eq!(
        (
            e["code"].as_str(),
            e["title"].as_str(),
            e["detail"].as_str()
        ),
        (
            Some(""),
            Some("Not Acceptable"),
            Some("Invalid service type for OpenStack-API-Version header")
        )
    );
    assert_eq!(listed.header("OpenStack-API-Version"), None);

    let token = env.token().await;
    let compute_only = env
        .call(
            Method::GET,
            &format!("/container-infra/v1{path}"),
            &[
                ("X-Auth-Token", &token),
                ("OpenStack-API-Version", "compute 2.1"),
            ],
            None,
        )
        .await;
    assert_eq!(compute_only.status.as_u16(), 406);
    assert_eq!(
        compute_only.body["errors"][0]["detail"],
        "Invalid service type for OpenStack-API-Version header"
    );
    let resize_too_old = env
        .magnum(
            Method::POST,
            &format!("{path}/actions/resize"),
            "1.6",
            Some(&json!({"node_count": 2})),
        )
        .await;
    assert_magnum_error(&resize_too_old, 406, "resize");
}

#[tokio::test]
async fn a_resize_replaces_the_removed_server() {
    let env = slow_env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 3));
    let before = worker_ids(&env, &id);
    let victim = before[1].clone();
    let body = json!({"node_count": 3, "nodes_to_remove": [victim], "nodegroup": "default-worker"});
    let r = env
        .magnum(
            Method::POST,
            &format!("/clusters/{id}/actions/resize"),
            "latest",
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body, json!({"uuid": id}));
    let c = env
        .magnum(Method::GET, &format!("/clusters/{id}"), "latest", None)
        .await
        .body;
    assert_eq!(c["status"], "UPDATE_IN_PROGRESS");
    let ng = env
        .magnum(
            Method::GET,
            &format!("/clusters/{id}/nodegroups/default-worker"),
            "latest",
            None,
        )
        .await
        .body;
    assert_eq!(ng["status"], "UPDATE_IN_PROGRESS");

    env.wait_cluster(&id, "UPDATE_COMPLETE").await;
    assert!(
        env.sim.server(&victim).is_none(),
        "the removed server is deleted"
    );
    let gone = env
        .nova(Method::GET, &format!("/servers/{victim}"), "", None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let after = worker_ids(&env, &id);
    assert_eq!(after.len(), 3);
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert_eq!(new.len(), 1);
    let replacement = env.server(new[0]);
    assert!(
        replacement.name.ends_with("-node-3"),
        "Heat never reuses an index: {}",
        replacement.name
    );
    assert_eq!(
        (replacement.status.as_str(), replacement.running),
        ("ACTIVE", true)
    );
    assert_eq!(replacement.nodegroup.as_deref(), Some("default-worker"));
    let view = env.sim.cluster(&id).unwrap();
    assert_eq!((view.resizes, view.node_count), (1, 3));
    let c = env
        .magnum(Method::GET, &format!("/clusters/{id}"), "latest", None)
        .await
        .body;
    assert_eq!(c["status_reason"], "Stack UPDATE completed successfully");

    // Shrinking without naming servers removes the newest.
    let shrink = json!({"node_count": 2});
    assert_eq!(
        env.magnum(
            Method::POST,
            &format!("/clusters/{id}/actions/resize"),
            "latest",
            Some(&shrink)
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    env.wait_cluster(&id, "UPDATE_COMPLETE").await;
    assert_eq!(worker_ids(&env, &id), after[..2].to_vec());
}

#[tokio::test]
async fn a_resize_is_refused_while_the_cluster_is_busy() {
    let env = slow_env().await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 2));
    let url = format!("/clusters/{id}/actions/resize");
    let body = json!({"node_count": 3});
    assert_eq!(
        env.magnum(Method::POST, &url, "latest", Some(&body))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let again = env.magnum(Method::POST, &url, "latest", Some(&body)).await;
    assert_magnum_error(
        &again,
        409,
        "Updating a cluster when status is \"UPDATE_IN_PROGRESS\" is not supported.",
    );
    let health = json!([{"op": "replace", "path": "/health_status", "value": "HEALTHY"}]);
    let patch = env
        .magnum(
            Method::PATCH,
            &format!("/clusters/{id}"),
            "latest",
            Some(&health),
        )
        .await;
    assert_magnum_error(&patch, 409, "UPDATE_IN_PROGRESS");
    env.wait_cluster(&id, "UPDATE_COMPLETE").await;

    env.sim.set_cluster_status(&id, "UPDATE_IN_PROGRESS");
    assert_magnum_error(
        &env.magnum(Method::POST, &url, "latest", Some(&body)).await,
        409,
        "UPDATE_IN_PROGRESS",
    );
    env.sim.set_cluster_status(&id, "UPDATE_COMPLETE");

    let even_masters = json!({"node_count": 2, "nodegroup": "default-master"});
    assert_magnum_error(
        &env.magnum(Method::POST, &url, "latest", Some(&even_masters))
            .await,
        400,
        "cannot be an even number",
    );
    let zero = json!({"node_count": 0});
    assert_magnum_error(
        &env.magnum(Method::POST, &url, "1.9", Some(&zero)).await,
        400,
        "zero",
    );
    let unknown_group = json!({"node_count": 1, "nodegroup": "gpu"});
    assert_magnum_error(
        &env.magnum(Method::POST, &url, "latest", Some(&unknown_group))
            .await,
        404,
        "gpu",
    );
}

#[tokio::test]
async fn upstream_magnum_drops_updates_of_a_busy_cluster_silently() {
    let env = env_with(SimConfig {
        busy_cluster_updates: BusyClusterPolicy::Ignored,
        ..config()
    })
    .await;
    let id = env.sim.create_cluster(cluster_spec("k8s-prod", 1, 2));
    env.sim.set_cluster_status(&id, "UPDATE_IN_PROGRESS");
    let body: Value = json!({"node_count": 5});
    let r = env
        .magnum(
            Method::POST,
            &format!("/clusters/{id}/actions/resize"),
            "latest",
            Some(&body),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let view = env.sim.cluster(&id).unwrap();
    assert_eq!(
        (view.resizes, view.node_count),
        (0, 2),
        "accepted, but nothing happens"
    );
}
