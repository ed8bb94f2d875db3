//! The CRDs' validation, enforced by the real kube-apiserver of the test bed: every manifest of
//! `tests/fixtures/invalid/` is rejected with the message its first line expects, every one of
//! `tests/fixtures/valid/` and every example under `examples/` is accepted. Objects are created
//! with server-side dry run, so nothing is stored and the checks run side by side.

mod support;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde::Deserialize;
use serde_json::{Value, json};

fn manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    Ok(files)
}

/// Creates the object in dry-run mode; the apiserver's answer.
async fn dry_run_create(client: &kube::Client, doc: &Value, ns: &str) -> Result<(), String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let mut doc = doc.clone();
    let namespaced = kind != "NodeHealthCheck";
    if namespaced {
        doc["metadata"]["namespace"] = json!(ns);
    }
    let obj: DynamicObject = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    let api: Api<DynamicObject> = if namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(e.message),
        Err(e) => Err(format!("request failed: {e}")),
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests_are_rejected_with_a_clear_message() -> Result<()> {
    let tb = support::testbed().await?;
    let client = tb.client().await?;
    let ns = tb.namespace("invalid").await?;
    let files = manifests(&root().join("tests/fixtures/invalid"))?;
    assert!(files.len() >= 20, "at least 20 invalid manifests");
    let mut wrong = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)?;
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .with_context(|| format!("{} has no `# expect:` line", path.display()))?
            .trim()
            .to_string();
        let doc: Value = serde_yaml::from_str(&text)?;
        match dry_run_create(&client, &doc, &ns).await {
            Ok(()) => wrong.push(format!("{}: accepted", path.display())),
            Err(message) if message.contains(&expect) => {}
            Err(message) => wrong.push(format!(
                "{}: expected {expect:?} in {message:?}",
                path.display()
            )),
        }
    }
    if !wrong.is_empty() {
        bail!(
            "{} of {} manifests:\n{}",
            wrong.len(),
            files.len(),
            wrong.join("\n")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_manifests_and_examples_are_accepted() -> Result<()> {
    let tb = support::testbed().await?;
    let client = tb.client().await?;
    let ns = tb.namespace("valid").await?;
    let mut files = manifests(&root().join("tests/fixtures/valid"))?;
    files.push(root().join("tests/fixtures/medik8s-nodehealthcheck.yaml"));
    files.extend(
        manifests(&root().join("examples"))?
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("nodehealthcheck-"))
            }),
    );
    let mut wrong = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path)?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = Value::deserialize(doc)?;
            if doc.is_null() {
                continue;
            }
            if let Err(message) = dry_run_create(&client, &doc, &ns).await {
                wrong.push(format!("{}: {message}", path.display()));
            }
        }
    }
    if !wrong.is_empty() {
        bail!("rejected:\n{}", wrong.join("\n"));
    }
    Ok(())
}

/// `nodehealer import-magnum-config` turns each published magnum-auto-healer configuration
/// into manifests the real apiserver accepts, both ways of converting the keys it ignored (the
/// mapping itself is checked key by key in `src/import`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_magnum_auto_healer_converter_output_is_accepted() -> Result<()> {
    let tb = support::testbed().await?;
    let client = tb.client().await?;
    let ns = tb.namespace("import").await?;
    for (fixture, ignored_keys) in [
        ("magnum-auto-healer-config.yaml", "as-run"),
        ("magnum-auto-healer-camelcase.yaml", "as-run"),
        ("magnum-auto-healer-camelcase.yaml", "as-meant"),
        ("magnum-auto-healer-provider-guide.yaml", "as-run"),
        ("magnum-auto-healer-provider-guide.yaml", "as-meant"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nodehealer"))
            .args(["import-magnum-config", "--to-namespace", &ns])
            .args(["--ignored-keys", ignored_keys])
            .arg(root().join("tests/fixtures").join(fixture))
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{fixture}: {stderr}");
        // What the output cannot show is said on standard error as well (each of these has
        // at least `leader-elect` or the `kubernetes` section, which mean nothing here).
        assert!(stderr.contains("note: "), "{fixture}: {stderr}");
        let text = String::from_utf8(out.stdout)?;
        let mut kinds = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = Value::deserialize(doc)?;
            if doc.is_null() {
                continue;
            }
            kinds.push(doc["kind"].as_str().unwrap_or_default().to_string());
            if let Err(message) = dry_run_create(&client, &doc, &ns).await {
                bail!("{fixture}: {} rejected: {message}\n{text}", doc["kind"]);
            }
        }
        assert_eq!(
            kinds,
            [
                "Secret",
                "RemediationTemplate",
                "RemediationTemplate",
                "NodeHealthCheck",
                "NodeHealthCheck"
            ],
            "{fixture}"
        );
    }
    // What nodehealer cannot do: a clear error, exit code 2, nothing printed.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nodehealer"))
        .args(["import-magnum-config", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        child.stdin.take().context("stdin")?.write_all(
            b"cluster-name: k\nopenstack:\n  auth-url: https://k/v3\n  trust-id: t\n  user-id: u\n  password: p\nhealthcheck: {}\n",
        )?;
    }
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("openstack.trust-id: nodehealer does not authenticate with a Keystone trust"),
        "{stderr}"
    );
    Ok(())
}

/// A Remediation's spec cannot change once created: its status (requests on record, the fence's
/// evidence) belongs to the spec it started with. Its metadata can (the NodeHealthCheck's
/// annotations, a person's fence confirmation), and a RemediationTemplate's spec can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remediations_spec_cannot_change_but_its_annotations_can() -> Result<()> {
    let tb = support::testbed().await?;
    let client = tb.client().await?;
    let ns = tb.namespace("immutable").await?;
    let spec = json!({"action": "PowerCycle",
        "openstack": {"cloudSecretRef": {"name": "cloud"}, "cloud": "openstack"}});
    support::remediate(&client, &ns, "node-a", spec).await?;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "nodehealer.io",
        "v1alpha1",
        "Remediation",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let merge = |patch: Value| {
        let api = api.clone();
        async move {
            api.patch(
                "node-a",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        }
    };
    match merge(json!({"spec": {"action": "Replace"}})).await {
        Err(kube::Error::Api(e)) => assert!(
            e.message.contains("a Remediation's spec cannot change"),
            "{}",
            e.message
        ),
        other => bail!("a changed action was accepted: {other:?}"),
    }
    match merge(json!({"spec": {"openstack": {"cloud": "another"}}})).await {
        Err(kube::Error::Api(e)) => assert!(e.message.contains("cannot change"), "{}", e.message),
        other => bail!("a changed cloud was accepted: {other:?}"),
    }
    merge(json!({"metadata": {"annotations": {"nodehealer.io/fence-confirmed": "alice"}}}))
        .await
        .context("annotations stay writable")?;
    let template = json!({
        "apiVersion": "nodehealer.io/v1alpha1", "kind": "RemediationTemplate",
        "metadata": {"name": "t", "namespace": ns},
        "spec": {"template": {"spec": {"action": "Reboot",
            "openstack": {"cloudSecretRef": {"name": "cloud"}, "cloud": "openstack"}}}}
    });
    nodehealer_testbed::objects::create(&client, &template).await?;
    let templates: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "nodehealer.io",
            "v1alpha1",
            "RemediationTemplate",
        )),
    );
    templates
        .patch(
            "t",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                &json!({"spec": {"template": {"spec": {"action": "PowerCycle"}}}}),
            ),
        )
        .await
        .context("a template's spec may change")?;
    Ok(())
}
