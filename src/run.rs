//! The data path, end to end: config → eligible nodes → Job specs → create → watch → report.
//!
//! After the nodes are listed, one loop owns the run: the Job and pod watches (started, and their
//! initial lists done, before the first create), the creates in flight, the clock, and signals all
//! arrive as events of one `select!`, and the synchronous [`Tracker`] decides what they mean.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::cluster::{Cluster, Created, SelfInfo, fatal_watch_error};
use crate::config::{Config, ConfigError, PullStrategy, ReportFormat};
use crate::error::{Error, ErrorClass, Result};
use crate::exit_code::ExitCode;
use crate::jobs::{Adoption, JobTemplate};
use crate::nodes::{Eligibility, EligibleNode, Partition};
use crate::report::{HeldBack, NodeResult, Report, RunSettings};
use crate::tracker::{Action, CreateResult, Policy, Tracker};

/// How often the clock is fed to the tracker (pull-error grace, per-Job deadlines).
const TICK: Duration = Duration::from_secs(1);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// After the first signal, how long creates already sent may take to answer before the report.
const DRAIN_CREATES: Duration = Duration::from_secs(5);
/// Beyond the Job's own deadline, how long the run waits for the Job controller to say so (half
/// the deadline, at most this).
const MAX_DEADLINE_SLACK: Duration = Duration::from_secs(15);
/// How long the watches may take to list before the first create.
const WATCH_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A signal that ends the run early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    pub fn exit_code(self) -> ExitCode {
        match self {
            Signal::Interrupt => ExitCode::Interrupted,
            Signal::Terminate => ExitCode::Terminated,
        }
    }
}

/// The first signal, as the process's handler forwards it (`None` until one arrives).
pub type Shutdown = watch::Receiver<Option<Signal>>;

/// The process's signal policy, fed by `signals` (SIGTERM/SIGINT as they arrive): the first is
/// forwarded to the run (graceful: no more creates, a partial report); a second calls `exit_now`
/// (the process exits at once, like fd and kube-runtime's controllers).
pub async fn forward_signals(
    mut signals: impl futures::Stream<Item = Signal> + Unpin,
    tx: watch::Sender<Option<Signal>>,
    exit_now: impl FnOnce(Signal),
) {
    let Some(first) = signals.next().await else { return };
    warn!(
        signal = first.name(),
        "signal received: no more creates; finishing with a partial report (again to exit at once)"
    );
    let _ = tx.send(Some(first));
    if let Some(second) = signals.next().await {
        exit_now(second);
    }
}

