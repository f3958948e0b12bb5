//! Step 5 of the data path: the run as a synchronous state machine, and every decision of it.
//!
//! It is fed [`Input`]s with the time they happened (the start of the run with what was listed,
//! watch events, watch errors, the answers of creates, deletes and taint removals, the clock,
//! signals) and answers with [`Action`]s (watch this kind, create this puller, delete that one,
//! remove a taint, warn); it reads no clock and does no I/O, so a run is a sequence of
//! `(time, input)` and is tested as one (`scenarios.rs`). [`Tracker::step`] is the one entry point;
//! the decisions live in one file per concern:
//! - `pacing.rs`: when to create (not before the watches it asked for have listed, within
//!   `CREATE_CONCURRENCY`, `MAX_PARALLEL`, the seed wave and the Job controller's measured start
//!   rate; never after a signal, a denial streak or a failed seed wave) and what a create's answer
//!   means (created, adopted, refused, denied, retried, fatal);
//! - `events.rs`: what the Job and pod watches show, per node: started, per-image progress, a
//!   terminal state, a deletion, an eviction (replaced for bare pods), a relist;
//! - `breaker.rs`: pull errors past their grace, and the images the breaker holds back;
//! - `retention.rs`: which pullers are deleted and which are kept (`KEEP_LAST_PULLER`), those earlier
//!   runs left included, and what the answers to those deletes mean;
//! - `verdicts.rs`: each node's verdict and what it sets off (the startup taint's removal), the
//!   node deadline, when the run ends, and its exit code.

mod breaker;
mod entry;
mod events;
mod joining;
mod pacing;
mod retention;
mod verdicts;

#[cfg(test)]
mod scenarios;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::watcher::Event;
use tracing::warn;

use crate::error::{Error, Result};
use crate::exit_code::ExitCode;
use crate::images::ImageMask;
use crate::nodes::{EligibleNode, Unreachable};
use crate::outcome::Outcome;
use crate::policy::Policy;
use crate::pullers::{Leftover, Puller, PullerTemplate};
use crate::signal::Signal;
use crate::taints::StartupTaint;
use crate::types::{Announcement, Created, NodeRef, PullerKind, TaintRemoval, Watched};
use crate::workloads::{ImageSet, LeftOuts};

use breaker::Breaker;
use entry::{Entry, STATES, State};
use events::Watches;
use joining::Window;
use pacing::Pacer;
use retention::Cleanup;

pub use pacing::plan_seeds;

/// What the run found before its first step: the nodes it pulls on and what earlier runs left.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Every eligible node, with what it pulls (sorted by name).
    pub eligible: Vec<EligibleNode>,
    /// The pullers earlier runs left in the namespace.
    pub leftovers: Vec<Leftover>,
    /// The nodes of those leftovers that are known to no longer exist.
    pub gone: HashSet<String>,
    /// Nodes held by the startup taint that no puller can reach: not released, and said so.
    pub unreachable: Vec<Unreachable>,
}

/// What happened, as the run loop feeds it in (with the time it happened).
// One input lives from the select that made it to the step that takes it; none is ever stored.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input {
    /// The run starts: the nodes were listed. The first input of every run.
    Start(Box<Plan>),
    /// An event of the run's label-selected Job watch.
    Jobs(Event<Job>),
    /// An event of the run's label-selected pod watch.
    Pods(Event<Pod>),
    /// An event of the node watch (`STARTUP_TAINT_WATCH_SECONDS`).
    Nodes(Event<Node>),
    /// A watch failed ([`Error::watch`], or [`Error::WatchEnded`]).
    WatchFailed(Error),
    /// The create request for the puller named `name` answered.
    Created { name: String, result: Result<Created<Puller>> },
    /// The delete request for the puller named `name` answered.
    Deleted { name: String, result: Result<()> },
    /// One attempt at removing the startup taint from `node` answered.
    TaintRemoved { node: String, result: Result<TaintRemoval> },
    /// An Event about `node` was published (or not: best effort).
    Announced { node: String, result: Result<()> },
    /// The clock ([`Policy::tick`]).
    Tick,
    /// SIGTERM or SIGINT: no more creates, drain, a partial report.
    Signal(Signal),
}

