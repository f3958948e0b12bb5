//! The small types the steps of the data path hand each other. They live here, below every step, so
//! that the pure core (configuration, puller specs, the tracker) never imports the module that talks
//! to the API ([`crate::cluster`]): that one imports the core, never the reverse.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

/// What kind of object a puller is (`job` or `pod` in reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullerKind {
    /// One node-pinned Job per node (the default): the Job controller makes and retries its pod.
    #[default]
    Job,
    /// One node-pinned pod per node: no Job controller in the way; the run does what it did.
    Pod,
}

impl PullerKind {
    /// How the report and the logs name it.
    pub fn noun(self) -> &'static str {
        match self {
            PullerKind::Job => "Job",
            PullerKind::Pod => "pod",
        }
    }
}

/// Where the controller itself runs, from the downward API (`POD_NAME`, `POD_NAMESPACE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
}

/// What the controller learns from its own pod (and the Job that owns it): empty out of a pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelfInfo {
    /// The Job that owns the controller's pod (the CronJob's Job), if any.
    pub owner_job: Option<OwnerReference>,
    /// The CronJob that owns that Job, if any (the owner of retained pullers).
    pub cronjob: Option<OwnerReference>,
    /// When that Job's `activeDeadlineSeconds` ends the run, and the Job's name.
    pub run_deadline: Option<(Timestamp, String)>,
    /// The image of the controller's container: the default helper image.
    pub image: Option<String>,
    /// Where to publish the run's Kubernetes Event.
    pub event_target: Option<ObjectReference>,
}

/// The answer to a create request that did not fail.
#[derive(Debug)]
pub enum Created<K> {
    /// Created now; carries the object the apiserver returned.
    New(Box<K>),
    /// 409: an object of that name exists (passed back so that the tracker decides whether to adopt it).
    AlreadyExists(Box<K>),
    /// 409, then 404 on the GET: the object was deleted in between (TTL, GC). Create again.
    Vanished,
}

impl<K> Created<K> {
    /// The same answer about the object as another type (a Job or a pod as a puller).
    pub fn map<T>(self, f: impl FnOnce(Box<K>) -> T) -> Created<T> {
        match self {
            Created::New(object) => Created::New(Box::new(f(object))),
            Created::AlreadyExists(object) => Created::AlreadyExists(Box::new(f(object))),
            Created::Vanished => Created::Vanished,
        }
    }
}

/// What one attempt at removing a node's startup taint found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaintRemoval {
    /// The patch went through: the taint is gone, and nothing else changed.
    Removed,
    /// The node no longer carries it (another run, or someone else, removed it first).
    AlreadyGone,
}

/// The kinds of object a run watches, each with one label-selected watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Watched {
    /// The run's puller Jobs.
    Jobs,
    /// The run's pods: the Jobs' pods, or the bare puller pods.
    Pods,
    /// The nodes (`STARTUP_TAINT_WATCH_SECONDS`): those that join with the startup taint.
    Nodes,
}

/// A Kubernetes Event the run publishes: about itself (its summary), or about a node (its startup
/// taint removed, or released without every image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub warning: bool,
    /// `reason`: what happened, in CamelCase.
    pub reason: &'static str,
    /// `action`: what the controller did.
    pub action: &'static str,
    /// The human words (at most 1,000 characters are kept).
    pub note: String,
}

/// The node an Event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    pub name: String,
    pub uid: Option<String>,
}

impl NodeRef {
    /// The reference an Event about this node carries.
    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.name.clone()),
            uid: self.uid.clone(),
            ..Default::default()
        }
    }
}
