//! The data path, end to end: config → eligible nodes → Job specs → create → watch → report.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cluster::{Cluster, CreateError, Created, SelfInfo};
use crate::config::{Config, PullStrategy};
use crate::error::{Error, Result};
use crate::exit_code::ExitCode;
use crate::jobs::JobTemplate;
use crate::nodes::Partition;
use crate::outcome::Outcome;
use crate::report::Report;
use crate::wait::{Signal, Tracker, WaitEnd, wait_for_jobs};

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How a run ended without an error.
#[derive(Debug)]
pub enum Finished {
    /// `DRY_RUN=true`: the Jobs were printed, nothing was created.
    DryRun {
        jobs: usize,
    },
    Report(Report),
}

impl Finished {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Finished::DryRun { .. } => ExitCode::Success,
            Finished::Report(report) => report.exit_code(),
        }
    }
}

/// One whole run. The report table (or the dry-run YAML) goes to `out`; logs go through tracing.
pub async fn run(
    cluster: &Cluster,
    config: &Config,
    mut shutdown: watch::Receiver<Option<Signal>>,
    out: &mut (dyn Write + Send),
) -> Result<Finished> {
    let started = Instant::now();
    for duplicate in &config.duplicate_images {
        warn!(image = %duplicate, "QUAY_IMAGES lists this image twice (after normalization); pulling it once");
    }
    let me = match &config.pod {
        Some(pod) => cluster.inspect_self(pod).await?,
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

    let mut partition = Partition::default();
    let total_nodes = cluster.for_each_node_page(config.node_selector.as_deref(), |page| partition.add(&page)).await?;
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

    let mut report = Report::new(&template.run_id, total_nodes, skipped);
    let mut tracker = Tracker::default();
    if eligible.is_empty() {
        warn!("no eligible node: nothing to pre-pull");
    } else {
        report.interrupted =
            create_jobs(cluster, &template, &eligible, config.create_concurrency, &mut tracker, &mut shutdown).await?;
        if report.interrupted.is_none() {
            let deadline =
                Instant::now() + Duration::from_secs(config.deadline_seconds as u64 + config.wait_grace_seconds);
            let selector = template.run_selector();
            match wait_for_jobs(cluster, &selector, &mut tracker, deadline, &mut shutdown, PROGRESS_EVERY).await? {
                WaitEnd::AllDone => {}
                WaitEnd::DeadlineReached => {
                    warn!("wait ended at DEADLINE_SECONDS + WAIT_GRACE_SECONDS; open Jobs count as timed out")
                }
                WaitEnd::Interrupted(signal) => report.interrupted = Some(signal),
            }
        }
        if let Some(signal) = report.interrupted {
            warn!(?signal, "interrupted: no more Jobs are created; created Jobs are left to finish and to their TTL");
            tracker.mark_unfinished(Instant::now());
        }
    }
    report.add_tracked(tracker.entries());
    report.elapsed = started.elapsed();

    let summary = report.summary();
    writeln!(out, "{}{summary}", report.table()).map_err(Error::output)?;
    let counts = report.counts();
    info!(
        run = %template.run_id,
        succeeded = counts.succeeded,
        failed = counts.failed,
        timed_out = counts.timed_out,
        deleted = counts.deleted,
        not_created = counts.not_created,
        unfinished = counts.unfinished,
        skipped = report.skipped.len(),
        exit_code = report.exit_code().code(),
        "run finished"
    );
    if let Some(target) = &me.event_target {
        let instance = config.pod.as_ref().map(|p| p.name.clone());
        cluster.publish_event(target, report.exit_code() == ExitCode::Success, summary, instance).await;
    }
    Ok(Finished::Report(report))
}

/// `DRY_RUN=true`: every Job as one YAML document.
fn print_jobs(out: &mut (dyn Write + Send), template: &JobTemplate, nodes: &[String]) -> Result<()> {
    for node in nodes {
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
        .unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string());
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
    Ok(JobTemplate {
        run_id,
        namespace: cluster.namespace().to_string(),
        strategy: config.strategy.clone(),
        images: config.images.clone(),
        helper_image,
        deadline_seconds: config.deadline_seconds,
        ttl_seconds_after_finished: config.ttl_seconds_after_finished,
        owner,
    })
}

/// Create every Job with at most `concurrency` requests in flight. A 409 for a Job of this run is
/// adopted. Returns the signal if one stopped the creation.
async fn create_jobs(
    cluster: &Cluster,
    template: &JobTemplate,
    nodes: &[String],
    concurrency: usize,
    tracker: &mut Tracker,
    shutdown: &mut watch::Receiver<Option<Signal>>,
) -> Result<Option<Signal>> {
    // Jobs are built as they are sent, so only `concurrency` of them are in memory at once.
    let mut creates = futures::stream::iter(nodes)
        .map(|node| async move {
            let job = template.build(node);
            let result = cluster.create_job(&job).await;
            (node.clone(), job.metadata.name.unwrap_or_default(), result)
        })
        .buffer_unordered(concurrency);
    let (mut created, mut adopted) = (0usize, 0usize);
    loop {
        tokio::select! {
            next = creates.next() => {
                let Some((node, name, result)) = next else { break };
                let now = Instant::now();
                match result {
                    Ok(Created::New) => {
                        created += 1;
                        tracker.track(name, node, now);
                    }
                    Ok(Created::AlreadyExists(existing)) if template.owns(&existing, &node) => {
                        adopted += 1;
                        info!(%node, job = %name, "Job already exists for this run; adopting it");
                        tracker.track(name, node, now);
                    }
                    Ok(Created::AlreadyExists(_)) => {
                        let reason = format!("a Job named {name} exists but does not belong to run {}", template.run_id);
                        warn!(%node, %reason, "cannot create Job");
                        tracker.settle(name, node, Outcome::NotCreated { reason }, now);
                    }
                    Err(CreateError::Node(reason)) => {
                        warn!(%node, %reason, "cannot create Job");
                        tracker.settle(name, node, Outcome::NotCreated { reason }, now);
                    }
                    Err(CreateError::Fatal(e)) => return Err(e),
                }
            }
            signal = shutdown.wait_for(Option::is_some) => {
                return Ok(Some(signal.ok().and_then(|s| *s).unwrap_or(Signal::Terminate)));
            }
        }
    }
    info!(created, adopted, total = nodes.len(), "created puller Jobs");
    Ok(None)
}

/// The whole program minus process concerns: validate `vars` (nothing is sent when they are bad),
/// connect with `connect`, run. `main` passes the process environment and [`Cluster::connect`].
pub async fn execute<V, C, F>(
    vars: V,
    connect: C,
    shutdown: watch::Receiver<Option<Signal>>,
    out: &mut (dyn Write + Send),
) -> Result<Finished>
where
    V: IntoIterator<Item = (String, String)>,
    C: FnOnce(Option<String>) -> F,
    F: Future<Output = Result<Cluster>>,
{
    let config = Config::from_vars(vars).map_err(Error::Config)?;
    let cluster = connect(config.namespace.clone()).await?;
    run(&cluster, &config, shutdown, out).await
}