/// What the tracker asks the run loop to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start the label-selected watch of this kind; its events come back as [`Input::Jobs`] or
    /// [`Input::Pods`]. Asked for once, at the start: creates wait until it has listed.
    Watch(Watched),
    /// Create this puller; its answer comes back as [`Input::Created`].
    Create(Puller),
    /// Delete a puller: a concluded one whose pod would go on retrying a pull, one that is not kept,
    /// an older one a success replaces, one an earlier run left. `uid`: only that incarnation (so
    /// that a late delete cannot reach another object of the same name). The answer comes back as
    /// [`Input::Deleted`].
    Delete { kind: PullerKind, name: String, uid: Option<String> },
    /// Every image is on this node, or it was held too long: remove this taint from it (one
    /// attempt); the answer comes back as [`Input::TaintRemoved`].
    RemoveTaint { node: String, taint: StartupTaint },
    /// Publish this Event about a node (its startup taint removed, or released without every
    /// image), for whoever watches nodes; the answer comes back as [`Input::Announced`].
    Announce { node: NodeRef, event: Announcement },
    /// Something the person running the controller should hear now, not only in the report.
    Warn(Warning),
}

/// A warning the tracker gives once, as an action, so that the run logs it and a scenario sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Warning {
    /// No node is eligible (and some were asked for): nothing to pre-pull.
    NoEligibleNode,
    /// At the start rate measured, the nodes still to create need longer than the run's own Job has
    /// left (its `activeDeadlineSeconds` ends the run with SIGTERM).
    RunDeadline { rate: f64, left: usize, need_seconds: u64, remaining_seconds: u64, job: String, kind: PullerKind },
    /// The image breaker stopped sending image `image` (0-based) to the remaining nodes.
    ImageHeldBack { image: usize, reason: String },
    /// No further create will be sent (a denial streak, a failed seed wave); `remaining` nodes get
    /// `reason`.
    CreatesStopped { reason: String, remaining: usize },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::NoEligibleNode => write!(f, "no eligible node: nothing to pre-pull"),
            Warning::RunDeadline { rate, left, need_seconds, remaining_seconds, job, kind } => write!(
                f,
                "at the measured start rate of {rate:.1} {noun}s/s the remaining {left} nodes need about \
                 {need_seconds}s, but this run's Job {job} ends in {remaining_seconds}s (its \
                 activeDeadlineSeconds): raise it{hint}",
                noun = kind.noun(),
                hint = if *kind == PullerKind::Job { ", or use PULLER_KIND=pod" } else { "" }
            ),
            Warning::ImageHeldBack { image, reason } => write!(f, "image {}: {reason}", image + 1),
            Warning::CreatesStopped { reason, remaining } => {
                write!(f, "no more creates ({remaining} nodes left): {reason}")
            }
        }
    }
}

/// What became of a node's startup taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaintAction {
    /// Removed by this run, once every image was on the node.
    Removed,
    /// Gone already when the run came to remove it (another run, or someone else).
    AlreadyGone,
    /// Removed without every image on the node: it had been held this long, past
    /// `STARTUP_TAINT_MAX_HOLD_SECONDS`.
    Released { held_seconds: u64 },
    /// Left on the node: why (the node did not succeed, it was unreachable, the removal failed, the
    /// run stopped first); `forbidden` when the API refused the run the right to remove it (RBAC).
    Kept { reason: String, forbidden: bool },
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

impl Ending {
    /// What the ending alone says about the exit code.
    fn exit_code(&self) -> ExitCode {
        match self {
            Ending::Done => ExitCode::Success,
            Ending::Interrupted(signal) => (*signal).into(),
            Ending::Fatal(_) => ExitCode::ClusterError,
        }
    }
}

/// The verdict for one node, as the run's report and Event carry it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub node: String,
    pub job: Option<String>,
    pub outcome: Outcome,
    pub reason: String,
    pub duration: Option<Duration>,
    /// Per image of its set: what happened on this node.
    pub images: ImageResults,
    /// The node carried the startup taint: what became of it.
    pub taint: Option<TaintAction>,
    /// Its puller stays after the run (`KEEP_LAST_PULLER`, and it succeeded).
    pub kept: bool,
    /// Pullers of earlier runs on the node that this run's success replaced (deleted).
    pub replaced: Vec<String>,
    /// Older pullers it should have replaced but could not delete: "name: the API's words".
    pub not_replaced: Vec<String>,
    /// `IMAGES_FROM`: images its workloads want that its set of 64 left out.
    pub left_out: LeftOuts,
}

