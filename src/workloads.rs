//! `IMAGES_FROM`: the images of what the cluster runs, and for each node the ones a pod of those
//! workloads could be scheduled there with ([`crate::scheduling`]). Pure: the run lists the
//! workloads ([`crate::cluster`]), [`Workload::from_object`] keeps what matching needs of each, and a
//! [`Catalog`] answers, per node, its image set (at most [`MAX_IMAGES`]), ranked, with why each
//! image is there and what was left out.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, PodSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::grammar::{is_dns_label, validate_label_selector};
use crate::images::{Image, MAX_IMAGES, PullPolicy};
use crate::reference::Reference;
use crate::scheduling::{Constraints, NodeFacts, daemon_tolerations};
use crate::taints::StartupTaint;

/// The kinds `IMAGES_FROM` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    Job,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet, Kind::CronJob, Kind::Job];

    /// kubectl's names for it: plural, singular, short.
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "deployments" | "deployment" | "deploy" => Kind::Deployment,
            "statefulsets" | "statefulset" | "sts" => Kind::StatefulSet,
            "daemonsets" | "daemonset" | "ds" => Kind::DaemonSet,
            "cronjobs" | "cronjob" | "cj" => Kind::CronJob,
            "jobs" | "job" => Kind::Job,
            _ => return None,
        })
    }

    /// The resource, as RBAC and the API name it.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
            Kind::CronJob => "cronjobs",
            Kind::Job => "jobs",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => "apps",
            Kind::CronJob | Kind::Job => "batch",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::CronJob => "CronJob",
            Kind::Job => "Job",
        })
    }
}

/// Which namespaces' workloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespaces {
    /// `namespaces=*`.
    All,
    /// `namespaces=a,b`.
    Names(Vec<String>),
    /// `namespace-selector=<label selector>`.
    Selector(String),
}

/// `IMAGES_FROM`, parsed: `;`-separated clauses `namespaces=a,b` (or `*`), or
/// `namespace-selector=<selector>`; optional `selector=<selector>` (the workloads' labels, as
/// `kubectl get -l`) and `kinds=deployments,statefulsets,daemonsets,cronjobs,jobs` (kubectl's names,
/// short ones too; default all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImagesFrom {
    pub namespaces: Namespaces,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    pub kinds: Vec<Kind>,
}

