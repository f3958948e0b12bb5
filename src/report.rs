//! Step 6 of the data path: one serialisable result per node, and from it the text table, the JSON
//! report, the summary line (also the run's Event) and the exit code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Pacing, PullerSettings, Selection, Timing};
use crate::exit_code::ExitCode;
use crate::nodes::Skipped;
use crate::outcome::Outcome;
use crate::signal::Signal;
use crate::tracker::{Ending, ImageResult, ImageResults, LagStats, RunResult, TaintAction, Verdict};
use crate::workloads::{Catalog, LEFT_OUT_LISTED, LeftOuts};

/// Above this many rows the table groups problems by (outcome, reason) and counts successes.
pub const MAX_LISTED_ROWS: usize = 200;
/// Node names shown per group in a grouped table.
const NAMES_PER_GROUP: usize = 5;

/// What happened to one image on one node, as the JSON report writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageOnNode<'a> {
    pub image: &'a str,
    pub result: ImageResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
}

/// What became of a node's startup taint, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartupTaintResult {
    /// `removed`, `already-gone`, `released` (without every image, held past the maximum) or `kept`.
    pub action: &'static str,
    /// The taint, as `STARTUP_TAINT` writes it.
    pub taint: String,
    /// Why it was kept (the API's message when its removal failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long the node had been held when it was released.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_seconds: Option<u64>,
}

impl StartupTaintResult {
    fn new(action: TaintAction, taint: String) -> Self {
        let (action, reason, held_seconds) = match action {
            TaintAction::Removed => ("removed", None, None),
            TaintAction::AlreadyGone => ("already-gone", None, None),
            TaintAction::Released { held_seconds } => ("released", None, Some(held_seconds)),
            TaintAction::Kept { reason, .. } => ("kept", Some(reason), None),
        };
        StartupTaintResult { action, taint, reason, held_seconds }
    }
}

/// The result for one eligible node: a table row, a JSON entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeResult {
    pub node: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Per image of its set (written out with the run's image names: [`NodeView`]).
    #[serde(skip)]
    pub images: ImageResults,
    /// The node carried `STARTUP_TAINT`: removed, or kept and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_taint: Option<StartupTaintResult>,
    /// Its puller stays after the run (`KEEP_LAST_PULLER`): the images stay in use for the kubelet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub puller_kept: bool,
    /// Pullers of earlier runs this run's success on the node replaced (deleted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<String>,
    /// Older pullers it could not delete ("name: why"): they stay beside the kept one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_replaced: Vec<String>,
    /// `IMAGES_FROM`: images the node's workloads want that did not fit in its 64, heaviest first
    /// (written out: their count and the first [`LEFT_OUT_LISTED`]).
    #[serde(skip)]
    pub left_out: LeftOuts,
    /// What the run did besides the verdict, in words (the table's last column).
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// An image a node's set left out, and its rank's weight (pods expected to want it there).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeftOutImage<'a> {
    pub image: &'a str,
    pub weight: f64,
}

/// One node as the JSON report writes it: its result, its images named, each image written as it
/// is read (5,000 nodes of 64 images are never all in memory at once as JSON values).
#[derive(Serialize)]
struct NodeView<'a> {
    #[serde(flatten)]
    node: &'a NodeResult,
    images: ImagesView<'a>,
    #[serde(skip_serializing_if = "is_zero")]
    left_out_count: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    left_out: Vec<LeftOutImage<'a>>,
}

/// The run's image `index`, by name.
fn image_name(names: &[ImageInfo], index: usize) -> &str {
    names.get(index).map_or("?", |n| n.image.as_str())
}

struct ImagesView<'a> {
    images: &'a ImageResults,
    names: &'a [ImageInfo],
}

impl Serialize for ImagesView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.images.iter().map(|(index, result, message)| ImageOnNode {
            image: image_name(self.names, index),
            result,
            message,
        }))
    }
}

/// Every node, one [`NodeView`] at a time.
struct NodesView<'a> {
    nodes: &'a [NodeResult],
    names: &'a [ImageInfo],
}

