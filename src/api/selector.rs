//! Label selectors read as Kubernetes reads them. kube's conversion is lenient (`In` with no
//! values, `Exists` with values); Kubernetes rejects those, and so do we, so a selector never
//! quietly means something other than what its author wrote.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;

/// The selector, or what is wrong with it.
pub fn parse_selector(selector: &LabelSelector) -> Result<Selector, String> {
    for (i, r) in selector.match_expressions.iter().flatten().enumerate() {
        let values = r.values.as_deref().unwrap_or_default();
        let problem = match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => Some("needs at least one value"),
            "Exists" | "DoesNotExist" if !values.is_empty() => Some("takes no values"),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
            _ => Some("is not one of In, NotIn, Exists, DoesNotExist"),
        };
        if let Some(problem) = problem {
            return Err(format!(
                "matchExpressions[{i}] (key {:?}): operator {} {problem}",
                r.key, r.operator
            ));
        }
        if r.key.is_empty() {
            return Err(format!("matchExpressions[{i}]: empty key"));
        }
    }
    selector.clone().try_into().map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn expression(key: &str, operator: &str, values: Option<Vec<&str>>) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            }]),
            match_labels: None,
        }
    }

    #[test]
    fn selectors_are_read_as_kubernetes_reads_them() {
        let ok = [
            expression("a", "In", Some(vec!["x"])),
            expression("a", "NotIn", Some(vec!["x", "y"])),
            expression("a", "Exists", None),
            expression("a", "DoesNotExist", Some(vec![])),
        ];
        for s in ok {
            assert!(parse_selector(&s).is_ok(), "{s:?}");
        }
        let bad = [
            (
                expression("a", "In", Some(vec![])),
                "needs at least one value",
            ),
            (expression("a", "NotIn", None), "needs at least one value"),
            (
                expression("a", "Exists", Some(vec!["b"])),
                "takes no values",
            ),
            (expression("a", "Near", Some(vec!["b"])), "is not one of"),
            (expression("", "Exists", None), "empty key"),
        ];
        for (s, why) in bad {
            let err = parse_selector(&s).unwrap_err();
            assert!(err.contains(why), "{err} / {why}");
        }
    }
}
