//! The medik8s remediation contract: how a NodeHealthCheck creates a remediation object from any
//! `<Kind>Template`, and what it reads back from it. Following it exactly lets our
//! NodeHealthCheck drive medik8s remediators (Self Node Remediation, Fence Agents Remediation)
//! and lets medik8s' NodeHealthCheck drive our `RemediationTemplate`.
//!
//! Every key here is checked against medik8s' sources (`medik8s/common` and
//! `node-healthcheck-operator`); changing one breaks interoperability.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::{DynamicObject, TypeMeta};
use serde_json::{Value, json};

/// Annotation on a remediation object: the node it remediates. Set on every object we create,
/// because with `generateName` the object's name no longer is the node's name.
pub const NODE_NAME_ANNOTATION: &str = "remediation.medik8s.io/node-name";
/// Annotation on a remediation object: the template it was created from, so escalation can tell
/// two objects of the same kind apart.
pub const TEMPLATE_NAME_ANNOTATION: &str = "remediation.medik8s.io/template-name";
/// Annotation on a template: its remediator handles several templates of the same kind, so
/// objects are created with `generateName: <node>-` instead of the node's name.
pub const MULTIPLE_TEMPLATES_SUPPORT_ANNOTATION: &str =
    "remediation.medik8s.io/multiple-templates-support";
/// Annotation set on a remediation object when its escalation timeout expired (or it reported
/// `Succeeded=False`) and the next template takes over; the value is the time (RFC 3339). The
/// remediator should stop its efforts.
pub const NHC_TIMED_OUT_ANNOTATION: &str = "remediation.medik8s.io/nhc-timed-out";
/// Annotation on a remediation object: when its node became healthy again (RFC 3339); the object
/// is removed once `healthyDelay` has passed since.
pub const HEALTHY_DELAY_ANNOTATION: &str = "remediation.medik8s.io/healthy-delay";
/// Annotation a person puts on a node to end a `healthyDelay` early (or a negative one).
pub const MANUALLY_CONFIRMED_HEALTHY_ANNOTATION: &str =
    "remediation.medik8s.io/manually-confirmed-healthy";

/// Label on a remediation object of a control-plane node. Its presence counts, the value is
/// empty, as medik8s writes it.
pub const CONTROL_PLANE_REMEDIATION_LABEL: &str = "remediation.medik8s.io/isControlPlaneNode";
/// Label on a node, value `true`: never remediate this node.
pub const EXCLUDE_FROM_REMEDIATION_LABEL: &str = "remediation.medik8s.io/exclude-from-remediation";
/// The standard role label of control-plane nodes.
pub const CONTROL_PLANE_ROLE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// The role label older clusters use for control-plane nodes.
pub const LEGACY_MASTER_ROLE_LABEL: &str = "node-role.kubernetes.io/master";
/// Label on the objects we create, naming the product that created them.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// Value of [`PART_OF_LABEL`] on the objects we create.
pub const PART_OF_VALUE: &str = "nodehealer";

/// Condition on a remediation object: the remediator is working on it (`True`) or done (`False`).
pub const PROCESSING_CONDITION: &str = "Processing";
/// Condition on a remediation object: it worked (`True`) or gave up (`False`, escalate now).
pub const SUCCEEDED_CONDITION: &str = "Succeeded";
/// Condition on a remediation object: the node will be deleted for good (e.g. replaced), so the
/// object must outlive the Node until it has succeeded.
pub const PERMANENT_NODE_DELETION_EXPECTED_CONDITION: &str = "PermanentNodeDeletionExpected";

/// Namespace of the node leases shared by medik8s tools (NodeHealthCheck, Node Maintenance):
/// whoever holds a node's lease may act on the node.
pub const LEASE_NAMESPACE: &str = "medik8s-leases";

/// Suffix every template kind carries; the remediation kind is the template kind without it.
pub const TEMPLATE_KIND_SUFFIX: &str = "Template";