impl ImagesFrom {
    pub fn parse(raw: &str) -> Result<ImagesFrom, String> {
        let mut clauses: BTreeMap<&str, &str> = BTreeMap::new();
        for clause in raw.split(';').map(str::trim).filter(|c| !c.is_empty()) {
            let Some((key, value)) = clause.split_once('=') else {
                return Err(format!(
                    "`{clause}` is not `key=value` (keys: namespaces, namespace-selector, selector, kinds)"
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if !matches!(key, "namespaces" | "namespace-selector" | "selector" | "kinds") {
                return Err(format!("unknown key `{key}` (keys: namespaces, namespace-selector, selector, kinds)"));
            }
            if value.is_empty() {
                return Err(format!("`{key}` has no value"));
            }
            if clauses.insert(key, value).is_some() {
                return Err(format!("`{key}` given twice"));
            }
        }
        let selector_of = |key: &str| -> Result<Option<String>, String> {
            clauses
                .get(key)
                .map(|s| validate_label_selector(s).map(|()| s.to_string()).map_err(|e| format!("{key}: {e}")))
                .transpose()
        };
        let namespaces = match (clauses.get("namespaces"), selector_of("namespace-selector")?) {
            (Some(_), Some(_)) => return Err("give `namespaces` or `namespace-selector`, not both".into()),
            (None, None) => {
                return Err(
                    "say which namespaces: `namespaces=a,b`, `namespaces=*` or `namespace-selector=<selector>`".into(),
                );
            }
            (None, Some(selector)) => Namespaces::Selector(selector),
            (Some(&"*"), None) => Namespaces::All,
            (Some(list), None) => {
                let mut names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
                if let Some(bad) = names.iter().find(|n| !is_dns_label(n)) {
                    return Err(format!("namespaces: `{bad}` is not a namespace name"));
                }
                names.sort();
                names.dedup();
                Namespaces::Names(names)
            }
        };
        let kinds = match clauses.get("kinds") {
            None => Kind::ALL.to_vec(),
            Some(list) => {
                let mut kinds = Vec::new();
                for name in list.split(',').map(str::trim) {
                    let kind = Kind::parse(name).ok_or_else(|| {
                        format!("kinds: `{name}` is not one of deployments, statefulsets, daemonsets, cronjobs, jobs")
                    })?;
                    if !kinds.contains(&kind) {
                        kinds.push(kind);
                    }
                }
                kinds.sort();
                kinds
            }
        };
        Ok(ImagesFrom { namespaces, selector: selector_of("selector")?, kinds })
    }
}

/// A workload, as a run identifies it in its report: `Deployment ml/trainer`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct WorkloadRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What matching needs of one workload: who it is, how many pods it runs, where they may go, and
/// the images of its pod template (containers, init containers, image volumes).
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub id: WorkloadRef,
    /// Its pods: replicas, a Job's parallelism; a DaemonSet runs one on each node it fits.
    pub replicas: u32,
    pub daemon: bool,
    pub constraints: Constraints,
    pub images: Vec<String>,
}

/// Why a listed object adds no images (for the debug log and the tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    NoReplicas,
    Suspended,
    Finished,
    /// A Job of a CronJob: the CronJob's template says it.
    OwnedByCronJob,
    /// This project's own pullers and controller.
    Ours,
}

impl Workload {
    /// A Deployment, StatefulSet, DaemonSet, CronJob or Job, or why it adds nothing: scaled to
    /// zero, suspended, finished (a Job), a CronJob's Job, or this project's own.
    pub fn from_object(object: &Object) -> Result<Workload, Ignored> {
        let (kind, meta, replicas, template) = match object {
            Object::Deployment(d) => {
                let spec = d.spec.as_ref();
                (Kind::Deployment, &d.metadata, spec.and_then(|s| s.replicas).unwrap_or(1), spec.map(|s| &s.template))
            }
            Object::StatefulSet(s) => {
                let spec = s.spec.as_ref();
                (Kind::StatefulSet, &s.metadata, spec.and_then(|s| s.replicas).unwrap_or(1), spec.map(|s| &s.template))
            }
            Object::DaemonSet(d) => (Kind::DaemonSet, &d.metadata, 1, d.spec.as_ref().map(|s| &s.template)),
            Object::CronJob(c) => {
                let spec = c.spec.as_ref();
                if spec.and_then(|s| s.suspend).unwrap_or(false) {
                    return Err(Ignored::Suspended);
                }
                let job = spec.and_then(|s| s.job_template.spec.as_ref());
                (Kind::CronJob, &c.metadata, job.and_then(|j| j.parallelism).unwrap_or(1), job.map(|j| &j.template))
            }
            Object::Job(j) => {
                if j.metadata.owner_references.iter().flatten().any(|o| o.kind == "CronJob") {
                    return Err(Ignored::OwnedByCronJob);
                }
                let done = j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| {
                    conditions.iter().any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
                });
                if done {
                    return Err(Ignored::Finished);
                }
                let spec = j.spec.as_ref();
                if spec.and_then(|s| s.suspend).unwrap_or(false) {
                    return Err(Ignored::Suspended);
                }
                (Kind::Job, &j.metadata, spec.and_then(|s| s.parallelism).unwrap_or(1), spec.map(|s| &s.template))
            }
        };
        if replicas <= 0 {
            return Err(Ignored::NoReplicas);
        }
        if is_ours(meta) || template.and_then(|t| t.metadata.as_ref()).is_some_and(is_ours) {
            return Err(Ignored::Ours);
        }
        let empty = PodSpec::default();
        let spec = template.and_then(|t| t.spec.as_ref()).unwrap_or(&empty);
        Ok(Workload::from_spec(kind, meta, replicas as u32, spec))
    }

