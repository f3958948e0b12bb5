//! Each node's verdict and what it sets off (the startup taint's removal, the retention of its
//! puller), the node deadline, when the run ends, and the run's result with its exit code.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tracing::{debug, info, warn};

use crate::error::{ErrorClass, Result};
use crate::exit_code::ExitCode;
use crate::outcome::Outcome;
use crate::types::{Announcement, TaintRemoval};

use super::entry::{Entry, State, TaintState};
use super::{Action, Ending, ImageResults, MAX_LOGGED_FAILURES, RunResult, TaintAction, Tracker, Verdict, span};

impl Tracker {
    /// The clock: the watches' bound, the run's own deadline, pull errors past their grace, nodes
    /// past their deadline, the wait for deletes in flight.
    pub(super) fn on_tick(&mut self, now: Timestamp) {
        if !self.check_watches_listed(now) {
            return;
        }
        self.check_run_deadline(now);
        self.check_window(now);
        self.check_holds(now);
        for i in 0..self.nodes.len() {
            if !matches!(self.nodes[i].state, State::Unstarted | State::Running) {
                continue;
            }
            self.expire_pull_errors(i, now);
            if self.nodes[i].state != State::Done {
                self.check_node_deadline(i, now);
            }
        }
    }

    /// No verdict by the node deadline (from its puller's start, or creation until it starts):
    /// timed out, and its puller deleted.
    fn check_node_deadline(&mut self, i: usize, now: Timestamp) {
        let entry = &self.nodes[i];
        let base = entry.started_at.or(entry.created_at).unwrap_or(now);
        if now.duration_since(base) < span(self.policy.node_deadline) {
            return;
        }
        let since = if entry.started_at.is_some() { "started" } else { "was created" };
        let mut reason = self.policy.node_deadline_reason(self.template.kind(), since);
        if let Some(problem) = &entry.rare().last_problem {
            reason.push_str(&format!("; last pod problem: {problem}"));
        }
        self.delete_own(i);
        self.conclude(i, Outcome::TimedOut, reason, now);
    }

    /// Node `i` gets its verdict (once).
    pub(super) fn conclude(&mut self, i: usize, outcome: Outcome, reason: String, now: Timestamp) {
        if self.nodes[i].state == State::Done {
            return;
        }
        self.set(i, State::Done);
        let entry = &mut self.nodes[i];
        entry.finished_at = Some(now);
        entry.images.failing.clear();
        if outcome.is_success() {
            debug!(node = %entry.name, outcome = outcome.label(), "node concluded");
            self.breaker.succeeded(&entry.set, entry.images.pulled);
        } else if outcome != Outcome::NotStarted {
            self.logged_failures += 1;
            if self.logged_failures <= MAX_LOGGED_FAILURES {
                warn!(node = %entry.name, puller = %entry.puller, outcome = outcome.label(), %reason, "node did not succeed");
            } else if self.logged_failures == MAX_LOGGED_FAILURES + 1 {
                warn!("more nodes did not succeed; the report lists them all");
            }
        }
        entry.verdict = Some((outcome, reason));
        let (seed, created) = (entry.seed, entry.created_at.is_some());
        if outcome.is_success() {
            self.release_if_complete(i);
        }
        self.retain_or_delete(i, outcome, created);
        if seed && self.pacer.wave == super::pacing::Wave::Seeding {
            self.seed_concluded(now);
        }
    }

    /// Conclude node `i` if every image of its puller is pulled or failed.
    pub(super) fn settle(&mut self, i: usize, now: Timestamp) {
        self.release_if_complete(i);
        let entry = &self.nodes[i];
        let images = &entry.images;
        if entry.state == State::Done
            || images.wanted == 0
            || (images.pulled | images.failed) & images.wanted != images.wanted
        {
            return;
        }
        if images.failed == 0 && images.not_sent == 0 {
            self.conclude(i, Outcome::Succeeded, String::new(), now);
            return;
        }
        let reason = self.image_reason(i).unwrap_or_default();
        if matches!(entry.state, State::Unstarted | State::Running) && images.failed != 0 {
            // Its pod would go on retrying the failed pull.
            self.delete_own(i);
        }
        self.conclude(i, Outcome::Failed, reason, now);
    }