/// Our API group and version, as written in `apiVersion`.
pub const API_VERSION: &str = "nodehealer.io/v1alpha1";
/// Kind of the NodeHealthCheck, for owner references.
pub const NODE_HEALTH_CHECK_KIND: &str = "NodeHealthCheck";

/// The kind of the remediation object created from a template kind: `FooTemplate` → `Foo`.
/// `None` when the kind does not follow the contract.
pub fn remediation_kind(template_kind: &str) -> Option<&str> {
    template_kind
        .strip_suffix(TEMPLATE_KIND_SUFFIX)
        .filter(|kind| !kind.is_empty())
}

/// Whether a template's annotations say its remediator supports several templates of one kind.
///
/// medik8s only checks that the annotation is present; we also treat an explicit `"false"` as
/// "not supported", which no remediator relies on the other way.
pub fn supports_multiple_templates(template_annotations: &BTreeMap<String, String>) -> bool {
    template_annotations
        .get(MULTIPLE_TEMPLATES_SUPPORT_ANNOTATION)
        .is_some_and(|value| !value.eq_ignore_ascii_case("false"))
}

/// Whether a node's labels mark it as a control-plane node (standard or legacy role label).
pub fn is_control_plane(node_labels: &BTreeMap<String, String>) -> bool {
    node_labels.contains_key(CONTROL_PLANE_ROLE_LABEL)
        || node_labels.contains_key(LEGACY_MASTER_ROLE_LABEL)
}

/// Whether a node's labels exclude it from remediation. Only the value `true` excludes, as in
/// medik8s; an empty value is a mistake the controller should report.
pub fn is_excluded(node_labels: &BTreeMap<String, String>) -> bool {
    node_labels
        .get(EXCLUDE_FROM_REMEDIATION_LABEL)
        .is_some_and(|value| value == "true")
}

/// The NodeHealthCheck a remediation object belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerNhc {
    /// Name of the NodeHealthCheck.
    pub name: String,
    /// UID of the NodeHealthCheck.
    pub uid: String,
}

/// A template as the contract needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateInfo {
    /// `apiVersion` of the template (and of the remediation object).
    pub api_version: String,
    /// Kind of the template, ending in `Template`.
    pub kind: String,
    /// Name of the template.
    pub name: String,
    /// Namespace of the template (and of the remediation object).
    pub namespace: String,
    /// Whether the template carries the multiple-templates-support annotation.
    pub multiple_templates_support: bool,
}

/// Why a remediation object cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The template kind does not end with `Template`.
    #[error("template kind {0:?} does not end with \"Template\"")]
    TemplateKind(String),
    /// The template has no `spec.template.spec` object.
    #[error("template {0} has no spec.template.spec object")]
    TemplateSpec(String),
}

/// The owner reference to a NodeHealthCheck that every remediation object carries, as medik8s
/// writes it (not a controller reference, does not block the owner's deletion).
pub fn nhc_owner_reference(owner: &OwnerNhc) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_owned(),
        kind: NODE_HEALTH_CHECK_KIND.to_owned(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        controller: Some(false),
        block_owner_deletion: None,
    }
}

/// The metadata of the remediation object for `node_name` created from `template`.
pub fn remediation_metadata(
    owner: &OwnerNhc,
    template: &TemplateInfo,
    node_name: &str,
    control_plane: bool,
) -> ObjectMeta {
    let (name, generate_name) = if template.multiple_templates_support {
        (None, Some(format!("{node_name}-")))
    } else {
        (Some(node_name.to_owned()), None)
    };
    let mut labels = BTreeMap::from([(PART_OF_LABEL.to_owned(), PART_OF_VALUE.to_owned())]);
    if control_plane {
        labels.insert(CONTROL_PLANE_REMEDIATION_LABEL.to_owned(), String::new());
    }
    ObjectMeta {
        name,
        generate_name,
        namespace: Some(template.namespace.clone()),
        annotations: Some(BTreeMap::from([
            (NODE_NAME_ANNOTATION.to_owned(), node_name.to_owned()),
            (TEMPLATE_NAME_ANNOTATION.to_owned(), template.name.clone()),
        ])),
        labels: Some(labels),
        owner_references: Some(vec![nhc_owner_reference(owner)]),
        ..ObjectMeta::default()
    }
}

