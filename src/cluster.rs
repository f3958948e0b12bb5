//! Step 4 of the data path, and the only module that talks to the Kubernetes API: list, create, get,
//! delete, watch, patch, events. It decides nothing: every answer goes back, with its error, to the
//! tracker (or to `run.rs` before the tracker starts), and what an error means is decided in
//! [`crate::error`]. A timeout on every request that is not a watch. It imports the core (the types
//! it hands over), never the reverse.

use std::collections::HashSet;
use std::fmt::Debug;
use std::time::Duration;

use futures::Stream;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference, Pod, Secret};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, ObjectList, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use crate::error::{Error, ErrorClass, Result};
use crate::pullers::Leftover;
use crate::taints::{StartupTaint, removal_patch};
use crate::types::{Announcement, Created, PodRef, PullerKind, SelfInfo, TaintRemoval};
use crate::workloads::{ImagesFrom, Kind, Namespaces, Object as Listed, Workload};

/// Nodes per list page: at 5,000 nodes that is 50 requests. A real node's status (its image list,
/// up to 50 images with their names) can weigh tens of KiB, so a page is the run's largest buffer.
const NODE_PAGE_SIZE: u32 = 100;
/// Node metadata per page: a few hundred bytes each.
const METADATA_PAGE_SIZE: u32 = 500;
/// Workloads per list page (`IMAGES_FROM`): a Deployment with its managed fields weighs a few KiB.
const WORKLOAD_PAGE_SIZE: u32 = 200;
/// Objects per page of a watcher's (re)list: bounds the memory of one list response.
const WATCH_PAGE_SIZE: u32 = 100;
/// Every request that is not a watch gets an answer within this, or is a [`Error::Timeout`]. kube's
/// client retries 429/503/504 itself (honouring Retry-After) inside this bound.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What `IMAGES_FROM`'s lists cost: requests, objects and bytes read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListStats {
    pub requests: usize,
    pub objects: usize,
    /// Of those, the workloads that add images.
    pub workloads: usize,
    pub bytes: u64,
}

impl ListStats {
    fn add(&mut self, other: ListStats) {
        self.requests += other.requests;
        self.objects += other.objects;
        self.workloads += other.workloads;
        self.bytes += other.bytes;
    }
}

pub struct Cluster {
    client: Client,
    namespace: String,
    /// The reporting instance of the Events it publishes (the controller's pod).
    instance: Option<String>,
}

/// The namespaced objects the run creates and watches (its pullers, their pods).
pub trait Object:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}
impl<K> Object for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// `jobs.batch`, `pods`: how a kind is named in messages.
pub fn plural<K: Object>() -> String {
    let group = K::group(&());
    if group.is_empty() { K::plural(&()).into_owned() } else { format!("{}.{group}", K::plural(&())) }
}

/// An owner reference to the same object that never claims to be its controller: the pullers stay
/// outside the CronJob's own Job accounting, and nothing blocks the owner's deletion.
fn reference(o: &OwnerReference) -> OwnerReference {
    OwnerReference { controller: None, block_owner_deletion: None, ..o.clone() }
}

/// The User-Agent of every request; the apiserver takes what precedes the `/` as the field
/// manager of what the controller writes.
pub const USER_AGENT: &str = concat!("quayctl-controller/", env!("CARGO_PKG_VERSION"));

/// Run one request that is not a watch, bounded by [`REQUEST_TIMEOUT`]; errors keep their source.
async fn request<T>(action: impl Into<String>, call: impl Future<Output = Result<T, kube::Error>>) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| Error::api(action, e)),
        Err(_) => Err(Error::Timeout { action: action.into(), seconds: REQUEST_TIMEOUT.as_secs() }),
    }
}

