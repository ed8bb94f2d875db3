//! Could a pending pod run on a standby node? The scheduler's node filters, as plain data.
//!
//! `AutoPriority` brings a standby into service for pods that find no room. A cluster has many
//! pools, and a pod that waits for another pool's nodes (a GPU pool, another zone) must never
//! bring one of ours into service: it could not run there anyway. So a pending pod counts for a
//! standby only when the standby passes the filters that look at the node alone, as the
//! scheduler applies them: the pod's `nodeSelector`, its required node affinity, and its
//! tolerations against the node's `NoSchedule`/`NoExecute` taints, except our reserved taint,
//! which the promotion removes. Requests, ports, pod (anti-)affinity and topology spread are not
//! checked: a standby is empty, and the scheduler has the last word.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint as KubeTaint,
    Toleration as KubeToleration,
};

use super::recovery::RESERVED_TAINT_KEY;

/// Where a pod may run, from its spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `requiredDuringSchedulingIgnoredDuringExecution` of its node affinity: the node must
    /// match one of these terms. `None` when the pod has none.
    pub required_terms: Option<Vec<Term>>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
}

/// A node selector term: every requirement holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Term {
    /// On the node's labels.
    pub match_expressions: Vec<Requirement>,
    /// On the node's fields (only `metadata.name` exists).
    pub match_fields: Vec<Requirement>,
}

/// One `{key, operator, values}` requirement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirement {
    /// The label key or field path.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`.
    pub operator: String,
    /// The values.
    pub values: Vec<String>,
}

/// A pod's toleration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Toleration {
    /// Empty with `Exists`: every key.
    pub key: String,
    /// `Equal` (also when empty) or `Exists`.
    pub operator: String,
    /// Compared with `Equal`.
    pub value: String,
    /// Empty: every effect.
    pub effect: String,
}

/// A node's taint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Taint {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// What of a node the filters look at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeTraits {
    /// Its name (`matchFields` on `metadata.name`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its taints.
    pub taints: Vec<Taint>,
}

impl Placement {
    /// Reads the placement from a pod's spec.
    pub fn of(spec: &PodSpec) -> Self {
        let required_terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.iter().map(Term::of).collect());
        Self {
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_terms,
            tolerations: spec
                .tolerations
                .iter()
                .flatten()
                .map(Toleration::of)
                .collect(),
        }
    }
}

impl Term {
    fn of(term: &NodeSelectorTerm) -> Self {
        let read = |r: &Option<Vec<NodeSelectorRequirement>>| {
            r.iter()
                .flatten()
                .map(|r| Requirement {
                    key: r.key.clone(),
                    operator: r.operator.clone(),
                    values: r.values.clone().unwrap_or_default(),
                })
                .collect()
        };
        Self {
            match_expressions: read(&term.match_expressions),
            match_fields: read(&term.match_fields),
        }
    }
}

impl Toleration {
    fn of(t: &KubeToleration) -> Self {
        Self {
            key: t.key.clone().unwrap_or_default(),
            operator: t.operator.clone().unwrap_or_default(),
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.clone().unwrap_or_default(),
        }
    }

    /// Kubernetes' rule: the effect and key match when set, then `Exists` or an equal value.
    fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            "" | "Equal" => !self.key.is_empty() && self.value == taint.value,
            _ => false,
        }
    }
}

impl NodeTraits {
    /// Reads a node's name, labels and taints.
    pub fn of(
        name: &str,
        labels: &BTreeMap<String, String>,
        taints: Option<&Vec<KubeTaint>>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            labels: labels.clone(),
            taints: taints
                .into_iter()
                .flatten()
                .map(|t| Taint {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: t.effect.clone(),
                })
                .collect(),
        }
    }
}

/// Whether a pod placed as `pod` could run on `node` once our reserved taint is gone.
pub fn fits(pod: &Placement, node: &NodeTraits) -> bool {
    let selector = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    // Terms are ORed; a term without requirements matches no node (as in Kubernetes).
    let affinity = pod.required_terms.as_ref().is_none_or(|terms| {
        terms.iter().any(|t| {
            !(t.match_expressions.is_empty() && t.match_fields.is_empty())
                && t.match_expressions
                    .iter()
                    .all(|r| holds(r, node.labels.get(&r.key).map(String::as_str)))
                && t.match_fields
                    .iter()
                    .all(|r| r.key == "metadata.name" && holds(r, Some(node.name.as_str())))
        })
    });
    let tolerated = node
        .taints
        .iter()
        .filter(|t| t.key != RESERVED_TAINT_KEY)
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| pod.tolerations.iter().any(|tol| tol.tolerates(t)));
    selector && affinity && tolerated
}

