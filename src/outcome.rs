//! What a puller Job or pod shows about its node, read from its status alone (the tracker decides what
//! it means for the run).
//!
//! kube's `conditions::is_job_completed` never fires for a failed Job, so terminal states are decided
//! here: `Complete`/`SuccessCriteriaMet` succeed, `Failed`/`FailureTarget` fail (1.31+ sets the
//! `*Target`/`*CriteriaMet` conditions first, and `Complete`/`Failed` once every pod is gone).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::Serialize;

use crate::images::ImageMask;
use crate::naming::{INSTALL_CONTAINER, images_of_container};

/// The verdict for one eligible node. Every eligible node gets exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every image was pulled on the node.
    Succeeded,
    /// `SKIP_PRESENT`: the node already had every image; no Job.
    AlreadyPresent,
    /// An image could not be pulled (or the puller failed).
    Failed,
    /// No verdict within the deadline.
    TimedOut,
    /// The Job could not be created (the apiserver's message says why).
    NotCreated,
    /// The Job was seen, then gone without a terminal condition.
    Deleted,
    /// Created, but the run was interrupted before it finished.
    Unfinished,
    /// The run stopped before this node's Job was created.
    NotStarted,
    /// The node still carries the startup taint: every image is there but its removal failed, or
    /// no puller could reach it (cordoned, not Ready, not Linux), or the run stopped first.
    Held,
    /// The node was held past `STARTUP_TAINT_MAX_HOLD_SECONDS` without every image: its startup
    /// taint was removed anyway.
    Released,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Succeeded,
        Outcome::AlreadyPresent,
        Outcome::Failed,
        Outcome::TimedOut,
        Outcome::NotCreated,
        Outcome::Deleted,
        Outcome::Unfinished,
        Outcome::NotStarted,
        Outcome::Held,
        Outcome::Released,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::AlreadyPresent => "already-present",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed-out",
            Outcome::NotCreated => "not-created",
            Outcome::Deleted => "deleted",
            Outcome::Unfinished => "unfinished",
            Outcome::NotStarted => "not-started",
            Outcome::Held => "held",
            Outcome::Released => "released",
        }
    }

    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::AlreadyPresent)
    }
}

/// What the pod of a Job shows about one image or the helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerView {
    /// Terminated with 0: the image is on the node.
    Done,
    /// Creating, running, or waiting for something that is not a pull error.
    Busy,
    /// The kubelet cannot pull it yet (it retries): `ErrImagePull`, `ImagePullBackOff`, ...
    PullError(String),
    /// It will never pull: `InvalidImageName`, `ErrImageNeverPull`.
    Invalid(String),
}

/// Waiting reasons the kubelet retries.
const PULL_ERRORS: [&str; 4] = ["ErrImagePull", "ImagePullBackOff", "RegistryUnavailable", "SignatureValidationFailed"];
/// Waiting reasons no retry fixes.
const INVALID: [&str; 3] = ["InvalidImageName", "ErrImageNeverPull", "ErrImageInspect"];
/// The CRI's error for an image volume the runtime pulled but cannot mount (`k8s.io/cri-api`
/// `ErrImageVolumeMountFailed`), in a `CreateContainerError`'s message.
const IMAGE_VOLUME_MOUNT_FAILED: &str = "ImageVolumeMountFailed";

/// The pod of a puller Job, read for the run: per image, the helper, and the pod's own fate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// Evicted or preempted (`DisruptionTarget`): the Job's pod failure policy retries it.
    pub disrupted: bool,
    /// The pod's UID (with a status): a delete of this pod must not reach its replacement, which
    /// has the same name.
    pub uid: Option<String>,
    /// The pod garbage collector removed it because its node no longer exists: no retry can help.
    pub node_gone: Option<String>,
    pub succeeded: bool,
    /// `Some(problem)` when the pod failed; `timed_out` when the kubelet enforced its deadline.
    pub failed: Option<String>,
    pub timed_out: bool,
    /// `(images, view)` per puller container.
    pub containers: Vec<(ImageMask, ContainerView)>,
    /// The helper image's init container, when it has a pull problem.
    pub helper: Option<ContainerView>,
}

