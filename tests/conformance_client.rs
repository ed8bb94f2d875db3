//! nodehealer's OpenStack client against the simulator and a real OpenStack, with the same
//! test bodies: each `async fn` below runs once in `mod sim` (the in-process simulator) and
//! once in `mod real` (the cloud `NODEHEALER_OPENSTACK` names; those fail, never skip, when
//! it is not given). The assertions are what real Keystone, Nova and Magnum do (Nova 32.x
//! with the fake driver, Magnum 21.x without Heat): where the simulator does something else,
//! its variant fails, and the README's conformance section lists the difference.
//!
//! State sequences are observed by polling quickly: a poll may miss a short state, never
//! see them out of order, so each observed sequence must be an in-order part of Nova's.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nodehealer::metrics::Metrics;
use nodehealer::openstack::{
    ClientOptions, Cloud, CloudError, DeletionEvidence, HealthStatus, OpenStackClient, RebootType,
    Server, health_report,
};
use serde_json::json;
use support::target::{CLOUD, Seen, Target, follows, magnum_turn, observe, st};

/// Every wait for a transition ends after this long (the real cloud's take seconds).
const WAIT: Duration = Duration::from_secs(90);
/// How often a state sequence is sampled.
const POLL: Duration = Duration::from_millis(40);

fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(30),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        max_attempts: 4,
        ..ClientOptions::default()
    }
}

fn client(yaml: &str) -> OpenStackClient {
    OpenStackClient::from_clouds_yaml(yaml, CLOUD, None, options(), Metrics::default())
        .expect("a client from the target's clouds.yaml")
}

/// Runs each body against both targets; bodies clean up after themselves through
/// `Target::cleanup`, which runs even when the body fails.
macro_rules! conformance {
    (shared: [$($name:ident),* $(,)?], exclusive: [$($ex:ident),* $(,)?] $(,)?) => {
        mod sim {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::run(super::Target::sim().await, super::$name).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $ex() -> anyhow::Result<()> {
                    super::run(super::Target::sim().await, super::$ex).await
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::run(super::Target::real().await, super::$name).await
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $ex() -> anyhow::Result<()> {
                    super::run(super::Target::real_exclusive().await, super::$ex).await
                }
            )*
        }
    };
}

conformance! {
    shared: [
        password_and_application_credential_auth,
        the_catalog_and_interface_select_the_endpoint,
        a_revoked_token_leads_to_one_reauthentication,
        stop_and_start,
        soft_reboot,
        hard_reboot,
        rebuild_of_a_running_server,
        rebuild_of_a_stopped_server_keeps_it_stopped,
        shelve_and_unshelve,
        delete_by_the_compute_host,
        a_wrong_state_is_a_409_worded_as_nova_words_it,
        another_projects_server_is_a_404,
        instance_actions_with_their_events,
        magnum_cluster_nodegroups_and_health_status,
        magnum_resize_and_an_update_after_it,
    ],
    exclusive: [a_delete_while_the_compute_is_down_is_a_local_delete],
}

