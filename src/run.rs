//! The data path, end to end: config → eligible nodes → puller specs → create → watch → per-node
//! outcomes → report and exit code, as three phases:
//! - [`plan`]: who the run is, the checks that belong to the configuration, what earlier runs left,
//!   the node list; it ends with a [`Tracker`] and its [`Plan`];
//! - [`drive`]: one loop feeds the tracker what happens (its [`Input::Start`] first, then watch
//!   events, the answers of its requests, the clock, signals) and carries out the [`Action`]s it
//!   answers with, until it says the run ended;
//! - [`print`] and [`announce`]: the report on stdout (and `REPORT_FILE`), the summary as an Event.
//!
//! This module decides nothing: every decision is in the modules it calls, after the node list in
//! the tracker.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered, SelectAll};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::watcher;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::cluster::{Cluster, Object, plural};
use crate::config::{Config, ConfigError, ReportFormat};
use crate::error::{Error, Result};
use crate::exit_code::ExitCode;
use crate::nodes::{Eligibility, EligibleNode, Partition};
use crate::policy::Policy;
use crate::pullers::{Puller, PullerTemplate, RunIdentity};
use crate::report::{ImageInfo, Report, RunSettings};
use crate::signal::{Shutdown, Signal, signalled, unless_signalled};
use crate::tracker::{Action, Ending, Input, Plan, Progress, RunResult, Tracker};
use crate::types::{Announcement, SelfInfo, Watched};
use crate::workloads::Catalog;

/// How a run ended without an error.
#[derive(Debug)]
pub enum Finished {
    /// `DRY_RUN=true`: the pullers were printed, nothing was created.
    DryRun {
        pullers: usize,
    },
    /// A signal arrived before the nodes were listed: nothing was created, no report.
    Stopped(Signal),
    Report(Box<Report>),
}

impl Finished {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Finished::DryRun { .. } => ExitCode::Success,
            Finished::Stopped(signal) => (*signal).into(),
            Finished::Report(report) => report.exit_code(),
        }
    }
}

/// The run's clock: tokio's (so that the mock-API tests run on paused time), read as wall time from
/// the moment the run started. The tracker gets every time from it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Timestamp,
    at: Instant,
}

impl Clock {
    /// Wall time now, advancing with tokio's clock.
    pub fn system() -> Clock {
        Clock::starting_at(Timestamp::now())
    }

    /// A clock that reads `origin` now, advancing with tokio's clock.
    pub fn starting_at(origin: Timestamp) -> Clock {
        Clock { origin, at: Instant::now() }
    }

    pub fn now(&self) -> Timestamp {
        self.origin + SignedDuration::try_from(self.at.elapsed()).unwrap_or(SignedDuration::MAX)
    }
}

/// `call`, or `Finished::Stopped` when a signal comes first.
macro_rules! or_stopped {
    ($shutdown:expr, $call:expr) => {
        match unless_signalled($shutdown, $call).await {
            Ok(value) => value?,
            Err(signal) => return Ok(Finished::Stopped(signal)),
        }
    };
}

/// What [`plan`] hands on: the tracker and its start, and what the report and the Event need.
struct Planned {
    tracker: Tracker,
    plan: Plan,
    report: Report,
    me: SelfInfo,
}

/// One whole run. The report (or the dry-run YAML) goes to `out`; logs go through tracing.
pub async fn run(
    cluster: &Cluster,
    config: &Config,
    mut shutdown: Shutdown,
    out: &mut (dyn Write + Send),
    clock: Clock,
) -> Result<Finished> {
    let started = Instant::now();
    let Planned { tracker, plan, report, me } = or_stopped!(&mut shutdown, self::plan(cluster, config, clock));
    if config.output.dry_run {
        let pullers = print_pullers(out, &tracker, &plan.eligible)?;
        info!(pullers, "dry run: printed the pullers, created nothing");
        return Ok(Finished::DryRun { pullers });
    }
    let result = drive(cluster, tracker, plan, &mut shutdown, clock).await;
    if let Ending::Fatal(e) = &result.ending {
        error!("{e}");
    }
    let mut report = report;
    report.finish(result, started.elapsed());
    print(config, &report, out)?;
    announce(cluster, &me, &report, &mut shutdown).await;
    Ok(Finished::Report(Box::new(report)))
}

