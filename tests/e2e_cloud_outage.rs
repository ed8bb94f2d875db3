//! The whole cloud API goes away and comes back. A test binary of its own, so the outage
//! (every Keystone request fails) cannot touch the scenarios of other tests.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams};
use nodehealer::api::{Remediation, RemediationPhase};
use nodehealer_testbed::{ClusterSpec, ready_status, taint_strings, wait_for};
use openstack_sim::Fault;
use serde_json::json;
use support::Operator;

/// Keystone answers 503 from before the remediation starts: nothing is sent to Nova and nothing
/// is freed, the status and a Warning say why; when Keystone is back the remediation goes on
/// by itself and every action is accepted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keystone_outage_holds_the_remediation_and_it_resumes_when_keystone_returns() -> Result<()>
{
    let tb = support::testbed().await?;
    let ns = tb.namespace("outage").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 2)).await?;
    let client = tb.client().await?;
    support::cloud_secret(tb, &client, &ns, "openstack-cloud").await?;
    let victim = cluster.nodes_with_role("worker")[0].clone();
    let server = cluster.servers[&victim].clone();
    let nodes: Api<Node> = Api::all(client.clone());
    tb.kubelet_hang(&victim).await?;
    wait_for(Duration::from_secs(30), "not Ready", || async {
        Ok(ready_status(&nodes.get(&victim).await?).as_deref() != Some("True"))
    })
    .await?;

    tb.sim.add_fault(Fault::keystone_down());
    let op = Operator::start(tb, &ns, &["--controllers=remediation"])?;
    let rems: Api<Remediation> = Api::namespaced(client.clone(), &ns);
    support::remediate(
        &client,
        &ns,
        &victim,
        json!({"action": "PowerCycle", "openstack": {
            "cloudSecretRef": {"name": "openstack-cloud"}, "cloud": "openstack"}}),
    )
    .await?;
    let said = wait_for(
        Duration::from_secs(60),
        "the outage in the status",
        || async {
            Ok(rems
                .get(&victim)
                .await?
                .status
                .and_then(|s| s.last_error)
                .is_some())
        },
    )
    .await;
    if let Err(e) = said {
        bail!("{e}\nlog:\n{}", op.log_tail());
    }
    let error = rems.get(&victim).await?.status.unwrap().last_error.unwrap();
    assert!(error.to_lowercase().contains("keystone"), "{error}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        support::accepted_actions(tb, &server).is_empty(),
        "nothing sent during the outage"
    );
    let taints = taint_strings(&nodes.get(&victim).await?);
    assert!(
        !taints
            .iter()
            .any(|t| t.starts_with("node.kubernetes.io/out-of-service")),
        "nothing freed: {taints:?}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warned = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .any(|e| e.type_.as_deref() == Some("Warning"));
    assert!(warned, "a Warning event about the outage");

    // Keystone is back.
    tb.sim.clear_faults();
    let back = Instant::now();
    support::wait_phase(
        &rems,
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(120),
    )
    .await
    .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    assert_eq!(
        support::accepted_actions(tb, &server),
        vec!["os-stop", "os-start"]
    );
    nodehealer_testbed::report_timing(
        "Keystone back -> the held PowerCycle Succeeded",
        back.elapsed(),
    );
    Ok(())
}