fn container_view(c: &ContainerStatus) -> ContainerView {
    let Some(state) = c.state.as_ref() else { return ContainerView::Busy };
    if let Some(t) = &state.terminated {
        return if t.exit_code == 0 { ContainerView::Done } else { ContainerView::Busy };
    }
    let Some(w) = &state.waiting else { return ContainerView::Busy };
    let reason = w.reason.as_deref().unwrap_or_default();
    let message = format!("{reason}: {}", w.message.as_deref().unwrap_or("(no message)"));
    if PULL_ERRORS.contains(&reason) {
        ContainerView::PullError(message)
    } else if INVALID.contains(&reason) {
        ContainerView::Invalid(message)
    } else if reason == "CreateContainerError" && message.contains(IMAGE_VOLUME_MOUNT_FAILED) {
        // The image was pulled, but the runtime cannot mount it (containerd 2.x and an OCI artifact
        // with the empty config: "failed to unpack image volume: mismatched image rootfs and
        // manifest layers"); a retry meets the same image.
        ContainerView::Invalid(format!("pulled, but the runtime cannot mount it as an image volume: {message}"))
    } else {
        ContainerView::Busy
    }
}

/// Read a puller pod (`set` = its node's images as the run numbers them, for mapping container
/// names).
pub fn read_pod(pod: &Pod, set: &[u32]) -> PodView {
    let Some(status) = pod.status.as_ref() else { return PodView::default() };
    let phase = status.phase.as_deref().unwrap_or_default();
    let disruption = status.conditions.iter().flatten().find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    let disrupted = disruption.is_some() && phase != "Succeeded";
    let node_gone = disruption
        .filter(|c| c.reason.as_deref() == Some("DeletionByPodGC"))
        .map(|c| c.message.clone().unwrap_or_else(|| "PodGC: node no longer exists".into()));
    let timed_out = phase == "Failed" && status.reason.as_deref() == Some("DeadlineExceeded");
    let containers = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| (images_of_container(&c.name, set), container_view(c)))
        .filter(|(mask, _)| *mask != 0)
        .collect();
    let helper = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == INSTALL_CONTAINER)
        .map(container_view)
        .filter(|v| matches!(v, ContainerView::PullError(_) | ContainerView::Invalid(_)));
    PodView {
        disrupted,
        uid: pod.metadata.uid.clone(),
        node_gone,
        succeeded: phase == "Succeeded",
        // A pod killed while being deleted (the Job controller ends it at the Job's deadline, or
        // someone deletes it) says nothing about the pull: the Job's conditions decide then.
        failed: (phase == "Failed" && pod.metadata.deletion_timestamp.is_none())
            .then(|| pod_problem(pod).unwrap_or_else(|| "pod failed".into())),
        timed_out,
        containers,
        helper,
    }
}

