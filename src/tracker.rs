//! Step 5 of the data path: the run as a synchronous state machine, and every decision of it.
//!
//! Every eligible node is in it from the start. It is fed [`Input`]s with the time they happened
//! (watch events, watch errors, create results, the clock, signals) and answers with [`Action`]s
//! (create this puller, delete that one); it reads no clock and does no I/O, so a run is a sequence of
//! `(time, input)` and is tested as one (`tracker/scenarios.rs`). It decides:
//! - when to create: not before both watches have listed (within [`Policy::watch_ready_timeout`]),
//!   within `CREATE_CONCURRENCY`, `MAX_PARALLEL`, the seed wave and the pacing to the Job controller's
//!   measured start rate, never after a signal, an identical-denial streak or a failed seed wave;
//! - what a create result means ([`crate::error`] classifies the error, [`crate::pullers`] decides
//!   adoption): created, adopted, refused, denied, worth retrying, or fatal for the run;
//! - each node's verdict, from its pod first (per image: pulled, pull error past its grace, invalid),
//!   then its Job's conditions, its deletion, the node's deletion, and the node deadline of [`Policy`];
//!   which images the breaker holds back;
//! - what happens after a verdict: a node with the startup taint loses it once every image is there;
//!   which pullers are deleted and which are kept (`KEEP_LAST_PULLER`), including those earlier runs
//!   left ([`Leftover`]);
//! - when the run ends and how ([`Ending`]): every node decided, a signal (after draining the creates in
//!   flight, within [`Policy::drain`]), or a fatal API error.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::watcher::Event;
use tracing::{debug, info, warn};

use crate::cluster::Created;
use crate::error::{Error, ErrorClass, Result};
use crate::nodes::{EligibleNode, ImageMask, all_images};
use crate::outcome::{
    ContainerView, Outcome, PodView, is_permanent_pull_error, outcome_from_job, owning_job, pod_problem, read_pod,
};
use crate::policy::Policy;
use crate::pullers::{Adoption, PullerTemplate};
use crate::pullers::{Leftover, LeftoverState, Puller, PullerKind};
use crate::signal::Signal;

#[cfg(test)]
mod scenarios;

/// What happened, as the run loop feeds it in (with the time it happened).
// One input lives from the select that made it to the step that takes it; none is ever stored.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input {
    /// An event of the run's label-selected Job watch.
    Jobs(Event<Job>),
    /// An event of the run's label-selected pod watch.
    Pods(Event<Pod>),
    /// A watch failed ([`Error::watch`], or [`Error::WatchEnded`]).
    WatchFailed(Error),
    /// The create request for the puller named `name` answered.
    Created { name: String, result: Result<Created<Puller>> },
    /// The clock ([`Policy::tick`]).
    Tick,
    /// SIGTERM or SIGINT: no more creates, drain, a partial report.
    Signal(Signal),
    /// The startup taint's removal from `node` answered: removed (`true`), already gone (`false`).
    TaintRemoved { node: String, result: Result<bool> },
}

/// What the tracker asks the run loop to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create this puller; its answer comes back as [`Input::Created`].
    Create(Puller),
    /// Delete a puller (best effort): a concluded one whose pod would go on retrying a pull, one that
    /// is not kept, or an older one a success replaces. `uid`: only that incarnation (an evicted
    /// pod, so that a late delete cannot reach the replacement of the same name).
    Delete { kind: PullerKind, name: String, uid: Option<String> },
    /// Every image is on this node: remove the startup taint; the answer comes back as
    /// [`Input::TaintRemoved`].
    RemoveTaint { node: String },
}

/// What became of a node's startup taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaintAction {
    /// Removed by this run, once every image was on the node.
    Removed,
    /// Gone already when the run came to remove it (another run, or someone else).
    AlreadyGone,
    /// Left on the node: why (the node did not succeed, the removal failed, the run stopped first).
    Kept(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Taint {
    /// The node does not carry the startup taint.
    None,
    /// It does; nothing decided yet.
    Carried,
    /// Its removal is in flight.
    Removing,
    Done(TaintAction),
}

/// How the run ended.
#[derive(Debug)]
pub enum Ending {
    /// Every node has a verdict.
    Done,
    /// A signal stopped it: what was open is `unfinished`, what was queued `not-started`.
    Interrupted(Signal),
    /// An API error stopped it (exit 3, after the report).
    Fatal(Error),
}

/// A node's place in the run. Counted per state in one place ([`Tracker::set`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Queued,
    Creating,
    /// Created, not yet started by the Job controller (no `startTime`, no pod).
    Unstarted,
    /// Created and started, no verdict yet.
    Running,
    Done,
}

