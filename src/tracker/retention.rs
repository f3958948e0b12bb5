//! Which pullers go and which stay (`KEEP_LAST_PULLER`): this run's after their verdict, and those
//! earlier runs left; every delete is asked for here, and its answer is judged here.

use std::collections::{HashMap, HashSet, VecDeque};

use k8s_openapi::jiff::Timestamp;
use tracing::{info, warn};

use std::time::Duration;

use crate::error::{ErrorClass, Result};
use crate::outcome::Outcome;
use crate::pullers::{Leftover, LeftoverState};
use crate::types::PullerKind;

use super::entry::Older;
use super::{Action, Tracker, span};

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

    /// Ask for node `i`'s own puller to be deleted, once (that object: by its UID).
    pub(super) fn delete_own(&mut self, i: usize) {
        let entry = &mut self.nodes[i];
        if !entry.deleting {
            entry.deleting = true;
            let (name, uid) = (entry.puller.to_string(), entry.puller_uid.clone());
            self.delete(self.template.kind(), name, uid, Purpose::Own(i));
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
                let Some(uid) = self.nodes[i].rare().replacing.clone() else { return };
                let entry = &mut self.nodes[i];
                entry.rare_mut().delete_attempts += 1;
                if error.class() == ErrorClass::Transient && entry.rare().delete_attempts < self.policy.delete_attempts
                {
                    warn!(node = %entry.name, %error, "could not delete the evicted puller pod; trying again");
                    let name = entry.puller.to_string();
                    self.delete(PullerKind::Pod, name, Some(uid), Purpose::Evicted(i));
                    return;
                }
                entry.rare_mut().replacing = None;
                let reason = format!(
                    "its pod was evicted or preempted and could not be deleted to make way for a new one: {}",
                    error.message()
                );
                self.conclude(i, Outcome::Failed, reason, now);
            }
            Purpose::Older(i) => {
                warn!(node = %self.nodes[i].name, puller = name, %error, "could not delete an older puller it replaces");
                let entry = &mut self.nodes[i];
                let rare = entry.rare_mut();
                rare.replaced.retain(|r| r != name);
                rare.not_replaced.push((name.to_string(), error.message()));
            }
            Purpose::Own(_) | Purpose::Leftover => {
                warn!(puller = name, %error, "could not delete a puller (a later run removes it)")
            }
        }
    }

    /// The pullers earlier runs of this installation left (never another installation's: the
    /// selector says so). Finished without success, on a node that is gone, or never started and
    /// past the time the run that made it would have given up: deleted now (by UID). Successful
    /// on a node of this run: kept until a newer kept puller holds every image it holds that the
    /// run still asks for (of two it already has, the older one goes now if the newer holds all
    /// of it). Still running, or on nodes this run does not reach: left alone.
    pub(super) fn sort_leftovers(&mut self, leftovers: Vec<Leftover>, gone: &HashSet<String>, now: Timestamp) {
        let (mut now_count, mut later) = (0, 0);
        for l in leftovers {
            match l.state {
                LeftoverState::Running => continue,
                LeftoverState::Unstarted if !self.expired(&l, now) => continue,
                LeftoverState::Succeeded if !gone.contains(&l.node) => {
                    if let Some(i) = self.node_named(&l.node) {
                        later += 1;
                        let images = self.template.mask_of(&self.nodes[i].set, l.images.iter().map(String::as_str));
                        let older = Older { kind: l.kind, name: l.name, uid: l.uid, images, created_at: l.created_at };
                        self.nodes[i].rare_mut().older.push(older);
                    }
                    continue;
                }
                LeftoverState::Unstarted | LeftoverState::Succeeded | LeftoverState::Failed => {}
            }
            now_count += 1;
            self.delete(l.kind, l.name, l.uid, Purpose::Leftover);
        }
        for i in 0..self.nodes.len() {
            self.drop_redundant_older(i);
        }
        if now_count + later > 0 {
            info!(
                deleted_now = now_count,
                kept_until_replaced = later,
                "pullers of earlier runs: finished without success, on gone nodes or never started are deleted now; \
                 successful ones stay until a newer one holds their images"
            );
        }
    }

    /// A puller that never started is past the time the run that made it would have given up: its
    /// deadline (or this run's pull deadline), the wait grace and the slack, from its creation.
    fn expired(&self, l: &Leftover, now: Timestamp) -> bool {
        let Some(created) = l.created_at else { return false };
        let deadline = l.deadline_seconds.map_or(self.policy.pull_deadline, |d| Duration::from_secs(d.max(0) as u64));
        let wait = self.policy.node_deadline.saturating_sub(self.policy.pull_deadline);
        now.duration_since(created) >= span(deadline + wait)
    }

    /// Of node `i`'s older kept pullers, delete each whose images (of those the run asks for) a
    /// newer one holds: at most one stays where one holds them all.
    fn drop_redundant_older(&mut self, i: usize) {
        if self.nodes[i].rare().older.is_empty() {
            return;
        }
        let older = &mut self.nodes[i].rare_mut().older;
        older.sort_by_key(|o| o.created_at);
        let mut redundant = Vec::new();
        for j in 0..older.len() {
            if older[j + 1..].iter().any(|newer| older[j].images & !newer.images == 0) {
                redundant.push(j);
            }
        }
        for j in redundant.into_iter().rev() {
            let rare = self.nodes[i].rare_mut();
            let o = rare.older.remove(j);
            rare.replaced.push(o.name.clone());
            self.delete(o.kind, o.name, o.uid, Purpose::Older(i));
        }
    }

    /// With `KEEP_LAST_PULLER`, node `i`'s puller carries every image of the run, those already on
    /// the node included (the kubelet finds them there: nothing is pulled), so that the one kept
    /// puller holds them all. It gets none only when it has every image and one older kept puller
    /// already holds them all.
    pub(super) fn retain_every_image(&mut self, i: usize) {
        if !self.template.keep_last() {
            return;
        }
        let entry = &mut self.nodes[i];
        let all = entry.all();
        let held = entry.rare().older.iter().any(|o| o.images & all == all);
        if !(entry.images.wanted == 0 && held) {
            entry.images.wanted = all;
        }
    }

    /// What a verdict means for the pullers, once per node. A puller that pulled every image it was
    /// given is kept (`KEEP_LAST_PULLER`): each older kept puller whose images it holds goes. One
    /// that did not is deleted when nothing else would remove it (no TTL when `KEEP_LAST_PULLER`
    /// keeps what succeeded), and the older ones stay: they hold what it could not. Without
    /// `KEEP_LAST_PULLER`, a success deletes the older ones (nothing is to be kept).
    pub(super) fn retain_or_delete(&mut self, i: usize, outcome: Outcome, created: bool) {
        if !created || matches!(outcome, Outcome::Unfinished | Outcome::NotStarted | Outcome::Deleted) {
            return;
        }
        let complete = self.nodes[i].images.complete();
        let kept = self.template.keep_last() && complete;
        let holds = self.nodes[i].images.wanted;
        let replaces = |o: &Older| if kept { o.images & !holds == 0 } else { outcome == Outcome::Succeeded };
        let mut replaced = Vec::new();
        if !self.nodes[i].rare().older.is_empty() {
            let rare = self.nodes[i].rare_mut();
            let stay;
            (replaced, stay) = std::mem::take(&mut rare.older).into_iter().partition(|o: &Older| replaces(o));
            rare.older = stay;
        }
        for older in replaced {
            self.nodes[i].rare_mut().replaced.push(older.name.clone());
            self.delete(older.kind, older.name, older.uid, Purpose::Older(i));
        }
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