/// Resolves with the first signal. A closed channel is not a signal: then it never resolves.
pub async fn signalled(shutdown: &mut Shutdown) -> Signal {
    loop {
        if let Some(signal) = *shutdown.borrow_and_update() {
            return signal;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `call`, unless a signal comes first.
async fn unless_signalled<T>(shutdown: &mut Shutdown, call: impl Future<Output = T>) -> Result<T, Signal> {
    tokio::select! {
        value = call => Ok(value),
        signal = signalled(shutdown) => Err(signal),
    }
}

/// How a run ended without an error.
#[derive(Debug)]
pub enum Finished {
    /// `DRY_RUN=true`: the Jobs were printed, nothing was created.
    DryRun {
        jobs: usize,
    },
    /// A signal arrived before the nodes were listed: nothing was created, no report.
    Stopped(Signal),
    Report(Box<Report>),
}

impl Finished {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Finished::DryRun { .. } => ExitCode::Success,
            Finished::Stopped(signal) => signal.exit_code(),
            Finished::Report(report) => report.exit_code(),
        }
    }
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
        Some(pod) => match unless_signalled(&mut shutdown, cluster.inspect_self(pod)).await {
            Ok(me) => me?,
            Err(signal) => return Ok(Finished::Stopped(signal)),
        },
        None => SelfInfo::default(),
    };
    let template = job_template(cluster, config, &me)?;
    info!(
        run = %template.run_id,
        namespace = %template.namespace,
        strategy = config.strategy.name(),
        images = config.images.len(),
        deadline_seconds = config.deadline_seconds,
        "starting pre-pull run"
    );
    if !config.dry_run {
        match unless_signalled(&mut shutdown, preflight(cluster, config)).await {
            Ok(checked) => checked?,
            Err(signal) => return Ok(Finished::Stopped(signal)),
        }
    }

    let rule = Eligibility {
        tolerations: config.tolerations.clone(),
        skip_present: config.skip_present,
        pull_policy: Some(config.pull_policy),
        images: config.images.clone(),
    };
    let mut partition = Partition::default();
    let listing = cluster.for_each_node_page(config.node_selector.as_deref(), |page| partition.add(&page, &rule));
    let total_nodes = match unless_signalled(&mut shutdown, listing).await {
        Ok(total) => total?,
        Err(signal) => return Ok(Finished::Stopped(signal)),
    };
    let Partition { eligible, skipped } = partition.sorted();
    for s in &skipped {
        info!(node = %s.node, reason = %s.reason, "skipping node");
    }
    info!(nodes = total_nodes, eligible = eligible.len(), skipped = skipped.len(), "listed nodes");

    if config.dry_run {
        print_jobs(out, &template, &eligible)?;
        info!(jobs = eligible.len(), "dry run: printed the Jobs, created nothing");
        return Ok(Finished::DryRun { jobs: eligible.len() });
    }

    let mut report = Report::new(&template.run_id, settings(config, &template), total_nodes, &skipped);
    drop(skipped);
    let policy = Policy {
        image_count: config.images.len(),
        // The Job controller's DeadlineExceeded is the authority; this only catches what it misses.
        node_deadline: {
            let job_deadline = Duration::from_secs(template.job_deadline_seconds as u64);
            job_deadline + (job_deadline / 2).clamp(Duration::from_secs(1), MAX_DEADLINE_SLACK)
        },
        pull_error_grace: Duration::from_secs(config.pull_error_grace_seconds),
        create_concurrency: config.create_concurrency,
        max_parallel: config.max_parallel,
        seed_nodes: config.seed_nodes,
        ..Policy::default()
    };
    let mut tracker = Tracker::new(policy, eligible, |node| template.job_name(node));
    if tracker.total() == 0 {
        warn!("no eligible node: nothing to pre-pull");
    } else if let Err(e) = event_loop(cluster, &template, &mut tracker, &mut shutdown, &mut report).await {
        error!("{e}");
        report.fatal = true;
        report.fatal_error = Some(e.to_string());
    }
    if let Some(signal) = report.interrupted {
        warn!(
            signal = signal.name(),
            "interrupted: no more Jobs are created; created Jobs are left to finish and to their TTL"
        );
    }
    let images: Vec<String> = config.images.iter().map(|i| i.normalized.clone()).collect();
    report.held_back_images = tracker
        .broken_images()
        .map(|(i, reason)| HeldBack { image: images[i].clone(), reason: reason.to_string() })
        .collect();
    report.job_start_lag = tracker.lag();
    let verdicts = tracker.verdicts(Timestamp::now());
    drop(tracker);
    report.finish(verdicts.into_iter().map(|v| NodeResult::from_verdict(v, &images)).collect(), started.elapsed());

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
    info!(
        run = %template.run_id,
        counts = ?report.counts,
        skipped = report.skipped.len(),
        job_start_lag_median_ms = report.job_start_lag.median_ms,
        job_start_lag_max_ms = report.job_start_lag.max_ms,
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

/// What a finished create request means for the tracker; `Err` for what stops the run.
fn create_result(template: &JobTemplate, node: &str, result: Result<Created>) -> Result<CreateResult> {
    Ok(match result {
        Ok(Created::New(job)) => CreateResult::Created { created_at: job.metadata.creation_timestamp.map(|t| t.0) },
        Ok(Created::AlreadyExists(job)) => match template.adoption(&job, node) {
            Adoption::Adopt(images) => CreateResult::Adopted { job, images },
            Adoption::Refuse(reason) => CreateResult::Refused(reason),
        },
        Ok(Created::Vanished) => CreateResult::Vanished,
        Err(e) => match e.class() {
            ErrorClass::PerNode => CreateResult::Denied(e.message()),
            ErrorClass::Transient => CreateResult::Transient(e.to_string()),
            // 404 on a create: the namespace is gone. Fatal, like RBAC and authentication.
            ErrorClass::NotFound | ErrorClass::Conflict | ErrorClass::Fatal => return Err(e),
        },
    })
}

/// The one loop: watches, creates, the clock and signals, until every node has a verdict, a
/// signal stops it, or an API error stops the run (returned; the caller still reports).
async fn event_loop(
    cluster: &Cluster,
    template: &JobTemplate,
    tracker: &mut Tracker,
    shutdown: &mut Shutdown,
    report: &mut Report,
) -> Result<()> {
    let selector = template.run_selector();
    let jobs = cluster.watch_jobs(&selector);
    let pods = cluster.watch_pods(&selector);
    futures::pin_mut!(jobs, pods);
    let (mut jobs_listed, mut pods_listed) = (false, false);
    let watch_ready_by = Instant::now() + WATCH_READY_TIMEOUT;
    let mut creates = FuturesUnordered::new();
    let mut deletes = FuturesUnordered::new();
    let mut tick = tokio::time::interval(TICK);
    let mut progress = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut drain_until: Option<Instant> = None;
    let loop_started = Instant::now();
    let mut all_created_logged = false;
    let action = |what: &str| format!("watch {what} in namespace {:?}", cluster.namespace());

    loop {
        if jobs_listed && pods_listed && drain_until.is_none() {
            for node in tracker.next_creates(Timestamp::now()) {
                creates.push(create(cluster, template, node));
            }
        }
        if !all_created_logged && tracker.creating_finished() && creates.is_empty() && jobs_listed && pods_listed {
            all_created_logged = true;
            let p = tracker.progress();
            info!(elapsed_ms = loop_started.elapsed().as_millis() as u64, done = p.done, "no more creates to send");
        }
        if tracker.is_done() || (drain_until.is_some() && creates.is_empty()) {
            break;
        }
        let actions = tokio::select! {
            event = jobs.next() => match event {
                Some(Ok(event)) => {
                    jobs_listed |= matches!(event, watcher::Event::InitDone);
                    tracker.on_job_event(event, Timestamp::now())
                }
                Some(Err(e)) => { watch_failed(&e, action("jobs.batch"))?; Vec::new() }
                None => return Err(Error::WatchEnded(action("jobs.batch"))),
            },
            event = pods.next() => match event {
                Some(Ok(event)) => {
                    pods_listed |= matches!(event, watcher::Event::InitDone);
                    tracker.on_pod_event(event, Timestamp::now())
                }
                Some(Err(e)) => { watch_failed(&e, action("pods"))?; Vec::new() }
                None => return Err(Error::WatchEnded(action("pods"))),
            },
            Some((job, node, result)) = creates.next(), if !creates.is_empty() => {
                let result = create_result(template, &node, result)?;
                tracker.on_create(&job, result, Timestamp::now())
            }
            Some(()) = deletes.next(), if !deletes.is_empty() => Vec::new(),
            _ = tick.tick() => {
                if !(jobs_listed && pods_listed) && Instant::now() >= watch_ready_by {
                    return Err(Error::WatchEnded(format!(
                        "list this run's Jobs and pods within {}s before creating any", WATCH_READY_TIMEOUT.as_secs()
                    )));
                }
                tracker.on_tick(Timestamp::now())
            }
            _ = progress.tick() => {
                log_progress(tracker, loop_started.elapsed());
                Vec::new()
            }
            signal = signalled(shutdown), if drain_until.is_none() => {
                report.interrupted = Some(signal);
                tracker.interrupt();
                drain_until = Some(Instant::now() + DRAIN_CREATES);
                Vec::new()
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => break,
        };
        for Action::DeleteJob(name) in actions {
            deletes.push(async move { cluster.delete_job(&name).await });
        }
    }
    // Deleting concluded Jobs is best effort; give the ones in flight a moment, not the run's time.
    let _ = tokio::time::timeout(Duration::from_secs(5), deletes.collect::<Vec<_>>()).await;
    Ok(())
}

/// Build and send one Job; answers (job name, node name, result).
async fn create(cluster: &Cluster, template: &JobTemplate, node: EligibleNode) -> (String, String, Result<Created>) {
    let job = template.build(&node);
    let name = job.metadata.name.clone().unwrap_or_default();
    let result = cluster.create_job(&job).await;
    (name, node.name, result)
}

fn log_progress(tracker: &Tracker, elapsed: Duration) {
    let p = tracker.progress();
    let lag = tracker.lag();
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
        lag.median_ms as f64 / 1000.0
    );
}

/// A watch error stops the run when no retry can fix it; otherwise the watcher backs off and retries.
fn watch_failed(e: &watcher::Error, action: String) -> Result<()> {
    match fatal_watch_error(e, action.clone()) {
        Some(fatal) => Err(fatal),
        None => {
            warn!(error = %e, "cannot {action} for now; retrying with backoff");
            Ok(())
        }
    }
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

fn settings(config: &Config, template: &JobTemplate) -> RunSettings {
    RunSettings {
        namespace: template.namespace.clone(),
        strategy: config.strategy.name().into(),
        images: config.images.iter().map(|i| i.normalized.clone()).collect(),
        deadline_seconds: config.deadline_seconds,
        pull_policy: config.pull_policy.name().into(),
        max_parallel: config.max_parallel,
        seed_nodes: config.seed_nodes,
        skip_present: config.skip_present,
        node_selector: config.node_selector.clone(),
    }
}

/// `DRY_RUN=true`: every Job as one YAML document.
fn print_jobs(out: &mut (dyn Write + Send), template: &JobTemplate, nodes: &[EligibleNode]) -> Result<()> {
    for node in nodes.iter().filter(|n| n.images != 0) {
        let yaml = serde_saphyr::to_string(&template.build(node)).map_err(Error::output)?;
        write!(out, "---\n{yaml}").map_err(Error::output)?;
    }
    Ok(())
}

/// The per-run Job template: run id, helper image and owner come from config or the controller's pod.
fn job_template(cluster: &Cluster, config: &Config, me: &SelfInfo) -> Result<JobTemplate> {
    let helper_image = config.helper_image.clone().or_else(|| me.image.clone());
    if config.strategy == PullStrategy::Kubelet && helper_image.is_none() {
        return Err(Error::SelfInspection(
            "the controller's pod has no container image to use as HELPER_IMAGE; set HELPER_IMAGE".into(),
        ));
    }
    let run_id = config
        .run_id
        .clone()
        .or_else(|| me.owner_job.as_ref().map(|o| o.name.clone()))
        .unwrap_or_else(|| Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string());
    // Owner references cannot cross namespaces: the garbage collector would treat the owner as gone
    // and delete the pullers at once. Outside the pod's namespace, the TTL alone cleans up.
    let owner = match (&me.owner_job, &config.pod) {
        (Some(owner), Some(pod)) if pod.namespace == cluster.namespace() => Some(owner.clone()),
        (Some(owner), _) => {
            warn!(
                owner = %owner.name,
                namespace = %cluster.namespace(),
                "puller Jobs live outside the controller's namespace, so they cannot be owned by its Job; \
                 ttlSecondsAfterFinished alone removes them"
            );
            None
        }
        (None, _) => None,
    };
    Ok(JobTemplate::new(config, run_id, cluster.namespace().to_string(), helper_image, owner))
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
    let cluster = match unless_signalled(&mut shutdown, connect(config.namespace.clone())).await {
        Ok(cluster) => cluster?,
        Err(signal) => return Ok(Finished::Stopped(signal)),
    };
    run(&cluster, &config, shutdown, out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_signal_is_graceful_the_second_exits_at_once() {
        let (tx, mut rx) = watch::channel(None);
        let mut exited = None;
        let signals = futures::stream::iter([Signal::Terminate, Signal::Interrupt]);
        forward_signals(signals, tx, |s| exited = Some(s)).await;
        assert_eq!(signalled(&mut rx).await, Signal::Terminate, "the run sees the first");
        assert_eq!(exited, Some(Signal::Interrupt), "the second exits");

        let (tx, mut rx) = watch::channel(None);
        let mut exited = None;
        forward_signals(futures::stream::iter([Signal::Interrupt]), tx, |s| exited = Some(s)).await;
        assert_eq!(signalled(&mut rx).await, Signal::Interrupt);
        assert_eq!(exited, None, "one signal is graceful only");
    }
}
