//! What the watches show, per node: a puller started, each image's progress (read by
//! [`crate::outcome`]), a terminal state, a deletion, an eviction (a bare pod is replaced), and what
//! a relist says about the pullers it no longer shows.

use std::collections::HashSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;
use tracing::{info, warn};

use crate::error::{Error, ErrorClass};
use crate::outcome::{ContainerView, Outcome, PodView, outcome_from_job, owning_job, pod_problem, read_pod};
use crate::types::{PullerKind, Watched};

use super::entry::State;
use super::retention::Purpose;
use super::{Ending, Tracker, span};

/// The watches the run asked for, and what they have shown so far.
#[derive(Debug, Default)]
pub(super) struct Watches {
    /// Asked for at the start, whether creates wait for it, and whether it has listed (its first
    /// `InitDone`).
    asked: Vec<(Watched, bool, bool)>,
    /// (seen pullers, confirmations before the relist began) while the puller watch relists.
    relist: Option<(HashSet<u32>, u64)>,
    /// Creates confirmed so far: a relist only judges pullers confirmed before it began.
    confirmed: u64,
}

impl Watches {
    /// Ask for a watch of `kind`; `gates`: no puller is created before it has listed.
    pub fn ask(&mut self, kind: Watched, gates: bool) {
        self.asked.push((kind, gates, false));
    }

    /// Every watch of what the run creates has listed: from here on nothing it creates can be
    /// missed.
    pub fn listed(&self) -> bool {
        self.asked.iter().any(|(_, gates, _)| *gates) && self.asked.iter().all(|(_, gates, listed)| !gates || *listed)
    }

    pub fn set_listed(&mut self, kind: Watched) {
        for (k, _, listed) in &mut self.asked {
            if *k == kind {
                *listed = true;
            }
        }
    }

    /// Count one more confirmed create; its number.
    pub fn confirm(&mut self) -> u64 {
        self.confirmed += 1;
        self.confirmed
    }
}

impl Tracker {
    pub(super) fn on_watch_error(&mut self, error: Error) {
        if error.class() == ErrorClass::Fatal {
            self.ending = Some(Ending::Fatal(error));
        } else {
            warn!("{error}; the watch retries with backoff");
        }
    }

    /// The watch bound: the watches asked for must list within
    /// [`crate::policy::Policy::watch_ready_timeout`] of the start, or the run stops before
    /// anything is created.
    pub(super) fn check_watches_listed(&mut self, now: Timestamp) -> bool {
        let since = self.started.unwrap_or(now);
        if !self.watches.listed() && now.duration_since(since) >= span(self.policy.watch_ready_timeout) {
            self.ending = Some(Ending::Fatal(Error::WatchNotReady {
                action: "list this run's Jobs and pods".into(),
                seconds: self.policy.watch_ready_timeout.as_secs(),
            }));
            return false;
        }
        true
    }

    /// Fold one event of the run's Job watch in.
    pub(super) fn on_job_event(&mut self, event: Event<Job>, now: Timestamp) {
        match event {
            Event::Init => self.watches.relist = Some((HashSet::new(), self.watches.confirmed)),
            Event::InitApply(job) => {
                self.relisted(job.metadata.name.as_deref());
                self.apply_job(&job, now, false)
            }
            Event::Apply(job) => self.apply_job(&job, now, false),
            Event::Delete(job) => self.apply_job(&job, now, true),
            Event::InitDone => {
                self.watches.set_listed(Watched::Jobs);
                self.relist_done(now);
            }
        }
    }

    /// The puller watch (Jobs, or pods for `PULLER_KIND=pod`) relists: it shows puller `name`.
    fn relisted(&mut self, name: Option<&str>) {
        let node = name.and_then(|n| self.node_of_puller(n));
        if let (Some((seen, _)), Some(i)) = (self.watches.relist.as_mut(), node) {
            seen.insert(i as u32);
        }
    }