impl Verdict {
    /// What the run did on the node besides the verdict, in words: the taint, the retention, the
    /// replacements (the report's last column).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match &self.taint {
            Some(TaintAction::Kept { reason, .. }) => notes.push(format!("taint kept: {reason}")),
            Some(TaintAction::Removed) => notes.push("startup taint removed".into()),
            Some(TaintAction::AlreadyGone) => notes.push("startup taint already gone".into()),
            Some(TaintAction::Released { held_seconds }) => {
                notes.push(format!("startup taint released after {held_seconds}s"))
            }
            None => {}
        }
        if self.kept {
            notes.push("puller kept".into());
        }
        if !self.replaced.is_empty() {
            notes.push(format!("replaced {} older puller(s)", self.replaced.len()));
        }
        notes.extend(self.not_replaced.iter().map(|older| format!("could not delete older puller {older}")));
        notes
    }

    /// What this node says about the run's exit code: a node still held because the API refused
    /// the run the right to release it is an API error (3), any other problem a failed node (1).
    pub fn exit_code(&self) -> ExitCode {
        match &self.taint {
            _ if self.outcome.is_success() => ExitCode::Success,
            Some(TaintAction::Kept { forbidden: true, .. }) => ExitCode::ClusterError,
            _ => ExitCode::NodesFailed,
        }
    }
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

/// What became of each image of a node's set, compact (a run of 5,000 nodes and 64 images each
/// keeps 5,000 of these, not 320,000 entries): the set, a mask per result, and the words of the
/// failed and held-back ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageResults {
    pub set: ImageSet,
    pub present: ImageMask,
    pub pulled: ImageMask,
    pub failed: ImageMask,
    pub not_sent: ImageMask,
    /// (place in the set, message) of failed and held-back images.
    pub messages: Vec<(u8, String)>,
}

impl ImageResults {
    /// Per image of the set: the run's index of it, its result, its message. An image already on
    /// the node stays `present`, even when its puller ran it to hold it: nothing was pulled.
    pub fn iter(&self) -> impl Iterator<Item = (usize, ImageResult, Option<&str>)> + '_ {
        self.set.iter().enumerate().map(|(local, &index)| {
            let bit = 1 << local;
            let result = if self.present & bit != 0 {
                ImageResult::Present
            } else if self.pulled & bit != 0 {
                ImageResult::Pulled
            } else if self.failed & bit != 0 {
                ImageResult::Failed
            } else if self.not_sent & bit != 0 {
                ImageResult::NotSent
            } else {
                ImageResult::Unknown
            };
            let message = self.messages.iter().find(|(l, _)| *l as usize == local).map(|(_, m)| m.as_str());
            (index as usize, result, message)
        })
    }
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
    /// No node was eligible: what the summary says about it.
    pub empty: Option<&'static str>,
    /// The run's exit code: the most severe of every node's, the ending's and, when nothing was
    /// eligible, that of an empty run.
    pub exit_code: ExitCode,
}

#[derive(Debug)]
pub struct Tracker {
    policy: Policy,
    template: PullerTemplate,
    nodes: Vec<Entry>,
    /// Puller name → node.
    by_name: HashMap<Arc<str>, u32>,
    /// Nodes per [`State`], kept by [`Tracker::set`].
    counts: [usize; STATES],
    /// When the run started (its [`Input::Start`]); nothing happens before.
    started: Option<Timestamp>,
    watches: Watches,
    /// Joining nodes, while the run watches for them.
    window: Window,
    pacer: Pacer,
    breaker: Breaker,
    cleanup: Cleanup,
    /// Startup-taint removals in flight.
    untainting: usize,
    /// The first signal, and until when creates in flight may answer.
    interrupted: Option<(Signal, Timestamp)>,
    /// How the run ends, and since when it waits for the deletes still in flight.
    closing: Option<(Ending, Timestamp)>,
    ending: Option<Ending>,
    logged_failures: usize,
    /// What to do, gathered while an input is folded in; handed out by [`Tracker::step`].
    outbox: Vec<Action>,
}