/// Creates the Secret `name` in `ns` holding the test bed's clouds.yaml with a wrong password.
async fn wrong_password_secret(
    tb: &nodehealer_testbed::TestBed,
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<()> {
    let yaml = tb.clouds_yaml("openstack").replace(
        &format!("password: {}", tb.os_password),
        "password: not-the-password",
    );
    assert!(yaml.contains("not-the-password"), "{yaml}");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"clouds.yaml": yaml}
    }))?;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .create(&kube::api::PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// A wrong password cannot go away by itself, but it must not outlive the step's deadline: a
/// PowerCycle with a 30 s fence timeout fails when those 30 s have run out (not minutes later),
/// and its message says the real cause (Keystone's 401) and the timeout that ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_the_remediation_at_its_step_deadline_with_the_real_cause()
-> Result<()> {
    let tb = support::testbed().await?;
    let ns = tb.namespace("authfail").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 1)).await?;
    let client = tb.client().await?;
    wrong_password_secret(tb, &client, &ns, "openstack-cloud").await?;
    let victim = cluster.nodes_with_role("worker")[0].clone();
    let server = cluster.servers[&victim].clone();
    tb.kubelet_hang(&victim).await?;
    let op = Operator::start(tb, &ns, &["--controllers=remediation"])?;
    let rems: Api<Remediation> = Api::namespaced(client.clone(), &ns);
    support::remediate(
        &client,
        &ns,
        &victim,
        json!({"action": "PowerCycle", "timeouts": {"fence": "30s"}, "openstack": {
            "cloudSecretRef": {"name": "openstack-cloud"}, "cloud": "openstack"}}),
    )
    .await?;
    // Well past the 30 s deadline, well short of the 300 s a non-retryable error used to wait.
    support::wait_phase(
        &rems,
        &victim,
        RemediationPhase::Failed,
        Duration::from_secs(90),
    )
    .await
    .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    let status = rems.get(&victim).await?.status.unwrap_or_default();
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("authentication failed (HTTP 401)"),
        "the real cause: {error}"
    );
    assert!(error.contains("30s"), "the timeout that ran out: {error}");
    assert!(
        !error.contains("not-the-password"),
        "no credential: {error}"
    );
    assert!(
        support::accepted_actions(tb, &server).is_empty(),
        "nothing was sent"
    );
    Ok(())
}

/// A wrong password is fixed in the Secret while the remediation waits: the change is noticed
/// promptly (a blocked cause is looked at again every 15 s; the chart may only `get` Secrets,
/// so they are not watched), not when the step's timeout runs out, and the remediation goes on
/// and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_secret_is_noticed_promptly_and_the_remediation_goes_on() -> Result<()> {
    let tb = support::testbed().await?;
    let ns = tb.namespace("authfix").await?;
    let cluster = tb.create_cluster(ClusterSpec::magnum(&ns, 0, 1)).await?;
    let client = tb.client().await?;
    wrong_password_secret(tb, &client, &ns, "openstack-cloud").await?;
    let victim = cluster.nodes_with_role("worker")[0].clone();
    let server = cluster.servers[&victim].clone();
    tb.kubelet_hang(&victim).await?;
    let op = Operator::start(tb, &ns, &["--controllers=remediation"])?;
    let rems: Api<Remediation> = Api::namespaced(client.clone(), &ns);
    support::remediate(
        &client,
        &ns,
        &victim,
        json!({"action": "PowerCycle", "timeouts": {"fence": "10m"}, "openstack": {
            "cloudSecretRef": {"name": "openstack-cloud"}, "cloud": "openstack"}}),
    )
    .await?;
    let said = wait_for(Duration::from_secs(60), "CloudAuthFailed said", || async {
        Ok(rems
            .get(&victim)
            .await?
            .status
            .and_then(|s| s.last_error)
            .is_some_and(|e| e.contains("HTTP 401")))
    })
    .await;
    if let Err(e) = said {
        bail!("{e}\nlog:\n{}", op.log_tail());
    }
    // Someone fixes the password.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .patch(
            "openstack-cloud",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({
                "stringData": {"clouds.yaml": tb.clouds_yaml("openstack")}
            })),
        )
        .await?;
    // Far less than the 10-minute fence timeout the blocked remediation would otherwise wait.
    support::wait_phase(
        &rems,
        &victim,
        RemediationPhase::Succeeded,
        Duration::from_secs(90),
    )
    .await
    .with_context(|| format!("operator log:\n{}", op.log_tail()))?;
    assert_eq!(
        support::accepted_actions(tb, &server),
        vec!["os-stop", "os-start"]
    );
    Ok(())
}
