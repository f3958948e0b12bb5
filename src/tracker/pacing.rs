//! When to create, and what a create's answer means: the queue (seed nodes first), the create
//! concurrency, `MAX_PARALLEL`, the seed wave, the pacing to the Job controller's measured start rate
//! (Little's law), the denial streak, retries and adoption, and the warning when the run will not
//! fit its own Job's deadline.

use std::collections::{BTreeMap, HashSet, VecDeque};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::watcher::Event;
use tracing::{info, warn};

use crate::error::{ErrorClass, Result};
use crate::outcome::Outcome;
use crate::pullers::{Adoption, Puller};
use crate::types::{Created, PullerKind};

use super::entry::State;
use super::{Action, Ending, LagStats, Tracker, Warning, span};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Wave {
    /// No seed wave, or the seeds succeeded: every queued node may go.
    #[default]
    Open,
    /// Only seed nodes may go until every seed has a verdict.
    Seeding,
}

/// The run's creating side.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    /// Nodes waiting for their create, seed nodes first.
    pub queue: VecDeque<u32>,
    pub wave: Wave,
    /// Why creates stopped for good (denial streak, seed wave failed): the queued nodes' verdict.
    pub stopped: Option<(Outcome, String)>,
    /// The gist of the last admission denial and how many in a row.
    denials: (String, usize),
    /// Recent starts (pacing) and every creation → start lag in ms (report).
    starts: VecDeque<Timestamp>,
    lags: Vec<u32>,
    all_created_logged: bool,
    run_deadline_warned: bool,
    /// Puller containers in the creates in flight (see [`CONTAINERS_IN_FLIGHT`]).
    pub containers_in_flight: usize,
}

/// Creates in flight carry at most this many puller containers (each create holds its pod, its
/// request and its answer, and a 64-image pod weighs some 100 KiB): with 2 images
/// `CREATE_CONCURRENCY` (16) decides, with 64 (`IMAGES_FROM`) 4 creates are in flight, which still
/// outpace the scheduler's bindings (50/s at defaults) and keep the run's memory flat.
pub const CONTAINERS_IN_FLIGHT: usize = 256;

/// A create error that is not fatal: what it means for the node.
enum Denial {
    /// Admission said no (quota, LimitRange, webhook, validation): `not-created` with its words.
    Denied(String),
    /// Overload or a timeout that kube's own retries did not get through: try again later.
    Retry(String),
}

/// A denial's gist, so `used: 5` and `used: 6`, or two Job names, count as the same denial.
fn gist(message: &str) -> String {
    message
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<String>()
        .replace(|c: char| c.is_ascii_digit(), "")
}

/// The first wave: `k` nodes spread across zones (round-robin over the zones in name order, nodes in
/// name order within a zone); nodes without a zone form one group.
pub fn plan_seeds(nodes: &[u32], zones: &[Option<String>], k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut groups: BTreeMap<Option<&str>, VecDeque<u32>> = BTreeMap::new();
    for &n in nodes {
        groups.entry(zones[n as usize].as_deref()).or_default().push_back(n);
    }
    let mut seeds = Vec::with_capacity(k);
    while seeds.len() < k && groups.values().any(|g| !g.is_empty()) {
        for group in groups.values_mut() {
            if seeds.len() < k
                && let Some(n) = group.pop_front()
            {
                seeds.push(n);
            }
        }
    }
    seeds
}

impl Tracker {
    /// The queue at the start: the seed wave (if any) first, then every other node with something
    /// to pull, in name order.
    pub(super) fn plan_queue(&mut self, zones: &[Option<String>]) {
        let pulling: Vec<u32> =
            (0..self.nodes.len() as u32).filter(|&i| self.nodes[i as usize].state == State::Queued).collect();
        let seeds = plan_seeds(&pulling, zones, self.policy.pacing.seed_nodes);
        if !seeds.is_empty() && seeds.len() < pulling.len() {
            self.pacer.wave = Wave::Seeding;
        }
        for &i in &seeds {
            self.nodes[i as usize].seed = self.pacer.wave == Wave::Seeding;
        }
        let seed_set: HashSet<u32> = seeds.iter().copied().collect();
        self.pacer.queue.extend(seeds);
        self.pacer.queue.extend(pulling.into_iter().filter(|i| !seed_set.contains(i)));
    }

