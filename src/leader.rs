//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! Every write is a replace carrying the resourceVersion we read, so two replicas can never
//! both believe they took the lease: the loser gets a 409 and reads again. Expiry is judged by
//! when *we* last saw the record change (a local monotonic clock), not by the holder's
//! `renewTime`, so clock skew between nodes cannot make a live leader look expired.
//!
//! The leader knows, by its own monotonic clock, the instant its Lease runs out: the lease
//! duration after the moment the last successful renewal was *sent* (the API server wrote it
//! later, and every other replica saw it later still, so none can take the Lease before that
//! instant). Each renewal has a deadline, so a renewal that hangs cannot keep a leader acting
//! on a Lease it lost. [`Authority`] tells the controllers, right before they act, whether the
//! Lease is still held with a margin; a leader that cannot renew within `renew_deadline` stops
//! acting and reports the loss, and the binary then exits (the new leader resumes every
//! remediation from status).

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Result;

/// Timing of the election, as client-go's defaults scaled for quick failover.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub lease_name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease is valid after its last renewal seen by a candidate.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops acting and gives up; each renewal
    /// must answer before it.
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

impl ElectionConfig {
    pub fn new(namespace: &str, lease_name: &str, identity: &str) -> Self {
        Self {
            lease_name: lease_name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks `retry_period < renew_deadline < lease_duration`: a leader must get several
    /// tries at renewing before it gives up, and must give up before its Lease runs out.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.lease_duration.as_secs() < 1 || self.lease_duration.subsec_nanos() != 0 {
            return Err("the lease duration must be a whole number of seconds, at least 1".into());
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        Ok(())
    }

    /// How long the Lease must still be held for an action to start: the leader stops
    /// acting exactly when it gives up renewing, `lease_duration - renew_deadline` before
    /// its Lease can run out.
    pub fn action_margin(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_deadline)
    }
}

/// One term of holding the Lease, on this replica's monotonic clock. Pure arithmetic: every
/// question takes `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    /// When the acquiring write came back: the start of this replica's leadership.
    pub acquired: Instant,
    /// When the last renewal that succeeded (or the acquiring write) was sent.
    pub renewed: Instant,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
}

impl Term {
    /// A term won by a write sent at `sent` that came back at `acquired`.
    pub fn new(sent: Instant, acquired: Instant, config: &ElectionConfig) -> Self {
        Term {
            acquired,
            renewed: sent,
            lease_duration: config.lease_duration,
            renew_deadline: config.renew_deadline,
        }
    }

    /// A renewal sent at `sent` succeeded. One sent before the last counted one (answers can
    /// come back out of order) does not move anything back.
    pub fn renewed_at(&mut self, sent: Instant) {
        self.renewed = self.renewed.max(sent);
    }

    /// The instant no other replica can have taken the Lease before.
    pub fn expires(&self) -> Instant {
        self.renewed + self.lease_duration
    }

    /// The instant this replica gives up if it has not renewed by then.
    pub fn gives_up(&self) -> Instant {
        self.renewed + self.renew_deadline
    }

    /// Whether the Lease is held for at least `margin` more after `now`.
    pub fn may_act(&self, now: Instant, margin: Duration) -> bool {
        now.checked_add(margin)
            .is_some_and(|until| until < self.expires())
    }

    /// How long a renewal started at `now` may take: it must answer before this replica
    /// gives up. None when that moment has come.
    pub fn renew_timeout(&self, now: Instant) -> Option<Duration> {
        let left = self.gives_up().saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// How long this replica has led, at `now`.
    pub fn held_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.acquired)
    }
}

/// Whether this replica may act, shared by the elector and every controller that sends
/// something it must not send twice. Without leader election it always may.
#[derive(Clone, Debug)]
pub struct Authority {
    /// None: no leader election, this process is the only one.
    term: Option<Arc<Mutex<Option<Term>>>>,
    margin: Duration,
}

impl Authority {
    /// No leader election: this process always acts.
    pub fn unconditional() -> Self {
        Authority {
            term: None,
            margin: Duration::ZERO,
        }
    }