async fn run<F, Fut>(target: Target, body: F) -> Result<()>
where
    F: FnOnce(&'static Target) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use futures::FutureExt;
    // Leaked: the body borrows it for its whole life, and one target per test is small.
    let t: &'static Target = Box::leak(Box::new(target));
    let outcome = std::panic::AssertUnwindSafe(body(t)).catch_unwind().await;
    let cleaned = t.cleanup().await;
    match outcome {
        Ok(result) => result.and(cleaned),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The server's (status, task_state), None once Nova answers 404.
async fn seen(cloud: &dyn Cloud, id: &str) -> Result<Option<Seen>> {
    Ok(cloud
        .server(id)
        .await?
        .map(|s| (s.status.clone(), s.task_state.clone())))
}

/// Polls until the server reaches `end` after having left its first state; the sequence.
async fn sequence(
    cloud: &dyn Cloud,
    id: &str,
    what: &str,
    end: Option<Seen>,
) -> Result<Vec<Option<Seen>>> {
    observe(
        what,
        WAIT,
        POLL,
        || seen(cloud, id),
        |history| history.last() == Some(&end) && history.len() > 1,
    )
    .await
}

/// Asserts that `seen` is an in-order part of `expected`, ending where it ends.
fn assert_follows(what: &str, seen: &[Option<Seen>], expected: &[Option<Seen>]) {
    // Printed (libtest shows it for a failure, or with --nocapture): what this cloud did.
    eprintln!("[sequence] {what}: {seen:?}");
    assert!(
        follows(seen, expected),
        "{what}: observed {seen:?}, which is not an in-order part of Nova's {expected:?}"
    );
}

async fn wait_server(
    cloud: &dyn Cloud,
    id: &str,
    what: &str,
    done: impl Fn(&Server) -> bool,
) -> Result<Server> {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = cloud.server(id).await?;
        if let Some(s) = s.as_ref().filter(|s| done(s)) {
            return Ok(s.clone());
        }
        ensure!(
            Instant::now() < deadline,
            "server {id} not {what} within {WAIT:?}: {s:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn password_and_application_credential_auth(t: &Target) -> Result<()> {
    let name = Target::unique_name("auth");
    let id = t.create_server(&name).await?;
    let before = t.token_requests();
    for yaml in [t.password_yaml(), t.app_cred_yaml()] {
        let cloud = client(&yaml);
        let s = cloud
            .server(&id)
            .await?
            .context("the server, seen by the client")?;
        assert_eq!(s.name, name);
        assert_eq!(s.image_id.as_deref(), Some(t.image().as_str()));
        assert!(s.is_active(), "{s:?}");
        assert!(s.updated.is_some(), "Nova's updated: {s:?}");
        let by_name = cloud.server_by_name(&name).await?;
        assert_eq!(by_name.map(|s| s.id), Some(id.clone()));
    }
    assert_eq!(t.token_requests() - before, 2, "one token per client");

    // A wrong password: refused at once (401), never retried, and the secret is not shown.
    let wrong = format!("not-{}", t.password());
    let e = client(&t.password_yaml_with(&wrong))
        .server(&id)
        .await
        .expect_err("a wrong password");
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
    assert!(!e.to_string().contains(&wrong), "{e}");
    assert_eq!(
        t.token_requests() - before,
        3,
        "the refused token request is not resent"
    );

    // A wrong application credential secret, the same.
    let yaml = t.app_cred_yaml();
    let broken = yaml.replace(
        "application_credential_secret: \"",
        "application_credential_secret: \"x",
    );
    let e = client(&broken)
        .server(&id)
        .await
        .expect_err("a wrong secret");
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
    Ok(())
}

async fn the_catalog_and_interface_select_the_endpoint(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("catalog")).await?;
    let catalog = t.catalog().await?;
    let region = t.region();
    assert!(
        catalog
            .iter()
            .any(|(kind, iface, r, _)| kind == "compute" && iface == "public" && *r == region),
        "a public compute endpoint in {region}: {catalog:?}"
    );
    for iface in ["public", "internal", "admin"] {
        let listed = catalog
            .iter()
            .any(|(kind, i, r, _)| kind == "compute" && i == iface && *r == region);
        let yaml = t.password_yaml().replace(
            &format!("region_name: {region}"),
            &format!("region_name: {region}\n    interface: {iface}"),
        );
        let answer = client(&yaml).server(&id).await;
        if listed {
            assert!(
                answer.as_ref().is_ok_and(|s| s.is_some()),
                "{iface}: {answer:?}"
            );
        } else {
            let e = answer.expect_err("no such endpoint");
            assert!(
                e.to_string()
                    .contains(&format!("no {iface} compute endpoint in region {region}")),
                "{iface}: {e}"
            );
        }
    }
    let elsewhere = t
        .password_yaml()
        .replace(&format!("region_name: {region}"), "region_name: RegionNine");
    let e = client(&elsewhere)
        .server(&id)
        .await
        .expect_err("no such region");
    assert!(
        e.to_string()
            .contains("no public compute endpoint in region RegionNine (it has: "),
        "{e}"
    );
    assert_eq!(e.category(), "CloudEndpointMissing");
    assert!(!e.retryable());
    Ok(())
}

/// Keystone revokes the client's token: the next service that checks it answers 401, and the
/// client gets one new token and sends the request again. (The token is first checked by
/// Magnum here: Nova's keystonemiddleware may keep a validated token in its cache for
/// minutes, so whether Nova refuses a revoked token at once is not Keystone's call.)
async fn a_revoked_token_leads_to_one_reauthentication(t: &Target) -> Result<()> {
    let _magnum = magnum_turn(t).await;
    let id = t.create_server(&Target::unique_name("token")).await?;
    let before = t.token_requests();
    let cloud = client(&t.password_yaml());
    assert!(cloud.server(&id).await?.is_some());
    assert!(cloud.server(&id).await?.is_some());
    assert_eq!(t.token_requests() - before, 1, "the token is reused");
    t.revoke_tokens().await?;
    let missing = Target::unique_name("no-such-cluster");
    let e = cloud.cluster(&missing).await.expect_err("no such cluster");
    assert!(
        e.is_not_found(),
        "a 404 after re-authenticating, not a 401: {e:?}"
    );
    assert_eq!(
        t.token_requests() - before,
        2,
        "exactly one re-authentication"
    );
    assert!(
        cloud.server(&id).await?.is_some(),
        "the new token serves Nova"
    );
    assert_eq!(t.token_requests() - before, 2);
    Ok(())
}

async fn stop_and_start(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("stop")).await?;
    let cloud = client(&t.password_yaml());
    cloud.stop(&id).await?;
    let seen = sequence(&cloud, &id, "stopped", st("SHUTOFF", None)).await?;
    assert_follows(
        "os-stop",
        &seen,
        &[
            st("ACTIVE", None),
            st("ACTIVE", Some("powering-off")),
            st("SHUTOFF", None),
        ],
    );
    let off = cloud.server(&id).await?.context("the server")?;
    assert_eq!(off.vm_state.as_deref(), Some("stopped"));
    cloud.start(&id).await?;
    let seen = sequence(&cloud, &id, "started", st("ACTIVE", None)).await?;
    assert_follows(
        "os-start",
        &seen,
        &[
            st("SHUTOFF", None),
            st("SHUTOFF", Some("powering-on")),
            st("ACTIVE", None),
        ],
    );
    Ok(())
}

async fn soft_reboot(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("soft")).await?;
    let cloud = client(&t.password_yaml());
    cloud.reboot(&id, RebootType::Soft).await?;
    let seen = sequence(&cloud, &id, "rebooted", st("ACTIVE", None)).await?;
    assert_follows(
        "reboot SOFT",
        &seen,
        &[
            st("ACTIVE", None),
            st("REBOOT", Some("rebooting")),
            st("REBOOT", Some("reboot_pending")),
            st("REBOOT", Some("reboot_started")),
            st("ACTIVE", None),
        ],
    );
    assert!(seen.len() > 1, "a reboot shows REBOOT first: {seen:?}");
    Ok(())
}