    /// Sent and not started yet (pacing).
    fn unstarted(&self) -> usize {
        self.count(State::Creating) + self.count(State::Unstarted)
    }

    /// No further create will be sent: interrupted, stopped, or nothing left queued.
    pub(super) fn creating_finished(&self) -> bool {
        self.interrupted.is_some() || self.pacer.stopped.is_some() || self.pacer.queue.is_empty()
    }

    /// How many created-but-unstarted Jobs the Job controller can take now: its recent start rate
    /// times the target lag (Little's law), never below the create concurrency.
    pub fn pace_limit(&self, now: Timestamp) -> usize {
        let floor = self.policy.pacing.create_concurrency;
        let Some(first) = self.pacer.starts.front() else { return floor * 2 };
        let span = now.duration_since(*first).max(SignedDuration::from_secs(1)).as_secs_f64();
        let rate = self.pacer.starts.len() as f64 / span;
        ((rate * self.policy.target_start_lag.as_secs_f64()) as usize).max(floor)
    }

    /// The pullers to create now (their nodes become `Creating`), within every limit.
    pub(super) fn next_creates(&mut self, now: Timestamp) {
        if !self.watches.listed() || self.interrupted.is_some() || self.pacer.stopped.is_some() {
            return;
        }
        let pace = self.pace_limit(now);
        let pacing = self.policy.pacing;
        while let Some(&next) = self.pacer.queue.front() {
            let entry = &self.nodes[next as usize];
            if entry.rare().not_before.is_some_and(|t| now < t) {
                break;
            }
            let creating = self.count(State::Creating);
            let parallel_full = pacing.max_parallel.is_some_and(|m| creating + self.active() >= m);
            let heavy = creating > 0
                && self.pacer.containers_in_flight + entry.images.wanted.count_ones() as usize > CONTAINERS_IN_FLIGHT;
            // Pods have no Job controller to pace to: the create concurrency and MAX_PARALLEL bound them.
            let paced = self.template.kind() == PullerKind::Job && self.unstarted() >= pace;
            if creating >= pacing.create_concurrency
                || heavy
                || parallel_full
                || paced
                || (self.pacer.wave == Wave::Seeding && !entry.seed)
            {
                break;
            }
            self.pacer.queue.pop_front();
            let i = next as usize;
            self.set(i, State::Creating);
            let entry = &self.nodes[i];
            let mut deadlines = self.policy.deadlines();
            if let Some(first) = entry.started_at.filter(|_| self.template.kind() == PullerKind::Pod) {
                // A replacement pod: the pull deadline left since the first pod started.
                deadlines.pod = (deadlines.pod - now.duration_since(first).as_secs()).max(1);
            }
            self.outbox.push(Action::Create(self.template.build(&entry.as_node(), deadlines)));
        }
        if !self.pacer.all_created_logged && self.creating_finished() && self.count(State::Creating) == 0 {
            self.pacer.all_created_logged = true;
            let since = self.started.unwrap_or(now);
            let elapsed_ms = now.duration_since(since).as_millis().max(0) as u64;
            info!(elapsed_ms, done = self.count(State::Done), "no more creates to send");
        }
    }

