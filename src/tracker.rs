//! Step 5 of the data path: the run as a synchronous state machine. Every eligible node is in it
//! from the start, and it decides everything: which node's Job to create next (create concurrency,
//! `MAX_PARALLEL`, pacing to the cluster's Job controller, the seed wave), and each node's verdict
//! from the create results, the Job and pod watch events and the clock. It does no I/O: the run
//! loop (`run.rs`) feeds it events and carries out what it asks for ([`Tracker::next_creates`],
//! [`Action`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::watcher::Event;
use tracing::{info, warn};

use crate::nodes::{EligibleNode, ImageMask};
use crate::outcome::{
    ContainerView, Outcome, PodView, is_permanent_pull_error, outcome_from_job, owning_job, pod_problem, read_pod,
};

/// How the run paces and judges; the same for every node.
#[derive(Clone, Debug)]
pub struct Policy {
    pub image_count: usize,
    /// A node with no verdict this long after its Job started (or was created, until it starts) is
    /// timed out: the Job's own deadline (`DEADLINE_SECONDS` + `WAIT_GRACE_SECONDS`) plus slack.
    pub node_deadline: Duration,
    /// How long an image may keep failing to pull before it counts as failed.
    pub pull_error_grace: Duration,
    pub create_concurrency: usize,
    pub max_parallel: Option<usize>,
    pub seed_nodes: usize,
    /// Attempts per node for creates that fail transiently (or whose Job vanished on a 409).
    pub max_create_attempts: u8,
    /// This many identical admission denials in a row stop all further creates.
    pub denial_streak: usize,
    /// An image that failed with a not-found/unauthorized error on this many nodes (and succeeded on
    /// none) is not sent to the remaining nodes.
    pub image_breaker: usize,
    /// Pacing: keep at most (Job start rate × this) created Jobs waiting for the Job controller.
    pub target_start_lag: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            image_count: 1,
            node_deadline: Duration::from_secs(360),
            pull_error_grace: Duration::from_secs(30),
            create_concurrency: 16,
            max_parallel: None,
            seed_nodes: 0,
            max_create_attempts: 3,
            denial_streak: 3,
            image_breaker: 3,
            target_start_lag: Duration::from_secs(5),
        }
    }
}

/// How a create request ended, as the run loop reports it.
#[derive(Clone, Debug)]
pub enum CreateResult {
    Created {
        created_at: Option<Timestamp>,
    },
    /// A 409 for a Job that is really ours ([`crate::jobs::Adoption::Adopt`]): follow it.
    Adopted {
        job: Box<Job>,
        images: ImageMask,
    },
    /// A 409 for a Job that is not ours; the reason says what to do.
    Refused(String),
    /// 409 then 404: deleted in between; try again.
    Vanished,
    /// The apiserver's admission said no (quota, LimitRange, webhook, validation).
    Denied(String),
    /// Overload or timeout that kube's own retries did not get through; try again later.
    Transient(String),
}

/// What the tracker asks the run loop to do besides creating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The node is concluded but its pod would go on retrying a pull: delete the Job.
    DeleteJob(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Queued,
    Creating,
    Created,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wave {
    /// No seed wave, or the seeds succeeded: every queued node may go.
    Open,
    /// Only seed nodes may go until every seed has a verdict.
    Seeding,
}

/// One image failure, kept for the report.
#[derive(Clone, Debug)]
struct ImageNote {
    image: u8,
    message: String,
}

#[derive(Clone, Debug)]
struct Entry {
    name: String,
    job: String,
    tolerations: u32,
    /// The images this node pulls (what its Job has or will have).
    images: ImageMask,
    /// Images already on the node (`SKIP_PRESENT`).
    present: ImageMask,
    pulled: ImageMask,
    failed: ImageMask,
    /// Held back by the image circuit breaker.
    not_sent: ImageMask,
    /// Pull errors seen but still within the grace: (image, first seen).
    failing: Vec<(u8, Timestamp)>,
    helper_failing: Option<(Timestamp, String)>,
    notes: Vec<ImageNote>,
    state: State,
    seed: bool,
    attempts: u8,
    /// Order in which creates were confirmed: a relist only judges Jobs confirmed before it began.
    confirmed: u64,
    created_at: Option<Timestamp>,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    last_problem: Option<String>,
    verdict: Option<(Outcome, String)>,
    /// The Job and its pod as the watches showed them while the create was still in flight (the
    /// Job's event as it came: a Job created and deleted again before the create returned stays
    /// deleted).
    early_job: Option<Box<Event<Job>>>,
    early_pod: Option<Box<Pod>>,
}

/// The verdict for one node, as the run's report and Event carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub node: String,
    pub job: Option<String>,
    pub outcome: Outcome,
    pub reason: String,
    pub duration: Option<Duration>,
    /// Per image of the run: what happened on this node.
    pub images: Vec<ImageVerdict>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageResult {
    Pulled,
    Present,
    Failed,
    NotSent,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageVerdict {
    pub index: usize,
    pub result: ImageResult,
    pub message: Option<String>,
}

/// Counts for progress lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: usize,
    pub queued: usize,
    pub creating: usize,
    /// Created, no verdict yet.
    pub pulling: usize,
    pub done: usize,
    pub failed: usize,
}

/// Job controller lag seen by the run: creation → start, per Job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LagStats {
    pub samples: usize,
    pub median_ms: u64,
    pub p90_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug)]
