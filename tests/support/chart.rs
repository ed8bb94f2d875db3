//! The Helm chart from the tests: render it, read its alerts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

pub fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/nodehealer")
}

pub fn helm() -> Result<PathBuf> {
    Ok(nodehealer_testbed::controlplane::binaries_dir()?.join("helm"))
}

/// Runs helm; Ok(stdout) or Err(stderr).
pub fn run_helm(args: &[&str], kubeconfig: Option<&Path>) -> Result<Result<String, String>> {
    let mut cmd = Command::new(helm()?);
    cmd.args(args);
    // Helm keeps its caches and config under HOME: give it a place of its own.
    let home = std::env::temp_dir().join("nodehealer-helm-home");
    std::fs::create_dir_all(&home)?;
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    Ok(if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stderr}{stdout}"))
    })
}

/// The chart's alerts (name, PromQL, `for`) rendered with `values`; every expression must
/// parse as PromQL.
pub fn alerts(values: &[&str]) -> Result<Vec<(String, String, Option<String>)>> {
    let chart = chart();
    let mut args = vec![
        "template",
        "nh",
        chart.to_str().context("path")?,
        "--kube-version",
        "1.36.3",
        "--show-only",
        "templates/prometheusrule.yaml",
    ];
    args.extend(values);
    let rendered = run_helm(&args, None)?.map_err(anyhow::Error::msg)?;
    let mut alerts = Vec::new();
    for doc in documents(&rendered)? {
        assert_eq!(doc["kind"], "PrometheusRule");
        for group in doc["spec"]["groups"].as_array().context("groups")? {
            for rule in group["rules"].as_array().context("rules")? {
                let name = rule["alert"].as_str().context("alert")?.to_string();
                let expr = rule["expr"].as_str().context("expr")?.to_string();
                promql_parser::parser::parse(&expr)
                    .map_err(|e| anyhow::anyhow!("{name}: {expr}: {e}"))?;
                let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
                assert!(!summary.is_empty(), "{name} says what is wrong");
                alerts.push((name, expr, rule["for"].as_str().map(str::to_owned)));
            }
        }
    }
    Ok(alerts)
}

/// The `nodehealer_*` metric families a PromQL expression reads (`_total` is the counter's
/// sample suffix, not part of the family).
pub fn families(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("nodehealer_"))
        .map(|w| w.trim_end_matches("_total").to_string())
        .collect()
}

pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}