    /// A create request for the puller named `name` answered.
    pub(super) fn on_create(&mut self, name: &str, result: Result<Created<Puller>>, now: Timestamp) {
        let Some(i) = self.node_of_puller(name) else { return };
        if self.nodes[i].state != State::Creating {
            return;
        }
        let node = self.nodes[i].name.clone();
        let node = node.as_str();
        // What the answer means; a fatal one stops the run with this node still in flight.
        let result = match result {
            Ok(created) => Ok(created),
            Err(e) => match e.class() {
                ErrorClass::PerNode => Err(Denial::Denied(e.message())),
                ErrorClass::Transient => Err(Denial::Retry(e.to_string())),
                // 404 on a create: the namespace is gone. Fatal, like RBAC and authentication.
                ErrorClass::NotFound | ErrorClass::Conflict | ErrorClass::Fatal => {
                    self.ending = Some(Ending::Fatal(e));
                    return;
                }
            },
        };
        self.set(i, State::Queued);
        match result {
            Ok(Created::New(puller)) => {
                self.pacer.denials = (String::new(), 0);
                let created_at = puller.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
                self.nodes[i].puller_uid = puller.meta().uid.clone();
                self.confirm(i, created_at);
                if let Some(reason) = self.template.dropped_image_volumes(&puller) {
                    // It would "succeed" without pulling: gone at once, and so are the creates.
                    self.delete_own(i);
                    self.conclude(i, Outcome::NotCreated, reason.clone(), now);
                    if self.pacer.stopped.is_none() {
                        self.stop(Outcome::NotCreated, format!("not attempted: {reason}"), now);
                    }
                    return;
                }
                // The watches may have shown the puller and its pod before the create returned.
                if let Some(event) = self.nodes[i].early_job.take() {
                    self.on_job_event(*event, now);
                }
                if let Some(event) = self.nodes[i].early_pod.take() {
                    self.on_pod_event(*event, now);
                }
            }
            Ok(Created::AlreadyExists(puller)) => match self.template.adoption(puller.meta(), node, &self.nodes[i].set)
            {
                Adoption::Adopt(images) => {
                    self.pacer.denials = (String::new(), 0);
                    let created_at = puller.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
                    let entry = &mut self.nodes[i];
                    entry.puller_uid = puller.meta().uid.clone();
                    entry.early_job = None;
                    let early_pod = entry.early_pod.take();
                    entry.images.present |= entry.images.wanted & !images;
                    entry.images.wanted &= images;
                    info!(node, puller = %entry.puller, "a puller of this run with the same images exists; adopting it");
                    self.confirm(i, created_at);
                    match *puller {
                        Puller::Job(job) => self.on_job_event(Event::Apply(*job), now),
                        Puller::Pod(pod) => self.on_pod_event(Event::Apply(*pod), now),
                    }
                    if let Some(event) = early_pod {
                        self.on_pod_event(*event, now);
                    }
                }
                Adoption::Refuse(reason) => self.conclude(i, Outcome::NotCreated, reason, now),
            },
            Ok(Created::Vanished) => self.retry(i, "the existing puller was deleted while being adopted".into(), now),
            Err(Denial::Retry(message)) => self.retry(i, message, now),
            Err(Denial::Denied(message)) => self.denied(i, message, now),
        }
    }

    /// Admission refused node `i`'s puller: `not-created`; the same refusal [`Policy::denial_streak`]
    /// times in a row stops every further create.
    ///
    /// [`Policy::denial_streak`]: crate::policy::Policy::denial_streak
    fn denied(&mut self, i: usize, message: String, now: Timestamp) {
        let key = gist(&message);
        if self.pacer.denials.0 == key {
            self.pacer.denials.1 += 1;
        } else {
            self.pacer.denials = (key, 1);
        }
        warn!(node = %self.nodes[i].name, %message, "the apiserver refused this node's puller");
        self.conclude(i, Outcome::NotCreated, message.clone(), now);
        if self.pacer.denials.1 >= self.policy.denial_streak && self.pacer.stopped.is_none() {
            let reason = format!(
                "not attempted: the last {} creates were refused the same way: {message}",
                self.pacer.denials.1
            );
            self.stop(Outcome::NotCreated, reason, now);
        }
    }

    /// A create that did not go through (transient error, or the Job vanished on a 409): queue the
    /// node again, up to [`crate::policy::Policy::max_create_attempts`].
    fn retry(&mut self, i: usize, message: String, now: Timestamp) {
        let entry = &mut self.nodes[i];
        entry.attempts += 1;
        if entry.attempts >= self.policy.max_create_attempts {
            let reason = format!("gave up after {} attempts: {message}", entry.attempts);
            self.conclude(i, Outcome::NotCreated, reason, now);
        } else {
            warn!(node = %entry.name, attempt = entry.attempts, %message, "create did not go through; trying again");
            entry.early_job = None;
            entry.early_pod = None;
            self.pacer.queue.push_back(i as u32);
        }
    }