    /// Acts only while a term is held (none yet), `margin` before the Lease could run out.
    pub fn elected(margin: Duration) -> Self {
        Authority {
            term: Some(Arc::new(Mutex::new(None))),
            margin,
        }
    }

    /// How long the Lease must still be held for an action to start.
    pub fn margin(&self) -> Duration {
        self.margin
    }

    fn with_term<T>(&self, f: impl FnOnce(&mut Option<Term>) -> T) -> Option<T> {
        let term = self.term.as_ref()?;
        let mut guard = term.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(f(&mut guard))
    }

    fn begin(&self, term: Term) {
        self.with_term(|t| *t = Some(term));
    }

    fn renewed_at(&self, sent: Instant) {
        self.with_term(|t| {
            if let Some(t) = t {
                t.renewed_at(sent)
            }
        });
    }

    /// Stops every action at once: the Lease is lost or given up.
    pub fn revoke(&self) {
        self.with_term(|t| *t = None);
    }

    fn current(&self) -> Option<Option<Term>> {
        self.with_term(|t| *t)
    }

    /// Whether this replica holds the Lease for at least `margin` more, now.
    pub fn may_act(&self, margin: Duration) -> bool {
        match self.current() {
            None => true,
            Some(term) => term.is_some_and(|t| t.may_act(Instant::now(), margin)),
        }
    }

    /// How long this replica has led without interruption; `Duration::MAX` without leader
    /// election, zero while it does not lead.
    pub fn held_for(&self) -> Duration {
        match self.current() {
            None => Duration::MAX,
            Some(term) => term.map_or(Duration::ZERO, |t| t.held_for(Instant::now())),
        }
    }

    /// Runs `action` only while this replica holds the Lease with [`Self::margin`] to spare:
    /// the Lease is checked on the clock before every poll, and the action is dropped (None)
    /// once it is not held so. A process paused in the middle (SIGSTOP, a stalled VM) finds
    /// its Lease gone when it resumes and sends nothing more of the action: whatever was not
    /// on the wire before the pause never leaves.
    pub async fn while_leading<F: Future>(&self, action: F) -> Option<F::Output> {
        if self.term.is_none() {
            return Some(action.await);
        }
        let mut action = pin!(action);
        let mut wake = pin!(tokio::time::sleep(Duration::ZERO));
        std::future::poll_fn(|cx| {
            let term = self.current().flatten();
            let Some(until) = term
                .filter(|t| t.may_act(Instant::now(), self.margin))
                .and_then(|t| t.expires().checked_sub(self.margin))
            else {
                return Poll::Ready(None);
            };
            if let Poll::Ready(out) = action.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            // Be polled again when the margin is reached, even if the action is not woken.
            if wake.deadline() != until {
                wake.as_mut().reset(until);
            }
            if wake.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        })
        .await
    }
}

/// Held leadership: `lost` turns true when renewing failed past the deadline or another
/// replica holds the Lease; by then [`Authority`] already refuses every action.
pub struct Leadership {
    pub lost: watch::Receiver<bool>,
    renewer: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    config: ElectionConfig,
    authority: Authority,
}

impl Leadership {
    /// Gives the lease up (on graceful shutdown) so a standby takes over at once. Nothing is
    /// sent from here on: the standby may act as soon as the Lease is free.
    pub async fn release(self) {
        self.authority.revoke();
        self.renewer.abort();
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.lease_name).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                let _ = self
                    .api
                    .replace(&self.config.lease_name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }
}