pub struct Tracker {
    policy: Policy,
    nodes: Vec<Entry>,
    by_job: HashMap<String, u32>,
    queue: VecDeque<u32>,
    wave: Wave,
    /// Why creates stopped for good (denial streak, seed wave failed): the queued nodes' reason.
    stopped: Option<(Outcome, String)>,
    interrupted: bool,
    creating: usize,
    /// Created, no verdict.
    active: usize,
    /// Creating, or created and not yet started by the Job controller.
    unstarted: usize,
    done: usize,
    confirmed: u64,
    denials: (String, usize),
    image_failures: Vec<u32>,
    image_successes: Vec<u32>,
    /// Images the breaker stopped, with the reason said once in the report.
    broken: Vec<Option<String>>,
    /// Recent Job starts (pacing) and every creation → start lag in ms (report).
    starts: VecDeque<Timestamp>,
    lags: Vec<u32>,
    /// (seen names, confirmations before the relist began) while the Job watch relists.
    relist: Option<(HashSet<u32>, u64)>,
    logged_failures: usize,
}

/// Nodes logged one by one when they fail; the report has all of them.
const MAX_LOGGED_FAILURES: usize = 50;

/// Window over which the Job controller's start rate is measured.
const RATE_WINDOW: SignedDuration = SignedDuration::from_secs(10);