/// The remediation object to create for `node_name` from `template`, whose full object is
/// `template_object` (its `spec.template.spec` becomes the new object's `spec`).
pub fn remediation_object(
    owner: &OwnerNhc,
    template: &TemplateInfo,
    template_object: &Value,
    node_name: &str,
    control_plane: bool,
) -> Result<DynamicObject, ContractError> {
    let kind = remediation_kind(&template.kind)
        .ok_or_else(|| ContractError::TemplateKind(template.kind.clone()))?;
    let spec = template_object
        .pointer("/spec/template/spec")
        .filter(|spec| spec.is_object())
        .ok_or_else(|| {
            ContractError::TemplateSpec(format!("{}/{}", template.namespace, template.name))
        })?;
    Ok(DynamicObject {
        types: Some(TypeMeta {
            api_version: template.api_version.clone(),
            kind: kind.to_owned(),
        }),
        metadata: remediation_metadata(owner, template, node_name, control_plane),
        data: json!({ "spec": spec }),
    })
}

/// The name of a node's lease in [`LEASE_NAMESPACE`].
pub fn lease_name(node_name: &str) -> String {
    format!("node-{node_name}")
}

/// The lease holder identity of a NodeHealthCheck. The same form as medik8s' NodeHealthCheck, so
/// leases taken by a medik8s NodeHealthCheck of the same name are recognised after migrating.
pub fn lease_holder_identity(nhc_name: &str) -> String {
    format!("NodeHealthCheck-{nhc_name}")
}

/// Who may act on a node, according to its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// No lease, an expired one, or one without a holder: free to take.
    Free,
    /// Held by us.
    Ours,
    /// Held by someone else, e.g. a node maintenance operator.
    HeldBy(String),
}

/// The state of a node lease at `now`. A lease without a renew (or acquire) time or without a
/// duration is invalid and counts as expired, as medik8s treats it.
pub fn lease_state(
    holder: Option<&str>,
    renew_time: Option<Timestamp>,
    acquire_time: Option<Timestamp>,
    duration_seconds: Option<i32>,
    our_identity: &str,
    now: Timestamp,
) -> LeaseState {
    let Some(holder) = holder.filter(|h| !h.is_empty()) else {
        return LeaseState::Free;
    };
    if holder == our_identity {
        return LeaseState::Ours;
    }
    let expires = renew_time
        .or(acquire_time)
        .zip(duration_seconds)
        .and_then(|(from, secs)| {
            from.checked_add(jiff::SignedDuration::from_secs(secs.into()))
                .ok()
        });
    match expires {
        Some(expires) if expires > now => LeaseState::HeldBy(holder.to_owned()),
        _ => LeaseState::Free,
    }
}

/// What the contract lets us read from an existing remediation object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedRemediation {
    /// The object's `apiVersion`.
    pub api_version: String,
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's UID.
    pub uid: Option<String>,
    /// The node it remediates: the node-name annotation, else the object's name.
    pub node_name: String,
    /// The template it was created from (annotation), when known.
    pub template_name: Option<String>,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// Its `Processing` condition.
    pub processing: Option<bool>,
    /// Its `Succeeded` condition: `Some(false)` means the remediator gave up.
    pub succeeded: Option<bool>,
    /// Its `PermanentNodeDeletionExpected` condition is `True`.
    pub permanent_node_deletion_expected: bool,
    /// It carries the timed-out annotation (with the time, when it parses).
    pub timed_out: Option<Option<Timestamp>>,
    /// When its node became healthy again, from the healthy-delay annotation.
    pub healthy_since: Option<Timestamp>,
    /// It has an owner reference to the given NodeHealthCheck.
    pub owned: bool,
}