const STATES: usize = 5;

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
    /// Its blocking taints (the run's taint table): its puller tolerates exactly these.
    taints: Box<[u16]>,
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
    early_pod: Option<Box<Event<Pod>>>,
    /// `PULLER_KIND=pod`: its pod was evicted or preempted and is being deleted; once it is gone,
    /// a new one is created with what is left of the pull deadline.
    replacing: bool,
    /// `PULLER_KIND=pod`: the replacement is not created before this time (see [`REUSE_DELAY`]).
    not_before: Option<Timestamp>,
    taint: Taint,
    /// The deletion of its own puller was asked for.
    deleting: bool,
    /// Successful pullers of earlier runs on this node: deleted once this run's puller succeeds.
    older: Vec<(PullerKind, String)>,
    /// Those this run deleted.
    replaced: Vec<String>,
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
    /// The node carried the startup taint: what became of it.
    pub taint: Option<TaintAction>,
    /// Its puller stays after the run (`KEEP_LAST_PULLER`, and it succeeded).
    pub kept: bool,
    /// Pullers of earlier runs on the node that this run's success replaced (deleted).
    pub replaced: Vec<String>,
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

/// Everything a finished run hands to the report.
#[derive(Debug)]
pub struct RunResult {
    pub ending: Ending,
    pub verdicts: Vec<Verdict>,
    pub lag: LagStats,
    /// Images the circuit breaker stopped: (image index, reason said once).
    pub held_back: Vec<(usize, String)>,
}

/// How long the name of an evicted puller pod rests before its replacement takes it. Whoever
/// deletes the old pod by name alone (a kubelet sends its UID as a precondition, kwok does not)
/// must not reach the replacement: seen with kwok, which deletes twice, milliseconds apart.
const REUSE_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Tracker {
    policy: Policy,
    template: PullerTemplate,
    nodes: Vec<Entry>,
    by_name: HashMap<String, u32>,
    queue: VecDeque<u32>,
    counts: [usize; STATES],
    wave: Wave,
    started: Timestamp,
    /// The initial lists of the Job and the pod watch are done: creates may go.
    jobs_listed: bool,
    pods_listed: bool,
    /// Why creates stopped for good (denial streak, seed wave failed): the queued nodes' reason.
    stopped: Option<(Outcome, String)>,
    /// The first signal and until when creates in flight may answer.
    interrupted: Option<(Signal, Timestamp)>,
    ending: Option<Ending>,
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
    all_created_logged: bool,
    /// Startup-taint removals in flight.
    untainting: usize,
    /// The warning that the run will not fit its own Job's deadline was given.
    deadline_warned: bool,
    /// What to do, gathered while an input is folded in; handed out by [`Tracker::step`].
    outbox: Vec<Action>,
}

/// Nodes logged one by one when they fail; the report has all of them.
const MAX_LOGGED_FAILURES: usize = 50;