/// Waits until this replica holds the lease, then keeps renewing it in the background;
/// `authority` acts while the renewals keep it.
pub async fn acquire(
    client: kube::Client,
    config: ElectionConfig,
    authority: Authority,
) -> Result<Leadership> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed: Option<(String, Instant)> = None;
    loop {
        let sent = Instant::now();
        let attempt = tokio::time::timeout(
            config.renew_deadline,
            try_acquire_or_renew(&api, &config, &mut observed, false),
        );
        match attempt.await {
            Ok(Ok(true)) => {
                authority.begin(Term::new(sent, Instant::now(), &config));
                break;
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election: acquiring the lease failed"),
            Err(_) => tracing::warn!(
                timeout = ?config.renew_deadline,
                "leader election: acquiring the lease got no answer in time"
            ),
        }
        tokio::time::sleep(config.retry_period).await;
    }
    tracing::info!(identity = %config.identity, lease = %config.lease_name, "became the leader");
    let (tx, lost) = watch::channel(false);
    let renewer = {
        let api = api.clone();
        let config = config.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let mut observed = None;
            let step_down = |why: &str| {
                tracing::error!("leader election: {why}; no more actions from this replica");
                authority.revoke();
                let _ = tx.send(true);
            };
            loop {
                tokio::time::sleep(config.retry_period).await;
                let sent = Instant::now();
                let Some(timeout) = authority
                    .current()
                    .flatten()
                    .and_then(|t| t.renew_timeout(sent))
                else {
                    return step_down("could not renew within the deadline");
                };
                let attempt = tokio::time::timeout(
                    timeout,
                    try_acquire_or_renew(&api, &config, &mut observed, true),
                );
                match attempt.await {
                    Ok(Ok(true)) => authority.renewed_at(sent),
                    Ok(Ok(false)) => return step_down("another replica holds the lease"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "leader election: renewing failed"),
                    Err(_) => tracing::warn!(
                        ?timeout,
                        "leader election: renewing got no answer before the deadline"
                    ),
                }
            }
        })
    };
    Ok(Leadership {
        lost,
        renewer,
        api,
        config,
        authority,
    })
}

