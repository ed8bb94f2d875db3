//! The committed CRDs match the Rust types, and the manifest fixtures say what they should.
//!
//! The real-apiserver checks of the fixtures (each invalid one rejected with its expected
//! message) run on the test bed; here we check what needs no apiserver.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use nodehealer::api::{
    ConditionStatus, IntOrPercent, NodeHealthCheck, Remediation, RemediationTemplate, crd_yaml,
    crds,
};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo(dir))
        .unwrap_or_else(|err| panic!("cannot read {dir}: {err}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn committed_crds_match_the_rust_types() {
    let mut expected = BTreeSet::new();
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap();
        let file = format!("crds/{name}.yaml");
        expected.insert(repo(&file));
        let committed = fs::read_to_string(repo(&file)).unwrap_or_default();
        assert!(
            committed == crd_yaml(&crd),
            "{file} is missing or differs from the Rust types in src/api: run `make generate` and commit the result"
        );
    }
    let stale: Vec<PathBuf> = yaml_files("crds")
        .into_iter()
        .filter(|path| !expected.contains(path))
        .collect();
    assert!(
        stale.is_empty(),
        "crds/ holds files no Rust type generates: {stale:?}; run `make generate` and remove them"
    );
}

#[test]
fn the_charts_crds_are_the_generated_ones() {
    let generated: Vec<PathBuf> = yaml_files("crds");
    let in_chart: Vec<PathBuf> = yaml_files("charts/nodehealer/crds");
    let names = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect()
    };
    assert_eq!(
        names(&generated),
        names(&in_chart),
        "charts/nodehealer/crds/ differs from crds/: run `make generate`"
    );
    for file in &generated {
        let copy = repo("charts/nodehealer/crds").join(file.file_name().unwrap());
        assert!(
            fs::read_to_string(file).unwrap() == fs::read_to_string(&copy).unwrap(),
            "{} differs from {}: run `make generate`",
            copy.display(),
            file.display()
        );
    }
}

#[test]
fn the_medik8s_sample_is_accepted_after_changing_only_its_api_version() {
    let text = fs::read_to_string(repo("tests/fixtures/medik8s-nodehealthcheck.yaml")).unwrap();
    let nhc: NodeHealthCheck = serde_yaml::from_str(&text).unwrap();
    let spec = &nhc.spec;
    assert_eq!(spec.min_healthy, Some(IntOrPercent::Percent(51)));
    let template = spec.remediation_template.as_ref().unwrap();
    assert_eq!(template.kind, "SelfNodeRemediationTemplate");
    assert_eq!(template.namespace, "openshift-workload-availability");
    assert_eq!(spec.unhealthy_conditions.len(), 2);
    assert_eq!(spec.unhealthy_conditions[0].status, ConditionStatus::False);
    assert_eq!(spec.unhealthy_conditions[1].duration.get().as_secs(), 20);
    assert_eq!(
        spec.selector.match_expressions.as_ref().unwrap()[0].operator,
        "Exists"
    );

    // The fixture is the shared medik8s sample with nothing but the apiVersion changed.
    let sample_path = Path::new("/work/shared/samples/medik8s/nodehealthcheck.yaml");
    if let Ok(sample) = fs::read_to_string(sample_path) {
        let original = serde_yaml::Deserializer::from_str(&sample)
            .map(|doc| serde_yaml::Value::deserialize(doc).expect("valid YAML"))
            .find(|doc| doc["kind"] == "NodeHealthCheck")
            .expect("the sample holds a NodeHealthCheck");
        let mut moved = original.clone();
        moved["apiVersion"] = "nodehealer.io/v1alpha1".into();
        let fixture: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(fixture, moved);
    }
}

#[test]
fn valid_fixtures_deserialize_into_the_rust_types() {
    let files = yaml_files("tests/fixtures/valid");
    assert!(files.len() >= 5);
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let result = match value["kind"].as_str() {
            Some("NodeHealthCheck") => serde_yaml::from_str::<NodeHealthCheck>(&text).map(drop),
            Some("Remediation") => serde_yaml::from_str::<Remediation>(&text).map(drop),
            Some("RemediationTemplate") => {
                serde_yaml::from_str::<RemediationTemplate>(&text).map(drop)
            }
            other => panic!("{}: unexpected kind {other:?}", file.display()),
        };
        if let Err(err) = result {
            panic!("{}: {err}", file.display());
        }
    }
}

/// Phrases of the apiserver's own OpenAPI validation; any other expectation must be one of our
/// CEL messages.
const APISERVER_PHRASES: &[&str] = &[
    "should match",
    "Required value",
    "Unsupported value",
    "Duplicate value",
    "must have at most",
    "should have at least",
    "should be less than or equal to",
    "should be at least",
    "Invalid value: \"string\"",
];

#[test]
fn invalid_fixtures_say_which_rejection_they_expect() {
    let files = yaml_files("tests/fixtures/invalid");
    assert!(files.len() >= 20, "at least 20 invalid manifests");
    let generated: String = crds().iter().map(crd_yaml).collect();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let name = file.display();
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| {
                panic!("{name}: the first line must be `# expect: <message substring>`")
            });
        assert!(!expect.trim().is_empty(), "{name}: empty expectation");
        let value: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|err| panic!("{name}: not YAML: {err}"));
        assert_eq!(value["apiVersion"], "nodehealer.io/v1alpha1", "{name}");
        assert!(
            matches!(
                value["kind"].as_str(),
                Some("NodeHealthCheck" | "Remediation" | "RemediationTemplate")
            ),
            "{name}: kind"
        );
        // A CEL message that no longer exists in the schema would make the apiserver test fail
        // for the wrong reason; catch the drift here.
        if !APISERVER_PHRASES
            .iter()
            .any(|phrase| expect.contains(phrase))
        {
            let yaml_escaped = expect.replace('"', "\\\"");
            assert!(
                generated.contains(expect) || generated.contains(&yaml_escaped),
                "{name}: expected message {expect:?} is not a validation message of the CRDs"
            );
        }
    }
}
