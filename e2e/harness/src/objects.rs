//! Creating objects from their manifests, of any kind, and installing CRDs: what every
//! scenario, the demo and the benchmarks do before the story starts.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::Value;

use crate::wait_for;

/// The resource of an `apiVersion` and `kind` (the plural guessed the usual way).
pub fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// A `nodehealer.io/v1alpha1` kind.
pub fn nodehealer_resource(kind: &str) -> ApiResource {
    resource("nodehealer.io/v1alpha1", kind)
}

/// The API of `ar` in `namespace`, or cluster-wide.
pub fn api_for(
    client: &kube::Client,
    ar: &ApiResource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Creates the object a manifest describes (in `metadata.namespace` when it has one).
pub async fn create(client: &kube::Client, doc: &Value) -> Result<DynamicObject> {
    let api_version = doc["apiVersion"].as_str().context("apiVersion")?;
    let kind = doc["kind"].as_str().context("kind")?;
    let obj: DynamicObject = serde_json::from_value(doc.clone())?;
    let api = api_for(
        client,
        &resource(api_version, kind),
        doc["metadata"]["namespace"].as_str(),
    );
    api.create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating {kind} {}", doc["metadata"]["name"]))
}

/// Applies a CRD (server-side, forced) and waits until it is established.
pub async fn install_crd(
    client: &kube::Client,
    crd: &CustomResourceDefinition,
    manager: &str,
) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().context("CRD name")?;
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(crd),
    )
    .await?;
    wait_for(
        Duration::from_secs(30),
        &format!("CRD {name} established"),
        || async {
            let crd = api.get(&name).await?;
            Ok(crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        },
    )
    .await?;
    Ok(())
}

/// Installs every CRD of a folder of YAML files (`crds/`).
pub async fn install_crds_from(client: &kube::Client, dir: &Path, manager: &str) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let crd: CustomResourceDefinition =
                serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
            install_crd(client, &crd, manager).await?;
        }
    }
    Ok(())
}