/// One attempt. Returns true when we hold the lease afterwards. A renewal (`renewing`) only
/// keeps a Lease we still hold: one that another replica took, or that was freed, is lost
/// (taking it again would start a new term without this replica noticing the gap).
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &ElectionConfig,
    observed: &mut Option<(String, Instant)>,
    renewing: bool,
) -> Result<bool> {
    let now = MicroTime(jiff::Timestamp::now());
    let Some(mut lease) = api.get_opt(&config.lease_name).await? else {
        if renewing {
            return Ok(false);
        }
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.lease_name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        };
    };

    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = format!(
        "{}/{}",
        lease.metadata.resource_version.clone().unwrap_or_default(),
        holder
    );
    // Remember when the record last changed, by our own clock.
    let changed_at = match observed {
        Some((seen, at)) if *seen == record => *at,
        _ => {
            *observed = Some((record, Instant::now()));
            Instant::now()
        }
    };
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let ours = holder == config.identity;
    if renewing && !ours {
        return Ok(false);
    }
    let free = holder.is_empty() || changed_at.elapsed() > duration;
    if !ours && !free {
        return Ok(false);
    }

    let new_spec = lease.spec.get_or_insert_with(Default::default);
    if !ours {
        new_spec.holder_identity = Some(config.identity.clone());
        new_spec.acquire_time = Some(now.clone());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    new_spec.lease_duration_seconds = Some(config.lease_duration.as_secs() as i32);
    new_spec.renew_time = Some(now);
    // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
    match api
        .replace(&config.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn config() -> ElectionConfig {
        ElectionConfig::new("ns", "lease", "me")
    }

    #[test]
    fn the_lease_runs_from_when_the_renewal_was_sent_not_when_it_answered() {
        let t0 = Instant::now();
        let term = Term::new(t0, t0 + S(3), &config());
        assert_eq!(term.expires(), t0 + S(15));
        assert_eq!(term.gives_up(), t0 + S(10));
        assert_eq!(term.held_for(t0 + S(4)), S(1));
    }

    #[test]
    fn actions_stop_a_margin_before_the_lease_can_run_out() {
        let t0 = Instant::now();
        let term = Term::new(t0, t0, &config());
        let margin = config().action_margin();
        assert_eq!(margin, S(5));
        assert!(term.may_act(t0, margin));
        assert!(term.may_act(t0 + S(9), margin));
        assert!(
            !term.may_act(t0 + S(10), margin),
            "lease minus margin reached"
        );
        assert!(
            !term.may_act(t0 + S(60), margin),
            "a paused process resumed"
        );
        assert!(term.may_act(t0 + S(14), Duration::ZERO));
        assert!(!term.may_act(t0 + S(15), Duration::ZERO));
    }

    #[test]
    fn a_renewal_moves_the_expiry_and_an_older_answer_does_not_move_it_back() {
        let t0 = Instant::now();
        let mut term = Term::new(t0, t0, &config());
        term.renewed_at(t0 + S(2));
        assert_eq!(term.expires(), t0 + S(17));
        term.renewed_at(t0 + S(1));
        assert_eq!(term.expires(), t0 + S(17));
        assert_eq!(
            term.held_for(t0 + S(20)),
            S(20),
            "renewals do not restart the term"
        );
    }

    #[test]
    fn each_renewal_must_answer_before_the_leader_gives_up() {
        let t0 = Instant::now();
        let term = Term::new(t0, t0, &config());
        assert_eq!(term.renew_timeout(t0 + S(2)), Some(S(8)));
        assert_eq!(term.renew_timeout(t0 + S(10)), None);
        assert_eq!(term.renew_timeout(t0 + S(30)), None);
    }

    #[test]
    fn the_timings_must_nest() {
        assert_eq!(config().validate(), Ok(()));
        let mut c = config();
        c.renew_deadline = S(15);
        assert!(c.validate().unwrap_err().contains("renew deadline"));
        let mut c = config();
        c.retry_period = S(10);
        assert!(c.validate().unwrap_err().contains("retry period"));
        let mut c = config();
        c.lease_duration = Duration::from_millis(15_500);
        assert!(c.validate().unwrap_err().contains("whole number"));
    }

    #[test]
    fn an_elected_authority_acts_only_while_its_term_is_held() {
        let authority = Authority::elected(S(5));
        assert!(!authority.may_act(S(5)), "no term yet");
        assert_eq!(authority.held_for(), Duration::ZERO);
        let now = Instant::now();
        authority.begin(Term::new(now, now, &config()));
        assert!(authority.may_act(S(5)));
        authority.revoke();
        assert!(!authority.may_act(Duration::ZERO));
        let stale = Instant::now() - S(11);
        authority.begin(Term::new(stale, stale, &config()));
        assert!(!authority.may_act(S(5)), "renewed too long ago");
        assert!(Authority::unconditional().may_act(S(3600)));
        assert_eq!(Authority::unconditional().held_for(), Duration::MAX);
    }

    #[tokio::test]
    async fn an_action_is_dropped_once_the_lease_is_gone_even_if_it_could_go_on() {
        let authority = Authority::elected(S(5));
        let polled = std::sync::atomic::AtomicBool::new(false);
        let never = authority
            .while_leading(async { polled.store(true, std::sync::atomic::Ordering::SeqCst) })
            .await;
        assert_eq!(never, None);
        assert!(
            !polled.load(std::sync::atomic::Ordering::SeqCst),
            "not even started"
        );

        let now = Instant::now();
        authority.begin(Term::new(now, now, &config()));
        assert_eq!(authority.while_leading(async { 7 }).await, Some(7));

        // The action waits for something (an answer); meanwhile the lease is lost (here: as
        // a paused process finds when it resumes). Its answer arrives, but the rest of it
        // (the request it would send next) must never run.
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let sent_after = std::sync::atomic::AtomicBool::new(false);
        let action = async {
            let _ = answered.await;
            sent_after.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let revoke_then_answer = async {
            tokio::task::yield_now().await;
            authority.revoke();
            let _ = answer.send(());
        };
        let (outcome, ()) = tokio::join!(authority.while_leading(action), revoke_then_answer);
        assert_eq!(outcome, None);
        assert!(!sent_after.load(std::sync::atomic::Ordering::SeqCst));
    }
}
