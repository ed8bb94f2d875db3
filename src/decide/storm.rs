//! Storm handling, after medik8s: when many nodes fail at once (remediation blocked by
//! minHealthy/maxUnhealthy while nodes are unhealthy) a *storm* begins; when the pool is back above
//! its threshold a *cooldown* of `stormCooldownDuration` runs before new remediations start, because
//! the counts that ended the storm may still be settling (nodes flapping back, status updates in
//! flight).
//!
//! The state lives in the NodeHealthCheck's conditions, so a restarted controller resumes it:
//! `StormActive=True` from the start of the storm to the end of the cooldown;
//! `StormCooldownActive=True` during the cooldown, its `lastTransitionTime` being when it began.
//!
//! One deliberate difference from medik8s: medik8s only updates the storm when some node is
//! unhealthy, so a cooldown does not start until the *next* failure. We evaluate it on every
//! decision, so the cooldown starts as soon as the pool is back above its threshold and ends on
//! time.

use std::time::Duration as StdDuration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::{
    api::{
        STORM_ACTIVE_CONDITION, STORM_COOLDOWN_ACTIVE_CONDITION,
        conditions::{find_condition, is_condition_true, set_condition},
    },
    health::add,
};

/// Reason of the storm conditions, as medik8s writes it.
pub const STORM_CONDITION_REASON: &str = "HealthyNodeThresholdChange";

/// The storm state of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StormState {
    /// A storm (or its cooldown) is in progress.
    pub active: bool,
    /// The cooldown began at this time; `None` while the storm itself lasts.
    pub cooldown_since: Option<Timestamp>,
}

impl StormState {
    /// Reads the state from a NodeHealthCheck's status conditions.
    pub fn from_conditions(conditions: &[Condition]) -> Self {
        let active = is_condition_true(conditions, STORM_ACTIVE_CONDITION);
        let cooldown_since = find_condition(conditions, STORM_COOLDOWN_ACTIVE_CONDITION)
            .filter(|c| c.status == "True")
            .map(|c| c.last_transition_time.0);
        Self {
            active,
            cooldown_since: if active { cooldown_since } else { None },
        }
    }
}

/// A change of storm state, worth an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StormTransition {
    /// Remediation became blocked by the pool threshold while nodes are unhealthy.
    Started,
    /// The pool is back above its threshold; the cooldown begins.
    CooldownStarted,
    /// The threshold was crossed again during the cooldown; the storm goes on.
    CooldownInterrupted,
    /// The cooldown has passed (or storm handling was turned off); remediation resumes.
    Ended,
}

impl StormTransition {
    /// A short CamelCase name, for event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Started => "StormStarted",
            Self::CooldownStarted => "StormCooldownStarted",
            Self::CooldownInterrupted => "StormCooldownInterrupted",
            Self::Ended => "StormEnded",
        }
    }
}

/// The storm after one evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StormStep {
    /// The new state.
    pub state: StormState,
    /// The change, if any.
    pub transition: Option<StormTransition>,
    /// New remediations wait until this time because of the cooldown.
    pub cooldown_until: Option<Timestamp>,
}

/// Advances the storm state. `threshold_blocked`: some node is unhealthy and the pool is below
/// minHealthy (or above maxUnhealthy). Without `cooldown` (no `stormCooldownDuration`) there is no
/// storm handling, and a storm left over from an earlier configuration ends.
pub fn next_storm(
    previous: StormState,
    cooldown: Option<StdDuration>,
    threshold_blocked: bool,
    now: Timestamp,
) -> StormStep {
    let inactive = StormState::default();
    let Some(cooldown) = cooldown else {
        return StormStep {
            state: inactive,
            transition: previous.active.then_some(StormTransition::Ended),
            cooldown_until: None,
        };
    };
    let step = |state, transition, cooldown_until| StormStep {
        state,
        transition,
        cooldown_until,
    };
    let storming = StormState {
        active: true,
        cooldown_since: None,
    };
    match (previous.active, previous.cooldown_since, threshold_blocked) {
        (false, _, true) => step(storming, Some(StormTransition::Started), None),
        (false, _, false) => step(inactive, None, None),
        (true, None, true) => step(storming, None, None),
        (true, Some(_), true) => step(storming, Some(StormTransition::CooldownInterrupted), None),
        (true, None, false) => step(
            StormState {
                active: true,
                cooldown_since: Some(now),
            },
            Some(StormTransition::CooldownStarted),
            Some(add(now, cooldown)),
        ),
        (true, Some(since), false) => {
            let until = add(since, cooldown);
            if now >= until {
                step(inactive, Some(StormTransition::Ended), None)
            } else {
                step(previous, None, Some(until))
            }
        }
    }
}