async fn hard_reboot(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("hard")).await?;
    let cloud = client(&t.password_yaml());
    cloud.reboot(&id, RebootType::Hard).await?;
    let seen = sequence(&cloud, &id, "rebooted", st("ACTIVE", None)).await?;
    assert_follows(
        "reboot HARD",
        &seen,
        &[
            st("ACTIVE", None),
            st("HARD_REBOOT", Some("rebooting_hard")),
            st("HARD_REBOOT", Some("reboot_pending_hard")),
            st("HARD_REBOOT", Some("reboot_started_hard")),
            st("ACTIVE", None),
        ],
    );
    Ok(())
}

const REBUILD_STEPS: [(&str, Option<&str>); 3] = [
    ("REBUILD", Some("rebuilding")),
    ("REBUILD", Some("rebuild_block_device_mapping")),
    ("REBUILD", Some("rebuild_spawning")),
];

async fn rebuild_of_a_running_server(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("rebuild")).await?;
    let cloud = client(&t.password_yaml());
    let image = t.rebuild_image();
    cloud.rebuild(&id, &image).await?;
    let seen = sequence(&cloud, &id, "rebuilt", st("ACTIVE", None)).await?;
    let mut expected = vec![st("ACTIVE", None)];
    expected.extend(REBUILD_STEPS.iter().map(|(s, task)| st(s, *task)));
    expected.push(st("ACTIVE", None));
    assert_follows("rebuild of an ACTIVE server", &seen, &expected);
    let s = cloud.server(&id).await?.context("the server")?;
    assert_eq!(s.image_id.as_deref(), Some(image.as_str()));
    Ok(())
}

