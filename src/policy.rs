//! Every number a run derives from its configuration, and every fixed bound of a run, in one place,
//! each with what it means. Built once from [`Config`] and held by the [`crate::tracker`], which hands
//! each puller its [`Deadlines`] as it asks for it: nothing else holds or recomputes a deadline.
//!
//! `DEADLINE_SECONDS` (config.rs) becomes, here and only here:
//! - the pull deadline, each puller pod's `activeDeadlineSeconds` (the kubelet counts it from pod start);
//! - the Job deadline, the Job's `activeDeadlineSeconds` = pull deadline + `WAIT_GRACE_SECONDS` (the Job
//!   controller counts it from the Job's start: room for the scheduler and the controller to start the pod);
//! - the node deadline, the tracker's own bound = Job deadline + slack (half the Job deadline, 1 to 15 s),
//!   counted from the Job's start (or creation, until it starts): it catches what the Job controller
//!   misses; its `DeadlineExceeded` is the authority.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::config::{Config, Pacing, Selection};
use crate::types::PullerKind;

/// Beyond the Job's deadline, how long the tracker waits for the Job controller to say so.
const MAX_DEADLINE_SLACK: Duration = Duration::from_secs(15);

/// How the run paces and judges; the same for every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `DEADLINE_SECONDS`: each puller pod's `activeDeadlineSeconds`.
    pub pull_deadline: Duration,
    /// The Job's `activeDeadlineSeconds`: `pull_deadline` + `WAIT_GRACE_SECONDS`.
    pub job_deadline: Duration,
    /// No verdict this long after a Job started (or was created, until it starts): timed out.
    pub node_deadline: Duration,
    /// How long an image may keep failing to pull before it counts as failed.
    pub pull_error_grace: Duration,
    /// `CREATE_CONCURRENCY`, `MAX_PARALLEL`, `SEED_NODES`, as configured.
    pub pacing: Pacing,
    /// Which nodes, as configured: the startup taint the run removes, and whether only the nodes
    /// carrying it are asked for (`STARTUP_TAINT_ONLY`: none of them is no failure).
    pub selection: Selection,
    /// When the run's own Job's `activeDeadlineSeconds` ends it, and that Job's name: the run warns
    /// when, at the start rate it measures, it would need longer.
    pub run_deadline: Option<(Timestamp, String)>,
    /// Attempts per node for creates that fail transiently (or whose Job vanished on a 409).
    pub max_create_attempts: u8,
    /// Attempts at removing a node's startup taint when a concurrent change to its taints (or a
    /// transient error) stops the patch; each attempt reads the node again.
    pub taint_attempts: u8,
    /// Attempts at deleting an evicted puller pod that fail transiently.
    pub delete_attempts: u8,
    /// This many identical admission denials in a row stop all further creates.
    pub denial_streak: usize,
    /// An image that failed with a not-found/unauthorized error on this many nodes (and succeeded on
    /// none) is not sent to the remaining nodes.
    pub image_breaker: usize,
    /// Pacing: keep at most (Job start rate × this) created Jobs waiting for the Job controller.
    pub target_start_lag: Duration,
    /// Window over which the Job controller's start rate is measured.
    pub rate_window: Duration,
    /// How often the clock is an input (pull-error grace, deadlines, draining).
    pub tick: Duration,
    /// How often the run logs its progress.
    pub progress_every: Duration,
    /// After the first signal, how long creates already sent may take to answer before the report.
    pub drain: Duration,
    /// Once every node has its verdict, how long deletes still in flight may take (they are best
    /// effort: the run does not wait its whole time for them).
    pub deletes_after: Duration,
    /// How long the watches may take to list before the run gives up (nothing is created before).
    pub watch_ready_timeout: Duration,
    /// How long the name of an evicted puller pod rests before its replacement takes it. Whoever
    /// deletes the old pod by name alone (a kubelet sends its UID as a precondition, kwok does not)
    /// must not reach the replacement: seen with kwok, which deletes twice, milliseconds apart.
    pub reuse_delay: Duration,
}

/// A puller's two deadlines, in seconds, as its spec carries them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// The pod's `activeDeadlineSeconds` (the kubelet counts it from the pod's start).
    pub pod: i64,
    /// The Job's `activeDeadlineSeconds` (the Job controller counts it from the Job's start).
    pub job: i64,
}

