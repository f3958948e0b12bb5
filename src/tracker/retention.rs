//! Which pullers go and which stay (`KEEP_LAST_PULLER`): this run's after their verdict, and those
//! earlier runs left; every delete is asked for here, and its answer is judged here.

use std::collections::{HashMap, HashSet, VecDeque};

use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

use crate::error::{ErrorClass, Result};
use crate::outcome::Outcome;
use crate::pullers::{Leftover, LeftoverState};
use crate::types::PullerKind;

use super::entry::Older;
use super::{Action, Tracker};

/// Why a puller is being deleted: what its answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Node `i`'s own puller, concluded and not kept.
    Own(usize),
    /// Node `i`'s evicted pod, to be replaced once it is gone.
    Evicted(usize),
    /// An older puller of node `i` that this run's success replaces.
    Older(usize),
    /// A puller an earlier run left that nothing holds any more.
    Leftover,
}

/// The deletes in flight, by puller name (the same name may be asked twice: an evicted pod, then
/// the node's own puller).
#[derive(Debug, Default)]
pub(super) struct Cleanup {
    in_flight: HashMap<String, VecDeque<Purpose>>,
    count: usize,
}

impl Cleanup {
    /// Deletes (and Events about nodes) asked for whose answer has not come.
    pub fn in_flight(&self) -> usize {
        self.count
    }

    /// An Event about a node was asked for: the run waits for its answer as for a delete's.
    pub fn asked(&mut self) {
        self.count += 1;
    }

    pub fn answered(&mut self) {
        self.count = self.count.saturating_sub(1);
    }

    fn take(&mut self, name: &str) -> Option<Purpose> {
        let queue = self.in_flight.get_mut(name)?;
        let purpose = queue.pop_front();
        if queue.is_empty() {
            self.in_flight.remove(name);
        }
        self.count -= purpose.is_some() as usize;
        purpose
    }
}

impl Tracker {
    /// Ask for a puller to be deleted; its answer comes back as [`super::Input::Deleted`].
    pub(super) fn delete(&mut self, kind: PullerKind, name: String, uid: Option<String>, purpose: Purpose) {
        self.cleanup.in_flight.entry(name.clone()).or_default().push_back(purpose);
        self.cleanup.count += 1;
        self.outbox.push(Action::Delete { kind, name, uid });
    }

    /// Ask for node `i`'s own puller to be deleted, once.
    pub(super) fn delete_own(&mut self, i: usize) {
        let entry = &mut self.nodes[i];
        if !entry.deleting {
            entry.deleting = true;
            let name = entry.puller.clone();
            self.delete(self.template.kind(), name, None, Purpose::Own(i));
        }
    }

    /// A delete answered. Gone (done now, or before: 404; or that incarnation replaced: the UID
    /// precondition's 409) is what was asked. Otherwise: an evicted pod that cannot be deleted is
    /// tried again when the error is transient, else its node fails (no new pod can take its name);
    /// an older puller that stays is said in its node's notes; any other is logged (a later run
    /// removes what is left).
    pub(super) fn on_deleted(&mut self, name: &str, result: Result<()>, now: Timestamp) {
        let Some(purpose) = self.cleanup.take(name) else { return };
        let Err(error) = result else { return };
        if matches!(error.class(), ErrorClass::NotFound | ErrorClass::Conflict) {
            return;
        }
        match purpose {
            Purpose::Evicted(i) => {
                let Some(uid) = self.nodes[i].replacing.clone() else { return };
                let entry = &mut self.nodes[i];
                entry.delete_attempts += 1;
                if error.class() == ErrorClass::Transient && entry.delete_attempts < self.policy.delete_attempts {
                    warn!(node = %entry.name, %error, "could not delete the evicted puller pod; trying again");
                    let name = entry.puller.clone();
                    self.delete(PullerKind::Pod, name, Some(uid), Purpose::Evicted(i));
                    return;
                }
                entry.replacing = None;
                let reason = format!(
                    "its pod was evicted or preempted and could not be deleted to make way for a new one: {}",
                    error.message()
                );
                self.conclude(i, Outcome::Failed, reason, now);
            }
            Purpose::Older(i) => {
                warn!(node = %self.nodes[i].name, puller = name, %error, "could not delete an older puller it replaces");
                let entry = &mut self.nodes[i];
                entry.replaced.retain(|r| r != name);
                entry.not_replaced.push((name.to_string(), error.message()));
            }
            Purpose::Own(_) | Purpose::Leftover => {
                warn!(puller = name, %error, "could not delete a puller (a later run removes it)")
            }
        }
    }

    /// The pullers earlier runs left: finished without success, or on a node that is gone: deleted
    /// now; successful on a node of this run: deleted once this run succeeds there; the rest (still
    /// running; on nodes this run does not reach) left alone.
    pub(super) fn sort_leftovers(&mut self, leftovers: Vec<Leftover>, gone: &HashSet<String>) {
        let (mut now, mut later) = (0, 0);
        for l in leftovers {
            match l.state {
                LeftoverState::Running => continue,
                LeftoverState::Succeeded if !gone.contains(&l.node) => {
                    if let Some(i) = self.node_named(&l.node) {
                        later += 1;
                        self.nodes[i].older.push(Older { kind: l.kind, name: l.name, uid: l.uid });
                    }
                    continue;
                }
                LeftoverState::Succeeded | LeftoverState::Failed => {}
            }
            now += 1;
            self.delete(l.kind, l.name, l.uid, Purpose::Leftover);
        }
        if now + later > 0 {
            info!(
                deleted_now = now,
                replaced_on_success = later,
                "pullers of earlier runs: finished without success or on gone nodes are deleted now; \
                 successful ones go once this run succeeds on their node"
            );
        }
    }

    /// What a verdict means for the pullers, once per node. A success with a puller of its own: that
    /// puller now keeps the images in use, so the older ones go (a node that was `already-present`
    /// keeps them: they are what holds its images). A puller that did not pull everything it was
    /// given is deleted when nothing else would remove it (no TTL when `KEEP_LAST_PULLER` keeps what
    /// succeeded); one that did is kept, even on a node that failed (an image the breaker held
    /// back): it holds what it pulled.
    pub(super) fn retain_or_delete(&mut self, i: usize, outcome: Outcome, created: bool) {
        if outcome == Outcome::Succeeded && created {
            for older in std::mem::take(&mut self.nodes[i].older) {
                self.nodes[i].replaced.push(older.name.clone());
                self.delete(older.kind, older.name, older.uid, Purpose::Older(i));
            }
        }
        if !created || matches!(outcome, Outcome::Unfinished | Outcome::NotStarted | Outcome::Deleted) {
            return;
        }
        let kept = self.template.keep_last() && self.nodes[i].images.complete();
        if self.template.ttl_seconds_after_finished().is_none() && !kept {
            self.delete_own(i);
        }
    }

    /// Node `i`'s puller stays after the run.
    pub(super) fn kept(&self, i: usize) -> bool {
        let e = &self.nodes[i];
        self.template.keep_last() && e.created_at.is_some() && !e.deleting && e.images.complete()
    }
}
