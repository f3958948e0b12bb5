//! Step 4 of the data path, and the only module that talks to the Kubernetes API.

use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{debug, warn};

use crate::config::PodRef;
use crate::error::{Error, Result};

/// Nodes per list page: at 5,000 nodes that is 10 requests.
const NODE_PAGE_SIZE: u32 = 500;
/// Attempts for a request that fails with 429, 5xx or a transport error.
const ATTEMPTS: u32 = 4;

pub struct Cluster {
    client: Client,
    namespace: String,
}

/// What the controller learns from its own pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelfInfo {
    /// The Job that owns the controller's pod (the CronJob's Job), if any.
    pub owner_job: Option<OwnerReference>,
    /// The image of the controller's container: the default helper image.
    pub image: Option<String>,
    /// Where to publish the run's Kubernetes Event.
    pub event_target: Option<ObjectReference>,
}

/// Result of a create call.
#[derive(Debug)]
pub enum Created {
    New,
    /// 409: a Job of that name exists (passed back so the caller can decide whether to adopt it).
    AlreadyExists(Box<Job>),
}

/// A create failure: either fatal for the whole run (RBAC, missing namespace) or for this node only.
#[derive(Debug)]
pub enum CreateError {
    Fatal(Error),
    Node(String),
}

impl Cluster {
    /// Connect with the in-cluster config or the kubeconfig; `namespace` `None` = kubeconfig's.
    pub async fn connect(namespace: Option<&str>) -> Result<Cluster> {
        let client = Client::try_default().await.map_err(Error::Connect)?;
        Ok(Cluster::new(client, namespace))
    }

    pub fn new(client: Client, namespace: Option<&str>) -> Cluster {
        let namespace = namespace.map(str::to_string).unwrap_or_else(|| client.default_namespace().to_string());
        Cluster { client, namespace }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Read the controller's own pod: its owning Job and its image.
    pub async fn inspect_self(&self, pod: &PodRef) -> Result<SelfInfo> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let action = format!("get pods {:?} in namespace {:?}", pod.name, pod.namespace);
        let me = retry(&action, || api.get(&pod.name)).await?;
        let owner_job =
            me.metadata.owner_references.iter().flatten().find(|o| o.kind == "Job" && o.api_version == "batch/v1").map(
                |o| OwnerReference {
                    api_version: o.api_version.clone(),
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    uid: o.uid.clone(),
                    controller: None,
                    block_owner_deletion: None,
                },
            );
        let containers = me.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
        let image = containers
            .iter()
            .find(|c| c.name == "quayctl-controller")
            .or_else(|| containers.first())
            .and_then(|c| c.image.clone());
        let event_target = Some(match &owner_job {
            Some(job) => ObjectReference {
                api_version: Some(job.api_version.clone()),
                kind: Some(job.kind.clone()),
                name: Some(job.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(job.uid.clone()),
                ..Default::default()
            },
            None => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: me.metadata.uid.clone(),
                ..Default::default()
            },
        });
        Ok(SelfInfo { owner_job, image, event_target })
    }

    /// Every node (matching `selector`), handed to `on_page` one page at a time so that memory stays
    /// bounded by the page size, not the cluster size. Returns how many nodes were seen.
    pub async fn for_each_node_page(
        &self,
        selector: Option<&str>,
        mut on_page: impl FnMut(Vec<Node>),
    ) -> Result<usize> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut params = ListParams::default().limit(NODE_PAGE_SIZE);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        let mut seen = 0;
        loop {
            let page = retry("list nodes", || api.list(&params)).await?;
            seen += page.items.len();
            on_page(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(seen),
            }
        }
    }

    /// Create one Job; transient errors are retried, a 409 hands back the existing Job.
    pub async fn create_job(&self, job: &Job) -> Result<Created, CreateError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = job.metadata.name.clone().unwrap_or_default();
        let action = format!("create jobs.batch in namespace {:?}", self.namespace);
        let params = PostParams::default();
        match retry(&action, || api.create(&params, job)).await {
            Ok(_) => Ok(Created::New),
            Err(Error::Api { source: kube::Error::Api(status), .. }) if status.code == 409 => {
                let action = format!("get jobs.batch {name:?} in namespace {:?}", self.namespace);
                let existing = retry(&action, || api.get(&name)).await.map_err(CreateError::Fatal)?;
                Ok(Created::AlreadyExists(Box::new(existing)))
            }
            Err(Error::Api { source: kube::Error::Api(status), action })
                if status.code == 401 || status.code == 404 =>
            {
                Err(CreateError::Fatal(Error::Api { source: kube::Error::Api(status), action }))
            }
            Err(e @ Error::Forbidden { .. }) => Err(CreateError::Fatal(e)),
            Err(e) => Err(CreateError::Node(e.to_string())),
        }
    }

    /// One label-selected watch of this run's Jobs (relists and backs off on errors).
    pub fn watch_jobs(
        &self,
        selector: &str,
    ) -> impl Stream<Item = Result<watcher::Event<Job>, watcher::Error>> + Send + use<> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        watcher(api, watcher::Config::default().labels(selector)).default_backoff()
    }

    /// One label-selected watch of this run's pods, to explain failures (pull errors, exits).
    pub fn watch_pods(
        &self,
        selector: &str,
    ) -> impl Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Send + use<> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        watcher(api, watcher::Config::default().labels(selector)).default_backoff()
    }

    /// Publish the run's summary as a Kubernetes Event. Best effort: a failure is only logged.
    pub async fn publish_event(&self, target: &ObjectReference, success: bool, note: String, instance: Option<String>) {
        let reporter = Reporter { controller: "quayctl-controller".into(), instance };
        let recorder = Recorder::new(self.client.clone(), reporter);
        let event = KubeEvent {
            type_: if success { EventType::Normal } else { EventType::Warning },
            reason: if success { "PrePullSucceeded" } else { "PrePullFailed" }.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "PrePull".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, target).await {
            warn!(error = %e, "could not publish the summary Event");
        }
    }
}

/// True for errors worth retrying: throttling, server errors, transport failures.
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Run `request` up to [`ATTEMPTS`] times while it fails transiently (0.5 s, 1 s, 2 s apart).
async fn retry<T, F, Fut>(action: &str, mut request: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(500);
    for attempt in 1.. {
        match request().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                debug!(%action, attempt, error = %e, "transient API error, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(Error::api(action, e)),
        }
    }
    unreachable!("the loop returns on the last attempt")
}

/// The run-stopping error inside a watcher error, if it is one no retry will fix (401, 403);
/// anything else the watcher's backoff retries.
pub fn fatal_watch_error(e: &watcher::Error, action: String) -> Option<Error> {
    let status = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) => s,
        _ => return None,
    };
    matches!(status.code, 401 | 403).then(|| Error::api(action, kube::Error::Api(status.clone())))
}