impl From<&Config> for Policy {
    /// Every bound of a run: the deadlines from `DEADLINE_SECONDS` and `WAIT_GRACE_SECONDS`, the
    /// grace, the pacing as configured; the rest are the run's fixed bounds, named here once.
    fn from(config: &Config) -> Policy {
        let timing = config.timing;
        let pull_deadline = Duration::from_secs(timing.deadline_seconds);
        let job_deadline = pull_deadline + Duration::from_secs(timing.wait_grace_seconds);
        Policy {
            pull_deadline,
            job_deadline,
            node_deadline: job_deadline + deadline_slack(job_deadline),
            pull_error_grace: Duration::from_secs(timing.pull_error_grace_seconds),
            pacing: config.pacing,
            selection: config.selection.clone(),
            run_deadline: None,
            max_create_attempts: 3,
            taint_attempts: 5,
            delete_attempts: 3,
            denial_streak: 3,
            image_breaker: 3,
            target_start_lag: Duration::from_secs(5),
            rate_window: Duration::from_secs(10),
            tick: Duration::from_secs(1),
            progress_every: Duration::from_secs(5),
            drain: Duration::from_secs(5),
            deletes_after: Duration::from_secs(5),
            watch_ready_timeout: Duration::from_secs(60),
            reuse_delay: Duration::from_secs(1),
        }
    }
}

impl Policy {
    /// The deadlines of a first puller.
    pub fn deadlines(&self) -> Deadlines {
        Deadlines { pod: self.pull_deadline.as_secs() as i64, job: self.job_deadline.as_secs() as i64 }
    }

    /// Why a node with no verdict timed out, in the words of the report: `since` its puller (of
    /// `kind`) "started" or "was created".
    pub fn node_deadline_reason(&self, kind: PullerKind, since: &str) -> String {
        let slack = match kind {
            PullerKind::Job => "slack for the Job controller",
            PullerKind::Pod => "slack",
        };
        format!(
            "no verdict {}s after the {} {since} (DEADLINE_SECONDS + WAIT_GRACE_SECONDS and {slack})",
            self.node_deadline.as_secs(),
            kind.noun()
        )
    }
}

/// Half the Job deadline, at least 1 s and at most [`MAX_DEADLINE_SLACK`].
fn deadline_slack(job_deadline: Duration) -> Duration {
    (job_deadline / 2).clamp(Duration::from_secs(1), MAX_DEADLINE_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(vars: &[(&str, &str)]) -> Policy {
        let mut all = vec![("QUAY_IMAGES", "nginx;redis"), ("HELPER_IMAGE", "h:1")];
        all.extend_from_slice(vars);
        Policy::from(&Config::from_vars(all.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap())
    }

    #[test]
    fn deadline_seconds_becomes_every_deadline_here() {
        let p = policy(&[]);
        assert_eq!(p.deadlines(), Deadlines { pod: 300, job: 360 }, "DEADLINE_SECONDS, + WAIT_GRACE_SECONDS (60)");
        assert_eq!(p.node_deadline, Duration::from_secs(375), "the tracker's: + 15 s slack at most");

        let short = policy(&[("DEADLINE_SECONDS", "1"), ("WAIT_GRACE_SECONDS", "1")]);
        assert_eq!(short.deadlines().job, 2);
        assert_eq!(short.node_deadline, Duration::from_secs(3), "slack is half the Job deadline, at least 1 s");
        assert_eq!(
            short.node_deadline_reason(PullerKind::Pod, "started"),
            "no verdict 3s after the pod started (DEADLINE_SECONDS + WAIT_GRACE_SECONDS and slack)"
        );
        let none = policy(&[("DEADLINE_SECONDS", "1"), ("WAIT_GRACE_SECONDS", "0")]);
        assert_eq!(none.node_deadline, Duration::from_secs(2));
        assert_eq!(
            short.node_deadline_reason(PullerKind::Job, "was created"),
            "no verdict 3s after the Job was created (DEADLINE_SECONDS + WAIT_GRACE_SECONDS and slack for the Job controller)"
        );
    }

    #[test]
    fn pacing_and_judging_come_from_the_config() {
        let p = policy(&[
            ("PULL_ERROR_GRACE_SECONDS", "7"),
            ("CREATE_CONCURRENCY", "4"),
            ("MAX_PARALLEL", "9"),
            ("SEED_NODES", "2"),
        ]);
        assert_eq!(p.pull_error_grace, Duration::from_secs(7));
        assert_eq!(p.pacing, Pacing { create_concurrency: 4, max_parallel: Some(9), seed_nodes: 2 });
    }
}
