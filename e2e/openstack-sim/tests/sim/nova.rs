use std::collections::BTreeMap;
use std::time::Duration;

use openstack_sim::{NewServer, SimConfig, power_state};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

fn worker(name: &str) -> NewServer {
    NewServer {
        name: name.into(),
        image_id: "fedora-coreos-40".into(),
        flavor_id: "m1.medium".into(),
        metadata: BTreeMap::from([("role".to_string(), "worker".to_string())]),
        project_id: None,
        region: None,
    }
}

async fn assert_conflict(env: &Env, id: &str, action: serde_json::Value, message: &str) {
    let r = env.action(id, action.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{action}: {}", r.body);
    assert_eq!(r.body["conflictingRequest"]["code"], 409);
    assert_eq!(r.body["conflictingRequest"]["message"], message, "{action}");
}

#[tokio::test]
async fn show_and_list_servers() {
    let env = env().await;
    let a = env.sim.create_server(worker("k8s-node-1"));
    let b = env.sim.create_server(worker("k8s-node-10"));
    let c = env.sim.create_server(worker("db-0"));

    let show = env
        .nova(Method::GET, &format!("/servers/{a}"), "", None)
        .await;
    assert_eq!(show.status, StatusCode::OK);
    let s = &show.body["server"];
    assert_eq!(
        (s["id"].as_str(), s["name"].as_str(), s["status"].as_str()),
        (Some(a.as_str()), Some("k8s-node-1"), Some("ACTIVE"))
    );
    assert_eq!(s["OS-EXT-STS:power_state"], power_state::RUNNING);
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");
    assert_eq!(s["OS-EXT-STS:task_state"], json!(null));
    assert_eq!(s["image"]["id"], "fedora-coreos-40");
    assert_eq!(s["metadata"]["role"], "worker");
    assert_eq!(
        s["tenant_id"],
        json!(env.project_id),
        "an unowned server is reported as the caller's"
    );
    assert_eq!(
        s["addresses"]["private"][0]["addr"],
        json!(env.server(&a).address)
    );

    // The brief list: newest first, id/name/links only.
    let list = env.nova(Method::GET, "/servers", "", None).await;
    let ids: Vec<&str> = list.body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [c.as_str(), b.as_str(), a.as_str()]);
    assert!(list.body["servers"][0].get("status").is_none());

    // name is an unanchored regular expression, as in Nova.
    let named = env
        .nova(Method::GET, "/servers/detail?name=k8s-node-1", "", None)
        .await;
    assert_eq!(named.body["servers"].as_array().unwrap().len(), 2);
    let exact = env
        .nova(
            Method::GET,
            "/servers/detail?name=%5Ek8s-node-1%24",
            "",
            None,
        )
        .await;
    assert_eq!(exact.body["servers"][0]["id"], json!(a));
    assert_eq!(exact.body["servers"].as_array().unwrap().len(), 1);

    // Paging with limit and marker.
    let page = env.nova(Method::GET, "/servers?limit=2", "", None).await;
    assert_eq!(page.body["servers"].as_array().unwrap().len(), 2);
    let next = page.body["servers_links"][0]["href"].as_str().unwrap();
    assert!(next.contains(&format!("marker={b}")), "{next}");
    let rest = env
        .nova(
            Method::GET,
            &format!("/servers?limit=2&marker={b}"),
            "",
            None,
        )
        .await;
    assert_eq!(rest.body["servers"][0]["id"], json!(a));
    assert!(rest.body.get("servers_links").is_none());

    // status filter
    env.sim.crash_server(&c);
    let off = env
        .nova(Method::GET, "/servers/detail?status=SHUTOFF", "", None)
        .await;
    assert_eq!(off.body["servers"].as_array().unwrap().len(), 1);
    assert_eq!(off.body["servers"][0]["id"], json!(c));
    assert!(
        off.body["servers"][0].get("progress").is_none(),
        "Nova shows no progress for SHUTOFF"
    );

    let missing = env
        .nova(
            Method::GET,
            "/servers/00000000-0000-0000-0000-000000000000",
            "",
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["itemNotFound"]["code"], 404);
    assert!(
        missing.body["itemNotFound"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be found")
    );
}

#[tokio::test]
async fn servers_of_another_project_are_invisible() {
    let env = env().await;
    let other = env.sim.add_project("other", "Default");
    let id = env.sim.create_server(NewServer {
        project_id: Some(other),
        ..worker("theirs")
    });
    let mine = env.sim.create_server(NewServer {
        project_id: Some(env.project_id.clone()),
        ..worker("mine")
    });
    assert_eq!(
        env.nova(Method::GET, &format!("/servers/{id}"), "", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::NOT_FOUND
    );
    let list = env.nova(Method::GET, "/servers", "", None).await;
    assert_eq!(list.body["servers"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["servers"][0]["id"], json!(mine));
    // An admin sees and acts on it; its list is its own project's unless it asks for all.
    env.sim
        .add_admin("admin", "admin-secret", "Default", &env.project_id);
    let token = env.token_of("admin", "admin-secret").await;
    let auth = [("X-Auth-Token", token.as_str())];
    let shown = env
        .call(
            Method::GET,
            &format!("/compute/v2.1/servers/{id}"),
            &auth,
            None,
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let stop = env
        .call(
            Method::POST,
            &format!("/compute/v2.1/servers/{id}/action"),
            &auth,
            Some(&json!({"os-stop": null})),
        )
        .await;
    assert_eq!(stop.status, StatusCode::ACCEPTED, "{}", stop.body);
    let own = env
        .call(Method::GET, "/compute/v2.1/servers", &auth, None)
        .await;
    assert_eq!(own.body["servers"].as_array().unwrap().len(), 1);
    let all = env
        .call(
            Method::GET,
            "/compute/v2.1/servers?all_tenants=1",
            &auth,
            None,
        )
        .await;
    assert_eq!(all.body["servers"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn microversions_are_negotiated_and_shape_the_server() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    let path = format!("/servers/{id}");

    let default = env.nova(Method::GET, &path, "", None).await;
    assert_eq!(default.header("OpenStack-API-Version"), Some("compute 2.1"));
    assert_eq!(default.header("X-OpenStack-Nova-API-Version"), Some("2.1"));
    // As Nova 32.x answers: the legacy header is not in Vary.
    assert_eq!(default.header("Vary"), Some("OpenStack-API-Version"));
    assert!(
        default.body["server"]["flavor"]["id"].is_string(),
        "before 2.47 the flavor is a link"
    );
    assert!(default.body["server"].get("locked").is_none());

    let v247 = env.nova(Method::GET, &path, "2.47", None).await;
    assert_eq!(v247.header("OpenStack-API-Version"), Some("compute 2.47"));
    assert_eq!(v247.body["server"]["flavor"]["original_name"], "m1.medium");
    assert_eq!(v247.body["server"]["flavor"]["vcpus"], 2);
    assert!(
        v247.body["server"].get("server_groups").is_none(),
        "server_groups came in 2.71"
    );

    let latest = env.nova(Method::GET, &path, "latest", None).await;
    assert_eq!(
        latest.header("OpenStack-API-Version"),
        Some(format!("compute {}", openstack_sim::NOVA_MAX_MICROVERSION).as_str())
    );
    assert_eq!(
        latest.body["server"]["OS-EXT-SRV-ATTR:hostname"],
        "k8s-node-0"
    );
    assert!(latest.body["server"]["image"]["properties"].is_object());

    let token = env.token().await;
    let legacy = env
        .call(
            Method::GET,
            &format!("/compute/v2.1{path}"),
            &[
                ("X-Auth-Token", &token),
                ("X-OpenStack-Nova-API-Version", "2.19"),
            ],
            None,
        )
        .await;
    assert_eq!(legacy.header("X-OpenStack-Nova-API-Version"), Some("2.19"));
    assert_eq!(legacy.body["server"]["description"], json!(null));

    let too_new = env.nova(Method::GET, &path, "2.999", None).await;
    assert_eq!(too_new.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(too_new.body["computeFault"]["code"], 406);
    assert_eq!(
        too_new.body["computeFault"]["message"],
        format!(
            "Version 2.999 is not supported by the API. Minimum is 2.1 and maximum is {}.",
            openstack_sim::NOVA_MAX_MICROVERSION
        )
    );
    // Nova echoes the version it refused, with Vary.
    assert_eq!(
        too_new.header("OpenStack-API-Version"),
        Some("compute 2.999")
    );
    assert_eq!(
        too_new.header("X-OpenStack-Nova-API-Version"),
        Some("2.999")
    );
    assert_eq!(too_new.header("Vary"), Some("OpenStack-API-Version"));
    let garbage = env.nova(Method::GET, &path, "two", None).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.body["badRequest"]["code"], 400);
    assert_eq!(garbage.header("OpenStack-API-Version"), None);

    let versions = env.call(Method::GET, "/compute/v2.1/", &[], None).await;
    assert_eq!(
        versions.body["version"]["version"],
        openstack_sim::NOVA_MAX_MICROVERSION
    );
    assert_eq!(versions.body["version"]["min_version"], "2.1");
}

#[tokio::test]
async fn stop_and_start_go_through_their_task_states() {
    let env = slow_env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));

    let r = env.action(&id, json!({"os-stop": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body, json!(null), "202 with an empty body");
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.task_state.as_deref()),
        ("ACTIVE", Some("powering-off"))
    );
    let seen = env
        .nova(Method::GET, &format!("/servers/{id}"), "", None)
        .await;
    assert_eq!(seen.body["server"]["OS-EXT-STS:task_state"], "powering-off");
    assert_conflict(
        &env,
        &id,
        json!({"os-stop": null}),
        &format!("Cannot 'stop' instance {id} while it is in task_state powering-off"),
    )
    .await;

    env.wait_status(&id, "SHUTOFF").await;
    let s = env.server(&id);
    assert_eq!(
        (s.power_state, s.running, s.stops),
        (power_state::SHUTDOWN, false, 1)
    );
    assert_conflict(
        &env,
        &id,
        json!({"os-stop": null}),
        &format!("Cannot 'stop' instance {id} while it is in vm_state stopped"),
    )
    .await;

    assert_eq!(
        env.action(&id, json!({"os-start": null})).await.status,
        StatusCode::ACCEPTED
    );
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.task_state.as_deref()),
        ("SHUTOFF", Some("powering-on"))
    );
    env.wait_status(&id, "ACTIVE").await;
    let s = env.server(&id);
    assert_eq!(
        (s.power_state, s.running, s.starts),
        (power_state::RUNNING, true, 1)
    );
    assert_conflict(
        &env,
        &id,
        json!({"os-start": null}),
        &format!("Cannot 'start' instance {id} while it is in vm_state active"),
    )
    .await;
}

#[tokio::test]
async fn soft_and_hard_reboots() {
    let env = env_with(SimConfig {
        transition_delay: SLOW * 2,
        ..config()
    })
    .await;
    let id = env.sim.create_server(worker("k8s-node-0"));

    assert_eq!(
        env.action(&id, json!({"reboot": {"type": "SOFT"}}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(env.server(&id).status, "REBOOT");
    assert_conflict(
        &env,
        &id,
        json!({"reboot": {"type": "SOFT"}}),
        &format!("Cannot 'reboot' instance {id} while it is in task_state rebooting"),
    )
    .await;
    env.wait_server(&id, "reboot_started", |s| {
        s.is_some_and(|s| s.task_state.as_deref() == Some("reboot_started"))
    })
    .await;
    assert!(
        !env.server(&id).running,
        "the guest is down while it reboots"
    );
    // A hard reboot may take over a soft one that is under way.
    assert_eq!(
        env.action(&id, json!({"reboot": {"type": "HARD"}}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(env.server(&id).status, "HARD_REBOOT");
    env.wait_status(&id, "ACTIVE").await;
    let s = env.server(&id);
    assert_eq!((s.soft_reboots, s.hard_reboots, s.running), (1, 1, true));

    // From SHUTOFF only a hard reboot is allowed, and Nova keeps saying SHUTOFF until done.
    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    env.wait_status(&id, "SHUTOFF").await;
    assert_conflict(
        &env,
        &id,
        json!({"reboot": {"type": "SOFT"}}),
        &format!("Cannot 'reboot' instance {id} while it is in vm_state stopped"),
    )
    .await;
    assert_eq!(
        env.action(&id, json!({"reboot": {"type": "HARD"}}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.task_state.as_deref()),
        ("SHUTOFF", Some("rebooting_hard"))
    );
    env.wait_status(&id, "ACTIVE").await;
    assert_eq!(env.server(&id).power_state, power_state::RUNNING);

    let bad = env.action(&id, json!({"reboot": {"type": "WARM"}})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["badRequest"]["code"], 400);
}

#[tokio::test]
async fn rebuild_runs_the_new_image_and_keeps_a_stopped_server_stopped() {
    let env = env_with(SimConfig {
        transition_delay: SLOW * 2,
        ..config()
    })
    .await;
    let id = env.sim.create_server(worker("k8s-node-0"));

    let r = env
        .action(&id, json!({"rebuild": {"imageRef": "fedora-coreos-41"}}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.body["server"]["status"], "REBUILD",
        "rebuild answers with the server"
    );
    assert_eq!(r.body["server"]["image"]["id"], "fedora-coreos-41");
    assert_eq!(env.server(&id).task_state.as_deref(), Some("rebuilding"));
    assert_conflict(
        &env,
        &id,
        json!({"os-stop": null}),
        &format!("Cannot 'stop' instance {id} while it is in task_state rebuilding"),
    )
    .await;
    env.wait_server(&id, "rebuild_spawning", |s| {
        s.is_some_and(|s| s.task_state.as_deref() == Some("rebuild_spawning"))
    })
    .await;
    assert!(!env.server(&id).running);
    env.wait_status(&id, "ACTIVE").await;
    let s = env.server(&id);
    assert_eq!(
        (s.image_id.as_str(), s.running, s.rebuilds),
        ("fedora-coreos-41", true, 1)
    );

    // Nova brings a server that was stopped back to stopped after a rebuild.
    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    env.wait_status(&id, "SHUTOFF").await;
    assert_eq!(
        env.action(&id, json!({"rebuild": {"imageRef": "fedora-coreos-42"}}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(env.server(&id).status, "REBUILD");
    env.wait_status(&id, "SHUTOFF").await;
    assert_eq!(env.server(&id).image_id, "fedora-coreos-42");

    let missing_image = env.action(&id, json!({"rebuild": {"name": "x"}})).await;
    assert_eq!(missing_image.status, StatusCode::BAD_REQUEST);
    let unknown = env.action(&id, json!({"os-levitate": null})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.body["badRequest"]["message"],
        "There is no such action: os-levitate"
    );
}

#[tokio::test]
async fn delete_takes_the_server_away() {
    let env = slow_env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    let r = env
        .nova(Method::DELETE, &format!("/servers/{id}"), "", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(env.server(&id).task_state.as_deref(), Some("deleting"));
    assert_conflict(
        &env,
        &id,
        json!({"os-start": null}),
        &format!("Cannot 'start' instance {id} while it is in vm_state active"),
    )
    .await;
    env.wait_server(&id, "gone", |s| s.is_none()).await;
    let gone = env
        .nova(Method::GET, &format!("/servers/{id}"), "", None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        gone.body["itemNotFound"]["message"],
        format!("Instance {id} could not be found.")
    );
    assert_eq!(
        env.nova(Method::DELETE, &format!("/servers/{id}"), "", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_crashed_guest_is_shutoff_at_once_or_after_the_power_sync() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.crash_server(&id);
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.power_state, s.running),
        ("SHUTOFF", power_state::SHUTDOWN, false)
    );

    let env = env_with(SimConfig {
        power_sync_delay: Duration::from_millis(300),
        ..config()
    })
    .await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.crash_server(&id);
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.power_state, s.running),
        ("ACTIVE", power_state::SHUTDOWN, false)
    );
    let seen = env
        .nova(Method::GET, &format!("/servers/{id}"), "", None)
        .await;
    assert_eq!(seen.body["server"]["status"], "ACTIVE");
    assert_eq!(
        seen.body["server"]["OS-EXT-STS:power_state"],
        power_state::SHUTDOWN
    );
    env.wait_status(&id, "SHUTOFF").await;
}

#[tokio::test]
async fn on_a_dead_host_stop_never_completes_but_delete_does() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.host_down(&id);
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.running, s.host_down),
        ("ACTIVE", false, true)
    );

    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(DELAY * 6).await;
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.task_state.as_deref()),
        ("ACTIVE", Some("powering-off")),
        "stuck"
    );
    assert_conflict(
        &env,
        &id,
        json!({"reboot": {"type": "HARD"}}),
        &format!("Cannot 'reboot' instance {id} while it is in task_state powering-off"),
    )
    .await;

    // nova-api deletes locally when the compute host is down: gone at once.
    assert_eq!(
        env.nova(Method::DELETE, &format!("/servers/{id}"), "", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(env.sim.server(&id).is_none());
    assert_eq!(
        env.nova(Method::GET, &format!("/servers/{id}"), "", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn when_the_host_comes_back_a_stuck_stop_completes() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.host_down(&id);
    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(DELAY * 3).await;
    assert_eq!(env.server(&id).task_state.as_deref(), Some("powering-off"));
    env.sim.host_up(&id);
    env.wait_status(&id, "SHUTOFF").await;

    // A host that comes back with nothing pending brings the guest back.
    let other = env.sim.create_server(worker("k8s-node-1"));
    env.sim.host_down(&other);
    assert!(!env.server(&other).running);
    env.sim.host_up(&other);
    assert!(env.server(&other).running);
}

#[tokio::test]
async fn a_server_that_refuses_to_power_off_stays_active() {
    let env = slow_env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.refuse_power_off(&id, true);
    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(env.server(&id).task_state.as_deref(), Some("powering-off"));
    env.wait_server(&id, "the stop to give up", |s| {
        s.is_some_and(|s| s.task_state.is_none())
    })
    .await;
    tokio::time::sleep(DELAY * 2).await;
    let s = env.server(&id);
    assert_eq!(
        (s.status.as_str(), s.power_state, s.running, s.stops),
        ("ACTIVE", power_state::RUNNING, true, 1)
    );

    env.sim.refuse_power_off(&id, false);
    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    env.wait_status(&id, "SHUTOFF").await;
}

#[tokio::test]
async fn the_watch_channel_follows_timed_transitions() {
    let env = slow_env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    let mut rx = env.sim.watch_servers();
    let status =
        |rx: &tokio::sync::watch::Receiver<std::sync::Arc<Vec<openstack_sim::ServerView>>>| {
            let snapshot = rx.borrow();
            let s = snapshot
                .iter()
                .find(|s| s.id == id)
                .expect("in the snapshot")
                .clone();
            (s.status, s.task_state, s.running)
        };
    assert_eq!(status(&rx), ("ACTIVE".to_string(), None, true));

    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("a change")
        .unwrap();
    assert_eq!(
        status(&rx),
        ("ACTIVE".to_string(), Some("powering-off".to_string()), true)
    );
    // The completion is published by the clock, with no request in between.
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("a change")
        .unwrap();
    assert_eq!(status(&rx), ("SHUTOFF".to_string(), None, false));

    env.sim.crash_server(&id);
    env.sim.host_down(&id);
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("a change")
        .unwrap();
    assert!(rx.borrow().iter().any(|s| s.id == id && s.host_down));
    env.sim.create_server(worker("k8s-node-1"));
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("a change")
        .unwrap();
    assert_eq!(rx.borrow().len(), 2);
}

#[tokio::test]
async fn a_server_in_error_can_be_hard_rebooted_or_stopped() {
    let env = env().await;
    let id = env.sim.create_server(worker("k8s-node-0"));
    env.sim.set_server_error(&id);
    let s = env.server(&id);
    assert_eq!((s.status.as_str(), s.vm_state.as_str()), ("ERROR", "error"));
    assert_conflict(
        &env,
        &id,
        json!({"reboot": {"type": "SOFT"}}),
        &format!("Cannot 'reboot' instance {id} while it is in vm_state error"),
    )
    .await;
    assert_conflict(
        &env,
        &id,
        json!({"os-start": null}),
        &format!("Cannot 'start' instance {id} while it is in vm_state error"),
    )
    .await;
    assert_eq!(
        env.action(&id, json!({"reboot": {"type": "HARD"}}))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        env.server(&id).status,
        "ERROR",
        "Nova's status map keeps ERROR during the reboot"
    );
    env.wait_status(&id, "ACTIVE").await;

    env.sim.set_server_error(&id);
    assert_eq!(
        env.action(&id, json!({"os-stop": null})).await.status,
        StatusCode::ACCEPTED
    );
    env.wait_status(&id, "SHUTOFF").await;
}
