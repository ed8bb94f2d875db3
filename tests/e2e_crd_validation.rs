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