/// Whether a requirement holds for a value (`None`: the node has no such label).
fn holds(r: &Requirement, value: Option<&str>) -> bool {
    let number = |s: &str| s.parse::<i64>().ok();
    match (r.operator.as_str(), value) {
        ("In", Some(v)) => r.values.iter().any(|x| x == v),
        ("In", None) => false,
        ("NotIn", Some(v)) => !r.values.iter().any(|x| x == v),
        ("NotIn", None) => true,
        ("Exists", v) => v.is_some(),
        ("DoesNotExist", v) => v.is_none(),
        ("Gt" | "Lt", Some(v)) => match (number(v), r.values.as_slice()) {
            (Some(v), [bound]) => {
                number(bound).is_some_and(|b| if r.operator == "Gt" { v > b } else { v < b })
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> NodeTraits {
        NodeTraits {
            name: "s1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taints: taints
                .iter()
                .map(|(k, v, e)| Taint {
                    key: k.to_string(),
                    value: v.to_string(),
                    effect: e.to_string(),
                })
                .collect(),
        }
    }

    fn pod(yaml: &str) -> Placement {
        let spec: PodSpec = serde_yaml::from_str(yaml).expect("pod spec");
        Placement::of(&spec)
    }

    const CONTAINERS: &str = "containers: [{name: app, image: app}]\n";

    #[test]
    fn node_selector_must_match_every_label() {
        let standby = node(&[("pool", "workers"), ("zone", "a")], &[]);
        assert!(fits(&pod(CONTAINERS), &standby));
        let p = |sel: &str| pod(&format!("{CONTAINERS}nodeSelector: {sel}"));
        assert!(fits(&p("{pool: workers}"), &standby));
        assert!(fits(&p("{pool: workers, zone: a}"), &standby));
        assert!(!fits(&p("{pool: gpu}"), &standby));
        assert!(!fits(&p("{pool: workers, disk: ssd}"), &standby));
    }

    #[test]
    fn required_node_affinity_terms_are_ored_and_requirements_anded() {
        let standby = node(&[("pool", "workers"), ("cores", "16")], &[]);
        let p = |terms: &str| {
            pod(&format!(
                "{CONTAINERS}affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: {terms}}}}}}}"
            ))
        };
        let cases = [
            (
                "[{matchExpressions: [{key: pool, operator: In, values: [workers, infra]}]}]",
                true,
            ),
            (
                "[{matchExpressions: [{key: pool, operator: In, values: [gpu]}]}]",
                false,
            ),
            (
                "[{matchExpressions: [{key: pool, operator: NotIn, values: [gpu]}]}]",
                true,
            ),
            (
                "[{matchExpressions: [{key: gpu, operator: NotIn, values: [a100]}]}]",
                true,
            ),
            (
                "[{matchExpressions: [{key: pool, operator: Exists}]}]",
                true,
            ),
            (
                "[{matchExpressions: [{key: gpu, operator: Exists}]}]",
                false,
            ),
            (
                "[{matchExpressions: [{key: gpu, operator: DoesNotExist}]}]",
                true,
            ),
            (
                "[{matchExpressions: [{key: cores, operator: Gt, values: ['8']}]}]",
                true,
            ),
            (
                "[{matchExpressions: [{key: cores, operator: Lt, values: ['8']}]}]",
                false,
            ),
            (
                "[{matchExpressions: [{key: cores, operator: Gt, values: [many]}]}]",
                false,
            ),
            (
                "[{matchExpressions: [{key: pool, operator: Gt, values: ['1']}]}]",
                false,
            ),
            // AND within a term.
            (
                "[{matchExpressions: [{key: pool, operator: In, values: [workers]}, {key: gpu, operator: Exists}]}]",
                false,
            ),
            // OR across terms.
            (
                "[{matchExpressions: [{key: gpu, operator: Exists}]}, {matchExpressions: [{key: pool, operator: In, values: [workers]}]}]",
                true,
            ),
            (
                "[{matchFields: [{key: metadata.name, operator: In, values: [s1]}]}]",
                true,
            ),
            (
                "[{matchFields: [{key: metadata.name, operator: NotIn, values: [s1]}]}]",
                false,
            ),
            // An empty term matches no node; no term at all neither.
            ("[{}]", false),
            ("[]", false),
        ];
        for (terms, want) in cases {
            assert_eq!(fits(&p(terms), &standby), want, "{terms}");
        }
    }

    #[test]
    fn taints_must_be_tolerated_except_our_reserved_one() {
        let plain = node(&[], &[(RESERVED_TAINT_KEY, "", "NoSchedule")]);
        assert!(fits(&pod(CONTAINERS), &plain), "the promotion removes it");
        let soft = node(&[], &[("dedicated", "batch", "PreferNoSchedule")]);
        assert!(
            fits(&pod(CONTAINERS), &soft),
            "a preference does not filter"
        );

        let gpu = node(&[], &[("nvidia.com/gpu", "present", "NoSchedule")]);
        let p = |tol: &str| pod(&format!("{CONTAINERS}tolerations: [{tol}]"));
        let cases = [
            ("{key: nvidia.com/gpu, operator: Exists}", true),
            (
                "{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}",
                true,
            ),
            (
                "{key: nvidia.com/gpu, operator: Exists, effect: NoExecute}",
                false,
            ),
            ("{key: nvidia.com/gpu, value: present}", true),
            (
                "{key: nvidia.com/gpu, operator: Equal, value: present}",
                true,
            ),
            (
                "{key: nvidia.com/gpu, operator: Equal, value: absent}",
                false,
            ),
            ("{key: other, operator: Exists}", false),
            ("{operator: Exists}", true),
            ("{operator: Exists, effect: NoExecute}", false),
        ];
        for (tol, want) in cases {
            assert_eq!(fits(&p(tol), &gpu), want, "{tol}");
        }
        assert!(!fits(&pod(CONTAINERS), &gpu));
        let draining = node(&[], &[("maintenance", "", "NoExecute")]);
        assert!(!fits(&pod(CONTAINERS), &draining));
    }
}
