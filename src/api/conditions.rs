//! Helpers for `metav1.Condition` lists in status: set a condition so that its
//! `lastTransitionTime` changes only when its status flips.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition of the given type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of the given type is present with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Sets a condition: adds it, or updates it in place. `lastTransitionTime` becomes `now` only when
/// the condition is new or its status changes. Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" }.to_owned();
    let wanted = |last_transition_time: Time| Condition {
        type_: type_.to_owned(),
        status: status.clone(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        None => {
            conditions.push(wanted(Time(now)));
            true
        }
        Some(existing) => {
            let transition = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                Time(now)
            };
            let updated = wanted(transition);
            let changed = *existing != updated;
            *existing = updated;
            changed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let t2: Timestamp = "2025-01-01T00:02:00Z".parse().unwrap();
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            "StormActive",
            true,
            "A",
            "m",
            Some(1),
            t0
        ));
        assert!(!set_condition(
            &mut conditions,
            "StormActive",
            true,
            "A",
            "m",
            Some(1),
            t1
        ));
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert!(set_condition(
            &mut conditions,
            "StormActive",
            true,
            "B",
            "other",
            Some(2),
            t1
        ));
        assert_eq!(
            conditions[0].last_transition_time,
            Time(t0),
            "reason change is no transition"
        );
        assert!(set_condition(
            &mut conditions,
            "StormActive",
            false,
            "B",
            "over",
            Some(2),
            t2
        ));
        assert_eq!(conditions[0].last_transition_time, Time(t2));
        assert!(!is_condition_true(&conditions, "StormActive"));
        assert_eq!(conditions.len(), 1);
    }
}