    /// What matching needs of a pod template's spec, copied out of it (the listed object goes
    /// with its page).
    fn from_spec(kind: Kind, meta: &ObjectMeta, replicas: u32, spec: &PodSpec) -> Workload {
        let daemon = kind == Kind::DaemonSet;
        let mut tolerations = spec.tolerations.clone().unwrap_or_default();
        if daemon {
            tolerations.extend(daemon_tolerations(spec.host_network.unwrap_or(false)));
        }
        let images = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .filter_map(|c| c.image.clone())
            .chain(spec.volumes.iter().flatten().filter_map(|v| v.image.as_ref()?.reference.clone()))
            .filter(|i| !i.trim().is_empty())
            .collect();
        Workload {
            id: WorkloadRef {
                kind,
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
            },
            replicas,
            daemon,
            constraints: Constraints {
                node_selector: spec.node_selector.clone().unwrap_or_default(),
                affinity: spec.affinity.as_ref().and_then(|a| {
                    a.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.clone()
                }),
                tolerations,
            },
            images,
        }
    }
}

/// One listed object of a kind `IMAGES_FROM` reads.
#[derive(Clone, Debug)]
pub enum Object {
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    DaemonSet(Box<DaemonSet>),
    CronJob(Box<CronJob>),
    Job(Box<Job>),
}

/// This project's own objects (its pullers, its CronJobs and their Jobs) add nothing.
fn is_ours(meta: &ObjectMeta) -> bool {
    let labels = meta.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    get("app.kubernetes.io/managed-by") == Some("quayctl-controller")
        || matches!(get("app.kubernetes.io/name"), Some("quayctl-controller" | "quayctl-puller"))
}

/// A node's images, as global indices into the run's image list (explicit `QUAY_IMAGES` first, then
/// by rank): shared by every node that gets the same set. Bit i of the node's masks is `set[i]`.
pub type ImageSet = Arc<[u32]>;

/// The first `count` images of the run, in order: the set of every node of a run without
/// `IMAGES_FROM` (its `QUAY_IMAGES`).
pub fn first(count: usize) -> ImageSet {
    (0..count as u32).collect()
}

/// The placements a node fits (indices into the catalog's distinct placements), shared by nodes alike.
pub type Fits = Arc<[u32]>;

/// Left-out images listed per node in the report and the dry run (the count says how many).
pub const LEFT_OUT_LISTED: usize = 10;

/// What a node's set left out, heaviest first, shared by nodes alike.
pub type LeftOuts = Arc<[LeftOut]>;

/// One image a node's set left out, past [`MAX_IMAGES`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeftOut {
    pub image: u32,
    /// The pods expected to want it on the node (its rank).
    pub weight: f64,
}

/// The run's images, where they come from, and each node's set.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Every image of the run: `QUAY_IMAGES` first (every node gets them), then the workloads'.
    pub images: Vec<Image>,
    pub explicit: usize,
    /// Per image, the workloads whose templates name it (indices into `workloads`).
    pub wanted_by: Vec<Vec<u32>>,
    /// Who each workload is, as the report names it (`Deployment ml/trainer`): one string each,
    /// shared with the report (10,000 workloads: about 0.5 MiB).
    pub workloads: Vec<Arc<str>>,
    /// Per distinct placement: its constraints, and per workload in it (replicas, daemon, images).
    placements: Vec<Placement>,
    /// The placements by their constraints (serialized).
    placement_index: HashMap<String, u32>,
    /// Entries of the workloads that are no image reference (their workload named): skipped.
    pub unparsable: Vec<(String, String)>,
    /// Normalized reference -> image, for `SKIP_PRESENT` against a node's `status.images`.
    by_name: HashMap<String, u32>,
    /// `registry/repository@digest` -> the images pinned to that digest.
    by_digest: HashMap<String, Vec<u32>>,
    /// Interned placement signatures and image sets, so nodes alike share one.
    fits: HashMap<Vec<u32>, Fits>,
    sets: HashMap<Vec<u32>, ImageSet>,
    /// The set (and what was left out) of each signature, once the node list is complete.
    by_fits: HashMap<Fits, (ImageSet, LeftOuts)>,
}