impl Cluster {
    /// Connect with the in-cluster config or the kubeconfig; `namespace` `None` = kubeconfig's.
    /// Every request carries [`USER_AGENT`]: audit logs name the controller, and the apiserver
    /// records the fields it sets under that manager (not "unknown").
    pub async fn connect(namespace: Option<&str>) -> Result<Cluster> {
        let mut config = kube::Config::infer().await.map_err(|e| Error::Connect(kube::Error::InferConfig(e)))?;
        config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(USER_AGENT)));
        let client = Client::try_from(config).map_err(Error::Connect)?;
        Ok(Cluster::new(client, namespace))
    }

    pub fn new(client: Client, namespace: Option<&str>) -> Cluster {
        let namespace = namespace.map(str::to_string).unwrap_or_else(|| client.default_namespace().to_string());
        Cluster { client, namespace, instance: None }
    }

    /// Events name `pod` as their reporting instance.
    pub fn with_instance(mut self, pod: Option<String>) -> Cluster {
        self.instance = pod;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Read the controller's own pod: its owning Job and its image.
    pub async fn inspect_self(&self, pod: &PodRef) -> Result<SelfInfo> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let action = format!("get pods {:?} in namespace {:?}", pod.name, pod.namespace);
        let me = request(action, api.get(&pod.name)).await?;
        let owner_job = me
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Job" && o.api_version == "batch/v1")
            .map(reference);
        let containers = me.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
        let image = containers
            .iter()
            .find(|c| c.name == "quayctl-controller")
            .or_else(|| containers.first())
            .and_then(|c| c.image.clone());
        let (cronjob, run_deadline) = match &owner_job {
            Some(job) => self.own_job(&pod.namespace, &job.name).await,
            None => (None, None),
        };
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
        Ok(SelfInfo { owner_job, cronjob, run_deadline, image, event_target })
    }

    /// The controller's own Job: the CronJob owning it, and when its deadline ends the run. Not
    /// knowing them is no reason to stop: retained pullers then have no owner (a warning says so).
    async fn own_job(&self, namespace: &str, name: &str) -> (Option<OwnerReference>, Option<(Timestamp, String)>) {
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let action = format!("get jobs.batch {name:?} in namespace {namespace:?}");
        match request(action, api.get(name)).await {
            Ok(job) => {
                let cronjob =
                    job.metadata.owner_references.iter().flatten().find(|o| o.kind == "CronJob").map(reference);
                let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
                let start = job.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
                let ends = match (start, deadline) {
                    // Checked: the API bounds neither; a deadline past the year 9999 is no deadline.
                    (Some(start), Some(seconds)) => {
                        start.checked_add(SignedDuration::from_secs(seconds)).ok().map(|ends| (ends, name.to_string()))
                    }
                    _ => None,
                };
                (cronjob, ends)
            }
            Err(e) => {
                warn!(error = %e, "cannot read the controller's own Job: retained pullers get no owner");
                (None, None)
            }
        }
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
            let page = request("list nodes", api.list(&params)).await?;
            seen += page.items.len();
            on_page(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(seen),
            }
        }
    }

    /// `IMAGES_FROM`: the workloads of the chosen kinds and namespaces (with the workload label
    /// selector), each list paged (`limit`/`continue`) and read once, each page turned into the
    /// little matching needs ([`Workload::from_object`]) before the next is asked for. With a
    /// namespace selector, the namespaces it selects first, then each kind cluster-wide.
    pub async fn workloads(&self, from: &ImagesFrom, mut on_workload: impl FnMut(Workload)) -> Result<ListStats> {
        let mut stats = ListStats::default();
        let allowed: Option<HashSet<String>> = match &from.namespaces {
            Namespaces::Selector(selector) => {
                let api: Api<Namespace> = Api::all(self.client.clone());
                let params = ListParams::default().labels(selector);
                let list = request("list namespaces", api.list_metadata(&params)).await?;
                stats.requests += 1;
                Some(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
            }
            _ => None,
        };
        let scopes: Vec<Option<&str>> = match &from.namespaces {
            Namespaces::Names(names) => names.iter().map(|n| Some(n.as_str())).collect(),
            Namespaces::All | Namespaces::Selector(_) => vec![None],
        };
        let selector = from.selector.as_deref();
        let mut kept = 0;
        let mut keep = |object: Listed| {
            let namespace = match &object {
                Listed::Deployment(o) => o.metadata.namespace.as_deref(),
                Listed::StatefulSet(o) => o.metadata.namespace.as_deref(),
                Listed::DaemonSet(o) => o.metadata.namespace.as_deref(),
                Listed::CronJob(o) => o.metadata.namespace.as_deref(),
                Listed::Job(o) => o.metadata.namespace.as_deref(),
            };
            if allowed.as_ref().is_some_and(|a| !namespace.is_some_and(|n| a.contains(n))) {
                return;
            }
            match Workload::from_object(&object) {
                Ok(workload) => {
                    kept += 1;
                    on_workload(workload)
                }
                Err(why) => debug!(?why, "a workload that adds no images"),
            }
        };
        for &kind in &from.kinds {
            for &scope in &scopes {
                let page_stats = match kind {
                    Kind::Deployment => {
                        self.pages::<Deployment>(scope, selector, |o| keep(Listed::Deployment(Box::new(o)))).await?
                    }
                    Kind::StatefulSet => {
                        self.pages::<StatefulSet>(scope, selector, |o| keep(Listed::StatefulSet(Box::new(o)))).await?
                    }
                    Kind::DaemonSet => {
                        self.pages::<DaemonSet>(scope, selector, |o| keep(Listed::DaemonSet(Box::new(o)))).await?
                    }
                    Kind::CronJob => {
                        self.pages::<CronJob>(scope, selector, |o| keep(Listed::CronJob(Box::new(o)))).await?
                    }
                    Kind::Job => self.pages::<Job>(scope, selector, |o| keep(Listed::Job(Box::new(o)))).await?,
                };
                stats.add(page_stats);
            }
        }
        stats.workloads = kept;
        Ok(stats)
    }

    /// Every object of kind `K` in `namespace` (`None`: all namespaces) with the label `selector`,
    /// one page at a time, each handed to `each` object by object and dropped before the next page;
    /// the bytes read counted.
    async fn pages<K>(
        &self,
        namespace: Option<&str>,
        selector: Option<&str>,
        mut each: impl FnMut(K),
    ) -> Result<ListStats>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug,
    {
        let action = match namespace {
            Some(ns) => format!("list {} in namespace {ns}", K::plural(&())),
            None => format!("list {} in all namespaces", K::plural(&())),
        };
        let url = K::url_path(&(), namespace);
        let builder = kube::core::Request::new(url);
        let mut params = ListParams::default().limit(WORKLOAD_PAGE_SIZE);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        let mut stats = ListStats::default();
        loop {
            let http = builder.list(&params).map_err(|e| Error::api(action.clone(), kube::Error::BuildRequest(e)))?;
            let text = request(action.clone(), self.client.request_text(http)).await?;
            stats.requests += 1;
            stats.bytes += text.len() as u64;
            let page: ObjectList<K> =
                serde_json::from_str(&text).map_err(|e| Error::api(action.clone(), kube::Error::SerdeError(e)))?;
            drop(text);
            stats.objects += page.items.len();
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            page.items.into_iter().for_each(&mut each);
            match next {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(stats),
            }
        }
    }

    /// Which of `names` are nodes that exist: a list of every node's metadata alone (no status, no
    /// spec), page by page, for the nodes a selective node list did not show.
    pub async fn existing_nodes(&self, names: &HashSet<String>) -> Result<HashSet<String>> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut params = ListParams::default().limit(METADATA_PAGE_SIZE);
        let mut found = HashSet::new();
        loop {
            let page = request("list nodes (metadata only)", api.list_metadata(&params)).await?;
            found.extend(page.items.into_iter().filter_map(|n| n.metadata.name).filter(|n| names.contains(n)));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(found),
            }
        }
    }

    /// Create one object. A 409 hands back the existing one (or says it vanished); every other error
    /// is returned for [`Error::class`] to judge. The object is dropped once serialized: a puller of
    /// 64 containers is about 130 KiB as a typed struct, and a few are in flight at once.
    pub async fn create<K: Object>(&self, object: Box<K>) -> Result<Created<K>> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let name = object.meta().name.clone().unwrap_or_default();
        let kind = plural::<K>();
        let action = format!("create {kind} in namespace {:?}", self.namespace);
        let body = serde_json::to_vec(&*object).map_err(|e| Error::api(action.clone(), kube::Error::SerdeError(e)))?;
        drop(object);
        // What `Api::create` does, after the drop.
        let mut post = kube::core::Request::new(K::url_path(&(), Some(&self.namespace)))
            .create(&PostParams::default(), body)
            .map_err(|e| Error::api(action.clone(), kube::Error::BuildRequest(e)))?;
        post.extensions_mut().insert("create");
        match request(action, self.client.request::<K>(post)).await {
            Ok(created) => Ok(Created::New(Box::new(created))),
            Err(e) if e.class() == ErrorClass::Conflict => {
                let action = format!("get {kind} {name:?} in namespace {:?}", self.namespace);
                match request(action, api.get(&name)).await {
                    Ok(existing) => Ok(Created::AlreadyExists(Box::new(existing))),
                    Err(e) if e.class() == ErrorClass::NotFound => Ok(Created::Vanished),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Delete one object, with background propagation (the garbage collector removes what it
    /// owns). With `uid`, only that incarnation: a precondition, so that another object of the same
    /// name is left alone (the apiserver answers 409 then). The answer goes back to the tracker.
    pub async fn delete<K: Object>(&self, name: &str, uid: Option<&str>) -> Result<()> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let action = format!("delete {} {name:?} in namespace {:?}", plural::<K>(), self.namespace);
        let mut params = DeleteParams::background();
        if let Some(uid) = uid {
            params = params.preconditions(Preconditions { uid: Some(uid.to_string()), resource_version: None });
        }
        request(action, api.delete(name, &params)).await.map(|_| debug!(name, "deleted"))
    }

    /// Every object of kind `K` matching `selector` in the puller namespace, one page at a time, each
    /// turned into what the run keeps of it (`keep` drops the rest).
    pub async fn list_paged<K: Object, T>(&self, selector: &str, keep: impl Fn(&K) -> Option<T>) -> Result<Vec<T>> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut params = ListParams::default().labels(selector).limit(WATCH_PAGE_SIZE);
        let action = format!("list {} in namespace {:?}", plural::<K>(), self.namespace);
        let mut out = Vec::new();
        loop {
            let page = request(action.clone(), api.list(&params)).await?;
            out.extend(page.items.iter().filter_map(&keep));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(out),
            }
        }
    }

    /// The pullers earlier runs left in the namespace (`selector`: every other run's): their Jobs,
    /// and their bare pods.
    pub async fn leftovers(&self, selector: &str) -> Result<Vec<Leftover>> {
        let mut found = self.list_paged::<Job, _>(selector, Leftover::from_job).await?;
        found.extend(self.list_paged::<Pod, _>(selector, Leftover::from_pod).await?);
        Ok(found)
    }

    /// Delete a puller of either kind (see [`Cluster::delete`]).
    pub async fn delete_puller(&self, kind: PullerKind, name: &str, uid: Option<&str>) -> Result<()> {
        match kind {
            PullerKind::Job => self.delete::<Job>(name, uid).await,
            PullerKind::Pod => self.delete::<Pod>(name, uid).await,
        }
    }

    /// One attempt at removing the startup taint from `node`, and nothing else: read its taints,
    /// patch them with a `test` of the list as read ([`removal_patch`]). A concurrent change fails
    /// the test (or conflicts): the tracker decides whether to try again.
    pub async fn remove_startup_taint(&self, node: &str, taint: &StartupTaint) -> Result<TaintRemoval> {
        let api: Api<Node> = Api::all(self.client.clone());
        let current = request(format!("get nodes {node:?}"), api.get(node)).await?;
        let taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
        let Some(patch) = removal_patch(&taints, taint) else { return Ok(TaintRemoval::AlreadyGone) };
        let action = format!("patch nodes {node:?} (remove the startup taint {taint})");
        request(action, api.patch(node, &PatchParams::default(), &Patch::Json::<()>(patch))).await?;
        Ok(TaintRemoval::Removed)
    }

    /// Does each of these Secrets exist in the puller namespace? Reads metadata only.
    pub async fn missing_secrets(&self, names: &[String]) -> Result<Vec<String>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut missing = Vec::new();
        for name in names {
            let action = format!("get secrets {name:?} in namespace {:?}", self.namespace);
            if request(action, api.get_metadata_opt(name)).await?.is_none() {
                missing.push(name.clone());
            }
        }
        Ok(missing)
    }

    /// Does this PriorityClass exist? (Pods naming a missing one are rejected by admission, so the
    /// Jobs would never start.)
    pub async fn priority_class_exists(&self, name: &str) -> Result<bool> {
        let api: Api<PriorityClass> = Api::all(self.client.clone());
        let action = format!("get priorityclasses.scheduling.k8s.io {name:?}");
        Ok(request(action, api.get_metadata_opt(name)).await?.is_some())
    }

    /// One label-selected watch of one kind in the puller namespace (relists and backs off on errors;
    /// pages of [`WATCH_PAGE_SIZE`]).
    pub fn watch<K: Object>(
        &self,
        selector: &str,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K> {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        watcher(api, watcher::Config::default().labels(selector).page_size(WATCH_PAGE_SIZE)).default_backoff()
    }

    /// The node watch (`STARTUP_TAINT_WATCH_SECONDS`), label-selected by `NODE_SELECTOR`. Nothing is
    /// cached: each event is judged and dropped.
    pub fn watch_nodes(
        &self,
        selector: Option<&str>,
    ) -> impl Stream<Item = Result<watcher::Event<Node>, watcher::Error>> + Send + use<> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut config = watcher::Config::default().page_size(NODE_PAGE_SIZE);
        if let Some(selector) = selector {
            config = config.labels(selector);
        }
        watcher(api, config).default_backoff()
    }

    /// Publish an Event about `target` (the run's Job or pod, or a node) as `quayctl-controller`
    /// with this pod's name as the instance. Events about a node go to the `default` namespace, as
    /// for every cluster-scoped object.
    pub async fn publish(&self, target: &ObjectReference, event: &Announcement) -> Result<()> {
        let reporter = Reporter { controller: "quayctl-controller".into(), instance: self.instance.clone() };
        let recorder = Recorder::new(self.client.clone(), reporter);
        let event = KubeEvent {
            type_: if event.warning { EventType::Warning } else { EventType::Normal },
            reason: event.reason.into(),
            note: Some(event.note.chars().take(1000).collect()),
            action: event.action.into(),
            secondary: None,
        };
        let action = format!("create events about {}", target.name.as_deref().unwrap_or_default());
        request(action, recorder.publish(&event, target)).await
    }
}
