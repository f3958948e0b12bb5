//! Step 5 of the data path: one label-selected watch of the run's Jobs (plus one of their pods, for
//! reasons), folded into per-node outcomes by [`Tracker`], a synchronous state machine.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cluster::{Cluster, fatal_watch_error};
use crate::error::{Error, Result};
use crate::outcome::{Outcome, outcome_from_job, owning_job, pod_problem};

/// A signal that ends the run early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

/// One eligible node's Job as the run follows it.
#[derive(Clone, Debug)]
pub struct Tracked {
    pub node: String,
    pub job: String,
    pub started: Instant,
    pub outcome: Option<Outcome>,
    pub finished: Option<Instant>,
    /// Last problem seen on the Job's pod (image pull error, non-zero exit, ...).
    pub pod_problem: Option<String>,
}

impl Tracked {
    pub fn duration(&self) -> Option<Duration> {
        self.finished.map(|f| f.saturating_duration_since(self.started))
    }
}

/// Per-Job state, fed by watch events; knows when every Job has an outcome.
#[derive(Debug, Default)]
pub struct Tracker {
    jobs: BTreeMap<String, Tracked>,
    /// Names listed so far in the current (re)list, between `Init` and `InitDone`.
    relisting: Option<HashSet<String>>,
    pending: usize,
}

impl Tracker {
    /// Follow a Job that exists (created or adopted) for `node`.
    pub fn track(&mut self, job: String, node: String, started: Instant) {
        let entry = Tracked { node, job: job.clone(), started, outcome: None, finished: None, pod_problem: None };
        if self.jobs.insert(job, entry).is_none_or(|old| old.outcome.is_some()) {
            self.pending += 1;
        }
    }