/// Writes a storm state into status conditions (lastTransitionTime moves only on flips).
/// Returns whether anything changed.
pub fn apply_storm_conditions(
    conditions: &mut Vec<Condition>,
    state: StormState,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let (active_message, cooldown_message) = match (state.active, state.cooldown_since) {
        (false, _) => (
            "No storm: remediation proceeds normally",
            "No storm cooldown",
        ),
        (true, None) => (
            "Storm: too few healthy nodes; no new remediation until the pool recovers and the cooldown passes",
            "The storm is still going on",
        ),
        (true, Some(_)) => (
            "Storm over, cooldown running; no new remediation until it passes",
            "Cooldown after a storm; no new remediation until it passes",
        ),
    };
    let cooldown_at = state.cooldown_since.unwrap_or(now);
    let a = set_condition(
        conditions,
        STORM_ACTIVE_CONDITION,
        state.active,
        STORM_CONDITION_REASON,
        active_message,
        observed_generation,
        now,
    );
    let b = set_condition(
        conditions,
        STORM_COOLDOWN_ACTIVE_CONDITION,
        state.cooldown_since.is_some(),
        STORM_CONDITION_REASON,
        cooldown_message,
        observed_generation,
        // The cooldown's start is its transition time, which is how a restart finds it again.
        cooldown_at,
    );
    a || b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    const COOLDOWN: Option<StdDuration> = Some(StdDuration::from_secs(600));

    fn state(active: bool, cooldown_since: Option<i64>) -> StormState {
        StormState {
            active,
            cooldown_since: cooldown_since.map(t),
        }
    }

    #[test]
    fn storm_state_machine() {
        use StormTransition::*;
        // (name, previous, cooldown, threshold blocked, expected state, transition, cooldown until)
        let cases = [
            (
                "calm stays calm",
                state(false, None),
                COOLDOWN,
                false,
                state(false, None),
                None,
                None,
            ),
            (
                "threshold crossed: storm starts",
                state(false, None),
                COOLDOWN,
                true,
                state(true, None),
                Some(Started),
                None,
            ),
            (
                "storm goes on",
                state(true, None),
                COOLDOWN,
                true,
                state(true, None),
                None,
                None,
            ),
            (
                "pool recovered: cooldown starts now",
                state(true, None),
                COOLDOWN,
                false,
                state(true, Some(0)),
                Some(CooldownStarted),
                Some(t(600)),
            ),
            (
                "cooldown running",
                state(true, Some(-100)),
                COOLDOWN,
                false,
                state(true, Some(-100)),
                None,
                Some(t(500)),
            ),
            (
                "cooldown passed: storm ends",
                state(true, Some(-600)),
                COOLDOWN,
                false,
                state(false, None),
                Some(Ended),
                None,
            ),
            (
                "threshold crossed during cooldown: storm again",
                state(true, Some(-100)),
                COOLDOWN,
                true,
                state(true, None),
                Some(CooldownInterrupted),
                None,
            ),
            (
                "no storm handling configured",
                state(false, None),
                None,
                true,
                state(false, None),
                None,
                None,
            ),
            (
                "storm handling turned off mid-storm",
                state(true, Some(-1)),
                None,
                false,
                state(false, None),
                Some(Ended),
                None,
            ),
        ];
        for (name, previous, cooldown, blocked, want_state, want_transition, want_until) in cases {
            let got = next_storm(previous, cooldown, blocked, t(0));
            assert_eq!(got.state, want_state, "{name}: state");
            assert_eq!(got.transition, want_transition, "{name}: transition");
            assert_eq!(got.cooldown_until, want_until, "{name}: cooldown until");
        }
    }

    #[test]
    fn state_round_trips_through_conditions() {
        for s in [
            state(false, None),
            state(true, None),
            state(true, Some(-42)),
        ] {
            let mut conditions = Vec::new();
            apply_storm_conditions(&mut conditions, s, Some(3), t(0));
            assert_eq!(StormState::from_conditions(&conditions), s);
        }
        // A restart in the middle of a cooldown resumes it from the condition's transition time.
        let mut conditions = Vec::new();
        apply_storm_conditions(&mut conditions, state(true, Some(-100)), None, t(0));
        assert!(!apply_storm_conditions(
            &mut conditions,
            state(true, Some(-100)),
            None,
            t(50)
        ));
        let resumed = next_storm(
            StormState::from_conditions(&conditions),
            COOLDOWN,
            false,
            t(50),
        );
        assert_eq!(resumed.cooldown_until, Some(t(500)));
    }
}