    /// The relist is complete: a puller confirmed before it began and missing from it is gone, as
    /// if its delete event had come (a relist sends none): a disrupted pod waiting to go is
    /// replaced, any other puller is `deleted`.
    fn relist_done(&mut self, now: Timestamp) {
        let Some((seen, before)) = self.watches.relist.take() else { return };
        let gone: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let e = &self.nodes[i];
                matches!(e.state, State::Unstarted | State::Running)
                    && e.confirmed <= before
                    && !seen.contains(&(i as u32))
            })
            .collect();
        for i in gone {
            self.puller_gone(i, now);
        }
    }

    /// Node `i`'s puller is gone without a verdict: an evicted pod is replaced; anything else was
    /// deleted by someone.
    fn puller_gone(&mut self, i: usize, now: Timestamp) {
        if self.nodes[i].rare().replacing.is_some() {
            self.replace(i, now);
        } else {
            self.nodes[i].deleting = true;
            let reason = format!("{} deleted before it finished", self.template.kind().noun());
            self.conclude(i, Outcome::Deleted, reason, now);
        }
    }

    fn apply_job(&mut self, job: &Job, now: Timestamp, deleted: bool) {
        let Some(i) = job.metadata.name.as_deref().and_then(|n| self.node_of_puller(n)) else { return };
        match self.nodes[i].state {
            State::Unstarted | State::Running => {}
            // Seen before the create returned: judged once it has (it may be another run's Job).
            State::Creating => {
                let job = job.clone();
                self.nodes[i].early_job = Some(Box::new(if deleted { Event::Delete(job) } else { Event::Apply(job) }));
                return;
            }
            State::Queued | State::Done => return,
        }
        if let Some(start) = job.status.as_ref().and_then(|s| s.start_time.as_ref()) {
            self.started(i, start.0, now);
        }
        if let Some((outcome, reason)) = outcome_from_job(job, self.nodes[i].rare().last_problem.as_deref()) {
            if outcome == Outcome::Succeeded {
                let images = &mut self.nodes[i].images;
                images.pulled |= images.wanted & !images.failed;
                self.settle(i, now);
                if self.nodes[i].state != State::Done {
                    self.conclude(i, Outcome::Succeeded, String::new(), now);
                }
                return;
            }
            let reason = self.image_reason(i).unwrap_or(reason);
            self.conclude(i, outcome, reason, now);
        } else if deleted {
            self.puller_gone(i, now);
        }
    }

    /// Fold one event of the run's pod watch in.
    pub(super) fn on_pod_event(&mut self, event: Event<Pod>, now: Timestamp) {
        let bare = self.template.kind() == PullerKind::Pod;
        let (pod, deleted) = match event {
            Event::Apply(pod) => (pod, false),
            Event::InitApply(pod) => {
                if bare {
                    self.relisted(pod.metadata.name.as_deref());
                }
                (pod, false)
            }
            Event::Delete(pod) if bare => (pod, true),
            Event::InitDone => {
                self.watches.set_listed(Watched::Pods);
                if bare {
                    self.relist_done(now);
                }
                return;
            }
            Event::Init if bare => {
                self.watches.relist = Some((HashSet::new(), self.watches.confirmed));
                return;
            }
            Event::Delete(_) | Event::Init => return,
        };
        // A puller Job's pod by its owner; a bare puller pod by its own name.
        let puller = if bare {
            owning_job(&pod).is_none().then_some(pod.metadata.name.as_deref()).flatten()
        } else {
            owning_job(&pod)
        };
        let Some(i) = puller.and_then(|p| self.node_of_puller(p)) else { return };
        match self.nodes[i].state {
            State::Unstarted | State::Running => {}
            State::Creating => {
                self.nodes[i].early_pod = Some(Box::new(if deleted { Event::Delete(pod) } else { Event::Apply(pod) }));
                return;
            }
            State::Queued | State::Done => return,
        }
        if deleted {
            self.puller_gone(i, now);
            return;
        }
        let started = if bare {
            // A bare pod starts when the scheduler binds it (or the kubelet says it started).
            pod.status.as_ref().and_then(|s| {
                let bound = s.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "True");
                bound.and_then(|c| c.last_transition_time.as_ref()).or(s.start_time.as_ref()).map(|t| t.0)
            })
        } else {
            // A Job is started once it has a pod.
            Some(pod.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now))
        };
        if let Some(at) = started {
            self.started(i, at, now);
        }
        let view = read_pod(&pod, &self.nodes[i].set);
        if let Some(problem) = pod_problem(&pod) {
            if self.nodes[i].rare().last_problem.as_deref() != Some(problem.as_str()) {
                warn!(node = %self.nodes[i].name, %problem, "puller pod has a problem");
            }
            self.nodes[i].rare_mut().last_problem = Some(problem);
        }
        self.apply_pod(i, view, now)
    }

    fn apply_pod(&mut self, i: usize, view: PodView, now: Timestamp) {
        if let Some(message) = view.node_gone {
            // The Job would make a new pod for a node that is gone, and wait for its deadline.
            self.delete_own(i);
            self.conclude(i, Outcome::Deleted, format!("the node was deleted ({message})"), now);
            return;
        }
        if view.disrupted {
            self.disrupted(i, view.uid);
            return;
        }
        let image_count = self.nodes[i].set.len() as u8;
        let images = &mut self.nodes[i].images;
        for (mask, container) in &view.containers {
            let mask = *mask & images.wanted;
            match container {
                ContainerView::Done => {
                    images.pulled |= mask;
                    images.failing.retain(|(img, _)| mask & (1 << img) == 0);
                }
                ContainerView::Busy => images.failing.retain(|(img, _)| mask & (1 << img) == 0),
                ContainerView::PullError(message) | ContainerView::Invalid(message) => {
                    for img in (0..image_count).filter(|b| mask & (1 << b) != 0) {
                        images.note(img, message);
                        if !images.failing.iter().any(|(f, _)| *f == img) {
                            images.failing.push((img, now));
                        }
                    }
                }
            }
        }
        match view.helper {
            Some(ContainerView::PullError(m) | ContainerView::Invalid(m)) => {
                let since = images.helper_failing.as_ref().map_or(now, |(s, _)| *s);
                images.helper_failing = Some((since, m));
            }
            _ => images.helper_failing = None,
        }
        let invalid: Vec<u8> = view
            .containers
            .iter()
            .filter(|(_, c)| matches!(c, ContainerView::Invalid(_)))
            .flat_map(|(mask, _)| (0..image_count).filter(move |b| mask & (1 << b) != 0))
            .collect();
        for img in invalid {
            self.fail_image(i, img, now);
        }
        if self.nodes[i].state == State::Done {
            return;
        }
        if view.succeeded {
            let images = &mut self.nodes[i].images;
            images.pulled |= images.wanted & !images.failed;
        }
        if let Some(problem) = view.failed {
            let outcome = if view.timed_out { Outcome::TimedOut } else { Outcome::Failed };
            let reason = self.image_reason(i).unwrap_or(problem);
            self.conclude(i, outcome, reason, now);
            return;
        }
        self.settle(i, now);
    }

    /// Node `i`'s pod was evicted or preempted: the Job's pod failure policy makes a new pod (its
    /// pull errors are forgotten: the next pod decides); a bare pod is deleted by the run (that
    /// incarnation only) and replaced once it is gone, within the same deadline.
    fn disrupted(&mut self, i: usize, uid: Option<String>) {
        let entry = &mut self.nodes[i];
        entry.images.failing.clear();
        entry.images.helper_failing = None;
        if self.template.kind() == PullerKind::Pod && entry.rare().replacing.is_none() {
            let uid = uid.unwrap_or_default();
            entry.rare_mut().replacing = Some(uid.clone());
            info!(node = %entry.name, "puller pod evicted or preempted: replacing it once it is gone");
            let name = entry.puller.to_string();
            self.delete(PullerKind::Pod, name, Some(uid), Purpose::Evicted(i));
        }
    }

    /// Node `i`'s disrupted pod is gone: queue it first for a new pod with what is left of the pull
    /// deadline (counted from its first pod's start), or conclude it when no new pod can come: no
    /// time left, creates stopped, or the run interrupted (it would wait in the queue for a create
    /// that never comes).
    pub(super) fn replace(&mut self, i: usize, now: Timestamp) {
        let entry = &mut self.nodes[i];
        entry.rare_mut().replacing = None;
        let since = entry.started_at.or(entry.created_at).unwrap_or(now);
        let used = now.duration_since(since).as_secs().max(0) as u64;
        let not_replaced = if self.policy.pull_deadline.as_secs() <= used {
            Some((Outcome::TimedOut, "its pod was evicted or preempted, with no time left to pull again".to_string()))
        } else if let Some((outcome, reason)) = &self.pacer.stopped {
            Some((*outcome, format!("its pod was evicted or preempted and not replaced: {reason}")))
        } else if self.interrupted.is_some() {
            let reason = "its pod was evicted or preempted; the run was interrupted before it made a new one";
            Some((Outcome::Unfinished, reason.to_string()))
        } else {
            None
        };
        if let Some((outcome, reason)) = not_replaced {
            self.nodes[i].deleting = true;
            self.conclude(i, outcome, reason, now);
            return;
        }
        let entry = &mut self.nodes[i];
        entry.images.pulled = 0;
        entry.rare_mut().not_before = Some(now + span(self.policy.reuse_delay));
        self.set(i, State::Queued);
        self.pacer.queue.push_front(i as u32);
    }
}
