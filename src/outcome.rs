//! Step 6 of the data path: what happened on one node, decided from Job and pod status alone.
//!
//! kube's `conditions::is_job_completed` never fires for a failed Job, so terminal states are decided
//! here: `Complete`/`SuccessCriteriaMet` succeed, `Failed`/`FailureTarget` fail (1.31+ sets the
//! `*Target`/`*CriteriaMet` conditions first, and `Complete`/`Failed` once every pod is gone).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// The result for one eligible node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed {
        reason: String,
    },
    /// The Job hit `activeDeadlineSeconds`, or the controller's own wait ran out.
    TimedOut {
        reason: String,
    },
    /// Someone else deleted the Job before it finished.
    Deleted,
    /// The Job could not be created.
    NotCreated {
        reason: String,
    },
    /// Still running when the run was interrupted.
    Unfinished,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::TimedOut { .. } => "timed-out",
            Outcome::Deleted => "deleted",
            Outcome::NotCreated { .. } => "not-created",
            Outcome::Unfinished => "unfinished",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Outcome::Succeeded => "",
            Outcome::Failed { reason } | Outcome::TimedOut { reason } | Outcome::NotCreated { reason } => reason,
            Outcome::Deleted => "Job deleted before it finished",
            Outcome::Unfinished => "run interrupted before the Job finished",
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded)
    }
}

/// The outcome of a Job, or `None` while it is still running. `pod_problem` is the last problem seen
/// on its pod (see [`pod_problem`]); it explains a failure better than the Job's own reason.
pub fn outcome_from_job(job: &Job, pod_problem: Option<&str>) -> Option<Outcome> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is_true = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    if is_true("Complete").or_else(|| is_true("SuccessCriteriaMet")).is_some() {
        return Some(Outcome::Succeeded);
    }
    let failed = is_true("Failed").or_else(|| is_true("FailureTarget"))?;
    let reason = failed.reason.clone().unwrap_or_else(|| "Failed".into());
    let detail = pod_problem.map(str::to_string).or_else(|| failed.message.clone().filter(|m| !m.is_empty()));
    let text = match detail {
        Some(detail) => format!("{reason}: {detail}"),
        None => reason.clone(),
    };
    Some(if reason == "DeadlineExceeded" {
        Outcome::TimedOut { reason: text }
    } else {
        Outcome::Failed { reason: text }
    })
}

/// Waiting reasons that are just progress, not problems.
const BENIGN_WAITING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// The most telling problem on a puller pod, if any: an image that cannot be pulled, a container that
/// exited non-zero, a pod that cannot be scheduled or was evicted.
pub fn pod_problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let describe = |c: &ContainerStatus| -> Option<String> {
        let state = c.state.as_ref()?;
        if let Some(w) = state.waiting.as_ref() {
            let reason = w.reason.as_deref().unwrap_or("Waiting");
            if BENIGN_WAITING.contains(&reason) {
                return None;
            }
            let message = w.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            return Some(format!("{} ({}) {reason}{message}", c.name, c.image));
        }
        let t = state.terminated.as_ref().filter(|t| t.exit_code != 0)?;
        let reason = t.reason.as_deref().unwrap_or("Error");
        let message = t.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        Some(format!("{} ({}) exited {} ({reason}){message}", c.name, c.image, t.exit_code))
    };
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    if let Some(problem) = containers.filter_map(describe).next() {
        return Some(problem);
    }
    if let Some(reason) = status.reason.as_deref() {
        let message = status.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        return Some(format!("pod {reason}{message}"));
    }
    let unschedulable =
        status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some(format!(
        "pod {}: {}",
        unschedulable.reason.as_deref().unwrap_or("Unschedulable"),
        unschedulable.message.as_deref().unwrap_or("")
    ))
}