#[derive(Clone, Debug)]
struct Placement {
    constraints: Constraints,
    /// (workload, replicas, daemon, image indices)
    members: Vec<(u32, u32, bool, Box<[u32]>)>,
    /// Listed nodes it fits (its replicas spread over them).
    fits: u32,
}

impl Catalog {
    /// The explicit images (every node), and the workloads'. An image entry of a workload that is no
    /// image reference is left out (and said so).
    pub fn new(explicit: Vec<Image>, workloads: impl IntoIterator<Item = Workload>) -> Catalog {
        let mut catalog = Catalog { explicit: explicit.len(), ..Default::default() };
        for image in explicit {
            catalog.add_image(image);
        }
        for workload in workloads {
            catalog.add(workload);
        }
        catalog
    }

    /// One more workload, as it is listed: its images (each once, interned), its placement
    /// (interned: workloads with the same constraints share one), who it is. Nothing else of it
    /// is kept.
    pub fn add(&mut self, workload: Workload) {
        let w = self.workloads.len() as u32;
        let mut ids = Vec::new();
        for entry in &workload.images {
            let image = match Image::parse(entry.trim()) {
                Ok(image) => image,
                Err(e) => {
                    self.unparsable.push((workload.id.to_string(), format!("{entry}: {e}")));
                    continue;
                }
            };
            let id = match self.by_name.get(&image.normalized) {
                Some(id) => *id,
                None => self.add_image(image),
            };
            if !ids.contains(&id) {
                ids.push(id);
                self.wanted_by[id as usize].push(w);
            }
        }
        let key = serde_json::to_string(&workload.constraints).unwrap_or_default();
        let p = match self.placement_index.get(&key) {
            Some(&p) => p,
            None => {
                self.placements.push(Placement { constraints: workload.constraints, members: Vec::new(), fits: 0 });
                let p = (self.placements.len() - 1) as u32;
                self.placement_index.insert(key, p);
                p
            }
        };
        self.placements[p as usize].members.push((w, workload.replicas, workload.daemon, ids.into()));
        self.workloads.push(workload.id.to_string().into());
    }

    /// The lists are complete: give back what the vectors grew beyond their contents (they grew by
    /// doubling while pages arrived, and live for the whole run).
    pub fn listed(&mut self) {
        self.images.shrink_to_fit();
        self.workloads.shrink_to_fit();
        self.wanted_by.iter_mut().for_each(Vec::shrink_to_fit);
        self.wanted_by.shrink_to_fit();
        for placement in &mut self.placements {
            placement.members.shrink_to_fit();
        }
        self.placements.shrink_to_fit();
        self.placement_index.shrink_to_fit();
        self.by_name.shrink_to_fit();
    }

    /// A catalog of `QUAY_IMAGES` alone: every node gets every image.
    pub fn explicit(images: Vec<Image>) -> Catalog {
        Catalog::new(images, Vec::new())
    }

    fn add_image(&mut self, image: Image) -> u32 {
        let id = self.images.len() as u32;
        self.by_name.insert(image.normalized.clone(), id);
        if let Some(digest) = &image.reference.digest {
            let r = &image.reference;
            self.by_digest.entry(format!("{}/{}@{digest}", r.registry, r.repository)).or_default().push(id);
        }
        self.images.push(image);
        self.wanted_by.push(Vec::new());
        id
    }

    /// The image whose normalized reference is `name`.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    /// The workloads' images beyond `QUAY_IMAGES`.
    pub fn from_workloads(&self) -> usize {
        self.images.len() - self.explicit
    }

    /// The placements `node` fits, counted (a Deployment's replicas spread over the nodes it fits).
    pub fn fits(&mut self, node: &Node, startup: Option<&StartupTaint>) -> Fits {
        let (name, labels, taints) = facts(node, startup);
        let facts = NodeFacts { name, labels, taints: &taints };
        let mut ids = Vec::new();
        for (p, placement) in self.placements.iter_mut().enumerate() {
            if placement.constraints.fit(&facts) {
                placement.fits += 1;
                ids.push(p as u32);
            }
        }
        self.fits.entry(ids.clone()).or_insert_with(|| ids.into()).clone()
    }