impl Serialize for NodesView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.nodes.iter().map(|node| {
            NodeView {
                node,
                images: ImagesView { images: &node.images, names: self.names },
                left_out_count: node.left_out.len(),
                left_out: node
                    .left_out
                    .iter()
                    .take(LEFT_OUT_LISTED)
                    .map(|l| LeftOutImage {
                        image: image_name(self.names, l.image as usize),
                        weight: (l.weight * 1000.0).round() / 1000.0,
                    })
                    .collect(),
            }
        }))
    }
}

/// One image of the run, and the workloads that asked for it (`IMAGES_FROM`; none: `QUAY_IMAGES`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "strs")]
    pub workloads: Vec<Arc<str>>,
}

/// Shared strings as a JSON array of strings.
fn strs<S: serde::Serializer>(names: &[Arc<str>], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(names.iter().map(|name| &**name))
}

impl ImageInfo {
    /// Every image of `catalog`, with its workloads.
    pub fn of(catalog: &Catalog) -> Vec<ImageInfo> {
        catalog
            .images
            .iter()
            .zip(&catalog.wanted_by)
            .map(|(image, by)| ImageInfo {
                image: image.normalized.clone(),
                workloads: by.iter().map(|&w| catalog.workloads[w as usize].clone()).collect(),
            })
            .collect()
    }
}

impl NodeResult {
    /// The row of one verdict; `images` name the run's images, `taint` is `STARTUP_TAINT`.
    pub fn from_verdict(v: Verdict, images: &[String], taint: &str) -> NodeResult {
        let mut notes = v.notes();
        if !v.left_out.is_empty() {
            let first: Vec<&str> = v.left_out.iter().take(3).map(|l| images[l.image as usize].as_str()).collect();
            let more = v.left_out.len().saturating_sub(first.len());
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            notes.push(format!(
                "{} image(s) its workloads want left out (64 per node; ranked lowest): {}{more}",
                v.left_out.len(),
                first.join(", ")
            ));
        }
        NodeResult {
            left_out: v.left_out,
            notes,
            node: v.node,
            outcome: v.outcome,
            reason: v.reason,
            job: v.job,
            duration_seconds: v.duration.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            images: v.images,
            startup_taint: v.taint.map(|action| StartupTaintResult::new(action, taint.to_string())),
            puller_kept: v.kept,
            replaced: v.replaced,
            not_replaced: v.not_replaced,
        }
    }

    /// The reason and the notes, as the table's last column shows them.
    fn detail(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.reason.is_empty() {
            parts.push(self.reason.clone());
        }
        parts.extend(self.notes.iter().cloned());
        parts.join("; ")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedNode {
    pub node: String,
    pub reason: String,
}

/// An image the circuit breaker stopped sending, said once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeldBack {
    pub image: String,
    pub reason: String,
}

/// What the run was asked to do, for the JSON report: the configuration's groups as they are, so
/// that a new setting shows here without a line of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunSettings {
    pub namespace: String,
    pub images: Vec<String>,
    #[serde(flatten)]
    pub selection: Selection,
    #[serde(flatten)]
    pub puller: PullerSettings,
    #[serde(flatten)]
    pub timing: Timing,
    #[serde(flatten)]
    pub pacing: Pacing,
}

