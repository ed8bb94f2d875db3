//! The converter, field by field, on the sample configuration in magnum-auto-healer's format.

use super::*;

const SAMPLE: &str = include_str!("../../tests/fixtures/magnum-auto-healer-config.yaml");
const CAMEL_CASE: &str = include_str!("../../tests/fixtures/magnum-auto-healer-camelcase.yaml");
const PROVIDER_GUIDE: &str =
    include_str!("../../tests/fixtures/magnum-auto-healer-provider-guide.yaml");

fn manifests(yaml: &str, ignored_keys: IgnoredKeys) -> Conversion {
    convert(
        yaml,
        &ImportOptions {
            ignored_keys,
            ..ImportOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn note_at<'a>(c: &'a Conversion, path: &str) -> &'a Note {
    c.notes
        .iter()
        .find(|n| n.path == path)
        .unwrap_or_else(|| panic!("a note at {path} in {:#?}", c.notes))
}

fn find<'a>(out: &'a [Value], kind: &str, name: &str) -> &'a Value {
    out.iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in {out:#?}"))
}

#[test]
fn the_sample_maps_field_by_field() {
    let conversion = convert(SAMPLE, &ImportOptions::default()).unwrap();
    let out = conversion.manifests;
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
fn what_magnum_auto_healer_would_not_run_with_is_an_error_naming_the_key() {
    let cases = [
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
            "cloud-provider: aws\nhealthcheck:\n  worker: []\n",
            "cloud-provider",
        ),
    ];
    for (extra, path) in cases {
        let yaml = format!("{BASE}{extra}");
        let e = convert(&yaml, &ImportOptions::default()).unwrap_err();
        assert_eq!(e.path, path, "{yaml}: {e}");
    }
    let e = convert("dry-run: true\n", &ImportOptions::default()).unwrap_err();
    assert_eq!(e.path, "cluster-name");
    let e = convert(
        &format!("{}{WORKERS}", BASE.replace("  password: p\n", "")),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.path, "openstack.password");
    // What nodehealer cannot do is an error that says what to do instead.
    let e = convert(
        &format!("{}  trust-id: t\n{WORKERS}", BASE),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.path, "openstack.trust-id");
    assert!(e.message.contains("application credential"), "{e}");
}

const BASE: &str = "cluster-name: k8s\nopenstack:\n  auth-url: https://k/v3\n  user-id: u\n  password: p\n  project-id: x\n";
const WORKERS: &str =
    "healthcheck:\n  worker:\n    - type: NodeCondition\n      params: {types: [Ready]}\n";

/// magnum-auto-healer ignores keys it does not know: so does the conversion, with a note, never
/// a refusal.
#[test]
fn keys_magnum_auto_healer_ignored_are_notes_not_errors() {
    let yaml = format!(
        "{BASE}max-unhealthy: 3\n{WORKERS}    - type: NodeCondition\n      params: {{types: [Ready], retries: 3}}\n  etcd: []\n"
    );
    let c = manifests(&yaml, IgnoredKeys::AsRun);
    for path in [
        "max-unhealthy",
        "healthcheck.worker[1].params.retries",
        "healthcheck.etcd",
    ] {
        assert_eq!(
            note_at(&c, path).kind,
            NoteKind::Ignored {
                meant: None,
                converted: false
            },
            "{path}"
        );
    }
    assert!(
        to_yaml(&c).starts_with("# Converted from a magnum-auto-healer configuration"),
        "the notes head the output"
    );
    assert!(to_yaml(&c).contains("# - max-unhealthy: magnum-auto-healer does not read this key"));
}

/// The check parameters in camelCase: magnum-auto-healer ran them with its defaults; as-run
/// converts those defaults, as-meant the values written.
#[test]
fn camel_case_parameters_convert_as_run_or_as_meant() {
    let cluster = "6c6d3c5f-8f0e-4a53-b7a7-a5c1f2a7d0a1";
    let masters = |c: &Conversion| {
        find(
            &c.manifests,
            "NodeHealthCheck",
            &format!("{cluster}-masters"),
        )["spec"]
            .clone()
    };
    let workers = |c: &Conversion| {
        find(
            &c.manifests,
            "NodeHealthCheck",
            &format!("{cluster}-workers"),
        )["spec"]
            .clone()
    };

    let as_run = manifests(CAMEL_CASE, IgnoredKeys::AsRun);
    let m = masters(&as_run);
    assert_eq!(m["endpointChecks"][0]["duration"], "5m", "the 300s default");
    assert_eq!(
        m["endpointChecks"][0]["okCodes"],
        json!([200]),
        "the default"
    );
    assert_eq!(m["unhealthyConditions"][0]["duration"], "300s");
    assert_eq!(
        workers(&as_run)["unhealthyConditions"][0]["duration"],
        "300s"
    );
    let n = note_at(&as_run, "healthcheck.master[0].params.okCodes");
    assert_eq!(
        n.kind,
        NoteKind::Ignored {
            meant: Some("ok-codes".into()),
            converted: false
        }
    );
    assert!(n.message.contains("--ignored-keys as-meant"), "{n}");
    for path in [
        "healthcheck.master[0].params.unhealthyDuration",
        "healthcheck.master[1].params.okValues",
        "healthcheck.worker[0].params.unhealthyDuration",
    ] {
        note_at(&as_run, path);
    }

    let as_meant = manifests(CAMEL_CASE, IgnoredKeys::AsMeant);
    let m = masters(&as_meant);
    assert_eq!(m["endpointChecks"][0]["duration"], "30s");
    assert_eq!(m["endpointChecks"][0]["okCodes"], json!([200, 401]));
    assert_eq!(m["unhealthyConditions"][0]["duration"], "1m");
    assert_eq!(
        workers(&as_meant)["unhealthyConditions"][0]["duration"],
        "1m"
    );
    assert_eq!(
        note_at(&as_meant, "healthcheck.master[0].params.okCodes").kind,
        NoteKind::Ignored {
            meant: Some("ok-codes".into()),
            converted: true
        }
    );
    // Everything else is the same either way.
    assert_eq!(m["nodeStartupTimeout"], "20m");
    assert_eq!(m["endpointChecks"][0]["interval"], "30s");
}