fn secs(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
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

impl Tracker {
    /// Every eligible node is tracked from the start. `job_name` names each node's Job; `present`
    /// is the mask of images some nodes already have (`SKIP_PRESENT`): those with nothing left to
    /// pull are `already-present` at once.
    pub fn new(policy: Policy, eligible: Vec<EligibleNode>, job_name: impl Fn(&str) -> String) -> Tracker {
        let all = crate::nodes::all_images(policy.image_count);
        let count = policy.image_count;
        let mut t = Tracker {
            nodes: Vec::with_capacity(eligible.len()),
            by_job: HashMap::with_capacity(eligible.len()),
            queue: VecDeque::with_capacity(eligible.len()),
            wave: Wave::Open,
            stopped: None,
            interrupted: false,
            creating: 0,
            active: 0,
            unstarted: 0,
            done: 0,
            confirmed: 0,
            denials: (String::new(), 0),
            image_failures: vec![0; count],
            image_successes: vec![0; count],
            broken: vec![None; count],
            starts: VecDeque::new(),
            lags: Vec::new(),
            relist: None,
            logged_failures: 0,
            policy,
        };
        let mut zones: Vec<Option<String>> = Vec::new();
        for node in eligible {
            let index = t.nodes.len() as u32;
            let job = job_name(&node.name);
            t.by_job.insert(job.clone(), index);
            zones.push(node.zone);
            t.nodes.push(Entry {
                name: node.name,
                job,
                tolerations: node.tolerations,
                images: node.images,
                present: all & !node.images,
                pulled: 0,
                failed: 0,
                not_sent: 0,
                failing: Vec::new(),
                helper_failing: None,
                notes: Vec::new(),
                state: State::Queued,
                seed: false,
                attempts: 0,
                confirmed: 0,
                created_at: None,
                started_at: None,
                finished_at: None,
                last_problem: None,
                verdict: None,
                early_job: None,
                early_pod: None,
            });
        }
        let pulling: Vec<u32> = (0..t.nodes.len() as u32).filter(|&i| t.nodes[i as usize].images != 0).collect();
        let present: Vec<usize> = (0..t.nodes.len()).filter(|&i| t.nodes[i].images == 0).collect();
        for i in present {
            t.conclude(i, Outcome::AlreadyPresent, "every image is already on the node".into(), None);
        }
        let seeds = plan_seeds(&pulling, &zones, t.policy.seed_nodes);
        if !seeds.is_empty() && seeds.len() < pulling.len() {
            t.wave = Wave::Seeding;
        }
        for &i in &seeds {
            t.nodes[i as usize].seed = t.wave == Wave::Seeding;
        }
        let seed_set: HashSet<u32> = seeds.iter().copied().collect();
        t.queue.extend(seeds);
        t.queue.extend(pulling.into_iter().filter(|i| !seed_set.contains(i)));
        t
    }

    pub fn total(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_done(&self) -> bool {
        self.done == self.nodes.len()
    }

    /// True once no further create will be sent (interrupted, stopped, or nothing left queued).
    pub fn creating_finished(&self) -> bool {
        self.interrupted || self.stopped.is_some() || self.queue.is_empty()
    }

    pub fn progress(&self) -> Progress {
        let failed = self.nodes.iter().filter(|e| e.verdict.as_ref().is_some_and(|(o, _)| !o.is_success())).count();
        Progress {
            total: self.nodes.len(),
            queued: self.queue.len(),
            creating: self.creating,
            pulling: self.active,
            done: self.done,
            failed,
        }
    }

    pub fn lag(&self) -> LagStats {
        let mut lags = self.lags.clone();
        lags.sort_unstable();
        let at = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0) as u64;
        LagStats {
            samples: lags.len(),
            median_ms: at(0.5),
            p90_ms: at(0.9),
            max_ms: lags.last().copied().unwrap_or(0) as u64,
        }
    }

    /// Images the circuit breaker stopped: (image index, reason).
    pub fn broken_images(&self) -> impl Iterator<Item = (usize, &str)> {
        self.broken.iter().enumerate().filter_map(|(i, b)| b.as_deref().map(|b| (i, b)))
    }

    /// How many created-but-unstarted Jobs the Job controller can take now: its recent start rate
    /// times the target lag (Little's law), never below the create concurrency.
    pub fn pace_limit(&self, now: Timestamp) -> usize {
        let floor = self.policy.create_concurrency;
        let Some(first) = self.starts.front() else { return floor * 2 };
        let span = now.duration_since(*first).max(SignedDuration::from_secs(1)).as_secs_f64();
        let rate = self.starts.len() as f64 / span;
        ((rate * self.policy.target_start_lag.as_secs_f64()) as usize).max(floor)
    }

    /// The nodes whose Jobs to create now (they become `Creating`), within every limit.
    pub fn next_creates(&mut self, now: Timestamp) -> Vec<EligibleNode> {
        let mut out = Vec::new();
        if self.interrupted || self.stopped.is_some() {
            return out;
        }
        let pace = self.pace_limit(now);
        while let Some(&next) = self.queue.front() {
            let entry = &self.nodes[next as usize];
            let parallel_full = self.policy.max_parallel.is_some_and(|m| self.creating + self.active >= m);
            if self.creating >= self.policy.create_concurrency
                || parallel_full
                || self.unstarted >= pace
                || (self.wave == Wave::Seeding && !entry.seed)
            {
                break;
            }
            self.queue.pop_front();
            let entry = &mut self.nodes[next as usize];
            entry.state = State::Creating;
            self.creating += 1;
            self.unstarted += 1;
            out.push(EligibleNode {
                name: entry.name.clone(),
                tolerations: entry.tolerations,
                images: entry.images,
                zone: None,
            });
        }
        out
    }

    /// A create request for the Job named `job` ended.
    pub fn on_create(&mut self, job: &str, result: CreateResult, now: Timestamp) -> Vec<Action> {
        let Some(&i) = self.by_job.get(job) else { return Vec::new() };
        let i = i as usize;
        if self.nodes[i].state != State::Creating {
            return Vec::new();
        }
        self.creating -= 1;
        self.unstarted -= 1;
        self.nodes[i].state = State::Queued;
        let node = self.nodes[i].name.clone();
        let node = node.as_str();
        let mut actions = Vec::new();
        match result {
            CreateResult::Created { created_at } => {
                self.denials = (String::new(), 0);
                self.confirm(i, created_at.unwrap_or(now));
                // The watches may have shown the Job and its pod before the create returned.
                if let Some(event) = self.nodes[i].early_job.take() {
                    actions.extend(self.on_job_event(*event, now));
                }
                if let Some(pod) = self.nodes[i].early_pod.take() {
                    actions.extend(self.on_pod_event(Event::Apply(*pod), now));
                }
            }
            CreateResult::Adopted { job, images } => {
                self.denials = (String::new(), 0);
                let created_at = job.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
                let entry = &mut self.nodes[i];
                entry.early_job = None;
                let early_pod = entry.early_pod.take();
                entry.present |= entry.images & !images;
                entry.images &= images;
                info!(node, job = %entry.job, "a Job of this run with the same images exists; adopting it");
                self.confirm(i, created_at);
                actions.extend(self.on_job_event(Event::Apply(*job), now));
                if let Some(pod) = early_pod {
                    actions.extend(self.on_pod_event(Event::Apply(*pod), now));
                }
            }
            CreateResult::Refused(reason) => {
                self.conclude(i, Outcome::NotCreated, reason, Some(now));
            }
            CreateResult::Vanished | CreateResult::Transient(_) => {
                let entry = &mut self.nodes[i];
                entry.attempts += 1;
                let message = match result {
                    CreateResult::Transient(m) => m,
                    _ => "the existing Job was deleted while being adopted".into(),
                };
                if entry.attempts >= self.policy.max_create_attempts {
                    let reason = format!("gave up after {} attempts: {message}", entry.attempts);
                    self.conclude(i, Outcome::NotCreated, reason, Some(now));
                } else {
                    warn!(node, attempt = entry.attempts, %message, "create did not go through; trying again");
                    entry.early_job = None;
                    entry.early_pod = None;
                    self.queue.push_back(i as u32);
                }
            }
            CreateResult::Denied(message) => {
                let key = gist(&message);
                if self.denials.0 == key {
                    self.denials.1 += 1;
                } else {
                    self.denials = (key, 1);
                }
                warn!(node, %message, "the apiserver refused this node's Job");
                self.conclude(i, Outcome::NotCreated, message.clone(), Some(now));
                if self.denials.1 >= self.policy.denial_streak && self.stopped.is_none() {
                    let reason = format!(
                        "not attempted: the last {} creates were refused the same way: {message}",
                        self.denials.1
                    );
                    warn!(%reason, remaining = self.queue.len(), "no more creates: they would fail the same way");
                    self.stop(Outcome::NotCreated, reason, now);
                }
            }
        }
        actions
    }

    fn confirm(&mut self, i: usize, created_at: Timestamp) {
        self.confirmed += 1;
        self.active += 1;
        let entry = &mut self.nodes[i];
        entry.state = State::Created;
        entry.confirmed = self.confirmed;
        entry.created_at = Some(created_at);
        if entry.started_at.is_none() {
            self.unstarted += 1;
        }
    }

    /// The Job controller started node `i`'s Job (its `startTime`, or its first pod).
    fn started(&mut self, i: usize, at: Timestamp, now: Timestamp) {
        let entry = &mut self.nodes[i];
        if entry.started_at.is_some() || entry.state != State::Created {
            return;
        }
        entry.started_at = Some(at);
        if entry.state == State::Created {
            self.unstarted -= 1;
        }
        if let Some(created) = entry.created_at {
            let lag = at.duration_since(created).as_millis().clamp(0, u32::MAX as i128) as u32;
            self.lags.push(lag);
        }
        self.starts.push_back(now);
        while self.starts.front().is_some_and(|t| now.duration_since(*t) > RATE_WINDOW) {
            self.starts.pop_front();
        }
    }

    /// Stop creating for good; the queued nodes get `outcome` with `reason`.
    fn stop(&mut self, outcome: Outcome, reason: String, now: Timestamp) {
        self.stopped = Some((outcome, reason.clone()));
        while let Some(i) = self.queue.pop_front() {
            self.conclude(i as usize, outcome, reason.clone(), Some(now));
        }
    }

    /// Fold one event of the run's Job watch in.
    pub fn on_job_event(&mut self, event: Event<Job>, now: Timestamp) -> Vec<Action> {
        match event {
            Event::Init => {
                self.relist = Some((HashSet::new(), self.confirmed));
                Vec::new()
            }
            Event::InitApply(job) => {
                if let (Some((seen, _)), Some(&i)) =
                    (self.relist.as_mut(), job.metadata.name.as_ref().and_then(|n| self.by_job.get(n)))
                {
                    seen.insert(i);
                }
                self.apply_job(&job, now, false)
            }
            Event::Apply(job) => self.apply_job(&job, now, false),
            Event::Delete(job) => self.apply_job(&job, now, true),
            Event::InitDone => {
                // A Job confirmed before this relist began and missing from it is gone.
                let Some((seen, before)) = self.relist.take() else { return Vec::new() };
                let gone: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| {
                        let e = &self.nodes[i];
                        e.state == State::Created && e.confirmed <= before && !seen.contains(&(i as u32))
                    })
                    .collect();
                for i in gone {
                    self.conclude(i, Outcome::Deleted, "Job deleted before it finished".into(), Some(now));
                }
                Vec::new()
            }
        }
    }

    fn apply_job(&mut self, job: &Job, now: Timestamp, deleted: bool) -> Vec<Action> {
        let Some(&i) = job.metadata.name.as_ref().and_then(|n| self.by_job.get(n)) else { return Vec::new() };
        let i = i as usize;
        if let Some(start) = job.status.as_ref().and_then(|s| s.start_time.as_ref()) {
            self.started(i, start.0, now);
        }
        let entry = &mut self.nodes[i];
        match entry.state {
            State::Created => {}
            // Seen before the create returned: judged once it has (it may be another run's Job).
            State::Creating => {
                let job = job.clone();
                entry.early_job = Some(Box::new(if deleted { Event::Delete(job) } else { Event::Apply(job) }));
                return Vec::new();
            }
            State::Queued | State::Done => return Vec::new(),
        }
        let entry = &self.nodes[i];
        if let Some((outcome, reason)) = outcome_from_job(job, entry.last_problem.as_deref()) {
            if outcome == Outcome::Succeeded {
                let entry = &mut self.nodes[i];
                entry.pulled |= entry.images & !entry.failed;
                self.settle(i, now);
                if self.nodes[i].state != State::Done {
                    self.conclude(i, Outcome::Succeeded, String::new(), Some(now));
                }
            } else {
                let reason = self.image_reason(i).unwrap_or(reason);
                self.conclude(i, outcome, reason, Some(now));
            }
        } else if deleted {
            self.conclude(i, Outcome::Deleted, "Job deleted before it finished".into(), Some(now));
        }
        Vec::new()
    }

    /// Fold one event of the run's pod watch in.
    pub fn on_pod_event(&mut self, event: Event<Pod>, now: Timestamp) -> Vec<Action> {
        let pod = match event {
            Event::Apply(pod) | Event::InitApply(pod) => pod,
            Event::Delete(_) | Event::Init | Event::InitDone => return Vec::new(),
        };
        let Some(&i) = owning_job(&pod).and_then(|j| self.by_job.get(j)) else { return Vec::new() };
        let i = i as usize;
        match self.nodes[i].state {
            State::Created => {}
            State::Creating => {
                self.nodes[i].early_pod = Some(Box::new(pod));
                return Vec::new();
            }
            State::Queued | State::Done => return Vec::new(),
        }
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
        self.started(i, created, now);
        let view = read_pod(&pod, self.policy.image_count);
        if let Some(problem) = pod_problem(&pod) {
            if self.nodes[i].last_problem.as_deref() != Some(problem.as_str()) {
                warn!(node = %self.nodes[i].name, %problem, "puller pod has a problem");
            }
            self.nodes[i].last_problem = Some(problem);
        }
        self.apply_pod(i, view, now)
    }

    fn apply_pod(&mut self, i: usize, view: PodView, now: Timestamp) -> Vec<Action> {
        if let Some(message) = view.node_gone {
            // The Job would make a new pod for a node that is gone, and wait for its deadline.
            let job = self.nodes[i].job.clone();
            self.conclude(i, Outcome::Deleted, format!("the node was deleted ({message})"), Some(now));
            return vec![Action::DeleteJob(job)];
        }
        if view.disrupted {
            // Evicted or preempted: the Job's pod failure policy makes a new pod.
            let entry = &mut self.nodes[i];
            entry.failing.clear();
            entry.helper_failing = None;
            return Vec::new();
        }
        let entry = &mut self.nodes[i];
        for (mask, container) in &view.containers {
            let images = *mask & entry.images;
            match container {
                ContainerView::Done => {
                    entry.pulled |= images;
                    entry.failing.retain(|(img, _)| images & (1 << img) == 0);
                }
                ContainerView::Busy => entry.failing.retain(|(img, _)| images & (1 << img) == 0),
                ContainerView::PullError(message) | ContainerView::Invalid(message) => {
                    for img in (0..self.policy.image_count as u8).filter(|b| images & (1 << b) != 0) {
                        note(entry, img, message);
                        if !entry.failing.iter().any(|(f, _)| *f == img) {
                            entry.failing.push((img, now));
                        }
                    }
                }
            }
        }
        let invalid: Vec<u8> = view
            .containers
            .iter()
            .filter(|(_, c)| matches!(c, ContainerView::Invalid(_)))
            .flat_map(|(mask, _)| (0..self.policy.image_count as u8).filter(move |b| mask & (1 << b) != 0))
            .collect();
        match view.helper {
            Some(ContainerView::PullError(m) | ContainerView::Invalid(m)) => {
                let since = entry.helper_failing.as_ref().map_or(now, |(s, _)| *s);
                entry.helper_failing = Some((since, m));
            }
            _ => entry.helper_failing = None,
        }
        let mut actions = Vec::new();
        for img in invalid {
            actions.extend(self.fail_image(i, img, now));
        }
        if self.nodes[i].state == State::Done {
            return actions;
        }
        if view.succeeded {
            let entry = &mut self.nodes[i];
            entry.pulled |= entry.images & !entry.failed;
        }
        if let Some(problem) = view.failed {
            let outcome = if view.timed_out { Outcome::TimedOut } else { Outcome::Failed };
            let reason = self.image_reason(i).unwrap_or(problem);
            self.conclude(i, outcome, reason, Some(now));
            return actions;
        }
        actions.extend(self.settle(i, now));
        actions
    }

    /// Image `img` failed on node `i` for good: record it, feed the circuit breaker, and conclude
    /// the node if nothing else is left to wait for.
    fn fail_image(&mut self, i: usize, img: u8, now: Timestamp) -> Vec<Action> {
        let entry = &mut self.nodes[i];
        let bit = 1 << img;
        if entry.failed & bit != 0 || entry.pulled & bit != 0 {
            return Vec::new();
        }
        entry.failed |= bit;
        entry.failing.retain(|(f, _)| *f != img);
        let message = entry.notes.iter().find(|n| n.image == img).map(|n| n.message.clone()).unwrap_or_default();
        let idx = img as usize;
        if is_permanent_pull_error(&message) {
            self.image_failures[idx] += 1;
            if self.image_failures[idx] as usize >= self.policy.image_breaker
                && self.image_successes[idx] == 0
                && self.broken[idx].is_none()
            {
                let reason = format!(
                    "not sent to the remaining nodes: it failed on the first {} nodes with: {message}",
                    self.image_failures[idx]
                );
                warn!(image = idx, %reason, "image circuit breaker");
                self.broken[idx] = Some(reason.clone());
                self.hold_back(idx, reason, now);
            }
        }
        self.settle(i, now)
    }

    /// The breaker: queued nodes no longer get image `idx`; a node left with nothing to pull fails.
    fn hold_back(&mut self, idx: usize, reason: String, now: Timestamp) {
        let bit = 1u64 << idx;
        let queued: Vec<u32> =
            self.queue.iter().copied().filter(|&q| self.nodes[q as usize].images & bit != 0).collect();
        for q in queued {
            let entry = &mut self.nodes[q as usize];
            entry.images &= !bit;
            entry.not_sent |= bit;
            note(entry, idx as u8, &reason);
            if entry.images == 0 {
                self.queue.retain(|&x| x != q);
                let reason = self.image_reason(q as usize).unwrap_or_else(|| reason.clone());
                self.conclude(q as usize, Outcome::Failed, reason, Some(now));
            }
        }
    }

    /// Conclude node `i` if every image of its Job is pulled or failed.
    fn settle(&mut self, i: usize, now: Timestamp) -> Vec<Action> {
        let entry = &self.nodes[i];
        if entry.state == State::Done
            || entry.images == 0
            || (entry.pulled | entry.failed) & entry.images != entry.images
        {
            return Vec::new();
        }
        if entry.failed == 0 && entry.not_sent == 0 {
            self.conclude(i, Outcome::Succeeded, String::new(), Some(now));
            return Vec::new();
        }
        let reason = self.image_reason(i).unwrap_or_default();
        let running = entry.state == State::Created && entry.failed != 0;
        let job = entry.job.clone();
        self.conclude(i, Outcome::Failed, reason, Some(now));
        if running { vec![Action::DeleteJob(job)] } else { Vec::new() }
    }

    /// "image 1 (...): message; image 2: ..." for a node's failed and held-back images.
    fn image_reason(&self, i: usize) -> Option<String> {
        let entry = &self.nodes[i];
        let bad = entry.failed | entry.not_sent;
        let parts: Vec<String> = entry
            .notes
            .iter()
            .filter(|n| bad & (1 << n.image) != 0)
            .map(|n| format!("image {}: {}", n.image + 1, n.message))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The clock: pull errors past their grace fail, nodes past their deadline time out.
    pub fn on_tick(&mut self, now: Timestamp) -> Vec<Action> {
        let grace = secs(self.policy.pull_error_grace);
        let deadline = secs(self.policy.node_deadline);
        let mut actions = Vec::new();
        for i in 0..self.nodes.len() {
            let entry = &self.nodes[i];
            if entry.state != State::Created {
                continue;
            }
            let expired: Vec<u8> = entry
                .failing
                .iter()
                .filter(|(_, since)| now.duration_since(*since) >= grace)
                .map(|(img, _)| *img)
                .collect();
            for img in expired {
                actions.extend(self.fail_image(i, img, now));
            }
            let entry = &self.nodes[i];
            if entry.state != State::Created {
                continue;
            }
            if let Some((since, message)) = &entry.helper_failing
                && now.duration_since(*since) >= grace
            {
                let reason = format!("the helper image cannot be pulled (HELPER_IMAGE): {message}");
                let job = entry.job.clone();
                self.conclude(i, Outcome::Failed, reason, Some(now));
                actions.push(Action::DeleteJob(job));
                continue;
            }
            let base = entry.started_at.or(entry.created_at).unwrap_or(now);
            if now.duration_since(base) >= deadline {
                let mut reason = format!(
                    "no verdict {}s after the Job {} (DEADLINE_SECONDS + WAIT_GRACE_SECONDS and slack for the Job controller)",
                    self.policy.node_deadline.as_secs(),
                    if entry.started_at.is_some() { "started" } else { "was created" }
                );
                if let Some(problem) = &entry.last_problem {
                    reason.push_str(&format!("; last pod problem: {problem}"));
                }
                let job = entry.job.clone();
                self.conclude(i, Outcome::TimedOut, reason, Some(now));
                actions.push(Action::DeleteJob(job));
            }
        }
        actions
    }

    /// A signal: no more creates. What is open stays open until [`Tracker::verdicts`].
    pub fn interrupt(&mut self) {
        self.interrupted = true;
    }

    fn conclude(&mut self, i: usize, outcome: Outcome, reason: String, now: Option<Timestamp>) {
        let entry = &mut self.nodes[i];
        if entry.state == State::Done {
            return;
        }
        match entry.state {
            State::Created => {
                self.active -= 1;
                if entry.started_at.is_none() {
                    self.unstarted -= 1;
                }
            }
            State::Creating => {
                // Decided by the watch before the create returned; on_create will find it Done.
                self.creating -= 1;
                self.unstarted -= 1;
            }
            _ => {}
        }
        entry.state = State::Done;
        entry.finished_at = now;
        entry.failing.clear();
        if outcome.is_success() {
            for (idx, count) in self.image_successes.iter_mut().enumerate() {
                if entry.pulled & (1 << idx) != 0 {
                    *count += 1;
                }
            }
        } else if outcome != Outcome::NotStarted {
            self.logged_failures += 1;
            if self.logged_failures <= MAX_LOGGED_FAILURES {
                warn!(node = %entry.name, job = %entry.job, outcome = outcome.label(), %reason, "node did not succeed");
            } else if self.logged_failures == MAX_LOGGED_FAILURES + 1 {
                warn!("more nodes did not succeed; the report lists them all");
            }
        }
        entry.verdict = Some((outcome, reason));
        let seed = entry.seed;
        self.done += 1;
        if seed && self.wave == Wave::Seeding {
            self.seed_concluded(now.unwrap_or_else(Timestamp::now));
        }
    }

    fn seed_concluded(&mut self, now: Timestamp) {
        let seeds = || self.nodes.iter().filter(|e| e.seed);
        if seeds().any(|e| e.state != State::Done) {
            return;
        }
        let total = seeds().count();
        let ok = seeds().filter(|e| e.verdict.as_ref().is_some_and(|(o, _)| o.is_success())).count();
        self.wave = Wave::Open;
        if ok == 0 {
            let reason = format!("seed wave failed: none of the {total} seed nodes succeeded");
            warn!(%reason, "stopping: the rest of the nodes are not started");
            self.stop(Outcome::NotStarted, reason, now);
        } else {
            info!(seeds = total, succeeded = ok, remaining = self.queue.len(), "seed wave done; fanning out");
        }
    }

    /// Every node's verdict. Open nodes get the verdict of an interrupted run: queued ones
    /// `not-started`, created ones `unfinished`.
    pub fn verdicts(&mut self, now: Timestamp) -> Vec<Verdict> {
        let interrupted = "run interrupted before its Job was created".to_string();
        while let Some(i) = self.queue.pop_front() {
            self.conclude(i as usize, Outcome::NotStarted, interrupted.clone(), None);
        }
        for i in 0..self.nodes.len() {
            let reason = match self.nodes[i].state {
                State::Creating => "run interrupted while its create request was in flight",
                State::Created => "run interrupted before the Job finished",
                State::Queued => "run interrupted before its Job was created",
                State::Done => continue,
            };
            self.conclude(
                i,
                if self.nodes[i].state == State::Queued { Outcome::NotStarted } else { Outcome::Unfinished },
                reason.into(),
                Some(now),
            );
        }
        self.nodes.iter().map(|e| self.verdict_of(e)).collect()
    }

    fn verdict_of(&self, e: &Entry) -> Verdict {
        let (outcome, reason) = e.verdict.clone().expect("every node is concluded");
        let images = (0..self.policy.image_count)
            .map(|idx| {
                let bit = 1 << idx;
                let result = if e.pulled & bit != 0 {
                    ImageResult::Pulled
                } else if e.present & bit != 0 {
                    ImageResult::Present
                } else if e.failed & bit != 0 {
                    ImageResult::Failed
                } else if e.not_sent & bit != 0 {
                    ImageResult::NotSent
                } else {
                    ImageResult::Unknown
                };
                let message = match result {
                    ImageResult::Failed | ImageResult::NotSent => {
                        e.notes.iter().find(|n| n.image as usize == idx).map(|n| n.message.clone())
                    }
                    _ => None,
                };
                ImageVerdict { index: idx, result, message }
            })
            .collect();
        let duration = match (e.created_at, e.finished_at) {
            (Some(c), Some(f)) => Some(Duration::try_from(f.duration_since(c)).unwrap_or_default()),
            _ => None,
        };
        let has_job = e.created_at.is_some();
        Verdict { node: e.name.clone(), job: has_job.then(|| e.job.clone()), outcome, reason, duration, images }
    }
}

fn note(entry: &mut Entry, image: u8, message: &str) {
    match entry.notes.iter_mut().find(|n| n.image == image) {
        // ErrImagePull says why; the ImagePullBackOff that follows only says "Back-off".
        Some(n) if message.starts_with("ImagePullBackOff") && !n.message.starts_with("ImagePullBackOff") => {}
        Some(n) => n.message = message.to_string(),
        None => entry.notes.push(ImageNote { image, message: message.to_string() }),
    }
}

/// The first wave: `k` nodes spread across zones (round-robin over the zones in name order, nodes in
/// name order within a zone); nodes without a zone form one group.
pub fn plan_seeds(nodes: &[u32], zones: &[Option<String>], k: usize) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut groups: std::collections::BTreeMap<Option<&str>, VecDeque<u32>> = Default::default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::tests::job;

    fn node(name: &str, zone: Option<&str>) -> EligibleNode {
        EligibleNode { name: name.into(), tolerations: 0, images: 0b1, zone: zone.map(Into::into) }
    }

    fn tracker(policy: Policy, names: &[&str]) -> Tracker {
        Tracker::new(policy, names.iter().map(|n| node(n, None)).collect(), |n| format!("job-{n}"))
    }

    fn created() -> CreateResult {
        CreateResult::Created { created_at: Some(Timestamp::now()) }
    }

    fn names(nodes: &[EligibleNode]) -> Vec<&str> {
        nodes.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn seeds_spread_across_zones() {
        let zones: Vec<Option<String>> =
            ["a", "a", "a", "b", "b", "c"].iter().map(|z| Some(z.to_string())).chain([None]).collect();
        let nodes: Vec<u32> = (0..7).collect();
        assert_eq!(plan_seeds(&nodes, &zones, 3), [6, 0, 3], "one per zone (no zone is a group of its own) first");
        assert_eq!(plan_seeds(&nodes, &zones, 5), [6, 0, 3, 5, 1], "nodes without a zone are one group");
        assert_eq!(plan_seeds(&nodes, &zones, 0), Vec::<u32>::new());
        assert_eq!(plan_seeds(&nodes, &zones, 99).len(), 7);
    }

    #[test]
    fn create_concurrency_and_max_parallel_bound_the_creates() {
        let policy = Policy { create_concurrency: 2, max_parallel: Some(3), ..Policy::default() };
        let mut t = tracker(policy, &["a", "b", "c", "d", "e"]);
        let now = Timestamp::now();
        assert_eq!(names(&t.next_creates(now)), ["a", "b"], "two creates in flight");
        assert!(t.next_creates(now).is_empty());
        t.on_create("job-a", created(), now);
        t.on_create("job-b", created(), now);
        assert_eq!(names(&t.next_creates(now)), ["c"], "three pulling at most");
        t.on_create("job-c", created(), now);
        assert!(t.next_creates(now).is_empty());
        t.on_job_event(Event::Apply(job("job-a", &[("Complete", "True", "", "")])), now);
        assert_eq!(names(&t.next_creates(now)), ["d"], "the next node goes when one concludes");
        assert_eq!(t.progress(), Progress { total: 5, queued: 1, creating: 1, pulling: 2, done: 1, failed: 0 });
    }

    #[test]
    fn the_seed_wave_gates_the_fan_out_and_a_failed_wave_stops_the_run() {
        let policy = Policy { seed_nodes: 2, ..Policy::default() };
        let now = Timestamp::now();
        let mut t = tracker(policy.clone(), &["a", "b", "c", "d"]);
        assert_eq!(names(&t.next_creates(now)), ["a", "b"]);
        t.on_create("job-a", created(), now);
        t.on_create("job-b", created(), now);
        t.on_job_event(Event::Apply(job("job-a", &[("Complete", "True", "", "")])), now);
        assert!(t.next_creates(now).is_empty(), "one seed is still pulling");
        t.on_job_event(Event::Apply(job("job-b", &[("Failed", "True", "BackoffLimitExceeded", "")])), now);
        assert_eq!(names(&t.next_creates(now)), ["c", "d"], "one seed succeeded: fan out");

        let mut t = tracker(policy, &["a", "b", "c", "d"]);
        t.next_creates(now);
        t.on_create("job-a", created(), now);
        t.on_create("job-b", CreateResult::Denied("denied".into()), now);
        t.on_job_event(Event::Apply(job("job-a", &[("Failed", "True", "BackoffLimitExceeded", "")])), now);
        assert!(t.is_done());
        let verdicts = t.verdicts(now);
        assert_eq!(verdicts[2].outcome, Outcome::NotStarted);
        assert!(verdicts[3].reason.starts_with("seed wave failed: none of the 2 seed nodes succeeded"));
    }

    #[test]
    fn identical_denials_stop_the_creates_and_transient_errors_retry() {
        let policy = Policy { create_concurrency: 1, ..Policy::default() };
        let now = Timestamp::now();
        let mut t = tracker(policy, &["a", "b", "c", "d", "e"]);
        for (node, used) in [("a", 1), ("b", 2), ("c", 3)] {
            assert_eq!(names(&t.next_creates(now)), [node]);
            let message = format!("jobs.batch \"job-{node}\" is forbidden: exceeded quota: q, used: {used}");
            t.on_create(&format!("job-{node}"), CreateResult::Denied(message), now);
        }
        assert!(t.next_creates(now).is_empty() && t.is_done(), "the same denial three times: stop");
        let verdicts = t.verdicts(now);
        assert!(verdicts[4].reason.starts_with("not attempted: the last 3 creates were refused the same way"));

        let mut t = tracker(Policy { create_concurrency: 1, ..Policy::default() }, &["a"]);
        for attempt in 1..=3 {
            assert_eq!(names(&t.next_creates(now)), ["a"], "attempt {attempt}");
            t.on_create("job-a", CreateResult::Transient("timed out".into()), now);
        }
        assert!(t.is_done());
        assert!(t.verdicts(now)[0].reason.starts_with("gave up after 3 attempts"));
    }

    #[test]
    fn a_relist_that_misses_a_confirmed_job_means_it_was_deleted() {
        let now = Timestamp::now();
        let mut t = tracker(Policy::default(), &["a", "b"]);
        t.next_creates(now);
        t.on_create("job-a", created(), now);
        t.on_job_event(Event::Init, now);
        t.on_create("job-b", created(), now); // confirmed during the relist: not judged by it
        t.on_job_event(Event::InitDone, now);
        let verdicts = t.verdicts(now);
        assert_eq!(verdicts[0].outcome, Outcome::Deleted);
        assert_eq!(verdicts[1].outcome, Outcome::Unfinished);
    }

    #[test]
    fn a_job_seen_before_its_create_returns_is_judged_after() {
        let now = Timestamp::now();
        let mut t = tracker(Policy::default(), &["a"]);
        t.next_creates(now);
        t.on_job_event(Event::Apply(job("job-a", &[("Complete", "True", "", "")])), now);
        assert!(!t.is_done(), "it might be another run's Job until the create says");
        t.on_create("job-a", created(), now);
        assert!(t.is_done());
        assert_eq!(t.verdicts(now)[0].outcome, Outcome::Succeeded);
    }

    #[test]
    fn a_job_deleted_before_its_create_returns_is_deleted_after() {
        let now = Timestamp::now();
        let mut t = tracker(Policy::default(), &["a"]);
        t.next_creates(now);
        t.on_job_event(Event::Apply(job("job-a", &[])), now);
        t.on_job_event(Event::Delete(job("job-a", &[])), now);
        t.on_create("job-a", created(), now);
        assert!(t.is_done(), "the watch already said the Job is gone");
        assert_eq!(t.verdicts(now)[0].outcome, Outcome::Deleted);
    }

    #[test]
    fn pacing_follows_the_job_controllers_start_rate() {
        let policy = Policy { create_concurrency: 4, ..Policy::default() };
        let mut t = tracker(policy, &["a"]);
        let start = Timestamp::now();
        assert_eq!(t.pace_limit(start), 8, "before any start: twice the create concurrency");
        for i in 0..100 {
            t.starts.push_back(start + SignedDuration::from_millis(i * 20));
        }
        let now = start + SignedDuration::from_secs(2);
        assert_eq!(t.pace_limit(now), 250, "50 starts/s x 5 s");
        t.starts.truncate(1);
        assert_eq!(t.pace_limit(now), 4, "a slow Job controller: never below the create concurrency");
    }

    #[test]
    fn already_present_nodes_get_no_job() {
        let mut present = node("p", None);
        present.images = 0;
        let mut t = Tracker::new(Policy::default(), vec![present, node("q", None)], |n| format!("job-{n}"));
        assert_eq!(names(&t.next_creates(Timestamp::now())), ["q"]);
        let verdicts = t.verdicts(Timestamp::now());
        assert_eq!(verdicts[0].outcome, Outcome::AlreadyPresent);
        assert_eq!(verdicts[0].images[0].result, ImageResult::Present);
        assert_eq!(verdicts[0].job, None);
    }
}
