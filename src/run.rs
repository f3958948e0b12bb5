//! The data path, end to end: config → eligible nodes → puller specs → create → watch → per-node
//! outcomes → report and exit code. This module only connects the steps: every decision is in the
//! modules it calls, and after the node list in the [`Tracker`], which one loop feeds with the Job
//! and pod watches (started, and listed, before the first create), the answers of the creates, the
//! clock and signals, carrying out the [`Action`]s it answers with.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::cluster::{Cluster, Object, SelfInfo, plural};
use crate::config::{Config, ConfigError, ReportFormat};
use crate::error::{Error, Result};
use crate::exit_code::ExitCode;
use crate::nodes::{Eligibility, EligibleNode, Partition};
use crate::policy::Policy;
use crate::pullers::{Puller, PullerKind, PullerTemplate, RunIdentity};
use crate::report::{Report, RunSettings};
use crate::signal::{Shutdown, Signal, signalled, unless_signalled};
use crate::taints::StartupTaint;
use crate::tracker::{Action, Ending, Input, Progress, Tracker};

/// How often progress is logged while the loop runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// After the loop, how long deletes still in flight may take (they are best effort).
const DELETES_AFTER: Duration = Duration::from_secs(5);

/// How a run ended without an error.
#[derive(Debug)]
pub enum Finished {
    /// `DRY_RUN=true`: the Jobs were printed, nothing was created.
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

/// `call`, or `Finished::Stopped` when a signal comes first.
macro_rules! or_stopped {
    ($shutdown:expr, $call:expr) => {
        match unless_signalled($shutdown, $call).await {
            Ok(value) => value?,
            Err(signal) => return Ok(Finished::Stopped(signal)),
        }
    };
}

/// One whole run. The report (or the dry-run YAML) goes to `out`; logs go through tracing.
pub async fn run(
    cluster: &Cluster,
    config: &Config,
    mut shutdown: Shutdown,
    out: &mut (dyn Write + Send),
) -> Result<Finished> {
    let started = Instant::now();
    for duplicate in &config.duplicate_images {
        warn!(image = %duplicate, "QUAY_IMAGES lists this image twice (after normalization); pulling it once");
    }
    let me = match &config.pod {
        Some(pod) => or_stopped!(&mut shutdown, cluster.inspect_self(pod)),
        None => SelfInfo::default(),
    };
    let policy = Policy { run_deadline: me.run_deadline.clone(), ..Policy::new(config) };
    let identity = RunIdentity::decide(config, &me, cluster.namespace(), Timestamp::now())?;
    let template = PullerTemplate::new(config, &policy, identity);
    info!(
        run = %template.run_id,
        namespace = %template.namespace,
        strategy = config.strategy.name(),
        images = config.images.len(),
        deadline_seconds = config.deadline_seconds,
        "starting pre-pull run"
    );
    if !config.dry_run {
        or_stopped!(&mut shutdown, preflight(cluster, config));
    }

    // What earlier runs left (deleted, kept or replaced by the tracker), before the nodes: which of
    // their nodes are gone shows in the node list.
    let leftovers = if config.dry_run {
        Vec::new()
    } else {
        or_stopped!(&mut shutdown, cluster.leftovers(&template.other_runs_selector()))
    };
    let rule = Eligibility {
        tolerations: config.tolerations.clone(),
        startup: config.startup_taint.clone(),
        startup_only: config.startup_taint_only,
        skip_present: config.skip_present,
        pull_policy: Some(config.pull_policy),
        images: config.images.clone(),
    };
    let mut partition = Partition { asked: leftovers.iter().map(|l| l.node.clone()).collect(), ..Default::default() };
    let total_nodes = or_stopped!(
        &mut shutdown,
        cluster.for_each_node_page(config.node_selector.as_deref(), |page| partition.add(&page, &rule))
    );
    let Partition { eligible, skipped, taints, not_considered, asked, listed } = partition.sorted();
    let mut template = template;
    template.taints = taints;
    // A node is known to be gone only when every node was listed (no NODE_SELECTOR).
    let every_node_listed = config.node_selector.is_none();
    let gone = move |node: &str| every_node_listed && asked.contains(node) && !listed.contains(node);
    for s in &skipped {
        info!(node = %s.node, reason = %s.reason, "skipping node");
    }
    info!(nodes = total_nodes, eligible = eligible.len(), skipped = skipped.len(), not_considered, "listed nodes");

    if config.dry_run {
        print_pullers(out, &template, &eligible)?;
        info!(pullers = eligible.len(), "dry run: printed the pullers, created nothing");
        return Ok(Finished::DryRun { pullers: eligible.len() });
    }

    let mut report = Report::new(&template.run_id, settings(config, &template), total_nodes, &skipped);
    report.not_considered = not_considered;
    drop(skipped);
    let selector = template.run_selector();
    let run_id = template.run_id.clone();
    let tick = policy.tick;
    let mut tracker = Tracker::new(policy, template, eligible, leftovers, gone, Timestamp::now());
    drive(cluster, config.puller_kind, &selector, tick, config.startup_taint.as_ref(), &mut tracker, &mut shutdown)
        .await;
    let result = tracker.finish(Timestamp::now());
    if let Ending::Fatal(e) = &result.ending {
        error!("{e}");
    }
    report.finish(result, &config.images, started.elapsed());

    let summary = report.summary();
    match config.report_format {
        ReportFormat::Text => writeln!(out, "{}{summary}", report.table()),
        ReportFormat::Json => report.write_json(std::io::BufWriter::new(&mut *out)),
    }
    .map_err(Error::output)?;
    if let Some(path) = &config.report_file
        && let Err(e) = std::fs::File::create(path).and_then(|f| report.write_json(std::io::BufWriter::new(f)))
    {
        error!(file = %path, error = %e, "cannot write REPORT_FILE");
    }
    let lag = report.job_start_lag;
    info!(
        run = %run_id,
        counts = ?report.counts(),
        skipped = report.skipped.len(),
        job_start_lag_median_ms = lag.median_ms,
        job_start_lag_max_ms = lag.max_ms,
        exit_code = report.exit_code().code(),
        "run finished"
    );
    if let Some(target) = &me.event_target {
        let instance = config.pod.as_ref().map(|p| p.name.clone());
        let success = report.exit_code() == ExitCode::Success;
        let publish = cluster.publish_event(target, success, summary, instance);
        if let Err(signal) = unless_signalled(&mut shutdown, publish).await {
            warn!(signal = signal.name(), "signal while publishing the summary Event; not waiting for it");
        }
    }
    Ok(Finished::Report(Box::new(report)))
}

/// A watch's next item as a tracker input (errors classified in error.rs).
fn watch_input<K: Object>(
    item: Option<Result<watcher::Event<K>, watcher::Error>>,
    namespace: &str,
    wrap: fn(watcher::Event<K>) -> Input,
) -> Input {
    let action = || format!("watch {} in namespace {namespace:?}", plural::<K>());
    match item {
        Some(Ok(event)) => wrap(event),
        Some(Err(e)) => Input::WatchFailed(Error::watch(action(), e)),
        None => Input::WatchFailed(Error::WatchEnded(action())),
    }
}

/// The one loop: feed the tracker what happens, carry out what it asks, until it says the run ended.
async fn drive(
    cluster: &Cluster,
    kind: PullerKind,
    selector: &str,
    tick: Duration,
    startup_taint: Option<&StartupTaint>,
    tracker: &mut Tracker,
    shutdown: &mut Shutdown,
) {
    let ns = cluster.namespace();
    // One watch per kind the run creates: its Jobs and their pods, or its pods alone.
    let jobs = match kind {
        PullerKind::Job => cluster.watch::<Job>(selector).boxed(),
        PullerKind::Pod => futures::stream::pending().boxed(),
    };
    let pods = cluster.watch::<Pod>(selector);
    futures::pin_mut!(jobs, pods);
    let mut creates = FuturesUnordered::new();
    let mut deletes = FuturesUnordered::new();
    let mut untaints = FuturesUnordered::new();
    let mut clock = tokio::time::interval(tick);
    let mut progress = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let loop_started = Instant::now();
    let mut signal_seen = false;
    let mut actions = tracker.take_actions();
    loop {
        for action in actions {
            match action {
                Action::Create(puller) => creates.push(async move {
                    let name = puller.name().to_string();
                    let result = match puller {
                        Puller::Job(job) => cluster.create(&*job).await.map(|c| c.map(Puller::Job)),
                        Puller::Pod(pod) => cluster.create(&*pod).await.map(|c| c.map(Puller::Pod)),
                    };
                    (name, result)
                }),
                Action::Delete { kind, name, uid } => {
                    deletes.push(async move { cluster.delete_puller(kind, &name, uid.as_deref()).await })
                }
                Action::RemoveTaint { node } => untaints.push(async move {
                    let taint = startup_taint.expect("only nodes with the startup taint have it removed");
                    let result = cluster.remove_startup_taint(&node, taint).await;
                    (node, result)
                }),
            }
        }
        if tracker.ending().is_some() {
            break;
        }
        let input = tokio::select! {
            item = jobs.next() => watch_input(item, ns, Input::Jobs),
            item = pods.next() => watch_input(item, ns, Input::Pods),
            Some((name, result)) = creates.next(), if !creates.is_empty() => Input::Created { name, result },
            Some(()) = deletes.next(), if !deletes.is_empty() => {
                actions = Vec::new();
                continue;
            }
            Some((node, result)) = untaints.next(), if !untaints.is_empty() => Input::TaintRemoved { node, result },
            _ = clock.tick() => Input::Tick,
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
        actions = tracker.step(Timestamp::now(), input);
    }
    // Deleting concluded Jobs is best effort; give the ones in flight a moment, not the run's time.
    let _ = tokio::time::timeout(DELETES_AFTER, deletes.collect::<Vec<_>>()).await;
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

/// Checks that need the cluster but belong to the configuration: a missing pull secret or priority
/// class is bad input (exit 2), found before anything is created.
async fn preflight(cluster: &Cluster, config: &Config) -> Result<()> {
    let mut problems = Vec::new();
    if !config.image_pull_secrets.is_empty() {
        for missing in cluster.missing_secrets(&config.image_pull_secrets).await? {
            problems.push(ConfigError {
                variable: "IMAGE_PULL_SECRETS",
                value: Some(missing),
                problem: format!("no Secret of that name in namespace {:?}", cluster.namespace()),
            });
        }
    }
    if let Some(name) = &config.priority_class_name
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

fn settings(config: &Config, template: &PullerTemplate) -> RunSettings {
    RunSettings {
        namespace: template.namespace.clone(),
        strategy: config.strategy.name().into(),
        puller_kind: config.puller_kind.noun().to_lowercase(),
        images: config.images.iter().map(|i| i.normalized.clone()).collect(),
        deadline_seconds: config.deadline_seconds,
        pull_policy: config.pull_policy.name().into(),
        max_parallel: config.max_parallel,
        seed_nodes: config.seed_nodes,
        skip_present: config.skip_present,
        node_selector: config.node_selector.clone(),
        startup_taint: config.startup_taint.as_ref().map(ToString::to_string),
        startup_taint_only: config.startup_taint_only,
        keep_last_puller: config.keep_last_puller,
    }
}

/// `DRY_RUN=true`: every puller (Job or pod) as one YAML document.
fn print_pullers(out: &mut (dyn Write + Send), template: &PullerTemplate, nodes: &[EligibleNode]) -> Result<()> {
    for node in nodes.iter().filter(|n| n.images != 0) {
        let yaml = serde_saphyr::to_string(&template.build(node)).map_err(Error::output)?;
        write!(out, "---\n{yaml}").map_err(Error::output)?;
    }
    Ok(())
}

/// The whole program minus process concerns: validate `vars` (nothing is sent when they are bad),
/// connect with `connect`, run. `main` passes the process environment and [`Cluster::connect`].
pub async fn execute<V, C, F>(
    vars: V,
    connect: C,
    mut shutdown: Shutdown,
    out: &mut (dyn Write + Send),
) -> Result<Finished>
where
    V: IntoIterator<Item = (String, String)>,
    C: FnOnce(Option<String>) -> F,
    F: Future<Output = Result<Cluster>>,
{
    let config = Config::from_vars(vars).map_err(Error::Config)?;
    let cluster = or_stopped!(&mut shutdown, connect(config.namespace.clone()));
    run(&cluster, &config, shutdown, out).await
}