/// The provider guide's shape: `cloud-provider`, the `kubernetes` section and
/// `repair-delay-after-add`.
#[test]
fn the_provider_guide_configuration_converts() {
    let cluster = "718439c2-933c-4288-abc7-c3e6ba617663";
    let as_run = manifests(PROVIDER_GUIDE, IgnoredKeys::AsRun);
    let spec = |c: &Conversion, name: &str| {
        find(
            &c.manifests,
            "NodeHealthCheck",
            &format!("{cluster}-{name}"),
        )["spec"]
            .clone()
    };
    assert_eq!(note_at(&as_run, "kubernetes").kind, NoteKind::NoMeaningHere);
    let delay = note_at(&as_run, "repair-delay-after-add");
    assert_eq!(
        delay.kind,
        NoteKind::Ignored {
            meant: Some("check-delay-after-add".into()),
            converted: false
        }
    );
    assert_eq!(
        spec(&as_run, "masters")["nodeStartupTimeout"],
        "10m",
        "check-delay-after-add's default, as magnum-auto-healer ran"
    );
    let as_meant = manifests(PROVIDER_GUIDE, IgnoredKeys::AsMeant);
    assert_eq!(spec(&as_meant, "workers")["nodeStartupTimeout"], "3m");
    // error-values: only those statuses are unhealthy, for each type.
    assert_eq!(
        spec(&as_run, "workers")["unhealthyConditions"],
        json!([
            {"type": "Ready", "status": "Unknown", "duration": "3m"},
            {"type": "DiskPressure", "status": "Unknown", "duration": "3m"}
        ])
    );
    assert_eq!(
        spec(&as_run, "masters")["endpointChecks"][0]["duration"],
        "3m"
    );
    let secret = find(&as_run.manifests, "Secret", "openstack-cloud");
    let clouds: Value =
        serde_yaml::from_str(secret["stringData"]["clouds.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(
        clouds["clouds"]["openstack"]["auth"]["auth_url"],
        "http://192.168.200.200/identity"
    );
    assert!(
        to_yaml(&as_run).contains("# - kubernetes: how magnum-auto-healer reached the apiserver")
    );
}

#[test]
fn the_openstack_section_maps_what_magnum_auto_healer_reads() {
    let yaml = format!(
        "{}  os-endpoint-type: internalURL\n  tls-insecure: \"true\"\n  tenant-name: legacy\n{WORKERS}",
        BASE.replace("  project-id: x\n", "")
    );
    let c = manifests(&yaml, IgnoredKeys::AsRun);
    let clouds = |c: &Conversion| -> Value {
        let secret = find(&c.manifests, "Secret", "openstack-cloud");
        serde_yaml::from_str(secret["stringData"]["clouds.yaml"].as_str().unwrap()).unwrap()
    };
    let cloud = &clouds(&c)["clouds"]["openstack"];
    assert_eq!(cloud["interface"], "internal");
    assert_eq!(cloud["verify"], false);
    // magnum-auto-healer's YAML has no tenant-name (that is the INI file's key): ignored, as it
    // was, unless converted as meant.
    assert!(cloud["auth"].get("project_name").is_none());
    let meant = manifests(&yaml, IgnoredKeys::AsMeant);
    assert_eq!(
        clouds(&meant)["clouds"]["openstack"]["auth"]["project_name"],
        "legacy"
    );
}

#[test]
fn a_group_magnum_auto_healer_did_not_monitor_gets_no_node_health_check() {
    let yaml = format!(
        "{BASE}master-monitor-enabled: false\n{WORKERS}  master:\n    - type: NodeCondition\n      params: {{types: [Ready]}}\n"
    );
    let c = manifests(&yaml, IgnoredKeys::AsRun);
    let kinds: Vec<(&str, &str)> = c
        .manifests
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap(),
                m["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        !kinds.contains(&("NodeHealthCheck", "k8s-masters")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("NodeHealthCheck", "k8s-workers")),
        "{kinds:?}"
    );
    assert_eq!(
        note_at(&c, "healthcheck.master").kind,
        NoteKind::NoMeaningHere
    );
}