impl RunSettings {
    /// What a run of `config` in `namespace` was asked to do.
    pub fn new(config: &Config, namespace: &str) -> RunSettings {
        RunSettings {
            namespace: namespace.to_string(),
            images: config.images.iter().map(|i| i.normalized.clone()).collect(),
            selection: config.selection.clone(),
            puller: config.puller.clone(),
            timing: config.timing,
            pacing: config.pacing,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What stopped a run before every node was decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    Signal(Signal),
    /// The API error, in its words.
    Fatal(String),
}

/// Everything the run found out. Counts, the exit code and the JSON's `interrupted_by`/`fatal_error`
/// are derived from it, never stored beside it.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub run_id: String,
    pub settings: RunSettings,
    pub total_nodes: usize,
    pub nodes: Vec<NodeResult>,
    pub skipped: Vec<SkippedNode>,
    pub held_back_images: Vec<HeldBack>,
    /// Every image of the run, `QUAY_IMAGES` first, with the workloads that asked for it.
    pub images: Vec<ImageInfo>,
    /// Job controller lag: Job creation → start.
    pub job_start_lag: LagStats,
    pub elapsed_seconds: f64,
    pub stopped: Option<Stopped>,
    /// `STARTUP_TAINT_ONLY`: nodes without the startup taint, not considered.
    pub not_considered: usize,
    /// No node was eligible: what the summary says about it (the tracker's words).
    pub empty: Option<&'static str>,
    /// The run's exit code, as the tracker decided it.
    pub exit_code: ExitCode,
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            run_id: &'a str,
            settings: &'a RunSettings,
            total_nodes: usize,
            #[serde(skip_serializing_if = "is_zero")]
            not_considered: usize,
            eligible: usize,
            counts: BTreeMap<&'static str, usize>,
            #[serde(skip_serializing_if = "<[ImageInfo]>::is_empty")]
            images: &'a [ImageInfo],
            nodes: NodesView<'a>,
            skipped: &'a [SkippedNode],
            held_back_images: &'a [HeldBack],
            job_start_lag: LagStats,
            #[serde(skip_serializing_if = "Option::is_none")]
            interrupted_by: Option<&'static str>,
            /// The API error that stopped the run, if one did.
            #[serde(skip_serializing_if = "Option::is_none")]
            fatal_error: Option<&'a str>,
            elapsed_seconds: f64,
            exit_code: u8,
        }
        View {
            run_id: &self.run_id,
            settings: &self.settings,
            total_nodes: self.total_nodes,
            not_considered: self.not_considered,
            eligible: self.nodes.len(),
            counts: self.counts(),
            images: &self.images,
            nodes: NodesView { nodes: &self.nodes, names: &self.images },
            skipped: &self.skipped,
            held_back_images: &self.held_back_images,
            job_start_lag: self.job_start_lag,
            interrupted_by: self.signal().map(Signal::name),
            fatal_error: self.fatal_error(),
            elapsed_seconds: self.elapsed_seconds,
            exit_code: self.exit_code().code(),
        }
        .serialize(serializer)
    }
}

impl Report {
    pub fn new(run_id: &str, settings: RunSettings, total_nodes: usize, skipped: &[Skipped]) -> Report {
        Report {
            run_id: run_id.to_string(),
            settings,
            total_nodes,
            skipped: skipped
                .iter()
                .map(|s| SkippedNode { node: s.node.clone(), reason: s.reason.to_string() })
                .collect(),
            ..Default::default()
        }
    }

    /// Fill in what the run found: every node's verdict (for the run's images, `self.images`), how
    /// it ended, its exit code.
    pub fn finish(&mut self, result: RunResult, elapsed: Duration) {
        let names: Vec<String> = self.images.iter().map(|i| i.image.clone()).collect();
        let taint = self.settings.selection.startup_taint.as_ref().map(ToString::to_string).unwrap_or_default();
        let nodes = result.verdicts.into_iter().map(|v| NodeResult::from_verdict(v, &names, &taint)).collect();
        self.held_back_images =
            result.held_back.into_iter().map(|(i, reason)| HeldBack { image: names[i].clone(), reason }).collect();
        self.job_start_lag = result.lag;
        self.empty = result.empty;
        self.exit_code = result.exit_code;
        self.stopped = match result.ending {
            Ending::Done => None,
            Ending::Interrupted(signal) => Some(Stopped::Signal(signal)),
            Ending::Fatal(e) => Some(Stopped::Fatal(e.to_string())),
        };
        self.set_nodes(nodes, elapsed);
    }

    /// The per-node results, sorted by node name, and the run's length.
    pub fn set_nodes(&mut self, mut nodes: Vec<NodeResult>, elapsed: Duration) {
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        self.nodes = nodes;
        self.elapsed_seconds = (elapsed.as_secs_f64() * 10.0).round() / 10.0;
    }