/// Everything before the first create: the controller's own pod, the run's identity and template,
/// the checks that need the cluster but belong to the configuration, what earlier runs left (which
/// of their nodes are gone shows in the node list), and the node list, page by page.
async fn plan(cluster: &Cluster, config: &Config, clock: Clock) -> Result<Planned> {
    for duplicate in &config.duplicate_images {
        warn!(image = %duplicate, "QUAY_IMAGES lists this image twice (after normalization); pulling it once");
    }
    let me = match &config.placement.pod {
        Some(pod) => cluster.inspect_self(pod).await?,
        None => SelfInfo::default(),
    };
    let identity = RunIdentity::decide(config, &me, cluster.namespace(), clock.now())?;
    info!(
        run = %identity.run_id,
        namespace = %identity.namespace,
        strategy = config.puller.strategy.name(),
        images = config.images.len(),
        deadline_seconds = config.timing.deadline_seconds,
        "starting pre-pull run"
    );
    let dry_run = config.output.dry_run;
    if !dry_run {
        preflight(cluster, config).await?;
    }
    let mut catalog = match &config.selection.images_from {
        None => Catalog::explicit(config.images.clone()),
        Some(from) => {
            let listing = Instant::now();
            let mut catalog = Catalog::explicit(config.images.clone());
            let stats = cluster.workloads(from, |workload| catalog.add(workload)).await?;
            catalog.listed();
            for (workload, problem) in &catalog.unparsable {
                warn!(%workload, %problem, "an image of this workload is no image reference; left out");
            }
            info!(
                workloads = stats.workloads,
                objects = stats.objects,
                requests = stats.requests,
                bytes = stats.bytes,
                elapsed_ms = listing.elapsed().as_millis() as u64,
                images = catalog.from_workloads(),
                "listed the workloads (IMAGES_FROM)"
            );
            catalog
        }
    };
    let leftovers = if dry_run { Vec::new() } else { cluster.leftovers(&identity.other_runs_selector()).await? };
    let rule = Eligibility::from(config);
    let mut partition = Partition { asked: leftovers.iter().map(|l| l.node.clone()).collect(), ..Default::default() };
    let selector = config.selection.node_selector.as_deref();
    let total_nodes = cluster.for_each_node_page(selector, |page| partition.add(&page, &rule, &mut catalog)).await?;
    let Partition { eligible, skipped, unreachable, taints, not_considered, asked, listed } =
        partition.finish(&mut catalog);
    let images = ImageInfo::of(&catalog);
    let mut template = PullerTemplate::new(config, identity, catalog);
    template.taints = taints;
    // The nodes earlier runs left pullers for that the list did not show: gone, unless a
    // NODE_SELECTOR left them out (then one list of every node's name says which still exist).
    let unlisted: HashSet<String> = asked.difference(&listed).cloned().collect();
    let gone = match selector {
        Some(_) if !unlisted.is_empty() => {
            let existing = cluster.existing_nodes(&unlisted).await?;
            unlisted.difference(&existing).cloned().collect()
        }
        _ => unlisted,
    };
    for s in &skipped {
        info!(node = %s.node, reason = %s.reason, "skipping node");
    }
    for u in &unreachable {
        warn!(node = %u.node.name, reason = %u.reason, "held by the startup taint, and no puller can reach it");
    }
    info!(nodes = total_nodes, eligible = eligible.len(), skipped = skipped.len(), not_considered, "listed nodes");

    let settings = RunSettings::new(config, &template.namespace);
    let mut report = Report::new(&template.run_id, settings, total_nodes, &skipped);
    report.not_considered = not_considered;
    report.images = images;
    let policy = Policy { run_deadline: me.run_deadline.clone(), ..Policy::from(config) };
    let plan = Plan { eligible, leftovers, gone, unreachable };
    Ok(Planned { tracker: Tracker::new(policy, template), plan, report, me })
}

/// Checks that need the cluster but belong to the configuration: a missing pull secret or priority
/// class is bad input (exit 2), found before anything is created.
async fn preflight(cluster: &Cluster, config: &Config) -> Result<()> {
    let mut problems = Vec::new();
    let puller = &config.puller;
    if !puller.image_pull_secrets.is_empty() {
        for missing in cluster.missing_secrets(&puller.image_pull_secrets).await? {
            problems.push(ConfigError {
                variable: "IMAGE_PULL_SECRETS",
                value: Some(missing),
                problem: format!("no Secret of that name in namespace {:?}", cluster.namespace()),
            });
        }
    }
    if let Some(name) = &puller.priority_class_name
        && !cluster.priority_class_exists(name).await?
    {
        problems.push(ConfigError {
            variable: "PRIORITY_CLASS_NAME",
            value: Some(name.clone()),
            problem: "no PriorityClass of that name".into(),
        });
    }
    if problems.is_empty() { Ok(()) } else { Err(Error::Config(problems)) }
}