/// Pull errors that will not go away by retrying on other nodes: the image is not there, or the
/// credentials are refused. Used to stop sending a broken image to the remaining nodes.
pub fn is_permanent_pull_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    // Another node's platform may well have the variant this one lacks.
    if is_platform_mismatch(message) {
        return false;
    }
    [
        "not found",
        "manifest unknown",
        "name unknown",
        "unauthorized",
        "denied",
        "forbidden",
        "invalidimagename",
        "invalid reference",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// The image has no variant for the node's platform: containerd's `no match for platform in
/// manifest`, docker's and CRI-O's `no matching manifest for ...`.
pub fn is_platform_mismatch(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no match for platform") || m.contains("no matching manifest for")
}

/// The outcome of a Job with its reason, or `None` while it is still running. `pod_problem` is the
/// last problem seen on its pod (see [`pod_problem`]); it explains a failure better than the Job's
/// own reason.
pub fn outcome_from_job(job: &Job, pod_problem: Option<&str>) -> Option<(Outcome, String)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is_true = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    if is_true("Complete").or_else(|| is_true("SuccessCriteriaMet")).is_some() {
        return Some((Outcome::Succeeded, String::new()));
    }
    let failed = is_true("Failed").or_else(|| is_true("FailureTarget"))?;
    let reason = failed.reason.clone().unwrap_or_else(|| "Failed".into());
    let detail = pod_problem.map(str::to_string).or_else(|| failed.message.clone().filter(|m| !m.is_empty()));
    let text = match detail {
        Some(detail) => format!("{reason}: {detail}"),
        None => reason.clone(),
    };
    Some((if reason == "DeadlineExceeded" { Outcome::TimedOut } else { Outcome::Failed }, text))
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

    /// A node's set of the run's first images, in order.
    const SET: [u32; 4] = [0, 1, 2, 3];

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
    fn a_missing_platform_is_the_nodes_not_the_images() {
        let containerd =
            "failed to pull and unpack image \"docker.io/library/x:1\": no match for platform in manifest: not found";
        assert!(is_platform_mismatch(containerd) && !is_permanent_pull_error(containerd), "not counted by the breaker");
        assert!(is_platform_mismatch("no matching manifest for linux/arm64/v8 in the manifest list entries"));
        assert!(is_permanent_pull_error("failed to resolve reference \"x:1\": not found"));
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
        assert_eq!(
            outcome_from_job(&job("j", &[("Complete", "True", "", "")]), None),
            Some((Outcome::Succeeded, String::new()))
        );
        let early = job("j", &[("SuccessCriteriaMet", "True", "CompletionsReached", "")]);
        assert_eq!(outcome_from_job(&early, None), Some((Outcome::Succeeded, String::new())));
    }

    #[test]
    fn failed_and_failure_target_fail_with_the_best_reason() {
        let backoff =
            job("j", &[("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]);
        assert_eq!(
            outcome_from_job(&backoff, None),
            Some((Outcome::Failed, "BackoffLimitExceeded: Job has reached the specified backoff limit".into()))
        );
        assert_eq!(
            outcome_from_job(&backoff, Some("puller (q) exited 1 (Error)")),
            Some((Outcome::Failed, "BackoffLimitExceeded: puller (q) exited 1 (Error)".into()))
        );
        let target = job("j", &[("FailureTarget", "True", "BackoffLimitExceeded", "")]);
        assert_eq!(outcome_from_job(&target, None), Some((Outcome::Failed, "BackoffLimitExceeded".into())));
    }

    #[test]
    fn deadline_exceeded_is_a_timeout() {
        let deadline =
            job("j", &[("FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline")]);
        assert_eq!(
            outcome_from_job(&deadline, Some("pull-0-x (x) ImagePullBackOff")),
            Some((Outcome::TimedOut, "DeadlineExceeded: pull-0-x (x) ImagePullBackOff".into()))
        );
    }

    #[test]
    fn pods_are_read_per_image() {
        let p = pod(
            "j",
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "install-noop", "image": "h", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [
            {"name": "pull-0-a", "image": "a", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "pull-1-b", "image": "b:1", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ErrImagePull", "message": "b:1: not found"}}},
            {"name": "pull-2-c", "image": "c", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "InvalidImageName", "message": "bad"}}},
            {"name": "pull-3-d", "image": "d", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        let view = read_pod(&p, &SET[..4]);
        assert_eq!(
            view.containers,
            vec![
                (0b0001, ContainerView::Done),
                (0b0010, ContainerView::PullError("ErrImagePull: b:1: not found".into())),
                (0b0100, ContainerView::Invalid("InvalidImageName: bad".into())),
                (0b1000, ContainerView::Busy),
            ]
        );
        assert!(!view.succeeded && view.failed.is_none() && !view.disrupted && view.helper.is_none());

        let helper = pod(
            "j",
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "install-noop", "image": "h", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image h"}}}]}),
        );
        assert_eq!(
            read_pod(&helper, &SET[..1]).helper,
            Some(ContainerView::PullError("ImagePullBackOff: Back-off pulling image h".into()))
        );

        let evicted = pod(
            "j",
            json!({"phase": "Failed", "reason": "Evicted", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}),
        );
        let view = read_pod(&evicted, &SET[..1]);
        assert!(view.disrupted && view.node_gone.is_none());
        let orphaned = pod(
            "j",
            json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
                "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists"}]}),
        );
        assert_eq!(read_pod(&orphaned, &SET[..1]).node_gone.as_deref(), Some("PodGC: node no longer exists"));
        let deadline = pod(
            "j",
            json!({"phase": "Failed", "reason": "DeadlineExceeded", "message": "Pod was active on the node longer than the specified deadline"}),
        );
        let view = read_pod(&deadline, &SET[..1]);
        assert!(view.timed_out && view.failed.as_deref().unwrap().contains("DeadlineExceeded"));
        assert!(read_pod(&pod("j", json!({"phase": "Succeeded"})), &SET[..1]).succeeded);
        let mut killed = pod(
            "j",
            json!({"phase": "Failed", "containerStatuses": [
            {"name": "pull-0-a", "image": "a", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}),
        );
        killed.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(read_pod(&killed, &SET[..1]).failed, None, "deleted pods are judged by their Job");
    }

    /// What kubelet v1.37.2 on containerd v2.4.2 showed (tests/e2e-real.sh, the volume strategy): a
    /// missing tag is a pull error of the container mounting it; an artifact with the empty config
    /// pulls but cannot be mounted; another CreateContainerError is not the image's.
    #[test]
    fn image_volume_failures_are_read_per_image() {
        let p = pod(
            "j",
            json!({"phase": "Pending", "containerStatuses": [
            {"name": "pull-0-small", "image": "pause", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "pull-1-data-only", "image": "pause", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ErrImagePull", "message": "rpc error: code = NotFound desc = failed to pull and unpack image \"r/data-only:no-such-tag\": failed to resolve image: r/data-only:no-such-tag: not found"}}},
            {"name": "pull-2-artifact-empty-config", "image": "pause", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "CreateContainerError", "message": "failed to mount image volume: ImageVolumeMountFailed: failed to unpack image volume: mismatched image rootfs and manifest layers"}}},
            {"name": "pull-3-other", "image": "pause", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "CreateContainerError", "message": "context deadline exceeded"}}}]}),
        );
        let view = read_pod(&p, &SET[..4]);
        assert_eq!(view.containers[0], (0b0001, ContainerView::Done));
        assert!(matches!(&view.containers[1], (0b0010, ContainerView::PullError(m)) if m.contains("not found")));
        assert_eq!(
            view.containers[2],
            (
                0b0100,
                ContainerView::Invalid(
                    "pulled, but the runtime cannot mount it as an image volume: CreateContainerError: failed to mount \
                     image volume: ImageVolumeMountFailed: failed to unpack image volume: mismatched image rootfs and \
                     manifest layers"
                        .into()
                )
            )
        );
        assert_eq!(view.containers[3], (0b1000, ContainerView::Busy), "not an image volume's failure");
    }

    #[test]
    fn permanent_pull_errors() {
        assert!(is_permanent_pull_error(
            "ErrImagePull: failed to pull and unpack image \"r/x:nope\": failed to resolve reference: r/x:nope: not found"
        ));
        assert!(is_permanent_pull_error("ErrImagePull: ... 401 Unauthorized"));
        assert!(is_permanent_pull_error("ErrImagePull: pull access denied, repository does not exist"));
        assert!(!is_permanent_pull_error("ErrImagePull: dial tcp 127.0.0.1:1: connect: connection refused"));
        assert!(!is_permanent_pull_error("ImagePullBackOff: Back-off pulling image \"x\""));
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
