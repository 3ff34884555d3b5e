//! The per-check state machine: consecutive results against thresholds.
//!
//! A check starts `Unknown`. One ok result makes it `Ok`; `fail_after`
//! consecutive failures make it `Failing`; `recover_after` consecutive
//! successes bring it back. Everything else is noise that the thresholds
//! absorb, which is what keeps one lost packet from paging anybody.

use std::fmt;

use crate::Timestamp;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    #[default]
    Unknown,
    Ok,
    Failing,
}

impl CheckState {
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckState::Unknown => "unknown",
            CheckState::Ok => "ok",
            CheckState::Failing => "failing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unknown" => Some(CheckState::Unknown),
            "ok" => Some(CheckState::Ok),
            "failing" => Some(CheckState::Failing),
            _ => None,
        }
    }
}

impl fmt::Display for CheckState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub fail_after: u32,
    pub recover_after: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            fail_after: 1,
            recover_after: 1,
        }
    }
}

/// A change of state, as the engine reports it downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: CheckState,
    pub to: CheckState,
    pub at: Timestamp,
}

/// Everything needed to resume a check's state after a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateTracker {
    pub state: CheckState,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    /// When the current state began.
    pub since: Timestamp,
}

impl StateTracker {
    /// Feed one result; returns the transition if the state changed.
    pub fn observe(&mut self, ok: bool, t: Thresholds, at: Timestamp) -> Option<Transition> {
        if ok {
            self.consecutive_ok = self.consecutive_ok.saturating_add(1);
            self.consecutive_fail = 0;
        } else {
            self.consecutive_fail = self.consecutive_fail.saturating_add(1);
            self.consecutive_ok = 0;
        }
        let next = match self.state {
            CheckState::Unknown if ok => CheckState::Ok,
            CheckState::Unknown | CheckState::Ok
                if self.consecutive_fail >= t.fail_after.max(1) =>
            {
                CheckState::Failing
            }
            CheckState::Failing if self.consecutive_ok >= t.recover_after.max(1) => CheckState::Ok,
            s => s,
        };
        (next != self.state).then(|| {
            let tr = Transition {
                from: self.state,
                to: next,
                at,
            };
            self.state = next;
            self.since = at;
            tr
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(results: &[bool], t: Thresholds) -> StateTracker {
        let mut s = StateTracker::default();
        for (i, &ok) in results.iter().enumerate() {
            s.observe(ok, t, Timestamp(i as i64));
        }
        s
    }

    #[test]
    fn thresholds_absorb_noise() {
        let t = Thresholds {
            fail_after: 3,
            recover_after: 2,
        };
        assert_eq!(run(&[true, false, false], t).state, CheckState::Ok);
        assert_eq!(
            run(&[true, false, false, false], t).state,
            CheckState::Failing
        );
        assert_eq!(
            run(&[false, false, false, true], t).state,
            CheckState::Failing
        );
        assert_eq!(
            run(&[false, false, false, true, true], t).state,
            CheckState::Ok
        );
        assert_eq!(run(&[false, false], t).state, CheckState::Unknown);
    }

    proptest! {
        /// The state only becomes failing after exactly `fail_after`
        /// consecutive failures and only recovers after `recover_after`
        /// consecutive successes; counters always describe the tail.
        #[test]
        fn state_matches_tail(results in proptest::collection::vec(any::<bool>(), 0..60),
                              fail_after in 1u32..5, recover_after in 1u32..5) {
            let t = Thresholds { fail_after, recover_after };
            let mut s = StateTracker::default();
            let mut transitions = 0;
            for (i, &ok) in results.iter().enumerate() {
                let before = s.state;
                if let Some(tr) = s.observe(ok, t, Timestamp(i as i64)) {
                    transitions += 1;
                    prop_assert_eq!(tr.from, before);
                    prop_assert_ne!(tr.from, tr.to);
                    prop_assert_eq!(s.since, Timestamp(i as i64));
                    match tr.to {
                        CheckState::Failing => prop_assert_eq!(s.consecutive_fail, fail_after),
                        CheckState::Ok if before == CheckState::Failing =>
                            prop_assert_eq!(s.consecutive_ok, recover_after),
                        CheckState::Ok => prop_assert_eq!(s.consecutive_ok, 1),
                        CheckState::Unknown => prop_assert!(false, "never back to unknown"),
                    }
                }
                prop_assert!(s.consecutive_ok == 0 || s.consecutive_fail == 0);
            }
            let tail_fail = results.iter().rev().take_while(|ok| !**ok).count() as u32;
            prop_assert_eq!(s.consecutive_fail, tail_fail);
            prop_assert!(transitions <= results.len());
        }
    }
}