    /// Nodes per outcome, every outcome listed.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> = Outcome::ALL.iter().map(|o| (o.label(), 0)).collect();
        for n in &self.nodes {
            *counts.entry(n.outcome.label()).or_default() += 1;
        }
        counts
    }

    pub fn signal(&self) -> Option<Signal> {
        match self.stopped {
            Some(Stopped::Signal(signal)) => Some(signal),
            _ => None,
        }
    }

    pub fn fatal_error(&self) -> Option<&str> {
        match &self.stopped {
            Some(Stopped::Fatal(error)) => Some(error),
            _ => None,
        }
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.nodes.iter().filter(|n| n.outcome == outcome).count()
    }

    /// The exit code the tracker decided (see [`crate::tracker::RunResult::exit_code`]).
    pub fn exit_code(&self) -> ExitCode {
        self.exit_code
    }

    /// The human table: problems first (by node), then skipped nodes, then successes; above
    /// [`MAX_LISTED_ROWS`] rows, problems grouped by (outcome, reason) and successes counted. Then
    /// one line per image.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let problems: Vec<&NodeResult> = self.nodes.iter().filter(|n| !n.outcome.is_success()).collect();
        let successes: Vec<&NodeResult> = self.nodes.iter().filter(|n| n.outcome.is_success()).collect();
        if self.nodes.len() + self.skipped.len() <= MAX_LISTED_ROWS {
            let width = self
                .nodes
                .iter()
                .map(|n| n.node.len())
                .chain(self.skipped.iter().map(|s| s.node.len()))
                .max()
                .unwrap_or(4)
                .max(4);
            let _ = writeln!(out, "{:<width$}  {:<15}  {:>8}  REASON", "NODE", "OUTCOME", "DURATION");
            let mut line = |node: &str, outcome: &str, duration: Option<f64>, reason: &str| {
                let duration = duration.map(|d| format!("{d:.1}s")).unwrap_or_else(|| "-".into());
                let row = format!("{node:<width$}  {outcome:<15}  {duration:>8}  {reason}");
                let _ = writeln!(out, "{}", row.trim_end());
            };
            for n in &problems {
                line(&n.node, n.outcome.label(), n.duration_seconds, &n.detail());
            }
            for s in &self.skipped {
                line(&s.node, "skipped", None, &s.reason);
            }
            for n in &successes {
                line(&n.node, n.outcome.label(), n.duration_seconds, &n.detail());
            }
        } else {
            let _ = writeln!(out, "{:<15}  {:>6}  REASON / NODES", "OUTCOME", "NODES");
            let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
            let details: Vec<String> = problems.iter().map(|n| n.detail()).collect();
            for (n, detail) in problems.iter().zip(&details) {
                groups.entry((n.outcome.label(), detail.as_str())).or_default().push(&n.node);
            }
            for s in &self.skipped {
                groups.entry(("skipped", s.reason.as_str())).or_default().push(&s.node);
            }
            for ((outcome, reason), nodes) in &groups {
                let _ = writeln!(out, "{outcome:<15}  {:>6}  {reason}", nodes.len());
                let shown = nodes.iter().take(NAMES_PER_GROUP).copied().collect::<Vec<_>>().join(", ");
                let more = nodes.len().saturating_sub(NAMES_PER_GROUP);
                let more = if more > 0 { format!(", … and {more} more") } else { String::new() };
                let _ = writeln!(out, "{:<15}  {:>6}  {shown}{more}", "", "");
            }
            for outcome in [Outcome::Succeeded, Outcome::AlreadyPresent] {
                let count = successes.iter().filter(|n| n.outcome == outcome).count();
                if count > 0 {
                    let _ = writeln!(out, "{:<15}  {count:>6}  (not listed)", outcome.label());
                }
            }
        }
        let _ = write!(out, "{}", self.image_lines());
        out
    }

    /// Per image: on how many nodes it was pulled, present, failed, held back; with `IMAGES_FROM`,
    /// the workloads that asked for it.
    fn image_lines(&self) -> String {
        let mut out = String::new();
        let mut counts: Vec<BTreeMap<ImageResult, usize>> = vec![BTreeMap::new(); self.images.len()];
        for n in &self.nodes {
            for (index, result, _) in n.images.iter() {
                if let Some(c) = counts.get_mut(index) {
                    *c.entry(result).or_default() += 1;
                }
            }
        }
        for (index, (info, counts)) in self.images.iter().zip(&counts).enumerate() {
            let image = &info.image;
            let c = |r| counts.get(&r).copied().unwrap_or(0);
            let mut line = format!(
                "image {}: {image}: pulled on {}, present on {}, failed on {}",
                index + 1,
                c(ImageResult::Pulled),
                c(ImageResult::Present),
                c(ImageResult::Failed)
            );
            if c(ImageResult::NotSent) > 0 {
                let _ = write!(line, ", not sent to {}", c(ImageResult::NotSent));
            }
            if c(ImageResult::Unknown) > 0 {
                let _ = write!(line, ", unknown on {}", c(ImageResult::Unknown));
            }
            if !info.workloads.is_empty() {
                let shown = info.workloads.iter().take(NAMES_PER_GROUP).cloned().collect::<Vec<_>>().join(", ");
                let more = info.workloads.len().saturating_sub(NAMES_PER_GROUP);
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                let _ = write!(line, "; for {shown}{more}");
            }
            let _ = writeln!(out, "{line}");
            if let Some(held) = self.held_back_images.iter().find(|h| &h.image == image) {
                let _ = writeln!(out, "  {}", held.reason);
            }
        }
        out
    }

    pub fn summary(&self) -> String {
        let c = |o| self.count(o);
        let mut line = format!(
            "run {}: {}/{} eligible nodes succeeded",
            self.run_id,
            c(Outcome::Succeeded) + c(Outcome::AlreadyPresent),
            self.nodes.len()
        );
        if c(Outcome::AlreadyPresent) > 0 {
            let _ = write!(line, " ({} already present)", c(Outcome::AlreadyPresent));
        }
        let _ = write!(
            line,
            ", {} failed, {} timed out, {} deleted, {} not created",
            c(Outcome::Failed),
            c(Outcome::TimedOut),
            c(Outcome::Deleted),
            c(Outcome::NotCreated)
        );
        for (outcome, label) in [
            (Outcome::Unfinished, "unfinished"),
            (Outcome::NotStarted, "not started"),
            (Outcome::Held, "still held by the startup taint"),
            (Outcome::Released, "released without every image"),
        ] {
            if c(outcome) > 0 {
                let _ = write!(line, ", {} {label}", c(outcome));
            }
        }
        let _ = write!(line, "; {} skipped of {} nodes", self.skipped.len(), self.total_nodes);
        if self.not_considered > 0 {
            let _ = write!(line, " ({} without the startup taint not considered)", self.not_considered);
        }
        let taints = |action: &str| {
            self.nodes.iter().filter(|n| n.startup_taint.as_ref().is_some_and(|t| t.action == action)).count()
        };
        if taints("removed") + taints("kept") + taints("released") > 0 {
            let _ = write!(line, "; startup taint removed from {}, kept on {}", taints("removed"), taints("kept"));
            if taints("released") > 0 {
                let _ = write!(line, ", released from {}", taints("released"));
            }
        }
        // Whoever reads only the Event must learn which nodes are still held, and why.
        let held: Vec<&NodeResult> = self.nodes.iter().filter(|n| n.outcome == Outcome::Held).collect();
        if let Some(first) = held.first() {
            let names: Vec<&str> = held.iter().take(NAMES_PER_GROUP).map(|n| n.node.as_str()).collect();
            let more = held.len().saturating_sub(NAMES_PER_GROUP);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            let _ = write!(line, "; held: {}{more} ({}: {})", names.join(", "), first.node, first.reason);
        }
        if let Some(empty) = self.empty {
            let _ = write!(line, "; {empty}");
        }
        if let Some(signal) = self.signal() {
            let _ = write!(line, "; interrupted by {}", signal.name());
        }
        if let Some(error) = self.fatal_error() {
            let _ = write!(line, "; stopped by an API error: {error}");
        }
        let _ = write!(line, "; {:.1}s; exit {}", self.elapsed_seconds, self.exit_code().code());
        line
    }

    /// The JSON report, streamed: at 5,000 nodes it is about 2 MiB, which a `String` would hold
    /// in full at the run's peak (`make heap`).
    pub fn write_json(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut out, self)?;
        writeln!(out)?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::SkipReason;

    fn result(node: &str, outcome: Outcome, reason: &str) -> NodeResult {
        NodeResult {
            node: node.into(),
            outcome,
            reason: reason.into(),
            job: Some(format!("prepull-r1-{node}")),
            duration_seconds: Some(1.5),
            images: ImageResults {
                set: crate::workloads::first(1),
                pulled: outcome.is_success() as u64,
                failed: !outcome.is_success() as u64,
                messages: if outcome.is_success() { Vec::new() } else { vec![(0, reason.to_string())] },
                ..Default::default()
            },
            startup_taint: None,
            puller_kept: false,
            left_out: Default::default(),
            replaced: Vec::new(),
            not_replaced: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn report(results: Vec<NodeResult>, skipped: &[&str]) -> Report {
        let skipped: Vec<Skipped> =
            skipped.iter().map(|n| Skipped { node: n.to_string(), reason: SkipReason::Cordoned }).collect();
        let settings = RunSettings { images: vec!["docker.io/library/nginx:1.27".into()], ..Default::default() };
        let mut r = Report::new("r1", settings, results.len() + skipped.len(), &skipped);
        r.images = vec![ImageInfo { image: "docker.io/library/nginx:1.27".into(), workloads: Vec::new() }];
        let failed = results.iter().any(|n| !n.outcome.is_success());
        r.exit_code = if failed { ExitCode::NodesFailed } else { ExitCode::Success };
        r.set_nodes(results, Duration::ZERO);
        r
    }

    #[test]
    fn the_exit_code_and_an_empty_run_are_the_trackers() {
        let mut r = report(vec![], &["s"]);
        let result = RunResult {
            ending: Ending::Done,
            verdicts: Vec::new(),
            lag: LagStats::default(),
            held_back: Vec::new(),
            empty: Some("no eligible node"),
            exit_code: ExitCode::NodesFailed,
        };
        r.finish(result, Duration::ZERO);
        assert_eq!(r.exit_code(), ExitCode::NodesFailed);
        assert_eq!(
            r.summary(),
            "run r1: 0/0 eligible nodes succeeded, 0 failed, 0 timed out, 0 deleted, 0 not created; 1 skipped of 1 nodes; no eligible node; 0.0s; exit 1"
        );
        assert_eq!(serde_json::to_value(&r).unwrap()["exit_code"], 1);
    }

    #[test]
    fn the_settings_are_the_configuration_as_written() {
        let vars = [
            ("QUAY_IMAGES", "nginx:1.27"),
            ("HELPER_IMAGE", "h:1"),
            ("PULLER_KIND", "pod"),
            ("TOLERATIONS", "gpu=present:NoSchedule,*"),
            ("STARTUP_TAINT", "images-pending:NoSchedule"),
            ("MAX_PARALLEL", "7"),
        ];
        let config = Config::from_vars(vars.map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        let json = serde_json::to_value(RunSettings::new(&config, "ops")).unwrap();
        assert_eq!(json["namespace"], "ops");
        assert_eq!(json["images"], serde_json::json!(["docker.io/library/nginx:1.27"]));
        assert_eq!((json["puller_kind"].as_str(), json["strategy"].as_str()), (Some("pod"), Some("kubelet")));
        assert_eq!(json["tolerations"], serde_json::json!(["gpu=present:NoSchedule", "*"]));
        assert_eq!(json["startup_taint"], "images-pending:NoSchedule");
        assert_eq!((json["deadline_seconds"].as_u64(), json["max_parallel"].as_u64()), (Some(300), Some(7)));
        assert_eq!((json["keep_last_puller"].as_bool(), json["pull_policy"].as_str()), (Some(true), Some("auto")));
        assert_eq!(json["resources"]["memory_limit"], "16Mi");
        assert!(json.get("helper_image").is_none() && json.get("startup_taint_only").is_none());
    }

    #[test]
    fn table_lists_problems_first_and_names_reasons() {
        let r = report(
            vec![result("a", Outcome::Succeeded, ""), result("b", Outcome::Failed, "image 1: ErrImagePull: not found")],
            &["c"],
        );
        let table = r.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NODE"));
        assert!(
            lines[1].starts_with("b ") && lines[1].contains("failed") && lines[1].ends_with("not found"),
            "{table}"
        );
        assert!(lines[2].starts_with("c ") && lines[2].contains("skipped") && lines[2].contains("cordoned"));
        assert!(lines[3].starts_with("a ") && lines[3].contains("succeeded") && lines[3].contains("1.5s"));
        assert_eq!(lines[4], "image 1: docker.io/library/nginx:1.27: pulled on 1, present on 0, failed on 1");
        assert_eq!(
            r.summary(),
            "run r1: 1/2 eligible nodes succeeded, 1 failed, 0 timed out, 0 deleted, 0 not created; 1 skipped of 3 nodes; 0.0s; exit 1"
        );
    }

    #[test]
    fn huge_tables_group_problems_and_count_successes() {
        let mut results: Vec<NodeResult> =
            (0..300).map(|i| result(&format!("n{i:04}"), Outcome::Succeeded, "")).collect();
        results.extend((0..40).map(|i| result(&format!("q{i:04}"), Outcome::NotCreated, "exceeded quota")));
        results.push(result("zz", Outcome::Deleted, "Job deleted before it finished"));
        let r = report(results, &[]);
        let table = r.table();
        assert!(table.contains("not-created          40  exceeded quota"), "{table}");
        assert!(table.contains("q0000, q0001, q0002, q0003, q0004, … and 35 more"), "{table}");
        assert!(table.contains("deleted               1  Job deleted before it finished"), "{table}");
        assert!(table.contains("succeeded           300  (not listed)"), "{table}");
        assert!(table.lines().count() < 12, "{table}");
    }

    #[test]
    fn counts_add_up_and_json_has_every_node_and_image() {
        let r = report(
            vec![
                result("a", Outcome::Succeeded, ""),
                result("b", Outcome::NotStarted, "run interrupted before its Job was created"),
                result("c", Outcome::Unfinished, "run interrupted before the Job finished"),
            ],
            &[],
        );
        assert_eq!(r.counts().values().sum::<usize>(), r.nodes.len());
        let mut buffer = Vec::new();
        r.write_json(&mut buffer).unwrap();
        assert_eq!(buffer.last(), Some(&b'\n'));
        let json: serde_json::Value = serde_json::from_slice(&buffer).unwrap();
        assert_eq!(json["run_id"], "r1");
        assert_eq!(json["counts"]["not-started"], 1);
        assert_eq!(json["exit_code"], 1);
        assert_eq!(json["eligible"], 3);
        assert!(json.get("interrupted_by").is_none() && json.get("fatal_error").is_none());
        let mut stopped = r.clone();
        stopped.stopped = Some(Stopped::Signal(Signal::Terminate));
        stopped.exit_code = ExitCode::Terminated;
        let json = serde_json::to_value(&stopped).unwrap();
        assert_eq!((json["interrupted_by"].as_str(), json["exit_code"].as_u64()), (Some("SIGTERM"), Some(143)));
        stopped.stopped = Some(Stopped::Fatal("forbidden: cannot create jobs.batch".into()));
        stopped.exit_code = ExitCode::ClusterError;
        let json = serde_json::to_value(&stopped).unwrap();
        assert_eq!(json["fatal_error"], "forbidden: cannot create jobs.batch");
        assert_eq!(json["exit_code"], 3);
        assert_eq!(json["nodes"][0]["images"][0]["result"], "pulled");
        assert_eq!(json["nodes"][1]["outcome"], "not-started");
        assert_eq!(json["nodes"][1]["images"][0]["result"], "failed");
    }
}