/// Reads a remediation object of any kind through the contract. `owner` decides `owned`: an owner
/// reference of kind NodeHealthCheck in our group with the owner's UID (or, without a UID in the
/// reference, its name).
pub fn observe_remediation(object: &DynamicObject, owner: &OwnerNhc) -> ObservedRemediation {
    let meta = &object.metadata;
    let annotations = meta.annotations.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let parse_time = |value: &String| value.parse::<Timestamp>().ok();
    let condition = |kind: &str| -> Option<bool> {
        object
            .data
            .pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|c| match c.get("status").and_then(Value::as_str) {
                Some("True") => Some(true),
                Some("False") => Some(false),
                _ => None,
            })
    };
    let owned = meta.owner_references.iter().flatten().any(|r| {
        r.kind == NODE_HEALTH_CHECK_KIND
            && r.api_version == API_VERSION
            && if r.uid.is_empty() {
                r.name == owner.name
            } else {
                r.uid == owner.uid
            }
    });
    let (api_version, kind) = object
        .types
        .as_ref()
        .map(|t| (t.api_version.clone(), t.kind.clone()))
        .unwrap_or_default();
    ObservedRemediation {
        api_version,
        kind,
        node_name: annotations
            .get(NODE_NAME_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| name.clone()),
        name,
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
        template_name: annotations.get(TEMPLATE_NAME_ANNOTATION).cloned(),
        created: meta.creation_timestamp.as_ref().map(|t| t.0),
        deleting: meta.deletion_timestamp.is_some(),
        processing: condition(PROCESSING_CONDITION),
        succeeded: condition(SUCCEEDED_CONDITION),
        permanent_node_deletion_expected: condition(PERMANENT_NODE_DELETION_EXPECTED_CONDITION)
            == Some(true),
        timed_out: annotations.get(NHC_TIMED_OUT_ANNOTATION).map(parse_time),
        healthy_since: annotations
            .get(HEALTHY_DELAY_ANNOTATION)
            .and_then(parse_time),
        owned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> OwnerNhc {
        OwnerNhc {
            name: "workers".into(),
            uid: "uid-1".into(),
        }
    }

    fn template(multiple: bool) -> TemplateInfo {
        TemplateInfo {
            api_version: "self-node-remediation.medik8s.io/v1alpha1".into(),
            kind: "SelfNodeRemediationTemplate".into(),
            name: "snr-auto".into(),
            namespace: "workload-availability".into(),
            multiple_templates_support: multiple,
        }
    }

    fn template_object() -> Value {
        json!({
            "apiVersion": "self-node-remediation.medik8s.io/v1alpha1",
            "kind": "SelfNodeRemediationTemplate",
            "metadata": {"name": "snr-auto", "namespace": "workload-availability"},
            "spec": {"template": {"spec": {"remediationStrategy": "OutOfServiceTaint"}}}
        })
    }

    #[test]
    fn remediation_kind_strips_the_template_suffix() {
        assert_eq!(remediation_kind("RemediationTemplate"), Some("Remediation"));
        assert_eq!(
            remediation_kind("SelfNodeRemediationTemplate"),
            Some("SelfNodeRemediation")
        );
        assert_eq!(remediation_kind("Template"), None);
        assert_eq!(remediation_kind("Remediation"), None);
        assert_eq!(remediation_kind("Templates"), None);
    }

    #[test]
    fn worker_object_is_named_after_the_node_with_contract_metadata() {
        let object = remediation_object(
            &owner(),
            &template(false),
            &template_object(),
            "worker-1",
            false,
        )
        .unwrap();
        let types = object.types.as_ref().unwrap();
        assert_eq!(
            types.api_version,
            "self-node-remediation.medik8s.io/v1alpha1"
        );
        assert_eq!(types.kind, "SelfNodeRemediation");
        let meta = &object.metadata;
        assert_eq!(meta.name.as_deref(), Some("worker-1"));
        assert_eq!(meta.generate_name, None);
        assert_eq!(meta.namespace.as_deref(), Some("workload-availability"));
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations[NODE_NAME_ANNOTATION], "worker-1");
        assert_eq!(annotations[TEMPLATE_NAME_ANNOTATION], "snr-auto");
        let labels = meta.labels.as_ref().unwrap();
        assert!(!labels.contains_key(CONTROL_PLANE_REMEDIATION_LABEL));
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].api_version, "nodehealer.io/v1alpha1");
        assert_eq!(owners[0].kind, "NodeHealthCheck");
        assert_eq!(owners[0].name, "workers");
        assert_eq!(owners[0].uid, "uid-1");
        assert_eq!(
            object.data,
            json!({"spec": {"remediationStrategy": "OutOfServiceTaint"}})
        );
    }

    #[test]
    fn multiple_template_support_uses_generate_name_and_control_plane_gets_the_label() {
        let object =
            remediation_object(&owner(), &template(true), &template_object(), "cp-0", true)
                .unwrap();
        assert_eq!(object.metadata.name, None);
        assert_eq!(object.metadata.generate_name.as_deref(), Some("cp-0-"));
        assert_eq!(
            object
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .get(CONTROL_PLANE_REMEDIATION_LABEL),
            Some(&String::new())
        );
    }

    #[test]
    fn malformed_templates_are_refused() {
        let mut bad_kind = template(false);
        bad_kind.kind = "SelfNodeRemediation".into();
        assert_eq!(
            remediation_object(&owner(), &bad_kind, &template_object(), "n", false).unwrap_err(),
            ContractError::TemplateKind("SelfNodeRemediation".into())
        );
        let no_spec = json!({"spec": {"template": {}}});
        assert!(matches!(
            remediation_object(&owner(), &template(false), &no_spec, "n", false),
            Err(ContractError::TemplateSpec(_))
        ));
    }

    #[test]
    fn template_and_node_labels() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(supports_multiple_templates(&map(&[(
            MULTIPLE_TEMPLATES_SUPPORT_ANNOTATION,
            "true"
        )])));
        assert!(supports_multiple_templates(&map(&[(
            MULTIPLE_TEMPLATES_SUPPORT_ANNOTATION,
            ""
        )])));
        assert!(!supports_multiple_templates(&map(&[(
            MULTIPLE_TEMPLATES_SUPPORT_ANNOTATION,
            "false"
        )])));
        assert!(!supports_multiple_templates(&map(&[])));
        assert!(is_control_plane(&map(&[(CONTROL_PLANE_ROLE_LABEL, "")])));
        assert!(is_control_plane(&map(&[(LEGACY_MASTER_ROLE_LABEL, "")])));
        assert!(!is_control_plane(&map(&[(
            "node-role.kubernetes.io/worker",
            ""
        )])));
        assert!(is_excluded(&map(&[(
            EXCLUDE_FROM_REMEDIATION_LABEL,
            "true"
        )])));
        assert!(!is_excluded(&map(&[(EXCLUDE_FROM_REMEDIATION_LABEL, "")])));
        assert!(!is_excluded(&map(&[(
            EXCLUDE_FROM_REMEDIATION_LABEL,
            "false"
        )])));
    }

    #[test]
    fn lease_states() {
        let now: Timestamp = "2025-01-01T12:00:00Z".parse().unwrap();
        let ago = |s: i64| now - jiff::SignedDuration::from_secs(s);
        let ours = "NodeHealthCheck-workers";
        assert_eq!(lease_name("worker-1"), "node-worker-1");
        assert_eq!(lease_holder_identity("workers"), ours);
        // (holder, renew, acquire, duration, expected)
        let cases = [
            (None, Some(ago(1)), None, Some(3600), LeaseState::Free),
            (Some(""), Some(ago(1)), None, Some(3600), LeaseState::Free),
            (
                Some(ours),
                Some(ago(7200)),
                None,
                Some(3600),
                LeaseState::Ours,
            ),
            (
                Some("node-maintenance"),
                Some(ago(10)),
                None,
                Some(3600),
                LeaseState::HeldBy("node-maintenance".into()),
            ),
            (
                Some("node-maintenance"),
                None,
                Some(ago(10)),
                Some(3600),
                LeaseState::HeldBy("node-maintenance".into()),
            ),
            (
                Some("node-maintenance"),
                Some(ago(3601)),
                None,
                Some(3600),
                LeaseState::Free,
            ),
            (
                Some("node-maintenance"),
                None,
                None,
                Some(3600),
                LeaseState::Free,
            ),
            (
                Some("node-maintenance"),
                Some(ago(10)),
                None,
                None,
                LeaseState::Free,
            ),
        ];
        for (i, (holder, renew, acquire, duration, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                lease_state(holder, renew, acquire, duration, ours, now),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn observes_contract_state_of_any_remediation_kind() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "self-node-remediation.medik8s.io/v1alpha1",
            "kind": "SelfNodeRemediation",
            "metadata": {
                "name": "worker-1-abcde",
                "namespace": "workload-availability",
                "uid": "cr-uid",
                "creationTimestamp": "2025-01-01T12:00:00Z",
                "annotations": {
                    NODE_NAME_ANNOTATION: "worker-1",
                    TEMPLATE_NAME_ANNOTATION: "snr-auto",
                    NHC_TIMED_OUT_ANNOTATION: "2025-01-01T12:05:00Z",
                    HEALTHY_DELAY_ANNOTATION: "2025-01-01T12:06:00Z"
                },
                "ownerReferences": [{
                    "apiVersion": "nodehealer.io/v1alpha1", "kind": "NodeHealthCheck",
                    "name": "workers", "uid": "uid-1"
                }]
            },
            "status": {"conditions": [
                {"type": "Processing", "status": "False", "reason": "r", "message": "", "lastTransitionTime": "2025-01-01T12:04:00Z"},
                {"type": "Succeeded", "status": "False", "reason": "r", "message": "", "lastTransitionTime": "2025-01-01T12:04:00Z"},
                {"type": "PermanentNodeDeletionExpected", "status": "True", "reason": "r", "message": "", "lastTransitionTime": "2025-01-01T12:04:00Z"}
            ]}
        }))
        .unwrap();
        let seen = observe_remediation(&object, &owner());
        assert_eq!(seen.node_name, "worker-1");
        assert_eq!(seen.kind, "SelfNodeRemediation");
        assert_eq!(
            seen.api_version,
            "self-node-remediation.medik8s.io/v1alpha1"
        );
        assert_eq!(seen.template_name.as_deref(), Some("snr-auto"));
        assert_eq!(seen.created, Some("2025-01-01T12:00:00Z".parse().unwrap()));
        assert_eq!(seen.processing, Some(false));
        assert_eq!(seen.succeeded, Some(false));
        assert!(seen.permanent_node_deletion_expected);
        assert_eq!(
            seen.timed_out,
            Some(Some("2025-01-01T12:05:00Z".parse().unwrap()))
        );
        assert_eq!(
            seen.healthy_since,
            Some("2025-01-01T12:06:00Z".parse().unwrap())
        );
        assert!(seen.owned);
        assert!(!seen.deleting);
        let stranger = OwnerNhc {
            name: "workers".into(),
            uid: "other-uid".into(),
        };
        assert!(!observe_remediation(&object, &stranger).owned);
    }

    #[test]
    fn objects_without_annotations_are_named_after_their_node() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "nodehealer.io/v1alpha1", "kind": "Remediation",
            "metadata": {"name": "worker-2", "namespace": "nodehealer"}
        }))
        .unwrap();
        let seen = observe_remediation(&object, &owner());
        assert_eq!(seen.node_name, "worker-2");
        assert_eq!(seen.template_name, None);
        assert_eq!(seen.succeeded, None);
        assert_eq!(seen.timed_out, None);
        assert!(!seen.owned);
    }
}