/// `DRY_RUN=true`: every puller (Job or pod) as one YAML document, after comments that say which
/// images its node gets and why (`IMAGES_FROM`: the workloads that could run there); how many.
fn print_pullers(out: &mut (dyn Write + Send), tracker: &Tracker, nodes: &[EligibleNode]) -> Result<usize> {
    let mut count = 0;
    for (node, puller) in tracker.pullers(nodes) {
        let mut comment = String::new();
        if tracker.images_from() {
            for line in tracker.why(node) {
                comment.push_str(&format!("# {line}\n"));
            }
        }
        let yaml = serde_saphyr::to_string(&puller).map_err(Error::output)?;
        write!(out, "---\n{comment}{yaml}").map_err(Error::output)?;
        count += 1;
    }
    Ok(count)
}

/// One label-selected watch of kind `K`, as tracker inputs (errors classified in error.rs; a watch
/// that ends, which kube-runtime's never does, says so once).
fn watch<K: Object>(
    cluster: &Cluster,
    selector: &str,
    wrap: fn(watcher::Event<K>) -> Input,
) -> BoxStream<'static, Input> {
    let action = format!("watch {} in namespace {:?}", plural::<K>(), cluster.namespace());
    let ended = Error::WatchEnded(action.clone());
    cluster
        .watch::<K>(selector)
        .map(move |item| match item {
            Ok(event) => wrap(event),
            Err(e) => Input::WatchFailed(Error::watch(action.clone(), e)),
        })
        .chain(futures::stream::once(async move { Input::WatchFailed(ended) }))
        .boxed()
}

/// The node watch of `STARTUP_TAINT_WATCH_SECONDS`, as tracker inputs.
fn watch_nodes(cluster: &Cluster, selector: Option<&str>) -> BoxStream<'static, Input> {
    let ended = Error::WatchEnded("watch nodes".into());
    cluster
        .watch_nodes(selector)
        .map(|item| match item {
            Ok(event) => Input::Nodes(event),
            Err(e) => Input::WatchFailed(Error::watch("watch nodes", e)),
        })
        .chain(futures::stream::once(async move { Input::WatchFailed(ended) }))
        .boxed()
}

/// A request the tracker asked for, as the input its answer becomes.
fn request(cluster: &Cluster, action: Action) -> Option<BoxFuture<'_, Input>> {
    Some(match action {
        Action::Create(puller) => async move {
            let name = puller.name().to_string();
            let result = match puller {
                Puller::Job(job) => cluster.create(job).await.map(|c| c.map(Puller::Job)),
                Puller::Pod(pod) => cluster.create(pod).await.map(|c| c.map(Puller::Pod)),
            };
            Input::Created { name, result }
        }
        .boxed(),
        Action::Delete { kind, name, uid } => async move {
            let result = cluster.delete_puller(kind, &name, uid.as_deref()).await;
            Input::Deleted { name, result }
        }
        .boxed(),
        Action::RemoveTaint { node, taint } => async move {
            let result = cluster.remove_startup_taint(&node, &taint).await;
            Input::TaintRemoved { node, result }
        }
        .boxed(),
        Action::Announce { node, event } => async move {
            let result = cluster.publish(&node.reference(), &event).await;
            Input::Announced { node: node.name, result }
        }
        .boxed(),
        Action::Watch(_) | Action::Warn(_) => return None,
    })
}