    /// `SKIP_PRESENT`: the run's images `node` lists in `status.images` such that a pull would
    /// change nothing ([`Image::present_in`]'s rule: the same digest, or the same tag where the pull
    /// policy is `IfNotPresent`), by index lookups (a node lists at most 50 names by default).
    pub fn present(&self, node: &Node, policy: PullPolicy) -> Vec<u32> {
        let listed = node.status.as_ref().and_then(|s| s.images.as_deref()).unwrap_or_default();
        let mut present = Vec::new();
        for name in listed.iter().flat_map(|i| i.names.iter().flatten()) {
            let Ok(theirs) = Reference::parse(name) else { continue };
            let mut found: Vec<u32> = Vec::new();
            if theirs.digest.is_none()
                && let Some(id) = self.by_name.get(&theirs.to_string())
                && self.images[*id as usize].reference.digest.is_none()
            {
                found.push(*id);
            }
            if let Some(digest) = &theirs.digest {
                let key = format!("{}/{}@{digest}", theirs.registry, theirs.repository);
                found.extend(self.by_digest.get(&key).into_iter().flatten());
            }
            for id in found {
                if self.images[id as usize].pull_policy(policy) == "IfNotPresent" && !present.contains(&id) {
                    present.push(id);
                }
            }
        }
        present
    }

    /// The images a node that fits `fits` gets: `QUAY_IMAGES` first, then each image a workload of
    /// those placements asks for, ranked by the pods expected to want it on such a node (a
    /// DaemonSet's: 1; a Deployment's: its replicas over the nodes it fits), at most [`MAX_IMAGES`]
    /// in all; what did not fit, with its weight. Call once the node list is complete.
    pub fn set_for(&mut self, fits: &Fits) -> (ImageSet, LeftOuts) {
        if let Some(known) = self.by_fits.get(fits) {
            return known.clone();
        }
        let mut weights: BTreeMap<u32, f64> = BTreeMap::new();
        for &p in fits.iter() {
            let placement = &self.placements[p as usize];
            for (_, replicas, daemon, ids) in &placement.members {
                let weight = if *daemon { 1.0 } else { f64::from(*replicas) / f64::from(placement.fits.max(1)) };
                for &id in ids {
                    if (id as usize) >= self.explicit {
                        *weights.entry(id).or_default() += weight;
                    }
                }
            }
        }
        let mut ranked: Vec<(u32, f64)> = weights.into_iter().collect();
        // Heavier first; ties in the order the images were first named.
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let room = MAX_IMAGES.saturating_sub(self.explicit);
        let left_out: LeftOuts = ranked
            .split_off(ranked.len().min(room))
            .into_iter()
            .map(|(image, weight)| LeftOut { image, weight })
            .collect();
        let ids: Vec<u32> = (0..self.explicit as u32).chain(ranked.iter().map(|(id, _)| *id)).collect();
        let set = self.sets.entry(ids.clone()).or_insert_with(|| ids.into()).clone();
        self.by_fits.insert(fits.clone(), (set.clone(), left_out.clone()));
        (set, left_out)
    }

    /// The workloads of image `id` among the placements `fits`: why a node got it (`DRY_RUN`).
    pub fn why(&self, id: u32, fits: &[u32]) -> Vec<&str> {
        let mut why: Vec<&str> = fits
            .iter()
            .flat_map(|&p| self.placements[p as usize].members.iter())
            .filter(|m| m.3.contains(&id))
            .map(|m| &*self.workloads[m.0 as usize])
            .collect();
        why.sort();
        why
    }
}