/// Nova keeps a server rebuilt while SHUTOFF stopped: after the spawn it is ACTIVE with no
/// task for a moment, then powered off again.
async fn rebuild_of_a_stopped_server_keeps_it_stopped(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("rebuildoff")).await?;
    let cloud = client(&t.password_yaml());
    cloud.stop(&id).await?;
    wait_server(&cloud, &id, "off", Server::is_off).await?;
    let image = t.rebuild_image();
    cloud.rebuild(&id, &image).await?;
    let seen = sequence(
        &cloud,
        &id,
        "rebuilt and stopped again",
        st("SHUTOFF", None),
    )
    .await?;
    let mut expected = vec![st("SHUTOFF", None)];
    expected.extend(REBUILD_STEPS.iter().map(|(s, task)| st(s, *task)));
    expected.extend([
        st("ACTIVE", None),
        st("ACTIVE", Some("powering-off")),
        st("SHUTOFF", None),
    ]);
    assert_follows("rebuild of a SHUTOFF server", &seen, &expected);
    let s = cloud.server(&id).await?.context("the server")?;
    assert_eq!(s.image_id.as_deref(), Some(image.as_str()));
    assert_eq!(s.vm_state.as_deref(), Some("stopped"));
    // It stays off: nothing starts it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = cloud.server(&id).await?.context("the server")?;
    assert!(s.is_off(), "{s:?}");
    Ok(())
}

async fn shelve_and_unshelve(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("shelve")).await?;
    let cloud = client(&t.password_yaml());
    t.shelve(&id).await?;
    let seen = sequence(&cloud, &id, "shelved", st("SHELVED_OFFLOADED", None)).await?;
    assert_follows(
        "shelve",
        &seen,
        &[
            st("ACTIVE", None),
            st("ACTIVE", Some("shelving")),
            st("ACTIVE", Some("shelving_image_pending_upload")),
            st("ACTIVE", Some("shelving_image_uploading")),
            st("SHELVED", None),
            st("SHELVED", Some("shelving_offloading")),
            st("SHELVED_OFFLOADED", None),
        ],
    );
    // os-start does not apply to a shelved server.
    let e = cloud
        .start(&id)
        .await
        .expect_err("start of a shelved server");
    assert!(matches!(e, CloudError::Conflict { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!(
            "Cannot 'start' instance {id} while it is in vm_state shelved_offloaded"
        )),
        "{e}"
    );
    cloud.unshelve(&id).await?;
    let seen = sequence(&cloud, &id, "unshelved", st("ACTIVE", None)).await?;
    assert_follows(
        "unshelve",
        &seen,
        &[
            st("SHELVED_OFFLOADED", None),
            st("SHELVED_OFFLOADED", Some("unshelving")),
            st("SHELVED_OFFLOADED", Some("spawning")),
            st("ACTIVE", None),
        ],
    );
    Ok(())
}