/// The Job that owns a pod (by ownerReference; the pod's labels could be copied by anyone).
pub fn owning_job(pod: &Pod) -> Option<&str> {
    pod.metadata.owner_references.iter().flatten().find(|o| o.kind == "Job").map(|o| o.name.as_str())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A Job fixture with the given (type, status, reason, message) conditions.
    pub fn job(name: &str, conditions: &[(&str, &str, &str, &str)]) -> Job {
        let conditions: Vec<_> =
            conditions.iter().map(|(t, s, r, m)| json!({"type": t, "status": s, "reason": r, "message": m})).collect();
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"conditions": conditions}})).unwrap()
    }

    pub fn pod(owner: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{owner}-abcde"), "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": owner, "uid": "u"}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn running_jobs_have_no_outcome() {
        assert_eq!(outcome_from_job(&job("j", &[]), None), None);
        assert_eq!(outcome_from_job(&Job::default(), None), None);
        assert_eq!(outcome_from_job(&job("j", &[("Suspended", "True", "", "")]), None), None);
        assert_eq!(outcome_from_job(&job("j", &[("Complete", "False", "", "")]), None), None);
    }

    #[test]
    fn complete_and_success_criteria_met_succeed() {
        assert_eq!(outcome_from_job(&job("j", &[("Complete", "True", "", "")]), None), Some(Outcome::Succeeded));
        let early = job("j", &[("SuccessCriteriaMet", "True", "CompletionsReached", "")]);
        assert_eq!(outcome_from_job(&early, None), Some(Outcome::Succeeded));
    }

    #[test]
    fn failed_and_failure_target_fail_with_the_best_reason() {
        let backoff =
            job("j", &[("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]);
        assert_eq!(
            outcome_from_job(&backoff, None),
            Some(Outcome::Failed {
                reason: "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            })
        );
        assert_eq!(
            outcome_from_job(&backoff, Some("puller (q) exited 1 (Error)")),
            Some(Outcome::Failed { reason: "BackoffLimitExceeded: puller (q) exited 1 (Error)".into() })
        );
        let target = job("j", &[("FailureTarget", "True", "BackoffLimitExceeded", "")]);
        assert_eq!(outcome_from_job(&target, None), Some(Outcome::Failed { reason: "BackoffLimitExceeded".into() }));
    }

    #[test]
    fn deadline_exceeded_is_a_timeout() {
        let deadline =
            job("j", &[("FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline")]);
        assert_eq!(
            outcome_from_job(&deadline, Some("pull-0-x (x) ImagePullBackOff")),
            Some(Outcome::TimedOut { reason: "DeadlineExceeded: pull-0-x (x) ImagePullBackOff".into() })
        );
    }

    #[test]
    fn pod_problems() {
        let pull = pod(
            "j",
            json!({"phase": "Pending", "containerStatuses": [
            {"name": "pull-0-a", "image": "a", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "pull-1-b", "image": "b:1", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}}}]}),
        );
        assert_eq!(pod_problem(&pull).as_deref(), Some("pull-1-b (b:1) ErrImagePull: manifest unknown"));
        assert_eq!(owning_job(&pull), Some("j"));

        let exited = pod(
            "j",
            json!({"phase": "Failed", "containerStatuses": [
            {"name": "puller", "image": "q", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "torrent failed"}}}]}),
        );
        assert_eq!(pod_problem(&exited).as_deref(), Some("puller (q) exited 1 (Error): torrent failed"));

        let fine = pod(
            "j",
            json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "puller", "image": "q", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(pod_problem(&fine), None);

        let evicted = pod("j", json!({"phase": "Failed", "reason": "Evicted", "message": "low on ephemeral-storage"}));
        assert_eq!(pod_problem(&evicted).as_deref(), Some("pod Evicted: low on ephemeral-storage"));

        let unschedulable = pod(
            "j",
            json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
        );
        assert_eq!(pod_problem(&unschedulable).as_deref(), Some("pod Unschedulable: 0/3 nodes are available"));
    }
}