    /// "image 1: message; image 2: ..." for a node's failed and held-back images.
    pub(super) fn image_reason(&self, i: usize) -> Option<String> {
        let images = &self.nodes[i].images;
        let bad = images.failed | images.not_sent;
        let parts: Vec<String> = images
            .notes
            .iter()
            .filter(|n| bad & (1 << n.image) != 0)
            .map(|n| format!("image {}: {}", self.nodes[i].global(n.image) + 1, n.message))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Node `i` holds every image (already there, or pulled): its startup taint goes now, even
    /// while its puller is still running the ones that were there already (`KEEP_LAST_PULLER`).
    pub(super) fn release_if_complete(&mut self, i: usize) {
        let entry = &self.nodes[i];
        let all = entry.all();
        let on_node = entry.images.present | entry.images.pulled;
        let succeeded = entry.verdict.as_ref().is_some_and(|(o, _)| o.is_success());
        if entry.taint == TaintState::Carried && (on_node & all == all || succeeded) {
            self.remove_taint(i, 1, false);
        }
    }

    /// Ask for attempt `attempt` at removing node `i`'s startup taint; `release`: without every
    /// image, because it was held past the maximum.
    fn remove_taint(&mut self, i: usize, attempt: u8, release: bool) {
        let Some(taint) = self.policy.selection.startup_taint.clone() else { return };
        if attempt == 1 {
            self.untainting += 1;
        }
        self.nodes[i].taint = TaintState::Removing { attempt, release };
        self.outbox.push(Action::RemoveTaint { node: self.nodes[i].name.clone(), taint });
    }

    /// The maximum hold: a node still carrying the startup taint (its pull failed or is still
    /// going, or no puller can reach it) longer than `STARTUP_TAINT_MAX_HOLD_SECONDS` is released.
    pub(super) fn check_holds(&mut self, now: Timestamp) {
        let max = self.policy.selection.startup_taint_max_hold_seconds;
        if max == 0 || self.interrupted.is_some() {
            return;
        }
        let limit = span(Duration::from_secs(max));
        for i in 0..self.nodes.len() {
            let entry = &self.nodes[i];
            if entry.taint == TaintState::Carried
                && entry.held_since.is_some_and(|since| now.duration_since(since) >= limit)
            {
                warn!(node = %entry.name, max_hold_seconds = max, "held past the maximum without every image: releasing it");
                self.remove_taint(i, 1, true);
            }
        }
    }

    /// One removal attempt answered. A concurrent change to the node (the patch's `test` failed, or
    /// a conflict) or a transient error is tried again, reading the node afresh, up to
    /// [`crate::policy::Policy::taint_attempts`]; anything else keeps the taint and says why. A
    /// removal (or a release) is announced on the node.
    pub(super) fn on_taint_removed(&mut self, node: &str, result: Result<TaintRemoval>, now: Timestamp) {
        let Some(i) = self.node_named(node) else { return };
        let TaintState::Removing { attempt, release } = self.nodes[i].taint else { return };
        self.untainting -= 1;
        let action = match result {
            Ok(TaintRemoval::Removed) if release => {
                let since = self.nodes[i].held_since.unwrap_or(now);
                let held_seconds = now.duration_since(since).as_secs().max(0) as u64;
                self.announce(i, true, "StartupTaintReleased", format!(
                    "held {held_seconds}s, past STARTUP_TAINT_MAX_HOLD_SECONDS={}, without every image: quayctl-controller removed its startup taint anyway",
                    self.policy.selection.startup_taint_max_hold_seconds
                ));
                TaintAction::Released { held_seconds }
            }
            Ok(TaintRemoval::Removed) => {
                info!(node, "every image is on the node: removed the startup taint");
                let images = self.nodes[i].images.present | self.nodes[i].images.pulled;
                self.announce(
                    i,
                    false,
                    "StartupTaintRemoved",
                    format!(
                        "every image quayctl-controller pre-pulls is on the node ({}): removed its startup taint",
                        images.count_ones()
                    ),
                );
                TaintAction::Removed
            }
            Ok(TaintRemoval::AlreadyGone) => TaintAction::AlreadyGone,
            Err(e)
                if matches!(e.class(), ErrorClass::Conflict | ErrorClass::Transient)
                    && attempt < self.policy.taint_attempts =>
            {
                debug!(node, attempt, error = %e, "the node changed meanwhile; reading it again");
                self.untainting += 1;
                self.remove_taint(i, attempt + 1, release);
                return;
            }
            Err(e) => {
                warn!(node, error = %e, "could not remove the startup taint");
                let reason = format!("its removal failed: {}", e.message());
                TaintAction::Kept { reason, forbidden: e.class() == ErrorClass::Fatal }
            }
        };
        self.nodes[i].taint = TaintState::Done(action);
    }

    /// Publish an Event about node `i`.
    fn announce(&mut self, i: usize, warning: bool, reason: &'static str, note: String) {
        let event = Announcement { warning, reason, action: "PrePull", note };
        self.cleanup.asked();
        self.outbox.push(Action::Announce { node: self.nodes[i].node_ref(), event });
    }

    /// An Event about a node answered; it is best effort.
    pub(super) fn on_announced(&mut self, node: &str, result: Result<()>) {
        self.cleanup.answered();
        if let Err(e) = result {
            warn!(node, error = %e, "could not publish an Event about the node");
        }
    }

    /// Decide whether the run is over: a signal (once the creates and taint removals in flight
    /// answered, or the drain time is up), or every node decided and its taint removal answered;
    /// then the deletes in flight may answer within [`crate::policy::Policy::deletes_after`].
    pub(super) fn settle_ending(&mut self, now: Timestamp) {
        if self.ending.is_some() || self.started.is_none() {
            return;
        }
        if let Some((_, since)) = &self.closing {
            if self.cleanup.in_flight() == 0 || now.duration_since(*since) >= span(self.policy.deletes_after) {
                self.ending = self.closing.take().map(|(ending, _)| ending);
            }
            return;
        }
        let untainting = self.untainting;
        let all_done = self.count(State::Done) == self.nodes.len() && untainting == 0 && !self.window_open();
        let ending = match self.interrupted {
            Some((signal, until))
                if all_done || (self.count(State::Creating) == 0 && untainting == 0) || now >= until =>
            {
                Ending::Interrupted(signal)
            }
            None if all_done => Ending::Done,
            _ => return,
        };
        self.closing = Some((ending, now));
        self.settle_ending(now);
    }

    /// The run's result: every node's verdict (open nodes get the verdict of an interrupted run:
    /// queued ones `not-started`, created ones `unfinished`), how it ended, the start lag, the
    /// images held back, and the exit code.
    pub fn finish(mut self, now: Timestamp) -> RunResult {
        let noun = self.template.kind().noun();
        let not_created = format!("run interrupted before its {noun} was created");
        while let Some(i) = self.pacer.queue.pop_front() {
            self.conclude(i as usize, Outcome::NotStarted, not_created.clone(), now);
        }
        for i in 0..self.nodes.len() {
            let (outcome, reason) = match self.nodes[i].state {
                State::Creating => {
                    (Outcome::Unfinished, "run interrupted while its create request was in flight".to_string())
                }
                State::Unstarted | State::Running => {
                    (Outcome::Unfinished, format!("run interrupted before the {noun} finished"))
                }
                State::Queued => (Outcome::NotStarted, not_created.clone()),
                State::Done => continue,
            };
            self.conclude(i, outcome, reason, now);
        }
        for entry in &mut self.nodes {
            if entry.holds_taint() {
                let reason = match &entry.verdict {
                    Some((Outcome::Held, why)) => why.clone(),
                    Some((outcome, _)) if !outcome.is_success() => {
                        format!("the node did not succeed ({})", outcome.label())
                    }
                    _ => "the run stopped before removing it".into(),
                };
                entry.taint = TaintState::Done(TaintAction::Kept { reason, forbidden: false });
            }
        }
        // The report is built while the tracker still lives: let go of what it no longer needs
        // (the name index, the workloads' catalog), and hand each node's strings over, not copies.
        self.by_name = Default::default();
        drop(std::mem::take(&mut self.template.catalog));
        let verdicts: Vec<Verdict> = (0..self.nodes.len()).map(|i| self.verdict_of(i)).collect();
        let held_back =
            self.breaker.broken.iter().enumerate().filter_map(|(i, b)| b.as_ref().map(|b| (i, b.clone()))).collect();
        let ending = self.ending.take().or_else(|| self.closing.take().map(|(e, _)| e)).unwrap_or(Ending::Done);
        let empty = verdicts.is_empty().then_some(if self.policy.selection.startup_taint_only {
            "no node with the startup taint to pre-pull"
        } else {
            "no eligible node"
        });
        // An empty run fails, unless only joining nodes were asked for: then none is the usual case.
        let empty_code = match empty {
            Some(_) if !self.policy.selection.startup_taint_only => ExitCode::NodesFailed,
            _ => ExitCode::Success,
        };
        let exit_code =
            ExitCode::merge_all(verdicts.iter().map(Verdict::exit_code).chain([empty_code, ending.exit_code()]));
        RunResult { ending, verdicts, lag: self.lag(), held_back, empty, exit_code }
    }

    /// A node is never a success while it carries the startup taint at the end of the run, and a
    /// node released without every image says so, whatever its pull did.
    fn held_or_released(&self, outcome: Outcome, reason: String, taint: Option<&TaintAction>) -> (Outcome, String) {
        let taint_name = self.policy.selection.startup_taint.as_ref().map(ToString::to_string).unwrap_or_default();
        match taint {
            Some(TaintAction::Released { held_seconds }) => {
                let mut why = format!(
                    "held {held_seconds}s, past STARTUP_TAINT_MAX_HOLD_SECONDS ({}s), without every image: the startup taint {taint_name} was removed anyway",
                    self.policy.selection.startup_taint_max_hold_seconds
                );
                if outcome != Outcome::Held && !outcome.is_success() {
                    why.push_str(&format!("; {}: {reason}", outcome.label()));
                } else if outcome == Outcome::Held {
                    why.push_str(&format!("; {reason}"));
                }
                (Outcome::Released, why)
            }
            Some(TaintAction::Kept { reason: why, .. }) if outcome.is_success() => (
                Outcome::Held,
                format!("every image is on the node, but it still carries the startup taint {taint_name}: {why}"),
            ),
            _ => (outcome, reason),
        }
    }

    fn verdict_of(&mut self, i: usize) -> Verdict {
        let kept = self.kept(i);
        let e: &mut Entry = &mut self.nodes[i];
        let (outcome, reason) = e.verdict.take().expect("every node is concluded");
        let im = &e.images;
        let bad = im.failed | im.not_sent;
        let images = ImageResults {
            set: e.set.clone(),
            present: im.present,
            pulled: im.pulled,
            failed: im.failed,
            not_sent: im.not_sent,
            messages: im
                .notes
                .iter()
                .filter(|n| bad & (1 << n.image) != 0)
                .map(|n| (n.image, n.message.clone()))
                .collect(),
        };
        let duration = match (e.created_at, e.finished_at) {
            (Some(c), Some(f)) => Some(Duration::try_from(f.duration_since(c)).unwrap_or_default()),
            _ => None,
        };
        let taint = match &e.taint {
            TaintState::None => None,
            TaintState::Done(action) => Some(action.clone()),
            TaintState::Carried | TaintState::Removing { .. } => {
                Some(TaintAction::Kept { reason: "the run stopped before removing it".into(), forbidden: false })
            }
        };
        let node = std::mem::take(&mut e.name);
        let job = e.created_at.is_some().then(|| e.puller.to_string());
        let rare = e.take_rare();
        let replaced = rare.replaced;
        let not_replaced = rare.not_replaced.iter().map(|(name, why)| format!("{name}: {why}")).collect();
        let left_out = e.left_out.clone();
        let (outcome, reason) = self.held_or_released(outcome, reason, taint.as_ref());
        Verdict { node, job, kept, outcome, reason, duration, images, taint, replaced, not_replaced, left_out }
    }
}
