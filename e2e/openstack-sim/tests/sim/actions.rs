//! Nova's instance actions (`os-instance-actions`): what is recorded for each action, what a
//! project member sees at each microversion, deleted servers, and the local delete of a
//! server whose compute host is down, which records nothing.

use std::collections::BTreeMap;

use openstack_sim::{NewServer, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

fn worker(name: &str) -> NewServer {
    NewServer {
        name: name.into(),
        image_id: "fedora-coreos-40".into(),
        flavor_id: "m1.medium".into(),
        metadata: BTreeMap::from([("role".to_string(), "worker".to_string())]),
        ..Default::default()
    }
}

impl Env {
    async fn actions(&self, id: &str, mv: &str) -> Reply {
        self.nova(
            Method::GET,
            &format!("/servers/{id}/os-instance-actions"),
            mv,
            None,
        )
        .await
    }

    async fn instance_action(&self, id: &str, request_id: &str, mv: &str) -> Reply {
        self.nova(
            Method::GET,
            &format!("/servers/{id}/os-instance-actions/{request_id}"),
            mv,
            None,
        )
        .await
    }

    /// `(action, request_id)` of the server's actions at 2.21, newest first.
    async fn action_names(&self, id: &str) -> Vec<(String, String)> {
        let r = self.actions(id, "2.21").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["instanceActions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["action"].as_str().unwrap().to_string(),
                    a["request_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// `[(event, result)]` of one action at 2.51.
    async fn events(&self, id: &str, request_id: &str) -> Vec<(String, Value)> {
        let r = self.instance_action(id, request_id, "2.51").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["instanceAction"]["events"]
            .as_array()
            .expect("events at 2.51")
            .iter()
            .map(|e| {
                (
                    e["event"].as_str().unwrap().to_string(),
                    e["result"].clone(),
                )
            })
            .collect()
    }
}

fn success(event: &str) -> (String, Value) {
    (event.to_string(), json!("Success"))
}

#[tokio::test]
async fn every_action_is_recorded_with_the_compute_hosts_event() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    let mut request_ids = Vec::new();
    for (body, settles_at) in [
        (json!({"os-stop": null}), "SHUTOFF"),
        (json!({"os-start": null}), "ACTIVE"),
        (json!({"reboot": {"type": "SOFT"}}), "ACTIVE"),
        (json!({"reboot": {"type": "HARD"}}), "ACTIVE"),
        (
            json!({"rebuild": {"imageRef": "fedora-coreos-41"}}),
            "ACTIVE",
        ),
        (json!({"shelve": null}), "SHELVED_OFFLOADED"),
        (json!({"unshelve": null}), "ACTIVE"),
    ] {
        let r = env.action(&id, body.clone()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{body}: {}", r.body);
        request_ids.push(r.header("x-openstack-request-id").unwrap().to_string());
        env.wait_status(&id, settles_at).await;
    }
    let r = env
        .nova(Method::DELETE, &format!("/servers/{id}"), "2.1", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    request_ids.push(r.header("x-openstack-request-id").unwrap().to_string());
    env.wait_server(&id, "gone", |s| s.is_none()).await;

    let listed = env.action_names(&id).await;
    let names: Vec<&str> = listed.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "delete", "unshelve", "shelve", "rebuild", "reboot", "reboot", "start", "stop",
            "create"
        ],
        "newest first"
    );
    // Each action carries the id of the request that started it.
    let ours: Vec<String> = listed
        .iter()
        .rev()
        .skip(1)
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(ours, request_ids);

    let want = [
        "compute_terminate_instance",
        "compute_unshelve_instance",
        "compute_shelve_instance",
        "compute_rebuild_instance",
        "compute_reboot_instance",
        "compute_reboot_instance",
        "compute_start_instance",
        "compute_stop_instance",
    ];
    for ((action, request_id), event) in listed.iter().zip(want) {
        assert_eq!(
            env.events(&id, request_id).await,
            [success(event)],
            "{action}"
        );
    }
    let create = &listed.last().unwrap().1;
    assert_eq!(
        env.events(&id, create).await,
        [
            success("compute_build_and_run_instance"),
            success("conductor_schedule_and_build_instances")
        ]
    );

    // Who asked: the caller's user and project, as Nova records the request context.
    let r = env.actions(&id, "2.21").await;
    let delete = &r.body["instanceActions"][0];
    assert_eq!(delete["user_id"], json!(env.user_id));
    assert_eq!(delete["project_id"], json!(env.project_id));
    assert_eq!(delete["instance_uuid"], json!(id));
}

#[tokio::test]
async fn a_project_member_sees_events_from_2_51_and_host_ids_from_2_62() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.action(&id, json!({"os-stop": null})).await;
    env.wait_status(&id, "SHUTOFF").await;
    let stop = env.action_names(&id).await[0].1.clone();

    let before = env.instance_action(&id, &stop, "2.50").await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(
        before.body["instanceAction"].get("events").is_none(),
        "only admins see events before 2.51: {}",
        before.body
    );
    assert!(before.body["instanceAction"].get("updated_at").is_none());

    let at_51 = env.instance_action(&id, &stop, "2.51").await;
    let event = &at_51.body["instanceAction"]["events"][0];
    for hidden in ["traceback", "host", "hostId", "details"] {
        assert!(event.get(hidden).is_none(), "{hidden} at 2.51: {event}");
    }
    assert_covers(
        "nova/v2.51/instance-action-get-non-admin-resp.json",
        &at_51.body,
        &[],
    );

    let at_84 = env.instance_action(&id, &stop, "2.84").await;
    let event = &at_84.body["instanceAction"]["events"][0];
    assert_eq!(event["hostId"].as_str().map(str::len), Some(56), "{event}");
    for admin_only in ["traceback", "host", "details"] {
        assert!(event.get(admin_only).is_none(), "{admin_only}: {event}");
    }
    assert_covers(
        "nova/v2.84/instance-action-get-non-admin-resp.json",
        &at_84.body,
        &[],
    );
    assert_covers(
        "nova/v2.58/instance-actions-list-resp.json",
        &env.actions(&id, "2.58").await.body,
        &[],
    );
}

#[tokio::test]
async fn a_deleted_servers_actions_are_listed_from_2_21() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.nova(Method::DELETE, &format!("/servers/{id}"), "2.1", None)
        .await;
    env.wait_server(&id, "gone", |s| s.is_none()).await;
    assert_eq!(
        env.nova(Method::GET, &format!("/servers/{id}"), "2.100", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let r = env.actions(&id, "2.20").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(
        r.body["itemNotFound"]["message"],
        format!("Instance {id} could not be found.")
    );
    let r = env.actions(&id, "2.21").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_covers("nova/v2.21/instance-actions-list-resp.json", &r.body, &[]);
    let delete = r.body["instanceActions"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let show = env.instance_action(&id, &delete, "2.51").await;
    assert_eq!(show.status, StatusCode::OK);
    assert_covers(
        "nova/v2.51/instance-action-get-non-admin-resp.json",
        &show.body,
        &[],
    );
    assert_eq!(
        env.events(&id, &delete).await,
        [success("compute_terminate_instance")]
    );
    let missing = env.instance_action(&id, "req-nope", "2.51").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body["itemNotFound"]["message"],
        "Action req-nope not found"
    );
}

#[tokio::test]
async fn a_delete_while_the_compute_host_is_down_is_local_and_records_no_action() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.host_down(&id);
    let r = env
        .nova(Method::DELETE, &format!("/servers/{id}"), "2.1", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Gone at once, without a transition.
    assert!(env.sim.server(&id).is_none());
    assert_eq!(
        env.nova(Method::GET, &format!("/servers/{id}"), "2.1", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let names: Vec<String> = env
        .action_names(&id)
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        names,
        ["create"],
        "Nova records no delete for a local delete"
    );
    // The simulator's own view agrees, deleted server included.
    let held = env.sim.instance_actions(&id).expect("still known");
    assert_eq!(held.len(), 1);
}

#[tokio::test]
async fn a_failed_delete_then_a_local_one_leaves_a_failed_terminate_event() {
    let env = slow_env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.nova(Method::DELETE, &format!("/servers/{id}"), "2.1", None)
        .await;
    assert_eq!(env.server(&id).task_state.as_deref(), Some("deleting"));
    // The compute host fails the delete: ERROR, and the event says so.
    env.sim.set_server_error(&id);
    assert_eq!(env.server(&id).status, "ERROR");
    // Then its compute service dies and the next delete is done by nova-api alone.
    env.sim.host_down(&id);
    env.nova(Method::DELETE, &format!("/servers/{id}"), "2.1", None)
        .await;
    assert!(env.sim.server(&id).is_none());
    let listed = env.action_names(&id).await;
    let deletes: Vec<&String> = listed
        .iter()
        .filter(|(a, _)| a == "delete")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(deletes.len(), 1, "{listed:?}");
    assert_eq!(
        env.events(&id, deletes[0]).await,
        [("compute_terminate_instance".to_string(), json!("Error"))]
    );
    let r = env.actions(&id, "2.58").await;
    assert_eq!(r.body["instanceActions"][0]["message"], "Error");
}

#[tokio::test]
async fn an_action_queued_for_a_down_host_has_no_event_until_the_host_is_back() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.host_down(&id);
    env.action(&id, json!({"os-stop": null})).await;
    let stop = env.action_names(&id).await[0].1.clone();
    assert_eq!(env.events(&id, &stop).await, []);
    env.sim.host_up(&id);
    env.wait_status(&id, "SHUTOFF").await;
    assert_eq!(
        env.events(&id, &stop).await,
        [success("compute_stop_instance")]
    );
}

#[tokio::test]
async fn a_rebuild_of_a_stopped_server_powers_it_off_again_under_the_same_action() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.action(&id, json!({"os-stop": null})).await;
    env.wait_status(&id, "SHUTOFF").await;
    env.action(&id, json!({"rebuild": {"imageRef": "fedora-coreos-41"}}))
        .await;
    env.wait_server(&id, "rebuilt and stopped again", |s| {
        s.is_some_and(|s| s.rebuilds == 1 && s.status == "SHUTOFF" && s.task_state.is_none())
    })
    .await;
    let rebuild = env.action_names(&id).await[0].clone();
    assert_eq!(rebuild.0, "rebuild");
    assert_eq!(
        env.events(&id, &rebuild.1).await,
        [
            success("compute_stop_instance"),
            success("compute_rebuild_instance")
        ]
    );
}

#[tokio::test]
async fn actions_of_other_projects_and_unknown_servers_are_404() {
    let env = env().await;
    let other = env.sim.add_project("other", "Default");
    let theirs = env.sim.create_server(NewServer {
        project_id: Some(other),
        ..worker("theirs")
    });
    for id in [theirs.as_str(), "00000000-0000-4000-8000-000000000000"] {
        let r = env.actions(id, "2.51").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {}", r.body);
        let create = env
            .sim
            .instance_actions(id)
            .map(|a| a[0].request_id.clone());
        let r = env
            .instance_action(id, create.as_deref().unwrap_or("req-x"), "2.51")
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {}", r.body);
    }
}

#[tokio::test]
async fn instance_actions_page_from_2_58() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.action(&id, json!({"os-stop": null})).await;
    env.wait_status(&id, "SHUTOFF").await;
    env.action(&id, json!({"os-start": null})).await;
    env.wait_status(&id, "ACTIVE").await;
    let all = env.action_names(&id).await;
    assert_eq!(all.len(), 3);

    // Before 2.58 there is no paging: limit is ignored.
    let r = env
        .nova(
            Method::GET,
            &format!("/servers/{id}/os-instance-actions?limit=1"),
            "2.51",
            None,
        )
        .await;
    assert_eq!(r.body["instanceActions"].as_array().unwrap().len(), 3);

    let first = env
        .nova(
            Method::GET,
            &format!("/servers/{id}/os-instance-actions?limit=1"),
            "2.58",
            None,
        )
        .await;
    assert_eq!(
        first.body["instanceActions"][0]["request_id"],
        json!(all[0].1)
    );
    let next = first.body["links"][0]["href"]
        .as_str()
        .expect("a next link");
    assert!(next.ends_with(&format!("marker={}", all[0].1)), "{next}");
    let rest = env
        .nova(
            Method::GET,
            &format!("/servers/{id}/os-instance-actions?marker={}", all[0].1),
            "2.58",
            None,
        )
        .await;
    let ids: Vec<&str> = rest.body["instanceActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [all[1].1.as_str(), all[2].1.as_str()]);
    let bad = env
        .nova(
            Method::GET,
            &format!("/servers/{id}/os-instance-actions?marker=req-unknown"),
            "2.58",
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
}

#[tokio::test]
async fn an_older_nova_refuses_microversions_it_does_not_serve() {
    let env = env_with(SimConfig {
        nova_max_minor: 50,
        ..config()
    })
    .await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    let r = env.actions(&id, "2.51").await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE, "{}", r.body);
    assert!(r.body.to_string().contains("maximum is 2.50"), "{}", r.body);
    assert_eq!(env.actions(&id, "2.50").await.status, StatusCode::OK);
    let versions = env.call(Method::GET, "/compute/v2.1", &[], None).await;
    assert_eq!(versions.body["version"]["version"], "2.50");
}

#[tokio::test]
async fn a_compute_host_goes_down_with_all_its_servers() {
    let env = env().await;
    let ids: Vec<String> = (0..6)
        .map(|i| env.sim.create_server(worker(&format!("k8s-node-{i}"))))
        .collect();
    let host = env.server(&ids[0]).host;
    let r = env
        .call(Method::POST, &format!("/_sim/hosts/{host}/down"), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let on_host = ids.iter().filter(|id| env.server(id).host == host).count();
    assert_eq!(r.body["servers"], json!(on_host));
    for id in &ids {
        let s = env.server(id);
        assert_eq!(s.host_down, s.host == host, "{s:?}");
    }
    // The scheduler places no new server on a host that is down.
    for i in 0..3 {
        let id = env.sim.create_server(worker(&format!("late-{i}")));
        assert_ne!(env.server(&id).host, host);
    }
    assert_eq!(env.sim.compute_host_down(&host, false), on_host);
    assert!(ids.iter().all(|id| !env.server(id).host_down));
}

#[tokio::test]
async fn the_request_log_says_region_microversion_and_request_id() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.clear_request_log();
    let r = env.action(&id, json!({"os-stop": null})).await;
    let answered = r.header("x-openstack-request-id").unwrap().to_string();
    let logged = env
        .sim
        .request_log()
        .into_iter()
        .find(|l| l.action.as_deref() == Some("os-stop"))
        .expect("logged");
    assert_eq!(logged.region.as_deref(), Some("RegionOne"));
    assert_eq!(logged.api_version.as_deref(), Some("compute 2.100"));
    assert_eq!(logged.request_id.as_deref(), Some(answered.as_str()));
    assert_eq!(
        env.sim.instance_actions(&id).unwrap()[1].request_id,
        answered
    );
}