/// Nodes logged one by one when they fail; the report has all of them.
const MAX_LOGGED_FAILURES: usize = 50;

fn span(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

impl Tracker {
    /// A tracker for a run of `template` judged by `policy`; it does nothing before
    /// [`Input::Start`].
    pub fn new(policy: Policy, template: PullerTemplate) -> Tracker {
        let image_count = template.catalog.images.len();
        Tracker {
            breaker: Breaker::new(image_count),
            policy,
            template,
            nodes: Vec::new(),
            by_name: HashMap::new(),
            counts: [0; STATES],
            started: None,
            watches: Watches::default(),
            window: Window::default(),
            pacer: Pacer::default(),
            cleanup: Cleanup::default(),
            untainting: 0,
            interrupted: None,
            closing: None,
            ending: None,
            logged_failures: 0,
            outbox: Vec::new(),
        }
    }

    /// Fold one input in, at `now`; answers what to do.
    pub fn step(&mut self, now: Timestamp, input: Input) -> Vec<Action> {
        if self.ending.is_some() {
            return Vec::new();
        }
        match input {
            Input::Start(plan) => self.start(*plan, now),
            input if self.started.is_none() => warn!(?input, "an input before the run started; ignored"),
            Input::Jobs(event) => self.on_job_event(event, now),
            Input::Pods(event) => self.on_pod_event(event, now),
            Input::Nodes(event) => self.on_node_event(event, now),
            Input::WatchFailed(error) => self.on_watch_error(error),
            Input::Created { name, result } => self.on_create(&name, result, now),
            Input::Deleted { name, result } => self.on_deleted(&name, result, now),
            Input::TaintRemoved { node, result } => self.on_taint_removed(&node, result, now),
            Input::Announced { node, result } => self.on_announced(&node, result),
            Input::Tick => self.on_tick(now),
            Input::Signal(signal) => self.on_signal(signal, now),
        }
        if self.ending.is_none() && self.closing.is_none() {
            self.next_creates(now);
        }
        self.settle_ending(now);
        std::mem::take(&mut self.outbox)
    }

    /// The start of the run: ask for the watches the run's kind needs (one answer: creates wait for
    /// exactly these to list), track every eligible node, sort what earlier runs left, conclude the
    /// nodes that already hold every image, plan the seed wave and the queue.
    fn start(&mut self, plan: Plan, now: Timestamp) {
        if self.started.is_some() {
            return;
        }
        self.started = Some(now);
        let watched: &[Watched] = match self.template.kind() {
            PullerKind::Job => &[Watched::Jobs, Watched::Pods],
            PullerKind::Pod => &[Watched::Pods],
        };
        for &kind in watched {
            self.watches.ask(kind, true);
            self.outbox.push(Action::Watch(kind));
        }
        let mut zones = Vec::with_capacity(plan.eligible.len());
        self.nodes.reserve(plan.eligible.len());
        for node in plan.eligible {
            zones.push(node.zone.clone());
            self.track(node);
        }
        let reachable = self.nodes.len();
        self.sort_leftovers(plan.leftovers, &plan.gone, now);
        for i in 0..reachable {
            self.admit(i, now);
        }
        self.open_window(now);
        for unreachable in plan.unreachable {
            self.unreachable(unreachable, now);
        }
        zones.resize(self.nodes.len(), None);
        self.plan_queue(&zones);
        self.check_holds(now);
        if self.nodes.is_empty() && !self.policy.selection.startup_taint_only {
            self.outbox.push(Action::Warn(Warning::NoEligibleNode));
        }
    }

    /// Track one more node (queued, not yet in the queue); its index.
    fn track(&mut self, node: EligibleNode) -> usize {
        let puller: Arc<str> = self.template.puller_name(&node.name).into();
        let i = self.nodes.len();
        self.by_name.insert(puller.clone(), i as u32);
        self.nodes.push(Entry::new(node, puller));
        self.counts[State::Queued as usize] += 1;
        i
    }

    /// What a node's images mean before any puller: with `KEEP_LAST_PULLER` its puller carries
    /// them all; its taint goes at once if every image is there; with nothing to create it is
    /// `already-present`.
    fn admit(&mut self, i: usize, now: Timestamp) {
        self.retain_every_image(i);
        self.release_if_complete(i);
        if self.nodes[i].images.wanted == 0 {
            self.conclude(i, Outcome::AlreadyPresent, "every image is already on the node".into(), now);
        }
    }

    /// `DRY_RUN`: the puller each of `nodes` would get, as the run would create it first.
    pub fn pullers<'a>(&'a self, nodes: &'a [EligibleNode]) -> impl Iterator<Item = (&'a EligibleNode, Puller)> + 'a {
        nodes.iter().filter(|n| n.images != 0).map(|n| (n, self.template.build(n, self.policy.deadlines())))
    }

    /// `IMAGES_FROM` is set: the images come from workloads too.
    pub fn images_from(&self) -> bool {
        self.policy.selection.images_from.is_some()
    }

    /// `DRY_RUN` with `IMAGES_FROM`: the node's image set, why it got each image (`QUAY_IMAGES`, or
    /// the workloads that could run there) and what was left out, one line each.
    pub fn why(&self, node: &EligibleNode) -> Vec<String> {
        let catalog = &self.template.catalog;
        let mut lines = vec![format!("node {}: {} image(s)", node.name, node.set.len())];
        for &id in node.set.iter() {
            let image = &catalog.images[id as usize].normalized;
            let why: Vec<String> = catalog.why(id, &node.fits).iter().map(ToString::to_string).collect();
            let why = if (id as usize) < catalog.explicit { "QUAY_IMAGES".to_string() } else { why.join(", ") };
            lines.push(format!("  {image} <- {why}"));
        }
        for left in node.left_out.iter().take(crate::workloads::LEFT_OUT_LISTED) {
            let image = &catalog.images[left.image as usize].normalized;
            lines.push(format!("  left out (64 per node; {:.2} pods expected to want it here): {image}", left.weight));
        }
        if let Some(more) = node.left_out.len().checked_sub(crate::workloads::LEFT_OUT_LISTED).filter(|m| *m > 0) {
            lines.push(format!("  left out: {more} more, each wanted by fewer pods"));
        }
        lines
    }

    /// The bounds the run is judged by (the loop reads its tick and progress interval).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// `NODE_SELECTOR`: what the node watch selects.
    pub fn node_selector(&self) -> Option<&str> {
        self.policy.selection.node_selector.as_deref()
    }

    /// The label selector of this run's pullers: what its watches select.
    pub fn run_selector(&self) -> String {
        self.template.run_selector()
    }

    /// How the run ended, once it has.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
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

    /// The one place a node changes state, so the counts follow.
    fn set(&mut self, i: usize, to: State) {
        let from = self.nodes[i].state;
        self.counts[from as usize] -= 1;
        self.counts[to as usize] += 1;
        self.nodes[i].state = to;
        // The containers of the pullers being created: what a create in flight weighs.
        let containers = self.nodes[i].images.wanted.count_ones() as usize;
        if to == State::Creating && from != State::Creating {
            self.pacer.containers_in_flight += containers;
        } else if from == State::Creating && to != State::Creating {
            self.pacer.containers_in_flight = self.pacer.containers_in_flight.saturating_sub(containers);
        }
    }

    /// The node whose puller is named `name`, if it is one of this run's.
    fn node_of_puller(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).map(|&i| i as usize)
    }

    /// The node called `node`.
    fn node_named(&self, node: &str) -> Option<usize> {
        self.node_of_puller(&self.template.puller_name(node))
    }

    pub fn progress(&self) -> Progress {
        let failed = self.nodes.iter().filter(|e| e.verdict.as_ref().is_some_and(|(o, _)| !o.is_success())).count();
        Progress {
            total: self.nodes.len(),
            queued: self.pacer.queue.len(),
            creating: self.count(State::Creating),
            pulling: self.active(),
            done: self.count(State::Done),
            failed,
        }
    }

    fn on_signal(&mut self, signal: Signal, now: Timestamp) {
        if let Some((ending, _)) = self.closing.take() {
            // Every node has its verdict already: stop waiting for the deletes in flight.
            self.ending = Some(ending);
            return;
        }
        if self.interrupted.is_none() {
            self.interrupted = Some((signal, now + span(self.policy.drain)));
            warn!(
                signal = signal.name(),
                "interrupted: no more pullers are created; created ones are left to finish (a later run removes them)"
            );
            self.check_window(now);
        }
    }
}