    /// Node `i`'s puller exists (created, or adopted).
    fn confirm(&mut self, i: usize, created_at: Timestamp) {
        let confirmed = self.watches.confirm();
        let entry = &mut self.nodes[i];
        entry.confirmed = confirmed;
        // A replacement pod keeps the node's first creation: the deadlines count from there.
        entry.created_at.get_or_insert(created_at);
        let state = if entry.started_at.is_some() { State::Running } else { State::Unstarted };
        self.set(i, state);
    }

    /// Node `i`'s puller started (a Job's `startTime` or first pod; a pod bound to its node).
    pub(super) fn started(&mut self, i: usize, at: Timestamp, now: Timestamp) {
        let entry = &mut self.nodes[i];
        if entry.started_at.is_some() || entry.state != State::Unstarted {
            return;
        }
        entry.started_at = Some(at);
        if let Some(created) = entry.created_at {
            let lag = at.duration_since(created).as_millis().clamp(0, u32::MAX as i128) as u32;
            self.pacer.lags.push(lag);
        }
        self.set(i, State::Running);
        self.pacer.starts.push_back(now);
        let window = span(self.policy.rate_window);
        while self.pacer.starts.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.pacer.starts.pop_front();
        }
    }

    /// Stop creating for good; the queued nodes get `outcome` with `reason`.
    pub(super) fn stop(&mut self, outcome: Outcome, reason: String, now: Timestamp) {
        let remaining = self.pacer.queue.len();
        self.outbox.push(Action::Warn(Warning::CreatesStopped { reason: reason.clone(), remaining }));
        self.pacer.stopped = Some((outcome, reason.clone()));
        while let Some(i) = self.pacer.queue.pop_front() {
            self.conclude(i as usize, outcome, reason.clone(), now);
        }
    }

    /// Every seed has its verdict: open the fan-out, or stop it when none succeeded.
    pub(super) fn seed_concluded(&mut self, now: Timestamp) {
        let seeds = || self.nodes.iter().filter(|e| e.seed);
        if seeds().any(|e| e.state != State::Done) {
            return;
        }
        let total = seeds().count();
        let ok = seeds().filter(|e| e.verdict.as_ref().is_some_and(|(o, _)| o.is_success())).count();
        self.pacer.wave = Wave::Open;
        if ok == 0 {
            let reason = format!("seed wave failed: none of the {total} seed nodes succeeded");
            self.stop(Outcome::NotStarted, reason, now);
        } else {
            info!(seeds = total, succeeded = ok, remaining = self.pacer.queue.len(), "seed wave done; fanning out");
        }
    }

    /// Warn once when, at the start rate measured so far, the nodes still to create would need
    /// longer than the run's own Job has left (its `activeDeadlineSeconds` ends it with SIGTERM).
    pub(super) fn check_run_deadline(&mut self, now: Timestamp) {
        let Some((ends, job)) = &self.policy.run_deadline else { return };
        let left = self.pacer.queue.len() + self.count(State::Creating);
        if self.pacer.run_deadline_warned || left == 0 || self.pacer.starts.len() < 5 {
            return;
        }
        let first = *self.pacer.starts.front().expect("at least 5 starts");
        let rate = self.pacer.starts.len() as f64 / now.duration_since(first).as_secs_f64().max(1.0);
        let need = left as f64 / rate;
        let remaining = ends.duration_since(now).as_secs_f64();
        if need > remaining {
            self.pacer.run_deadline_warned = true;
            self.outbox.push(Action::Warn(Warning::RunDeadline {
                rate,
                left,
                need_seconds: need.round() as u64,
                remaining_seconds: remaining.max(0.0).round() as u64,
                job: job.clone(),
                kind: self.template.kind(),
            }));
        }
    }

    /// Creation → start lag over every puller that started.
    pub fn lag(&self) -> LagStats {
        let mut lags = self.pacer.lags.clone();
        lags.sort_unstable();
        let at = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0) as u64;
        LagStats {
            samples: lags.len(),
            median_ms: at(0.5),
            p90_ms: at(0.9),
            max_ms: lags.last().copied().unwrap_or(0) as u64,
        }
    }
}