async fn delete_by_the_compute_host(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("delete")).await?;
    let cloud = client(&t.password_yaml());
    cloud.delete(&id).await?;
    let seen = sequence(&cloud, &id, "deleted", None).await?;
    // Between the compute host's delete and the row's removal Nova shows DELETED.
    assert_follows(
        "delete",
        &seen,
        &[
            st("ACTIVE", None),
            st("ACTIVE", Some("deleting")),
            st("DELETED", None),
            None,
        ],
    );
    // The host records its event's result just after the instance is gone.
    let deadline = Instant::now() + WAIT;
    loop {
        let evidence = cloud.deletion_evidence(&id).await?;
        if evidence == DeletionEvidence::ComputeTerminated {
            break;
        }
        assert_eq!(
            evidence,
            DeletionEvidence::Terminating,
            "a compute host's delete"
        );
        ensure!(
            Instant::now() < deadline,
            "the terminate event never finished"
        );
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Its compute service down, nova-api deletes the instance in its database: 404 at once,
/// and nothing in the actions says the guest was destroyed.
async fn a_delete_while_the_compute_is_down_is_a_local_delete(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("localdel")).await?;
    let cloud = client(&t.password_yaml());
    let host = t.compute_down(&id).await?;
    let outcome = async {
        cloud.delete(&id).await?;
        let gone = cloud.server(&id).await?;
        let evidence = cloud.deletion_evidence(&id).await?;
        anyhow::Ok((gone, evidence))
    }
    .await;
    t.compute_up(&host).await?;
    let (gone, evidence) = outcome?;
    assert_eq!(gone, None, "a local delete is done when the DELETE returns");
    assert!(
        matches!(
            evidence,
            DeletionEvidence::NoDelete | DeletionEvidence::NotByCompute
        ),
        "no evidence that the guest stopped: {evidence:?}"
    );
    Ok(())
}

async fn a_wrong_state_is_a_409_worded_as_nova_words_it(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("conflict")).await?;
    let cloud = client(&t.password_yaml());
    let e = cloud
        .start(&id)
        .await
        .expect_err("start of an ACTIVE server");
    let CloudError::Conflict {
        service, operation, ..
    } = &e
    else {
        panic!("409 expected, got {e:?}");
    };
    assert_eq!((*service, *operation), ("nova", "server_start"));
    assert!(
        e.to_string().contains(&format!(
            "Cannot 'start' instance {id} while it is in vm_state active"
        )),
        "{e}"
    );
    // The body, as Nova words it.
    let token = t.token().await?;
    let (status, body) = t
        .rest(
            &token,
            reqwest::Method::POST,
            &format!("{}/servers/{id}/action", t.nova_url()),
            Some(json!({"os-start": null})),
            "compute 2.1",
        )
        .await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["conflictingRequest"]["code"], 409, "{body}");
    assert_eq!(
        body["conflictingRequest"]["message"],
        format!("Cannot 'start' instance {id} while it is in vm_state active"),
    );
    // A task in progress: the same, by task_state.
    cloud.stop(&id).await?;
    let (status, body) = t
        .rest(
            &token,
            reqwest::Method::POST,
            &format!("{}/servers/{id}/action", t.nova_url()),
            Some(json!({"reboot": {"type": "SOFT"}})),
            "compute 2.1",
        )
        .await?;
    // The stop may have finished already (the fake driver is quick): then it is vm_state.
    assert_eq!(status, 409, "{body}");
    let message = body["conflictingRequest"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message == format!("Cannot 'reboot' instance {id} while it is in task_state powering-off")
            || message == format!("Cannot 'reboot' instance {id} while it is in vm_state stopped"),
        "{body}"
    );
    Ok(())
}

async fn another_projects_server_is_a_404(t: &Target) -> Result<()> {
    let name = Target::unique_name("theirs");
    let theirs = t.create_other_projects_server(&name).await?;
    let outcome = async {
        let cloud = client(&t.password_yaml());
        assert_eq!(cloud.server(&theirs).await?, None);
        assert_eq!(cloud.server_by_name(&name).await?, None);
        let e = cloud
            .stop(&theirs)
            .await
            .expect_err("another project's server");
        assert!(e.is_not_found(), "{e:?}");
        assert_eq!(
            cloud.deletion_evidence(&theirs).await?,
            DeletionEvidence::UnknownServer
        );
        anyhow::Ok(())
    }
    .await;
    t.delete_other_projects_server(&theirs).await?;
    outcome
}

