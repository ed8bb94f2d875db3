//! The converter, field by field, on the sample configuration in magnum-auto-healer's format.

use super::*;

const SAMPLE: &str = include_str!("../../tests/fixtures/magnum-auto-healer-config.yaml");

fn find<'a>(out: &'a [Value], kind: &str, name: &str) -> &'a Value {
    out.iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in {out:#?}"))
}

#[test]
fn the_sample_maps_field_by_field() {
    let out = convert(SAMPLE, &ImportOptions::default()).unwrap();
    let kinds: Vec<&str> = out.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Secret",
            "RemediationTemplate",
            "RemediationTemplate",
            "NodeHealthCheck",
            "NodeHealthCheck"
        ]
    );
    let cluster = "c418c335-0e52-42fc-bd68-baa8d264e072";

    let masters = &find(&out, "NodeHealthCheck", &format!("{cluster}-masters"))["spec"];
    assert_eq!(
        masters["selector"]["matchLabels"]["magnum.openstack.org/role"],
        "master"
    );
    // Ready ok-values [True] → False and Unknown, for 1m.
    assert_eq!(
        masters["unhealthyConditions"],
        json!([
            {"type": "Ready", "status": "False", "duration": "1m"},
            {"type": "Ready", "status": "Unknown", "duration": "1m"}
        ])
    );
    let check = &masters["endpointChecks"][0];
    assert_eq!(check["name"], "port-6443-healthz");
    assert_eq!(
        (check["scheme"].as_str(), check["port"].as_u64()),
        (Some("HTTPS"), Some(6443))
    );
    assert_eq!(check["path"], "/healthz");
    assert_eq!(check["okCodes"], json!([200]));
    assert_eq!(check["duration"], "30s", "unhealthy-duration");
    assert_eq!(check["interval"], "15s", "monitor-interval");
    assert_eq!(check["timeout"], "5s", "shorter than the interval");
    assert_eq!(check["insecureSkipVerify"], true);
    assert_eq!(
        masters["nodeStartupTimeout"], "20m",
        "check-delay-after-add"
    );
    assert_eq!(masters["dryRun"], false);
    assert_eq!(masters["maxUnhealthy"], 1);
    assert_eq!(masters["remediationTemplate"]["name"], "rebuild");

    let workers = &find(&out, "NodeHealthCheck", &format!("{cluster}-workers"))["spec"];
    assert_eq!(
        workers["selector"]["matchLabels"]["magnum.openstack.org/role"],
        "worker"
    );
    assert!(workers.get("endpointChecks").is_none());
    assert_eq!(workers["remediationTemplate"]["name"], "replace");
    assert_eq!(workers["remediationTemplate"]["namespace"], "nodehealer");

    let replace = &find(&out, "RemediationTemplate", "replace")["spec"]["template"]["spec"];
    assert_eq!(replace["action"], "Replace");
    assert_eq!(replace["openstack"]["magnum"]["cluster"], cluster);
    assert_eq!(replace["openstack"]["magnum"]["reportHealthStatus"], true);
    assert_eq!(
        find(&out, "RemediationTemplate", "rebuild")["spec"]["template"]["spec"]["action"],
        "Rebuild"
    );

    let secret = find(&out, "Secret", "openstack-cloud");
    let clouds: Value =
        serde_yaml::from_str(secret["stringData"]["clouds.yaml"].as_str().unwrap()).unwrap();
    let cloud = &clouds["clouds"]["openstack"];
    assert_eq!(
        cloud["auth"]["auth_url"],
        "https://keystone.example.com:5000/v3"
    );
    assert_eq!(cloud["auth"]["user_id"], "ceb61464a3d341ebabdf97d1d4b97099");
    assert_eq!(
        cloud["auth"]["project_id"],
        "b23a5e41d1af4c20974bf58b4dff8e5a"
    );
    assert_eq!(cloud["auth"]["password"], "password");
    assert_eq!(cloud["region_name"], "RegionOne");
    // And our own clouds.yaml reader takes it.
    let text = secret["stringData"]["clouds.yaml"].as_str().unwrap();
    crate::openstack::CloudConfig::from_clouds_yaml(text, "openstack", None).unwrap();
}

#[test]
fn anything_that_cannot_be_mapped_is_an_error_naming_the_key() {
    let cases = [
        ("max-unhealthy: 3\n", "max-unhealthy"),
        ("healthcheck:\n  etcd: []\n", "healthcheck.etcd"),
        (
            "healthcheck:\n  worker:\n    - type: Script\n      params: {}\n",
            "healthcheck.worker[0].type",
        ),
        (
            "healthcheck:\n  worker:\n    - type: Endpoint\n      params: {port: 99999}\n",
            "healthcheck.worker[0].params.port",
        ),
        (
            "healthcheck:\n  worker:\n    - type: NodeCondition\n      params: {types: [Ready], unhealthy-duration: soon}\n",
            "healthcheck.worker[0].params.unhealthy-duration",
        ),
        (
            "healthcheck:\n  worker:\n    - type: NodeCondition\n      params: {types: [Ready], retries: 3}\n",
            "healthcheck.worker[0].params.retries",
        ),
    ];
    let base = "cluster-name: k8s\nopenstack:\n  auth-url: https://k/v3\n  user-id: u\n  password: p\n  project-id: x\n";
    for (extra, path) in cases {
        let yaml = if extra.starts_with("healthcheck") {
            format!("{base}{extra}")
        } else {
            format!(
                "{base}{extra}healthcheck:\n  worker:\n    - type: NodeCondition\n      params: {{types: [Ready]}}\n"
            )
        };
        let e = convert(&yaml, &ImportOptions::default()).unwrap_err();
        assert_eq!(e.path, path, "{yaml}: {e}");
    }
    let e = convert("dry-run: true\n", &ImportOptions::default()).unwrap_err();
    assert_eq!(e.path, "cluster-name");
    let e = convert(
        &format!("{}healthcheck: {{}}\n", base.replace("  password: p\n", "")),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.path, "openstack.password");
}
