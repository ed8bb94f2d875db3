//! `RemediationTemplate`: the template a NodeHealthCheck creates `Remediation`s from, following the
//! medik8s contract (`<Kind>Template` with `spec.template.spec`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::RemediationSpec;

/// A template for the Remediations a NodeHealthCheck creates for unhealthy nodes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "nodehealer.io",
    version = "v1alpha1",
    kind = "RemediationTemplate",
    namespaced,
    derive = "PartialEq",
    doc = "RemediationTemplate is what a NodeHealthCheck's remediationTemplate refers to: each \
           unhealthy node gets a Remediation in this namespace whose spec is \
           spec.template.spec.",
    printcolumn(
        name = "Action",
        type_ = "string",
        json_path = ".spec.template.spec.action",
        description = "Reboot, PowerCycle, Rebuild or Replace"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RemediationTemplateSpec {
    /// The Remediation to create for an unhealthy node.
    pub template: RemediationTemplateBody,
}

/// The body of a remediation template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct RemediationTemplateBody {
    /// The spec of each Remediation created from this template.
    pub spec: RemediationSpec,
}