async fn instance_actions_with_their_events(t: &Target) -> Result<()> {
    let id = t.create_server(&Target::unique_name("actions")).await?;
    let cloud = client(&t.password_yaml());
    cloud.stop(&id).await?;
    wait_server(&cloud, &id, "off", Server::is_off).await?;
    let token = t.token().await?;
    let list_url = format!("{}/servers/{id}/os-instance-actions", t.nova_url());
    let (status, list) = t
        .rest(
            &token,
            reqwest::Method::GET,
            &list_url,
            None,
            "compute 2.51",
        )
        .await?;
    assert_eq!(status, 200, "{list}");
    let actions: Vec<&str> = list["instanceActions"]
        .as_array()
        .context("instanceActions")?
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(actions, ["stop", "create"], "newest first: {list}");
    let stop = &list["instanceActions"][0];
    assert!(
        stop.get("events").is_none(),
        "the list never has events: {stop}"
    );
    let request_id = stop["request_id"].as_str().context("request_id")?;
    let (status, shown) = t
        .rest(
            &token,
            reqwest::Method::GET,
            &format!("{list_url}/{request_id}"),
            None,
            "compute 2.51",
        )
        .await?;
    assert_eq!(status, 200, "{shown}");
    let events: Vec<(String, Option<String>)> = shown["instanceAction"]["events"]
        .as_array()
        .context("events shown to a project member at 2.51")?
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_string(),
                e["result"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        events,
        [(
            "compute_stop_instance".to_string(),
            Some("Success".to_string())
        )],
        "{shown}"
    );
    // Below 2.51 a project member sees no events.
    let (_, old) = t
        .rest(
            &token,
            reqwest::Method::GET,
            &format!("{list_url}/{request_id}"),
            None,
            "compute 2.50",
        )
        .await?;
    assert!(old["instanceAction"].get("events").is_none(), "{old}");
    Ok(())
}

async fn magnum_cluster_nodegroups_and_health_status(t: &Target) -> Result<()> {
    let _magnum = magnum_turn(t).await;
    let name = Target::unique_name("magnum");
    let cluster = t.magnum_cluster(&name, 1, 2).await?;
    let cloud = client(&t.password_yaml());
    let c = cloud.cluster(&name).await?;
    assert_eq!(c.uuid, cluster.uuid);
    assert_eq!(c.status, "CREATE_COMPLETE");
    assert_eq!((c.node_count, c.master_count), (2, 1));
    assert_eq!(cloud.cluster(&cluster.uuid).await?.name, name);
    let groups = cloud.nodegroups(&cluster.uuid).await?;
    let mut seen: Vec<(String, String, u32)> = groups
        .iter()
        .map(|g| (g.name.clone(), g.role.clone(), g.node_count))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("default-master".to_string(), "master".to_string(), 1),
            ("default-worker".to_string(), "worker".to_string(), 2)
        ]
    );

    // Magnum's JSON patch takes strings and integers only: an object is refused.
    let token = t.token().await?;
    let url = format!("{}/clusters/{}", t.magnum_url(), cluster.uuid);
    let (code, body) = t
        .rest(
            &token,
            reqwest::Method::PATCH,
            &url,
            Some(
                json!([{"op": "replace", "path": "/health_status_reason", "value": {"api": "ok"}}]),
            ),
            "container-infra 1.9",
        )
        .await?;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.to_string().contains(
            "Wrong type. Expected '(<class 'str'>, <class 'int'>)', got '<class 'dict'>'"
        ),
        "{body}"
    );
    // The report as magnum-auto-healer writes it: accepted, and stored as a map of strings.
    let (status, reason) = health_report(&[("k8s-node-0", "Ready")], false, jiff::Timestamp::now());
    cloud.report_health(&cluster.uuid, status, &reason).await?;
    let stored = wait_health(&cloud, &cluster.uuid, status, &reason).await?;
    assert_eq!(stored.health_status_reason["k8s-node-0.Ready"], "error");

    let (status, reason) = health_report(&[], false, jiff::Timestamp::now());
    cloud.report_health(&cluster.uuid, status, &reason).await?;
    wait_health(&cloud, &cluster.uuid, HealthStatus::Healthy, &reason).await?;
    t.delete_cluster_servers(&cluster).await
}