/// The one loop: start the tracker, feed it what happens, carry out what it asks, until it says the
/// run ended; then its result.
async fn drive(
    cluster: &Cluster,
    mut tracker: Tracker,
    plan: Plan,
    shutdown: &mut Shutdown,
    clock: Clock,
) -> RunResult {
    let selector = tracker.run_selector();
    let (tick, every) = (tracker.policy().tick, tracker.policy().progress_every);
    let mut watches: SelectAll<BoxStream<'static, Input>> = SelectAll::new();
    let mut requests = FuturesUnordered::new();
    let mut clock_tick = tokio::time::interval(tick);
    let mut progress = tokio::time::interval_at(Instant::now() + every, every);
    let loop_started = Instant::now();
    let mut signal_seen = false;
    let mut actions = tracker.step(clock.now(), Input::Start(Box::new(plan)));
    loop {
        for action in actions {
            match action {
                Action::Watch(Watched::Jobs) => watches.push(watch::<Job>(cluster, &selector, Input::Jobs)),
                Action::Watch(Watched::Pods) => watches.push(watch::<Pod>(cluster, &selector, Input::Pods)),
                Action::Watch(Watched::Nodes) => watches.push(watch_nodes(cluster, tracker.node_selector())),
                Action::Warn(warning) => warn!("{warning}"),
                action => requests.extend(request(cluster, action)),
            }
        }
        if tracker.ending().is_some() {
            break;
        }
        let input = tokio::select! {
            Some(input) = watches.next(), if !watches.is_empty() => input,
            Some(input) = requests.next(), if !requests.is_empty() => input,
            _ = clock_tick.tick() => Input::Tick,
            _ = progress.tick() => {
                log_progress(tracker.progress(), tracker.lag().median_ms, loop_started.elapsed());
                actions = Vec::new();
                continue;
            }
            signal = signalled(shutdown), if !signal_seen => {
                signal_seen = true;
                Input::Signal(signal)
            }
        };
        actions = tracker.step(clock.now(), input);
    }
    tracker.finish(clock.now())
}

fn log_progress(p: Progress, lag_median_ms: u64, elapsed: Duration) {
    let eta = (p.done > 0 && p.done < p.total)
        .then(|| elapsed.as_secs_f64() / p.done as f64 * (p.total - p.done) as f64)
        .map(|s| format!("{s:.0}s"))
        .unwrap_or_else(|| "-".into());
    info!(
        "progress: {}/{} done ({} failed), {} queued, {} creating, {} pulling; Job start lag median {:.1}s; ETA {eta}",
        p.done,
        p.total,
        p.failed,
        p.queued,
        p.creating,
        p.pulling,
        lag_median_ms as f64 / 1000.0
    );
}

/// The report on stdout (text or JSON) and in `REPORT_FILE`, and the final log line.
fn print(config: &Config, report: &Report, out: &mut (dyn Write + Send)) -> Result<()> {
    match config.output.report_format {
        ReportFormat::Text => writeln!(out, "{}{}", report.table(), report.summary()),
        ReportFormat::Json => report.write_json(std::io::BufWriter::new(&mut *out)),
    }
    .map_err(Error::output)?;
    if let Some(path) = &config.output.report_file
        && let Err(e) = std::fs::File::create(path).and_then(|f| report.write_json(std::io::BufWriter::new(f)))
    {
        error!(file = %path, error = %e, "cannot write REPORT_FILE");
    }
    let lag = report.job_start_lag;
    info!(
        run = %report.run_id,
        counts = ?report.counts(),
        skipped = report.skipped.len(),
        job_start_lag_median_ms = lag.median_ms,
        job_start_lag_max_ms = lag.max_ms,
        exit_code = report.exit_code().code(),
        "run finished"
    );
    Ok(())
}

/// The summary line as a Kubernetes Event on the run's Job (or its pod), when it runs in one.
/// Best effort: a failure is only logged.
async fn announce(cluster: &Cluster, me: &SelfInfo, report: &Report, shutdown: &mut Shutdown) {
    let Some(target) = &me.event_target else { return };
    let success = report.exit_code() == ExitCode::Success;
    let event = Announcement {
        warning: !success,
        reason: if success { "PrePullSucceeded" } else { "PrePullFailed" },
        action: "PrePull",
        note: report.summary(),
    };
    match unless_signalled(shutdown, cluster.publish(target, &event)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "could not publish the summary Event"),
        Err(signal) => warn!(signal = signal.name(), "signal while publishing the summary Event; not waiting for it"),
    }
}

/// The whole program minus process concerns: validate `vars` (nothing is sent when they are bad),
/// connect with `connect`, run on `clock`. `main` passes the process environment,
/// [`Cluster::connect`] and [`Clock::system`].
pub async fn execute<V, C, F>(
    vars: V,
    connect: C,
    mut shutdown: Shutdown,
    out: &mut (dyn Write + Send),
    clock: Clock,
) -> Result<Finished>
where
    V: IntoIterator<Item = (String, String)>,
    C: FnOnce(Option<String>) -> F,
    F: Future<Output = Result<Cluster>>,
{
    let config = Config::from_vars(vars).map_err(Error::Config)?;
    let cluster = or_stopped!(&mut shutdown, connect(config.placement.namespace.clone()))
        .with_instance(config.placement.pod.as_ref().map(|p| p.name.clone()));
    run(&cluster, &config, shutdown, out, clock).await
}
