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

/// The `nodehealer_*` metric families a PromQL expression reads (`_total` is a counter's
/// sample suffix, `_bucket`, `_sum` and `_count` a histogram's: not part of the family).
pub fn families(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("nodehealer_"))
        .map(|w| {
            ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .fold(w, |w, suffix| w.strip_suffix(suffix).unwrap_or(w))
                .to_string()
        })
        .collect()
}

/// The chart's Grafana dashboard rendered with `values`: (panel title, query) for every
/// panel's query and every query variable. Each panel query must parse as PromQL once
/// Grafana's own variables are put in, as Grafana would.
pub fn dashboard_queries(values: &[&str]) -> Result<Vec<(String, String)>> {
    let chart = chart();
    let mut args = vec![
        "template",
        "nh",
        chart.to_str().context("path")?,
        "--kube-version",
        "1.36.3",
        "--show-only",
        "templates/grafana-dashboard.yaml",
    ];
    args.extend(values);
    let rendered = run_helm(&args, None)?.map_err(anyhow::Error::msg)?;
    let docs = documents(&rendered)?;
    assert_eq!(docs.len(), 1, "one ConfigMap: {rendered}");
    assert_eq!(docs[0]["kind"], "ConfigMap");
    let text = docs[0]["data"]["nodehealer.json"]
        .as_str()
        .context("data.nodehealer.json")?;
    let dashboard: Value = serde_json::from_str(text).context("the dashboard is JSON")?;
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().context("panels")? {
        let title = panel["title"].as_str().context("title")?.to_string();
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title} reads the chosen data source"
        );
        for target in panel["targets"].as_array().context("targets")? {
            let expr = target["expr"].as_str().context("expr")?.to_string();
            let concrete = expr
                .replace("$__rate_interval", "5m")
                .replace("$__range", "6h")
                .replace("$nodehealthcheck", ".*");
            promql_parser::parser::parse(&concrete)
                .map_err(|e| anyhow::anyhow!("{title}: {expr}: {e}"))?;
            queries.push((title.clone(), expr));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .context("templating")?
    {
        if variable["type"] == "query" {
            let name = variable["name"].as_str().context("name")?;
            let query = variable["definition"].as_str().context("definition")?;
            queries.push((format!("variable {name}"), query.to_string()));
        }
    }
    Ok(queries)
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