fn span(d: Duration) -> SignedDuration {
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
    /// Every eligible node is tracked from `now`, the start of the run loop. Nodes with nothing left
    /// to pull (`SKIP_PRESENT`) are `already-present` at once; the seed wave, if any, is planned. The
    /// pullers earlier runs left are sorted (see [`Tracker::sort_leftovers`]); `gone` says whether a
    /// node is known to no longer exist.
    pub fn new(
        policy: Policy,
        template: PullerTemplate,
        eligible: Vec<EligibleNode>,
        leftovers: Vec<Leftover>,
        gone: impl Fn(&str) -> bool,
        now: Timestamp,
    ) -> Tracker {
        let count = policy.image_count;
        let all = all_images(count);
        let mut t = Tracker {
            nodes: Vec::with_capacity(eligible.len()),
            by_name: HashMap::with_capacity(eligible.len()),
            queue: VecDeque::with_capacity(eligible.len()),
            counts: [0; STATES],
            wave: Wave::Open,
            started: now,
            // PULLER_KIND=pod watches no Jobs.
            jobs_listed: template.kind == PullerKind::Pod,
            pods_listed: false,
            stopped: None,
            interrupted: None,
            ending: None,
            confirmed: 0,
            denials: (String::new(), 0),
            image_failures: vec![0; count],
            image_successes: vec![0; count],
            broken: vec![None; count],
            starts: VecDeque::new(),
            lags: Vec::new(),
            relist: None,
            logged_failures: 0,
            all_created_logged: false,
            untainting: 0,
            deadline_warned: false,
            outbox: Vec::new(),
            policy,
            template,
        };
        let mut zones: Vec<Option<String>> = Vec::with_capacity(eligible.len());
        for node in eligible {
            let index = t.nodes.len() as u32;
            let job = t.template.puller_name(&node.name);
            t.by_name.insert(job.clone(), index);
            zones.push(node.zone);
            t.nodes.push(Entry {
                name: node.name,
                job,
                taints: node.taints,
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
                replacing: false,
                not_before: None,
                taint: if node.startup_tainted { Taint::Carried } else { Taint::None },
                deleting: false,
                older: Vec::new(),
                replaced: Vec::new(),
            });
        }
        t.sort_leftovers(leftovers, gone);
        t.counts[State::Queued as usize] = t.nodes.len();
        let pulling: Vec<u32> = (0..t.nodes.len() as u32).filter(|&i| t.nodes[i as usize].images != 0).collect();
        let present: Vec<usize> = (0..t.nodes.len()).filter(|&i| t.nodes[i].images == 0).collect();
        for i in present {
            t.conclude(i, Outcome::AlreadyPresent, "every image is already on the node".into(), now);
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
        if t.nodes.is_empty() {
            warn!("no eligible node: nothing to pre-pull");
        }
        t.settle_ending(now);
        t
    }

    /// Fold one input in, at `now`; answers what to do.
    pub fn step(&mut self, now: Timestamp, input: Input) -> Vec<Action> {
        if self.ending.is_some() {
            return Vec::new();
        }
        match input {
            Input::Jobs(event) => self.on_job_event(event, now),
            Input::Pods(event) => self.on_pod_event(event, now),
            Input::WatchFailed(error) => self.on_watch_error(error),
            Input::Created { name, result } => self.on_create(&name, result, now),
            Input::Tick => self.on_tick(now),
            Input::Signal(signal) => {
                if self.interrupted.is_none() {
                    self.interrupted = Some((signal, now + span(self.policy.drain)));
                    warn!(
                        signal = signal.name(),
                        "interrupted: no more Jobs are created; created Jobs are left to finish and to their TTL"
                    );
                }
            }
            Input::TaintRemoved { node, result } => self.on_taint_removed(&node, result),
        }
        if self.ending.is_none() {
            self.next_creates(now);
        }
        self.settle_ending(now);
        std::mem::take(&mut self.outbox)
    }

    /// What the tracker asks for before any input (deleting what earlier runs left, removing the
    /// startup taint from nodes that already hold every image).
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox)
    }

    /// How the run ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    /// The run's result: every node's verdict (open nodes get the verdict of an interrupted run:
    /// queued ones `not-started`, created ones `unfinished`), how it ended, the Job start lag and the
    /// images held back.
    pub fn finish(mut self, now: Timestamp) -> RunResult {
        let noun = self.template.kind.noun();
        let not_created = format!("run interrupted before its {noun} was created");
        while let Some(i) = self.queue.pop_front() {
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
            if matches!(entry.taint, Taint::Carried | Taint::Removing) {
                let why = match &entry.verdict {
                    Some((outcome, _)) if !outcome.is_success() => {
                        format!("the node did not succeed ({})", outcome.label())
                    }
                    _ => "the run stopped before removing it".into(),
                };
                entry.taint = Taint::Done(TaintAction::Kept(why));
            }
        }
        let verdicts = self.nodes.iter().map(|e| self.verdict_of(e)).collect();
        let held_back =
            self.broken.iter().enumerate().filter_map(|(i, b)| b.as_ref().map(|b| (i, b.clone()))).collect();
        RunResult { ending: self.ending.take().unwrap_or(Ending::Done), verdicts, lag: self.lag(), held_back }
    }

    pub fn total(&self) -> usize {
        self.nodes.len()
    }

    fn count(&self, state: State) -> usize {
        self.counts[state as usize]
    }

    /// Created, no verdict yet.
    fn active(&self) -> usize {
        self.count(State::Unstarted) + self.count(State::Running)
    }

    /// Sent to the Job controller and not started by it yet (pacing).
    fn unstarted(&self) -> usize {
        self.count(State::Creating) + self.count(State::Unstarted)
    }

    /// The one place a node changes state, so the counts follow.
    fn set(&mut self, i: usize, to: State) {
        let from = self.nodes[i].state;
        self.counts[from as usize] -= 1;
        self.counts[to as usize] += 1;
        self.nodes[i].state = to;
    }

    pub fn progress(&self) -> Progress {
        let failed = self.nodes.iter().filter(|e| e.verdict.as_ref().is_some_and(|(o, _)| !o.is_success())).count();
        Progress {
            total: self.nodes.len(),
            queued: self.queue.len(),
            creating: self.count(State::Creating),
            pulling: self.active(),
            done: self.count(State::Done),
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

    /// No further create will be sent: interrupted, stopped, or nothing left queued.
    fn creating_finished(&self) -> bool {
        self.interrupted.is_some() || self.stopped.is_some() || self.queue.is_empty()
    }

    /// Decide whether the run is over: a signal (once the creates in flight answered or the drain
    /// time is up), or every node decided.
    fn settle_ending(&mut self, now: Timestamp) {
        if self.ending.is_some() {
            return;
        }
        let all_done = self.count(State::Done) == self.nodes.len() && self.untainting == 0;
        if let Some((signal, until)) = self.interrupted {
            if all_done || (self.count(State::Creating) == 0 && self.untainting == 0) || now >= until {
                self.ending = Some(Ending::Interrupted(signal));
            }
        } else if all_done {
            self.ending = Some(Ending::Done);
        }
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

    /// The pullers to create now (their nodes become `Creating`), within every limit.
    fn next_creates(&mut self, now: Timestamp) {
        if !(self.jobs_listed && self.pods_listed) || self.interrupted.is_some() || self.stopped.is_some() {
            return;
        }
        let pace = self.pace_limit(now);
        while let Some(&next) = self.queue.front() {
            let entry = &self.nodes[next as usize];
            if entry.not_before.is_some_and(|t| now < t) {
                break;
            }
            let creating = self.count(State::Creating);
            let parallel_full = self.policy.max_parallel.is_some_and(|m| creating + self.active() >= m);
            // Pods have no Job controller to pace to: the create concurrency and MAX_PARALLEL bound them.
            let paced = self.template.kind == PullerKind::Job && self.unstarted() >= pace;
            if creating >= self.policy.create_concurrency
                || parallel_full
                || paced
                || (self.wave == Wave::Seeding && !entry.seed)
            {
                break;
            }
            self.queue.pop_front();
            let i = next as usize;
            self.set(i, State::Creating);
            let entry = &self.nodes[i];
            let node = EligibleNode {
                name: entry.name.clone(),
                taints: entry.taints.clone(),
                images: entry.images,
                ..Default::default()
            };
            let puller = match entry.started_at {
                // A replacement pod: the pull deadline left since the first pod started.
                Some(first) if self.template.kind == PullerKind::Pod => {
                    let left = self.policy.pull_deadline.as_secs() as i64 - now.duration_since(first).as_secs();
                    Puller::Pod(Box::new(self.template.pod(&node, left.max(1))))
                }
                _ => self.template.build(&node),
            };
            self.outbox.push(Action::Create(puller));
        }
        if !self.all_created_logged && self.creating_finished() && self.count(State::Creating) == 0 {
            self.all_created_logged = true;
            let elapsed_ms = now.duration_since(self.started).as_millis().max(0) as u64;
            info!(elapsed_ms, done = self.count(State::Done), "no more creates to send");
        }
    }

    fn on_watch_error(&mut self, error: Error) {
        if error.class() == ErrorClass::Fatal {
            self.ending = Some(Ending::Fatal(error));
        } else {
            warn!("{error}; the watch retries with backoff");
        }
    }

    /// A create request for the puller named `name` answered.
    fn on_create(&mut self, name: &str, result: Result<Created<Puller>>, now: Timestamp) {
        let Some(&i) = self.by_name.get(name) else { return };
        let i = i as usize;
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
                self.denials = (String::new(), 0);
                let created_at = puller.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
                self.confirm(i, created_at);
                // The watches may have shown the puller and its pod before the create returned.
                if let Some(event) = self.nodes[i].early_job.take() {
                    self.on_job_event(*event, now);
                }
                if let Some(event) = self.nodes[i].early_pod.take() {
                    self.on_pod_event(*event, now);
                }
            }
            Ok(Created::AlreadyExists(puller)) => match self.template.adoption(puller.meta(), node) {
                Adoption::Adopt(images) => {
                    self.denials = (String::new(), 0);
                    let created_at = puller.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
                    let entry = &mut self.nodes[i];
                    entry.early_job = None;
                    let early_pod = entry.early_pod.take();
                    entry.present |= entry.images & !images;
                    entry.images &= images;
                    info!(node, puller = %entry.job, "a puller of this run with the same images exists; adopting it");
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
            Err(Denial::Denied(message)) => {
                let key = gist(&message);
                if self.denials.0 == key {
                    self.denials.1 += 1;
                } else {
                    self.denials = (key, 1);
                }
                warn!(node, %message, "the apiserver refused this node's puller");
                self.conclude(i, Outcome::NotCreated, message.clone(), now);
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
    }

    /// A create that did not go through (transient error, or the Job vanished on a 409): queue the
    /// node again, up to [`Policy::max_create_attempts`].
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
            self.queue.push_back(i as u32);
        }
    }

    fn confirm(&mut self, i: usize, created_at: Timestamp) {
        self.confirmed += 1;
        let entry = &mut self.nodes[i];
        entry.confirmed = self.confirmed;
        // A replacement pod keeps the node's first creation: the deadlines count from there.
        entry.created_at.get_or_insert(created_at);
        let state = if entry.started_at.is_some() { State::Running } else { State::Unstarted };
        self.set(i, state);
    }

    /// The Job controller started node `i`'s Job (its `startTime`, or its first pod).
    fn started(&mut self, i: usize, at: Timestamp, now: Timestamp) {
        let entry = &mut self.nodes[i];
        if entry.started_at.is_some() || entry.state != State::Unstarted {
            return;
        }
        entry.started_at = Some(at);
        if let Some(created) = entry.created_at {
            let lag = at.duration_since(created).as_millis().clamp(0, u32::MAX as i128) as u32;
            self.lags.push(lag);
        }
        self.set(i, State::Running);
        self.starts.push_back(now);
        let window = span(self.policy.rate_window);
        while self.starts.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.starts.pop_front();
        }
    }

    /// Stop creating for good; the queued nodes get `outcome` with `reason`.
    fn stop(&mut self, outcome: Outcome, reason: String, now: Timestamp) {
        self.stopped = Some((outcome, reason.clone()));
        while let Some(i) = self.queue.pop_front() {
            self.conclude(i as usize, outcome, reason.clone(), now);
        }
    }

    /// Fold one event of the run's Job watch in.
    fn on_job_event(&mut self, event: Event<Job>, now: Timestamp) {
        match event {
            Event::Init => self.relist = Some((HashSet::new(), self.confirmed)),
            Event::InitApply(job) => {
                self.relisted(job.metadata.name.as_deref());
                self.apply_job(&job, now, false)
            }
            Event::Apply(job) => self.apply_job(&job, now, false),
            Event::Delete(job) => self.apply_job(&job, now, true),
            Event::InitDone => {
                self.jobs_listed = true;
                self.relist_done(now);
            }
        }
    }

    /// The puller watch (Jobs, or pods for `PULLER_KIND=pod`) relists: it shows puller `name`.
    fn relisted(&mut self, name: Option<&str>) {
        if let (Some((seen, _)), Some(&i)) = (self.relist.as_mut(), name.and_then(|n| self.by_name.get(n))) {
            seen.insert(i);
        }
    }

    /// The relist is complete: a puller confirmed before it began and missing from it is gone, as
    /// if its delete event had come (a relist sends none): a disrupted pod waiting to go is
    /// replaced, any other puller is `deleted`.
    fn relist_done(&mut self, now: Timestamp) {
        let Some((seen, before)) = self.relist.take() else { return };
        let gone: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let e = &self.nodes[i];
                matches!(e.state, State::Unstarted | State::Running)
                    && e.confirmed <= before
                    && !seen.contains(&(i as u32))
            })
            .collect();
        for i in gone {
            if self.nodes[i].replacing {
                self.replace(i, now);
            } else {
                self.nodes[i].deleting = true;
                self.conclude(i, Outcome::Deleted, self.deleted_reason(), now);
            }
        }
    }

    fn deleted_reason(&self) -> String {
        match self.template.kind {
            PullerKind::Job => "Job deleted before it finished".into(),
            PullerKind::Pod => "pod deleted before it finished".into(),
        }
    }

    fn apply_job(&mut self, job: &Job, now: Timestamp, deleted: bool) {
        let Some(&i) = job.metadata.name.as_ref().and_then(|n| self.by_name.get(n)) else { return };
        let i = i as usize;
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
        if let Some((outcome, reason)) = outcome_from_job(job, self.nodes[i].last_problem.as_deref()) {
            if outcome == Outcome::Succeeded {
                let entry = &mut self.nodes[i];
                entry.pulled |= entry.images & !entry.failed;
                self.settle(i, now);
                if self.nodes[i].state != State::Done {
                    self.conclude(i, Outcome::Succeeded, String::new(), now);
                }
                return;
            }
            let reason = self.image_reason(i).unwrap_or(reason);
            self.conclude(i, outcome, reason, now);
        } else if deleted {
            self.nodes[i].deleting = true;
            self.conclude(i, Outcome::Deleted, "Job deleted before it finished".into(), now);
        }
    }

    /// Fold one event of the run's pod watch in.
    fn on_pod_event(&mut self, event: Event<Pod>, now: Timestamp) {
        let bare = self.template.kind == PullerKind::Pod;
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
                self.pods_listed = true;
                if bare {
                    self.relist_done(now);
                }
                return;
            }
            Event::Init if bare => {
                self.relist = Some((HashSet::new(), self.confirmed));
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
        let Some(&i) = puller.and_then(|p| self.by_name.get(p)) else { return };
        let i = i as usize;
        match self.nodes[i].state {
            State::Unstarted | State::Running => {}
            State::Creating => {
                self.nodes[i].early_pod = Some(Box::new(if deleted { Event::Delete(pod) } else { Event::Apply(pod) }));
                return;
            }
            State::Queued | State::Done => return,
        }
        if deleted {
            if self.nodes[i].replacing {
                self.replace(i, now);
            } else {
                self.nodes[i].deleting = true;
                self.conclude(i, Outcome::Deleted, self.deleted_reason(), now);
            }
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
        let view = read_pod(&pod, self.policy.image_count);
        if let Some(problem) = pod_problem(&pod) {
            if self.nodes[i].last_problem.as_deref() != Some(problem.as_str()) {
                warn!(node = %self.nodes[i].name, %problem, "puller pod has a problem");
            }
            self.nodes[i].last_problem = Some(problem);
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
            // Evicted or preempted: the Job's pod failure policy makes a new pod; a bare pod is
            // replaced by the run once it is gone, within the same deadline.
            let entry = &mut self.nodes[i];
            entry.failing.clear();
            entry.helper_failing = None;
            if self.template.kind == PullerKind::Pod && !entry.replacing {
                entry.replacing = true;
                info!(node = %entry.name, "puller pod evicted or preempted: replacing it once it is gone");
                self.outbox.push(Action::Delete { kind: PullerKind::Pod, name: entry.job.clone(), uid: view.uid });
            }
            return;
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
        for img in invalid {
            self.fail_image(i, img, now);
        }
        if self.nodes[i].state == State::Done {
            return;
        }
        if view.succeeded {
            let entry = &mut self.nodes[i];
            entry.pulled |= entry.images & !entry.failed;
        }
        if let Some(problem) = view.failed {
            let outcome = if view.timed_out { Outcome::TimedOut } else { Outcome::Failed };
            let reason = self.image_reason(i).unwrap_or(problem);
            self.conclude(i, outcome, reason, now);
            return;
        }
        self.settle(i, now);
    }

    /// Node `i`'s disrupted pod is gone: queue it first for a new pod with what is left of the pull
    /// deadline (counted from its first pod's start), or conclude it when no new pod can come: no
    /// time left, creates stopped, or the run interrupted (it would wait in the queue for a create
    /// that never comes).
    fn replace(&mut self, i: usize, now: Timestamp) {
        let entry = &mut self.nodes[i];
        entry.replacing = false;
        let since = entry.started_at.or(entry.created_at).unwrap_or(now);
        let used = now.duration_since(since).as_secs().max(0) as u64;
        let not_replaced = if self.policy.pull_deadline.as_secs() <= used {
            Some((Outcome::TimedOut, "its pod was evicted or preempted, with no time left to pull again".to_string()))
        } else if let Some((outcome, reason)) = &self.stopped {
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
        entry.pulled = 0;
        entry.not_before = Some(now + span(REUSE_DELAY));
        self.set(i, State::Queued);
        self.queue.push_front(i as u32);
    }

    /// Image `img` failed on node `i` for good: record it, feed the circuit breaker, and conclude
    /// the node if nothing else is left to wait for.
    fn fail_image(&mut self, i: usize, img: u8, now: Timestamp) {
        let entry = &mut self.nodes[i];
        let bit = 1 << img;
        if entry.failed & bit != 0 || entry.pulled & bit != 0 {
            return;
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
        self.settle(i, now);
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
                self.conclude(q as usize, Outcome::Failed, reason, now);
            }
        }
    }

    /// Conclude node `i` if every image of its Job is pulled or failed.
    fn settle(&mut self, i: usize, now: Timestamp) {
        let entry = &self.nodes[i];
        if entry.state == State::Done
            || entry.images == 0
            || (entry.pulled | entry.failed) & entry.images != entry.images
        {
            return;
        }
        if entry.failed == 0 && entry.not_sent == 0 {
            self.conclude(i, Outcome::Succeeded, String::new(), now);
            return;
        }
        let reason = self.image_reason(i).unwrap_or_default();
        if matches!(entry.state, State::Unstarted | State::Running) && entry.failed != 0 {
            // Its pod would go on retrying the failed pull.
            self.delete_own(i);
        }
        self.conclude(i, Outcome::Failed, reason, now);
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

    /// The clock: the watches' readiness bound, pull errors past their grace, helper images that do
    /// not pull, nodes past their deadline.
    fn on_tick(&mut self, now: Timestamp) {
        if !(self.jobs_listed && self.pods_listed)
            && now.duration_since(self.started) >= span(self.policy.watch_ready_timeout)
        {
            self.ending = Some(Ending::Fatal(Error::WatchNotReady {
                action: "list this run's Jobs and pods".into(),
                seconds: self.policy.watch_ready_timeout.as_secs(),
            }));
            return;
        }
        self.check_run_deadline(now);
        let grace = span(self.policy.pull_error_grace);
        let deadline = span(self.policy.node_deadline);
        for i in 0..self.nodes.len() {
            if !matches!(self.nodes[i].state, State::Unstarted | State::Running) {
                continue;
            }
            let expired: Vec<u8> = self.nodes[i]
                .failing
                .iter()
                .filter(|(_, since)| now.duration_since(*since) >= grace)
                .map(|(img, _)| *img)
                .collect();
            for img in expired {
                self.fail_image(i, img, now);
            }
            let entry = &self.nodes[i];
            if entry.state == State::Done {
                continue;
            }
            if let Some((since, message)) = &entry.helper_failing
                && now.duration_since(*since) >= grace
            {
                let reason = format!("the helper image cannot be pulled (HELPER_IMAGE): {message}");
                self.delete_own(i);
                self.conclude(i, Outcome::Failed, reason, now);
                continue;
            }
            let base = entry.started_at.or(entry.created_at).unwrap_or(now);
            if now.duration_since(base) >= deadline {
                let since = if entry.started_at.is_some() { "started" } else { "was created" };
                let mut reason = self.policy.node_deadline_reason(self.template.kind, since);
                if let Some(problem) = &entry.last_problem {
                    reason.push_str(&format!("; last pod problem: {problem}"));
                }
                self.delete_own(i);
                self.conclude(i, Outcome::TimedOut, reason, now);
            }
        }
    }

    fn conclude(&mut self, i: usize, outcome: Outcome, reason: String, now: Timestamp) {
        if self.nodes[i].state == State::Done {
            return;
        }
        self.set(i, State::Done);
        let entry = &mut self.nodes[i];
        entry.finished_at = Some(now);
        entry.failing.clear();
        if outcome.is_success() {
            debug!(node = %entry.name, outcome = outcome.label(), "node concluded");
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
        let (seed, created) = (entry.seed, entry.created_at.is_some());
        self.after_verdict(i, outcome, created);
        if seed && self.wave == Wave::Seeding {
            self.seed_concluded(now);
        }
    }

    /// What a verdict sets off, once per node. Success with every image on the node: remove the
    /// startup taint; this run's puller now keeps the images in use, so the older ones go (a node
    /// that was `already-present` keeps them: they are what holds its images). A puller that did not
    /// pull everything it was given is deleted when nothing else would remove it (no TTL when
    /// `KEEP_LAST_PULLER` keeps what succeeded); one that did is kept, even on a node that failed
    /// (an image the breaker held back): it holds what it pulled.
    fn after_verdict(&mut self, i: usize, outcome: Outcome, created: bool) {
        if outcome.is_success() && self.nodes[i].taint == Taint::Carried {
            self.nodes[i].taint = Taint::Removing;
            self.untainting += 1;
            self.outbox.push(Action::RemoveTaint { node: self.nodes[i].name.clone() });
        }
        if outcome == Outcome::Succeeded && created {
            let entry = &mut self.nodes[i];
            for (kind, name) in std::mem::take(&mut entry.older) {
                entry.replaced.push(name.clone());
                self.outbox.push(Action::Delete { kind, name, uid: None });
            }
        }
        if !created || matches!(outcome, Outcome::Unfinished | Outcome::NotStarted | Outcome::Deleted) {
            return;
        }
        // Who removes a concluded puller: its TTL if it has one; else it is kept (KEEP_LAST_PULLER,
        // and it pulled everything it was given), or the run deletes it now.
        let kept = self.template.keep_last && self.nodes[i].complete();
        if self.template.ttl_seconds_after_finished.is_none() && !kept {
            self.delete_own(i);
        }
    }

    /// Warn once when, at the start rate measured so far, the nodes still to create would need
    /// longer than the run's own Job has left (its `activeDeadlineSeconds` ends it with SIGTERM).
    fn check_run_deadline(&mut self, now: Timestamp) {
        let Some((ends, job)) = &self.policy.run_deadline else { return };
        let left = self.queue.len() + self.count(State::Creating);
        if self.deadline_warned || left == 0 || self.starts.len() < 5 {
            return;
        }
        let first = *self.starts.front().expect("at least 5 starts");
        let rate = self.starts.len() as f64 / now.duration_since(first).as_secs_f64().max(1.0);
        let need = left as f64 / rate;
        let remaining = ends.duration_since(now).as_secs_f64();
        if need > remaining {
            self.deadline_warned = true;
            let noun = self.template.kind.noun();
            warn!(
                "at the measured start rate of {rate:.1} {noun}s/s the remaining {left} nodes need about {need:.0}s, \
                 but this run's Job {job} ends in {remaining:.0}s (its activeDeadlineSeconds): raise it{}",
                if self.template.kind == PullerKind::Job { ", or use PULLER_KIND=pod" } else { "" }
            );
        }
    }

    /// Ask for node `i`'s own puller to be deleted, once.
    fn delete_own(&mut self, i: usize) {
        let entry = &mut self.nodes[i];
        if !entry.deleting {
            entry.deleting = true;
            self.outbox.push(Action::Delete { kind: self.template.kind, name: entry.job.clone(), uid: None });
        }
    }

    fn on_taint_removed(&mut self, node: &str, result: Result<bool>) {
        let Some(&i) = self.by_name.get(&self.template.puller_name(node)) else { return };
        let entry = &mut self.nodes[i as usize];
        if entry.taint != Taint::Removing {
            return;
        }
        self.untainting -= 1;
        entry.taint = Taint::Done(match result {
            Ok(true) => {
                info!(node, "every image is on the node: removed the startup taint");
                TaintAction::Removed
            }
            Ok(false) => TaintAction::AlreadyGone,
            Err(e) => {
                warn!(node, error = %e, "could not remove the startup taint");
                TaintAction::Kept(format!("its removal failed: {}", e.message()))
            }
        });
    }

    /// The pullers earlier runs left: finished without success, or on a node that is gone: deleted
    /// now; successful on a node of this run: deleted once this run succeeds there; the rest (still
    /// running; on nodes this run does not reach) left alone.
    fn sort_leftovers(&mut self, leftovers: Vec<Leftover>, gone: impl Fn(&str) -> bool) {
        let (mut now, mut later) = (0, 0);
        for l in leftovers {
            let node = self.by_name.get(&self.template.puller_name(&l.node)).map(|&i| i as usize);
            match l.state {
                LeftoverState::Running => continue,
                LeftoverState::Succeeded if !gone(&l.node) => {
                    if let Some(i) = node {
                        later += 1;
                        self.nodes[i].older.push((l.kind, l.name));
                    }
                    continue;
                }
                LeftoverState::Succeeded | LeftoverState::Failed => {}
            }
            now += 1;
            self.outbox.push(Action::Delete { kind: l.kind, name: l.name, uid: None });
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
        let taint = match &e.taint {
            Taint::None => None,
            Taint::Done(action) => Some(action.clone()),
            Taint::Carried | Taint::Removing => Some(TaintAction::Kept("the run stopped before removing it".into())),
        };
        Verdict {
            node: e.name.clone(),
            job: has_job.then(|| e.job.clone()),
            kept: self.template.keep_last && has_job && !e.deleting && e.complete(),
            outcome,
            reason,
            duration,
            images,
            taint,
            replaced: e.replaced.clone(),
        }
    }
}

/// A create error that is not fatal: what it means for the node.
enum Denial {
    /// Admission said no (quota, LimitRange, webhook, validation): `not-created` with its words.
    Denied(String),
    /// Overload or a timeout that kube's own retries did not get through: try again later.
    Retry(String),
}

impl Entry {
    /// Its puller pulled every image it was given.
    fn complete(&self) -> bool {
        self.images != 0 && self.pulled & self.images == self.images
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