/// Waits until Magnum shows the health report (its conductor stores it after the API's 202).
async fn wait_health(
    cloud: &dyn Cloud,
    uuid: &str,
    status: HealthStatus,
    reason: &BTreeMap<String, String>,
) -> Result<nodehealer::openstack::Cluster> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = cloud.cluster(uuid).await?;
        if c.health_status.as_deref() == Some(status.as_str()) && &c.health_status_reason == reason
        {
            return Ok(c);
        }
        ensure!(
            Instant::now() < deadline,
            "health {} {reason:?} not stored within 30 s: {:?} {:?}",
            status.as_str(),
            c.health_status,
            c.health_status_reason
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A resize with `nodes_to_remove` is accepted (202). Without Heat the real conductor then
/// fails it (`UPDATE_FAILED`, with its reason); the simulator carries it out. A health report
/// of an `UPDATE_FAILED` cluster is accepted too, and Magnum's conductor drops it.
async fn magnum_resize_and_an_update_after_it(t: &Target) -> Result<()> {
    let _magnum = magnum_turn(t).await;
    let name = Target::unique_name("resize");
    let cluster = t.magnum_cluster(&name, 1, 2).await?;
    let cloud = client(&t.password_yaml());
    let victim = cluster.workers()[0].clone();
    cloud
        .resize(
            &cluster.uuid,
            "default-worker",
            2,
            std::slice::from_ref(&victim),
        )
        .await?;
    let deadline = Instant::now() + WAIT;
    let settled = loop {
        let c = cloud.cluster(&cluster.uuid).await?;
        if !c.in_progress() && c.status != "CREATE_COMPLETE" {
            break c;
        }
        ensure!(Instant::now() < deadline, "the resize never settled: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if t.magnum_has_heat() {
        assert_eq!(settled.status, "UPDATE_COMPLETE", "{settled:?}");
        assert_eq!(
            cloud.server(&victim).await?,
            None,
            "the removed server is gone"
        );
        // As the real conductor leaves it after a failed update.
        t.set_cluster_status(&cluster.uuid, "UPDATE_FAILED").await?;
    } else {
        assert_eq!(settled.status, "UPDATE_FAILED", "{settled:?}");
        assert!(
            settled
                .status_reason
                .as_deref()
                .is_some_and(|r| !r.is_empty()),
            "Magnum says why: {settled:?}"
        );
        assert!(
            cloud.server(&victim).await?.is_some(),
            "nothing was removed"
        );
    }
    let before = cloud.cluster(&cluster.uuid).await?;
    let (status, reason) = health_report(&[("k8s-node-0", "Ready")], false, jiff::Timestamp::now());
    cloud
        .report_health(&cluster.uuid, status, &reason)
        .await
        .context("a report of an UPDATE_FAILED cluster is accepted (202)")?;
    // Accepted is not stored: the conductor refuses to update a cluster in UPDATE_FAILED.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cloud.cluster(&cluster.uuid).await?;
    assert_eq!(
        (&after.health_status, &after.health_status_reason),
        (&before.health_status, &before.health_status_reason),
        "the report of an UPDATE_FAILED cluster was dropped"
    );
    assert_eq!(after.status, "UPDATE_FAILED");
    t.delete_cluster_servers(&cluster).await
}