    /// Record an outcome decided without the watch (e.g. the Job could not be created).
    pub fn settle(&mut self, job: String, node: String, outcome: Outcome, now: Instant) {
        self.track(job.clone(), node, now);
        self.finish(&job, outcome, now);
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn total(&self) -> usize {
        self.jobs.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Tracked> {
        self.jobs.values()
    }

    /// Set an outcome once; returns the entry if this call finished it.
    fn finish(&mut self, job: &str, outcome: Outcome, now: Instant) -> Option<&Tracked> {
        let entry = self.jobs.get_mut(job).filter(|e| e.outcome.is_none())?;
        entry.outcome = Some(outcome);
        entry.finished = Some(now);
        self.pending -= 1;
        Some(entry)
    }

    fn apply_job(&mut self, job: &Job, now: Instant) -> Option<Tracked> {
        let name = job.metadata.name.as_deref()?;
        let problem = self.jobs.get(name)?.pod_problem.clone();
        let outcome = outcome_from_job(job, problem.as_deref())?;
        self.finish(name, outcome, now).cloned()
    }

    /// Fold one Job watch event in; returns the entries that this event finished.
    pub fn on_job_event(&mut self, event: Event<Job>, now: Instant) -> Vec<Tracked> {
        match event {
            Event::Init => {
                self.relisting = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(job) => {
                if let (Some(seen), Some(name)) = (self.relisting.as_mut(), job.metadata.name.clone()) {
                    seen.insert(name);
                }
                self.apply_job(&job, now).into_iter().collect()
            }
            Event::Apply(job) => self.apply_job(&job, now).into_iter().collect(),
            Event::Delete(job) => {
                // A Job that finished and was then deleted (TTL 0) keeps its real outcome.
                if let Some(done) = self.apply_job(&job, now) {
                    return vec![done];
                }
                let name = job.metadata.name.unwrap_or_default();
                self.finish(&name, Outcome::Deleted, now).cloned().into_iter().collect()
            }
            Event::InitDone => {
                // Every tracked Job existed before this list started, so one missing from it is gone.
                let Some(seen) = self.relisting.take() else {
                    return Vec::new();
                };
                self.close_open(now, |e| (!seen.contains(&e.job)).then_some(Outcome::Deleted))
            }
        }
    }

    /// Fold one pod watch event in; returns `(node, problem)` when a new problem shows up.
    pub fn on_pod_event(&mut self, event: Event<Pod>) -> Option<(String, String)> {
        let pod = match event {
            Event::Apply(pod) | Event::InitApply(pod) | Event::Delete(pod) => pod,
            Event::Init | Event::InitDone => return None,
        };
        let problem = pod_problem(&pod)?;
        let entry = self.jobs.get_mut(owning_job(&pod)?)?;
        if entry.pod_problem.as_deref() == Some(problem.as_str()) {
            return None;
        }
        entry.pod_problem = Some(problem.clone());
        (entry.outcome.is_none()).then(|| (entry.node.clone(), problem))
    }

    /// The wait ran out: every Job still running is reported as timed out.
    pub fn time_out_pending(&mut self, waited: Duration, now: Instant) {
        self.close_open(now, |e| {
            let mut reason = format!("no terminal Job condition after waiting {}s", waited.as_secs());
            if let Some(problem) = &e.pod_problem {
                reason.push_str(&format!("; last pod problem: {problem}"));
            }
            Some(Outcome::TimedOut { reason })
        });
    }

    /// The run was interrupted: every Job still running is unfinished.
    pub fn mark_unfinished(&mut self, now: Instant) {
        self.close_open(now, |_| Some(Outcome::Unfinished));
    }

    /// Give every Job still without an outcome the one `decide` returns (`None` leaves it open);
    /// returns the entries this finished.
    fn close_open(&mut self, now: Instant, decide: impl Fn(&Tracked) -> Option<Outcome>) -> Vec<Tracked> {
        let decided: Vec<(String, Outcome)> = self
            .jobs
            .values()
            .filter(|e| e.outcome.is_none())
            .filter_map(|e| decide(e).map(|outcome| (e.job.clone(), outcome)))
            .collect();
        decided.into_iter().filter_map(|(job, outcome)| self.finish(&job, outcome, now).cloned()).collect()
    }
}

/// How the wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    AllDone,
    DeadlineReached,
    Interrupted(Signal),
}

/// Wait until every tracked Job has an outcome, `deadline` passes, or a signal arrives.
pub async fn wait_for_jobs(
    cluster: &Cluster,
    selector: &str,
    tracker: &mut Tracker,
    deadline: Instant,
    shutdown: &mut watch::Receiver<Option<Signal>>,
    progress_every: Duration,
) -> Result<WaitEnd> {
    let started = Instant::now();
    let jobs = cluster.watch_jobs(selector);
    let pods = cluster.watch_pods(selector);
    futures::pin_mut!(jobs, pods);
    let mut progress = tokio::time::interval_at(Instant::now() + progress_every, progress_every);
    let mut last_reported = usize::MAX;
    let action = |what: &str| format!("watch {what} in namespace {:?}", cluster.namespace());

    while tracker.pending() > 0 {
        tokio::select! {
            event = jobs.next() => match event {
                Some(Ok(event)) => {
                    for done in tracker.on_job_event(event, Instant::now()) {
                        log_finished(&done, tracker);
                    }
                }
                Some(Err(e)) => watch_failed(&e, action("jobs.batch"))?,
                None => return Err(Error::WatchEnded(action("jobs.batch"))),
            },
            event = pods.next() => match event {
                Some(Ok(event)) => {
                    if let Some((node, problem)) = tracker.on_pod_event(event) {
                        warn!(%node, %problem, "puller pod has a problem");
                    }
                }
                Some(Err(e)) => watch_failed(&e, action("pods"))?,
                None => return Err(Error::WatchEnded(action("pods"))),
            },
            _ = tokio::time::sleep_until(deadline) => {
                tracker.time_out_pending(deadline.saturating_duration_since(started), Instant::now());
                return Ok(WaitEnd::DeadlineReached);
            }
            signal = shutdown.wait_for(Option::is_some) => {
                let signal = signal.ok().and_then(|s| *s).unwrap_or(Signal::Terminate);
                return Ok(WaitEnd::Interrupted(signal));
            }
            _ = progress.tick() => {
                let done = tracker.total() - tracker.pending();
                if done != last_reported {
                    info!("progress: {done}/{} nodes done, {} running", tracker.total(), tracker.pending());
                    last_reported = done;
                }
            }
        }
    }
    Ok(WaitEnd::AllDone)
}

/// A watch error stops the run when no retry can fix it; otherwise the watcher backs off and retries.
fn watch_failed(e: &kube::runtime::watcher::Error, action: String) -> Result<()> {
    match fatal_watch_error(e, action.clone()) {
        Some(fatal) => Err(fatal),
        None => {
            warn!(error = %e, "cannot {action} for now; retrying with backoff");
            Ok(())
        }
    }
}

fn log_finished(done: &Tracked, tracker: &Tracker) {
    let outcome = done.outcome.as_ref().expect("finished entries have an outcome");
    let progress = format!("{}/{}", tracker.total() - tracker.pending(), tracker.total());
    if outcome.is_success() {
        tracing::debug!(node = %done.node, job = %done.job, %progress, "node done");
    } else {
        warn!(node = %done.node, job = %done.job, outcome = outcome.label(), reason = outcome.reason(), %progress, "node did not succeed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::tests::{job, pod};
    use serde_json::json;

    fn tracker(names: &[&str]) -> (Tracker, Instant) {
        let now = Instant::now();
        let mut t = Tracker::default();
        for n in names {
            t.track(format!("job-{n}"), n.to_string(), now);
        }
        (t, now)
    }

    fn complete(name: &str) -> Job {
        job(name, &[("Complete", "True", "", "")])
    }

    #[test]
    fn finishes_each_job_once() {
        let (mut t, now) = tracker(&["a", "b"]);
        assert_eq!(t.pending(), 2);
        let done = t.on_job_event(Event::Apply(complete("job-a")), now);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].node, "a");
        assert!(t.on_job_event(Event::Apply(complete("job-a")), now).is_empty(), "no double count");
        assert!(t.on_job_event(Event::Apply(complete("job-unknown")), now).is_empty(), "foreign Jobs are ignored");
        assert!(t.on_job_event(Event::Apply(job("job-b", &[])), now).is_empty(), "running");
        assert_eq!(t.pending(), 1);
        t.on_job_event(Event::Apply(job("job-b", &[("Failed", "True", "BackoffLimitExceeded", "")])), now);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_relist_that_misses_a_job_means_it_was_deleted() {
        let (mut t, now) = tracker(&["a", "b", "c"]);
        t.on_job_event(Event::Init, now);
        t.on_job_event(Event::InitApply(job("job-a", &[])), now);
        t.on_job_event(Event::InitApply(complete("job-b")), now);
        let gone = t.on_job_event(Event::InitDone, now);
        assert_eq!(gone.iter().map(|e| e.node.as_str()).collect::<Vec<_>>(), ["c"]);
        assert_eq!(gone[0].outcome, Some(Outcome::Deleted));
        assert_eq!(t.pending(), 1);
    }

    #[test]
    fn delete_events_keep_a_finished_outcome() {
        let (mut t, now) = tracker(&["a", "b"]);
        let done = t.on_job_event(Event::Delete(complete("job-a")), now);
        assert_eq!(done[0].outcome, Some(Outcome::Succeeded), "TTL 0 deletes right after success");
        let gone = t.on_job_event(Event::Delete(job("job-b", &[])), now);
        assert_eq!(gone[0].outcome, Some(Outcome::Deleted));
    }

    #[test]
    fn pod_problems_explain_failures() {
        let (mut t, now) = tracker(&["a"]);
        let failing = pod(
            "job-a",
            json!({"phase": "Pending", "containerStatuses": [
            {"name": "pull-0-x", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}),
        );
        assert_eq!(
            t.on_pod_event(Event::Apply(failing.clone())),
            Some(("a".into(), "pull-0-x (x) ImagePullBackOff: Back-off pulling image".into()))
        );
        assert_eq!(t.on_pod_event(Event::Apply(failing)), None, "reported once");
        let done =
            t.on_job_event(Event::Apply(job("job-a", &[("FailureTarget", "True", "DeadlineExceeded", "m")])), now);
        assert_eq!(
            done[0].outcome,
            Some(Outcome::TimedOut {
                reason: "DeadlineExceeded: pull-0-x (x) ImagePullBackOff: Back-off pulling image".into()
            })
        );
    }

    #[test]
    fn timeout_and_interrupt_close_every_open_job() {
        let (mut t, now) = tracker(&["a", "b", "c"]);
        t.on_job_event(Event::Apply(complete("job-a")), now);
        t.time_out_pending(Duration::from_secs(90), now);
        assert_eq!(t.pending(), 0);
        let outcomes: Vec<_> = t.entries().map(|e| e.outcome.clone().unwrap()).collect();
        assert_eq!(outcomes[0], Outcome::Succeeded);
        assert!(matches!(&outcomes[1], Outcome::TimedOut { reason } if reason.contains("90s")));

        let (mut t, now) = tracker(&["a"]);
        t.mark_unfinished(now);
        assert_eq!(t.entries().next().unwrap().outcome, Some(Outcome::Unfinished));
    }

    #[test]
    fn settled_outcomes_count_as_done() {
        let (mut t, now) = tracker(&["a"]);
        t.settle("job-b".into(), "b".into(), Outcome::NotCreated { reason: "422".into() }, now);
        assert_eq!(t.total(), 2);
        assert_eq!(t.pending(), 1);
    }
}