/// The node as matching sees it: its name, labels, and taints without the startup taint.
fn facts<'n>(
    node: &'n Node,
    startup: Option<&StartupTaint>,
) -> (&'n str, &'n BTreeMap<String, String>, Vec<&'n Taint>) {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| startup.is_none_or(|s| !s.matches(t)))
        .collect();
    (node.metadata.name.as_deref().unwrap_or_default(), node.metadata.labels.as_ref().unwrap_or(&EMPTY), taints)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::images::parse_image_list;

    #[test]
    fn images_from_reads_like_kubectl() {
        let all = ImagesFrom::parse("namespaces=*").unwrap();
        assert_eq!((all.namespaces, all.selector, all.kinds), (Namespaces::All, None, Kind::ALL.to_vec()));
        let some =
            ImagesFrom::parse(" namespaces = ml, web ,ml ; selector=tier in (gpu, web),!canary; kinds=deploy,sts,ds")
                .unwrap();
        assert_eq!(some.namespaces, Namespaces::Names(vec!["ml".into(), "web".into()]));
        assert_eq!(some.selector.as_deref(), Some("tier in (gpu, web),!canary"));
        assert_eq!(some.kinds, [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet]);
        let selected = ImagesFrom::parse("namespace-selector=team=ml;kinds=cronjobs,jobs,cj").unwrap();
        assert_eq!(selected.namespaces, Namespaces::Selector("team=ml".into()));
        assert_eq!(selected.kinds, [Kind::CronJob, Kind::Job]);
        for (bad, says) in [
            ("", "say which namespaces"),
            ("selector=a=b", "say which namespaces"),
            ("namespaces=ml;namespace-selector=a", "not both"),
            ("namespaces=ML", "`ML` is not a namespace name"),
            ("namespaces=ml;kinds=pods", "`pods` is not one of"),
            ("namespaces=ml;namespaces=web", "given twice"),
            ("namespaces=ml;labels=a", "unknown key `labels`"),
            ("namespaces", "not `key=value`"),
            ("namespaces=ml;selector=", "has no value"),
            ("namespaces=ml;selector=a in b", "selector:"),
            ("namespace-selector=a=b,", "namespace-selector:"),
        ] {
            let error = ImagesFrom::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    fn object(kind: &str, body: serde_json::Value) -> Object {
        let mut value = json!({"metadata": {"name": "w", "namespace": "ns"}});
        value.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        match kind {
            "Deployment" => Object::Deployment(Box::new(serde_json::from_value(value).unwrap())),
            "StatefulSet" => Object::StatefulSet(Box::new(serde_json::from_value(value).unwrap())),
            "DaemonSet" => Object::DaemonSet(Box::new(serde_json::from_value(value).unwrap())),
            "CronJob" => Object::CronJob(Box::new(serde_json::from_value(value).unwrap())),
            _ => Object::Job(Box::new(serde_json::from_value(value).unwrap())),
        }
    }

    fn template(spec: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"labels": {"app": "w"}}, "spec": spec})
    }

    #[test]
    fn a_workload_brings_every_image_of_its_template_and_where_its_pods_may_go() {
        let spec = json!({
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {
                    "matchExpressions": [{"key": "x", "operator": "Exists"}]}}]}},
            "initContainers": [{"name": "fetch", "image": "busybox:1.36"}],
            "containers": [{"name": "app", "image": "nvcr.io/nvidia/cuda:12.4"}, {"name": "side", "image": "envoy:1"}],
            "volumes": [{"name": "weights", "image": {"reference": "ghcr.io/org/weights:v3"}}, {"name": "tmp", "emptyDir": {}}]
        });
        let d = Workload::from_object(&object(
            "Deployment",
            json!({"spec": {
            "replicas": 3, "selector": {}, "template": template(spec)}}),
        ))
        .unwrap();
        assert_eq!(d.id.to_string(), "Deployment ns/w");
        assert_eq!(d.replicas, 3);
        assert_eq!(d.images, ["busybox:1.36", "nvcr.io/nvidia/cuda:12.4", "envoy:1", "ghcr.io/org/weights:v3"]);
        assert_eq!(d.constraints.node_selector, BTreeMap::from([("pool".to_string(), "gpu".to_string())]));
        assert_eq!(d.constraints.affinity.as_ref().unwrap().node_selector_terms.len(), 1, "required only");
        assert_eq!(d.constraints.tolerations.len(), 1);

        let ds = Workload::from_object(&object(
            "DaemonSet",
            json!({"spec": {"selector": {}, "template": template(json!({
            "hostNetwork": true, "containers": [{"name": "agent", "image": "agent:2"}]}))}}),
        ))
        .unwrap();
        assert!(ds.daemon && ds.replicas == 1);
        assert_eq!(ds.constraints.tolerations.len(), 7, "what the DaemonSet controller adds, network-unavailable too");

        let cron = object(
            "CronJob",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {
            "parallelism": 4, "template": template(json!({"containers": [{"name": "c", "image": "report:1"}]}))}}}}),
        );
        assert_eq!(Workload::from_object(&cron).unwrap().replicas, 4);
    }

    #[test]
    fn what_adds_no_images() {
        let containers = json!({"containers": [{"name": "c", "image": "x:1"}]});
        let zero = object(
            "Deployment",
            json!({"spec": {"replicas": 0, "selector": {}, "template": template(containers.clone())}}),
        );
        assert_eq!(Workload::from_object(&zero), Err(Ignored::NoReplicas));
        let suspended = object(
            "CronJob",
            json!({"spec": {"schedule": "@daily", "suspend": true,
            "jobTemplate": {"spec": {"template": template(containers.clone())}}}}),
        );
        assert_eq!(Workload::from_object(&suspended), Err(Ignored::Suspended));
        let done = object(
            "Job",
            json!({"spec": {"template": template(containers.clone())},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
        );
        assert_eq!(Workload::from_object(&done), Err(Ignored::Finished));
        let mut owned = json!({"spec": {"template": template(containers.clone())}});
        owned["metadata"] = json!({"name": "c-1", "namespace": "ns", "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "CronJob", "name": "c", "uid": "u"}]});
        assert_eq!(Workload::from_object(&object("Job", owned)), Err(Ignored::OwnedByCronJob));
        let mut ours = json!({"spec": {"template": template(containers.clone())}});
        ours["metadata"] = json!({"name": "prepull-x", "namespace": "ns",
            "labels": {"app.kubernetes.io/managed-by": "quayctl-controller"}});
        assert_eq!(Workload::from_object(&object("Job", ours)), Err(Ignored::Ours));
        let running = object("Job", json!({"spec": {"template": template(containers)}, "status": {"active": 1}}));
        assert!(Workload::from_object(&running).is_ok());
    }

    fn workload(kind: Kind, name: &str, replicas: u32, constraints: Constraints, images: &[&str]) -> Workload {
        Workload {
            id: WorkloadRef { kind, namespace: "ns".into(), name: name.into() },
            replicas,
            daemon: kind == Kind::DaemonSet,
            constraints,
            images: images.iter().map(|i| i.to_string()).collect(),
        }
    }

    fn on(pairs: &[(&str, &str)]) -> Constraints {
        Constraints {
            node_selector: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let taints: Vec<_> = taints.iter().map(|(k, e)| json!({"key": k, "effect": e})).collect();
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
            .unwrap()
    }

    fn names(catalog: &Catalog, set: &[u32]) -> Vec<String> {
        set.iter().map(|&id| catalog.images[id as usize].given.clone()).collect()
    }

    #[test]
    fn each_node_gets_the_images_of_what_could_run_there() {
        let gpu_toleration = Constraints {
            tolerations: vec![k8s_openapi::api::core::v1::Toleration {
                key: Some("nvidia.com/gpu".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }],
            ..on(&[("pool", "gpu")])
        };
        let workloads = vec![
            workload(Kind::Deployment, "web", 10, on(&[("pool", "web")]), &["nginx:1.27", "envoy:1"]),
            workload(Kind::Deployment, "trainer", 2, gpu_toleration, &["cuda:12", "nginx:1.27"]),
            workload(
                Kind::DaemonSet,
                "agent",
                1,
                Constraints { tolerations: daemon_tolerations(false), ..Default::default() },
                &["agent:2"],
            ),
            workload(Kind::StatefulSet, "db", 3, on(&[("zone", "a")]), &["postgres:17"]),
        ];
        let explicit = parse_image_list("busybox:1.36;nginx:1.27").unwrap().images;
        let mut catalog = Catalog::new(explicit, workloads);
        assert_eq!(
            names(&catalog, &(0..catalog.images.len() as u32).collect::<Vec<_>>()),
            ["busybox:1.36", "nginx:1.27", "envoy:1", "cuda:12", "agent:2", "postgres:17"],
            "QUAY_IMAGES first, then each image once (after normalization)"
        );
        assert_eq!(catalog.wanted_by[1].len(), 2, "nginx: web and trainer");
        let startup = StartupTaint::parse("images-pending").unwrap();
        let web = node("web-1", &[("pool", "web"), ("zone", "a")], &[]);
        let gpu =
            node("gpu-1", &[("pool", "gpu")], &[("nvidia.com/gpu", "NoSchedule"), ("images-pending", "NoSchedule")]);
        let untolerated = node("gpu-2", &[("pool", "gpu")], &[("dedicated", "NoSchedule")]);
        let fits: Vec<Fits> = [&web, &gpu, &untolerated].iter().map(|n| catalog.fits(n, Some(&startup))).collect();
        let (web_set, _) = catalog.set_for(&fits[0]);
        assert_eq!(
            names(&catalog, &web_set),
            ["busybox:1.36", "nginx:1.27", "envoy:1", "postgres:17", "agent:2"],
            "QUAY_IMAGES, then by pods expected here: web's 10 replicas on the 1 node it fits, db's 3, the agent's 1"
        );
        let (gpu_set, _) = catalog.set_for(&fits[1]);
        assert_eq!(
            names(&catalog, &gpu_set),
            ["busybox:1.36", "nginx:1.27", "cuda:12"],
            "the startup taint does not count; the trainer tolerates nvidia.com/gpu, the agent does not"
        );
        let (other, _) = catalog.set_for(&fits[2]);
        assert_eq!(names(&catalog, &other), ["busybox:1.36", "nginx:1.27"], "dedicated is tolerated by none");
        assert!(Arc::ptr_eq(&catalog.set_for(&fits[0]).0, &web_set), "nodes alike share one set");
        let why: Vec<String> = catalog.why(1, &fits[1]).iter().map(ToString::to_string).collect();
        assert_eq!(why, ["Deployment ns/trainer"]);
    }

    #[test]
    fn more_than_64_images_rank_by_the_pods_expected_to_want_them() {
        let mut workloads: Vec<Workload> = (0..70)
            .map(|i| {
                workload(
                    Kind::Deployment,
                    &format!("d{i}"),
                    1 + i as u32 % 7,
                    Constraints::default(),
                    &[&format!("app-{i}:1")],
                )
            })
            .collect();
        workloads.push(workload(Kind::DaemonSet, "agent", 1, Constraints::default(), &["agent:1"]));
        let mut catalog = Catalog::new(parse_image_list("base:1").unwrap().images, workloads);
        let nodes: Vec<Node> = (0..4).map(|i| node(&format!("n{i}"), &[], &[])).collect();
        let fits: Vec<Fits> = nodes.iter().map(|n| catalog.fits(n, None)).collect();
        let (set, left_out) = catalog.set_for(&fits[0]);
        assert_eq!(set.len(), MAX_IMAGES);
        assert_eq!(catalog.images[set[0] as usize].given, "base:1", "QUAY_IMAGES always");
        assert!(
            set.iter().any(|&id| catalog.images[id as usize].given == "agent:1"),
            "a DaemonSet's pod is certain: 1"
        );
        assert_eq!(left_out.len(), 71 + 1 - MAX_IMAGES);
        assert!(left_out.iter().all(|l| l.weight <= 0.25 + f64::EPSILON), "the lightest left out: {left_out:?}");
        let kept_min = set[1..]
            .iter()
            .map(|&id| {
                let i: usize = catalog.images[id as usize]
                    .given
                    .trim_start_matches("app-")
                    .trim_end_matches(":1")
                    .parse()
                    .unwrap_or(0);
                (1 + i % 7) as f64 / 4.0
            })
            .fold(f64::MAX, f64::min);
        assert!(left_out.iter().all(|l| l.weight <= kept_min), "nothing kept weighs less than what was left out");
    }
}
