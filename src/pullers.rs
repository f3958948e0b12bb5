//! Step 3 of the data path: one puller per eligible node, as pure builders over typed k8s-openapi
//! structs (a misspelt field does not compile); who the run is (its id, helper image, owner) decided
//! from the configuration and the controller's own pod; and whether an existing puller is ours.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EmptyDirVolumeSource, EnvVar, HostPathVolumeSource, ImageVolumeSource,
    LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use k8s_openapi::jiff::Timestamp;
use tracing::warn;

use crate::config::{Config, HelperImage, PullStrategy, PullerSettings};
use crate::error::{Error, Result};
use crate::images::{Image, ImageMask};
use crate::naming::{self, INSTALL_CONTAINER, QUAYCTL_CONTAINER};
use crate::nodes::EligibleNode;
use crate::outcome::{Outcome, outcome_from_job, owning_job};
use crate::policy::Deadlines;
use crate::taints::TaintTable;
use crate::types::{PullerKind, SelfInfo};
use crate::workloads::Catalog;

pub const MANAGED_BY: &str = "quayctl-controller";
pub const PULLER_NAME: &str = "quayctl-puller";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_RUN: &str = "quayctl-controller/run";
pub const LABEL_NODE: &str = "quayctl-controller/node";
/// The installation a puller belongs to (`INSTANCE`): a run cleans up only its own installation's.
pub const LABEL_INSTANCE: &str = "quayctl-controller/instance";
pub const ANNOTATION_NODE: &str = "quayctl-controller/node-name";
pub const ANNOTATION_RUN: &str = "quayctl-controller/run-id";
pub const ANNOTATION_IMAGES: &str = "quayctl-controller/images";
/// Hash of what a run pulls and how (strategy, images, pull policy): a 409 is adopted only when the
/// existing Job carries the same hash.
pub const ANNOTATION_SPEC_HASH: &str = "quayctl-controller/spec-hash";

/// Where the no-op binary lives in the helper image, and where pull containers find it.
pub const NOOP_IN_HELPER: &str = "/quayctl-noop";
const NOOP_DIR: &str = "/.quayctl-noop";
/// Non-root user of distroless images; any non-zero uid works.
const RUN_AS_USER: i64 = 65532;
/// Where a volume-strategy container mounts its image (nothing reads it: the mount is what pulls).
const IMAGE_MOUNT: &str = "/image";

/// Who the run is: what only the run knows, besides the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct RunIdentity {
    pub run_id: String,
    /// The installation (`INSTANCE`, else the owning CronJob's name, else `default`).
    pub instance: String,
    /// Where the pullers are created.
    pub namespace: String,
    /// Image carrying `/quayctl-noop` (kubelet strategy only).
    pub helper_image: Option<String>,
    /// Who owns the pullers: the controller's Job (the CronJob's), or with `KEEP_LAST_PULLER` the
    /// CronJob itself; only within the pullers' namespace.
    pub owner: Option<OwnerReference>,
}

impl RunIdentity {
    /// Decide the run's identity from the configuration and the controller's own pod (`me`, empty
    /// outside a pod): `RUN_ID`, else the owning Job's name, else the time; `HELPER_IMAGE`, else the
    /// pod's own image. The pullers' owner: the controller's Job, whose deletion (the CronJob's
    /// history limit) then removes them; with `KEEP_LAST_PULLER` the CronJob instead, since retained
    /// pullers must outlive the run's Job (and go with the installation); only within the pullers'
    /// namespace: owner references cannot cross namespaces (the garbage collector would take the owner
    /// as gone and delete the pullers at once).
    pub fn decide(config: &Config, me: &SelfInfo, namespace: &str, now: Timestamp) -> Result<RunIdentity> {
        let helper_image = match &config.puller.helper_image {
            HelperImage::Given(image) => Some(image.clone()),
            HelperImage::NotNeeded => None,
            HelperImage::OwnPod => Some(me.image.clone().ok_or_else(|| {
                Error::SelfInspection(
                    "the controller's pod has no container image to use as HELPER_IMAGE; set HELPER_IMAGE".into(),
                )
            })?),
        };
        let run_id = config
            .output
            .run_id
            .clone()
            .or_else(|| me.owner_job.as_ref().map(|o| o.name.clone()))
            .unwrap_or_else(|| now.strftime("%Y%m%d-%H%M%S").to_string());
        let instance = config
            .output
            .instance
            .clone()
            .or_else(|| me.cronjob.as_ref().map(|c| naming::label_value(&c.name)))
            .unwrap_or_else(|| "default".into());
        let wanted = if config.puller.keep_last { &me.cronjob } else { &me.owner_job };
        let owner = match (wanted, &config.placement.pod) {
            (Some(owner), Some(pod)) if pod.namespace == namespace => Some(owner.clone()),
            (Some(owner), _) => {
                warn!(
                    owner = %owner.name,
                    namespace,
                    "the pullers live outside the controller's namespace, so they cannot be owned by its {}; \
                     their TTL or a later run removes them",
                    owner.kind
                );
                None
            }
            (None, _) => None,
        };
        Ok(RunIdentity { run_id, instance, namespace: namespace.to_string(), helper_image, owner })
    }
}

/// Everything a puller needs besides its node and its deadlines (the tracker's): the same for every
/// puller of a run.
#[derive(Clone, Debug)]
pub struct PullerTemplate {
    pub run_id: String,
    /// See [`RunIdentity::instance`].
    pub instance: String,
    pub namespace: String,
    /// The run's images (`QUAY_IMAGES`, then `IMAGES_FROM`'s) and where each node's set comes from.
    pub catalog: Catalog,
    /// Image carrying `/quayctl-noop` (kubelet strategy only).
    pub helper_image: Option<String>,
    /// See [`RunIdentity::owner`].
    pub owner: Option<OwnerReference>,
    /// What every puller is (kind, strategy, pull policy, resources, secrets, priority, retention),
    /// as configured.
    pub settings: PullerSettings,
    /// The blocking taints of the run's nodes (filled in once the nodes are listed): each puller
    /// tolerates exactly those of its node.
    pub taints: TaintTable,
}

/// A puller as the run creates it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Puller {
    Job(Box<Job>),
    Pod(Box<Pod>),
}

impl Puller {
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Puller::Job(job) => &job.metadata,
            Puller::Pod(pod) => &pod.metadata,
        }
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }
}

/// A puller an earlier run left in the namespace, as this run finds it when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub kind: PullerKind,
    pub name: String,
    /// Its UID: it is deleted as that object only, never another of the same name.
    pub uid: Option<String>,
    /// The node it was for (its `quayctl-controller/node-name` annotation).
    pub node: String,
    pub state: LeftoverState,
    /// The images it pulls (its `quayctl-controller/images` annotation, normalized): what it holds
    /// on its node when it succeeded.
    pub images: Vec<String>,
    /// When it was created.
    pub created_at: Option<Timestamp>,
    /// Its `activeDeadlineSeconds` (the pod's, or the Job's).
    pub deadline_seconds: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeftoverState {
    /// Started and not finished yet (a run still going, or one that crashed): left alone, its
    /// deadline ends it.
    Running,
    /// Never started (a pod no node ran: no room, its node gone): no deadline counts for it, so the
    /// tracker removes it once the run that made it would have given up.
    Unstarted,
    /// It pulled every image: it keeps them in use until a later puller holds them all.
    Succeeded,
    /// Finished without pulling everything.
    Failed,
}

impl Leftover {
    /// A puller Job of another run (`None` when it is not one of ours). Its pod counted as
    /// succeeded is a success already (the terminal condition may follow a moment later).
    pub fn from_job(job: &Job) -> Option<Leftover> {
        let status = job.status.as_ref();
        let counted = status.and_then(|s| s.succeeded).unwrap_or(0) > 0;
        let started = status.and_then(|s| s.start_time.as_ref()).is_some();
        let state = match outcome_from_job(job, None) {
            Some((Outcome::Succeeded, _)) => LeftoverState::Succeeded,
            None if counted => LeftoverState::Succeeded,
            None if started => LeftoverState::Running,
            None => LeftoverState::Unstarted,
            Some(_) => LeftoverState::Failed,
        };
        let deadline = job.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        leftover(PullerKind::Job, &job.metadata, state, deadline)
    }

    /// A puller pod of another run: a bare one (pods of puller Jobs go with their Job).
    pub fn from_pod(pod: &Pod) -> Option<Leftover> {
        if owning_job(pod).is_some() {
            return None;
        }
        let status = pod.status.as_ref();
        let state = match status.and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => LeftoverState::Succeeded,
            Some("Failed") => LeftoverState::Failed,
            // The kubelet sets startTime when it takes the pod; until then nothing counts its deadline.
            _ if status.and_then(|s| s.start_time.as_ref()).is_some() => LeftoverState::Running,
            _ => LeftoverState::Unstarted,
        };
        let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        leftover(PullerKind::Pod, &pod.metadata, state, deadline)
    }
}

fn leftover(kind: PullerKind, meta: &ObjectMeta, state: LeftoverState, deadline: Option<i64>) -> Option<Leftover> {
    let annotations = meta.annotations.as_ref()?;
    let node = annotations.get(ANNOTATION_NODE)?.clone();
    let images = annotations
        .get(ANNOTATION_IMAGES)
        .map(|list| list.split(';').filter(|i| !i.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    Some(Leftover {
        kind,
        name: meta.name.clone()?,
        uid: meta.uid.clone(),
        node,
        state,
        images,
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
        deadline_seconds: deadline,
    })
}

/// Label selector matching the pullers of every other run of installation `instance` (another
/// installation's, in the same namespace, are not this run's to clean up).
fn other_runs_selector(instance: &str, run_id: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={instance},{LABEL_RUN}!={}", naming::label_value(run_id))
}

impl RunIdentity {
    /// Label selector matching the pullers of every other run of this installation.
    pub fn other_runs_selector(&self) -> String {
        other_runs_selector(&self.instance, &self.run_id)
    }
}

/// What a run pulls and how, hashed (see [`PullerTemplate::spec_hash`]).
fn spec_hash(settings: &PullerSettings, images: &[Image]) -> String {
    let quayctl = match &settings.strategy {
        PullStrategy::Quayctl { image } => image.as_str(),
        PullStrategy::Volume { runner } => runner.as_str(),
        PullStrategy::Kubelet => "",
    };
    let images: Vec<&str> = images.iter().map(|i| i.normalized.as_str()).collect();
    naming::short_hash(&format!(
        "{}\n{quayctl}\n{}\n{}",
        settings.strategy.name(),
        settings.pull_policy.name(),
        images.join(";")
    ))
}

/// What to do with an existing Job found on a 409.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Ours: this run, this node, same images and strategy. Carries the images that Job pulls.
    Adopt(ImageMask),
    /// Not ours; the reason says what to do.
    Refuse(String),
}

impl PullerTemplate {
    /// The template for one run of `config` with the run's images in `catalog`.
    pub fn new(config: &Config, run: RunIdentity, catalog: Catalog) -> PullerTemplate {
        let RunIdentity { run_id, instance, namespace, helper_image, owner } = run;
        PullerTemplate {
            run_id,
            instance,
            namespace,
            catalog,
            helper_image,
            owner,
            settings: config.puller.clone(),
            taints: TaintTable::default(),
        }
    }

    /// `PULLER_KIND`.
    pub fn kind(&self) -> PullerKind {
        self.settings.kind
    }

    /// `KEEP_LAST_PULLER`: a puller that pulled everything it was given stays.
    pub fn keep_last(&self) -> bool {
        self.settings.keep_last
    }

    /// `TTL_SECONDS_AFTER_FINISHED` of a puller Job; none when `KEEP_LAST_PULLER` keeps them (the run
    /// removes what is not kept), and never on a bare pod (no such field: the run removes it).
    pub fn ttl_seconds_after_finished(&self) -> Option<i32> {
        (!self.settings.keep_last && self.settings.kind == PullerKind::Job)
            .then_some(self.settings.ttl_seconds_after_finished)
    }

    /// Label selector matching every Job (and pod) of this run.
    pub fn run_selector(&self) -> String {
        format!(
            "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={},{LABEL_RUN}={}",
            self.instance,
            naming::label_value(&self.run_id)
        )
    }

    /// See [`RunIdentity::other_runs_selector`].
    pub fn other_runs_selector(&self) -> String {
        other_runs_selector(&self.instance, &self.run_id)
    }

    pub fn puller_name(&self, node: &str) -> String {
        naming::puller_name(&self.run_id, node)
    }

    fn labels(&self, node: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_string(), PULLER_NAME.to_string()),
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_RUN.to_string(), naming::label_value(&self.run_id)),
            (LABEL_NODE.to_string(), naming::label_value(node)),
            (LABEL_INSTANCE.to_string(), self.instance.clone()),
        ])
    }

    /// What the run pulls and how, hashed: the same for every puller of a run, different as soon as
    /// the run's images, their order, the strategy or the pull policy differ.
    pub fn spec_hash(&self) -> String {
        spec_hash(&self.settings, &self.catalog.images)
    }

    /// Decide about a puller that already exists under the name this run wants for `node`, whose
    /// image set is `set`.
    pub fn adoption(&self, existing: &ObjectMeta, node: &str, set: &[u32]) -> Adoption {
        let name = existing.name.as_deref().unwrap_or_default();
        let labels = existing.labels.as_ref();
        let ours = self.labels(node).iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        let annotations = existing.annotations.as_ref();
        let hash = annotations.and_then(|a| a.get(ANNOTATION_SPEC_HASH));
        let noun = self.kind().noun();
        let delete = format!("kubectl -n {} delete {} {name}", self.namespace, noun.to_ascii_lowercase());
        if !ours {
            return Adoption::Refuse(format!(
                "a {noun} named {name} exists but does not belong to run {} on this node; delete it ({delete}) or use another RUN_ID",
                self.run_id
            ));
        }
        if hash != Some(&self.spec_hash()) {
            return Adoption::Refuse(format!(
                "{noun} {name} of run {} pulls other images or uses another strategy than this run asks for; \
                 use a new RUN_ID or delete it ({delete})",
                self.run_id
            ));
        }
        let listed = annotations.and_then(|a| a.get(ANNOTATION_IMAGES)).map(String::as_str).unwrap_or_default();
        Adoption::Adopt(self.mask_of(set, listed.split(';')))
    }

    /// The images of `set` among `names` (normalized references), as a mask over `set`.
    pub fn mask_of<'n>(&self, set: &[u32], names: impl IntoIterator<Item = &'n str>) -> ImageMask {
        names
            .into_iter()
            .filter_map(|name| self.catalog.index_of(name))
            .filter_map(|id| set.iter().position(|&s| s == id))
            .fold(0, |m, p| m | 1 << p)
    }

    /// The puller for `node`, of the run's kind, with `deadlines`.
    pub fn build(&self, node: &EligibleNode, deadlines: Deadlines) -> Puller {
        match self.kind() {
            PullerKind::Job => Puller::Job(Box::new(self.job(node, deadlines))),
            PullerKind::Pod => Puller::Pod(Box::new(self.pod(node, deadlines))),
        }
    }

    /// What a puller of either kind is named and labelled with, and who owns it.
    fn metadata(&self, node: &EligibleNode) -> ObjectMeta {
        let listed: Vec<&str> = self.images_of(node).map(|(_, i)| i.normalized.as_str()).collect();
        ObjectMeta {
            name: Some(self.puller_name(&node.name)),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(&node.name)),
            annotations: Some(BTreeMap::from([
                (ANNOTATION_NODE.to_string(), node.name.clone()),
                (ANNOTATION_RUN.to_string(), self.run_id.clone()),
                (ANNOTATION_IMAGES.to_string(), listed.join(";")),
                (ANNOTATION_SPEC_HASH.to_string(), self.spec_hash()),
            ])),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..Default::default()
        }
    }

    /// The images `node` still needs, with their place in the run's images (`QUAY_IMAGES` first):
    /// what its containers are named by.
    fn images_of<'a>(&'a self, node: &'a EligibleNode) -> impl Iterator<Item = (usize, &'a Image)> + 'a {
        node.set
            .iter()
            .enumerate()
            .filter(|(p, _)| node.images & (1 << p) != 0)
            .map(|(_, &id)| (id as usize, &self.catalog.images[id as usize]))
    }

    /// The puller pod's spec for `node` (a Job's template, or the pod itself): the images it still
    /// needs, exactly its taints tolerated, pinned by name, `deadline` seconds to pull.
    fn pod_spec(&self, node: &EligibleNode, deadline: i64) -> PodSpec {
        let images: Vec<(usize, &Image)> = self.images_of(node).collect();
        let mut pod = match &self.settings.strategy {
            PullStrategy::Kubelet => self.kubelet_pod_spec(&images),
            PullStrategy::Volume { runner } => self.volume_pod_spec(runner, &images),
            PullStrategy::Quayctl { image } => self.quayctl_pod_spec(image, &images),
        };
        pod.restart_policy = Some("Never".into());
        pod.automount_service_account_token = Some(false);
        pod.enable_service_links = Some(false);
        pod.termination_grace_period_seconds = Some(5);
        pod.active_deadline_seconds = Some(deadline);
        pod.affinity = Some(node_affinity(&node.name));
        let tolerations = self.taints.tolerations(&node.taints);
        pod.tolerations = (!tolerations.is_empty()).then_some(tolerations);
        let secrets = &self.settings.image_pull_secrets;
        pod.image_pull_secrets = (!secrets.is_empty())
            .then(|| secrets.iter().map(|name| LocalObjectReference { name: name.clone() }).collect());
        pod.priority_class_name = self.settings.priority_class_name.clone();
        pod
    }

    /// `PULLER_KIND=pod`: the pod alone, named, labelled and annotated as a Job would be, with
    /// `deadlines.pod` seconds to pull (less than `DEADLINE_SECONDS` for a replacement).
    pub fn pod(&self, node: &EligibleNode, deadlines: Deadlines) -> Pod {
        Pod { metadata: self.metadata(node), spec: Some(self.pod_spec(node, deadlines.pod)), status: None }
    }

    /// `PULLER_KIND=job`: the puller Job for `node`.
    pub fn job(&self, node: &EligibleNode, deadlines: Deadlines) -> Job {
        let metadata = self.metadata(node);
        Job {
            spec: Some(JobSpec {
                active_deadline_seconds: Some(deadlines.job),
                backoff_limit: Some(0),
                completions: Some(1),
                parallelism: Some(1),
                ttl_seconds_after_finished: self.ttl_seconds_after_finished(),
                // An evicted or preempted puller is not a failed pull: the Job makes a new pod,
                // within the same deadline.
                pod_failure_policy: Some(PodFailurePolicy {
                    rules: vec![PodFailurePolicyRule {
                        action: "Ignore".into(),
                        on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                            type_: "DisruptionTarget".into(),
                            status: "True".into(),
                        }]),
                        on_exit_codes: None,
                    }],
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: metadata.labels.clone(),
                        annotations: Some(BTreeMap::from([(ANNOTATION_NODE.to_string(), node.name.clone())])),
                        ..Default::default()
                    }),
                    spec: Some(self.pod_spec(node, deadlines.pod)),
                },
                ..Default::default()
            }),
            metadata,
            status: None,
        }
    }

    fn resources(&self) -> ResourceRequirements {
        let r = &self.settings.resources;
        let q = |cpu: &str, memory: &str| {
            BTreeMap::from([("cpu".to_string(), Quantity(cpu.into())), ("memory".to_string(), Quantity(memory.into()))])
        };
        ResourceRequirements {
            requests: Some(q(&r.cpu_request, &r.memory_request)),
            limits: Some(q(&r.cpu_limit, &r.memory_limit)),
            ..Default::default()
        }
    }

    /// The container of a puller for image `i` of the run, running `image`: restricted, with the
    /// run's resources, and one volume mounted read-only (its name, where).
    fn container(&self, (i, of): (usize, &Image), image: String, policy: String, mount: (String, &str)) -> Container {
        Container {
            name: naming::container_name(i, of.short_name()),
            image: Some(image),
            image_pull_policy: Some(policy),
            volume_mounts: Some(vec![VolumeMount {
                name: mount.0,
                mount_path: mount.1.into(),
                read_only: Some(true),
                ..Default::default()
            }]),
            security_context: Some(restricted_container_security()),
            resources: Some(self.resources()),
            ..Default::default()
        }
    }

    /// Kubelet strategy: copy a static no-op into an emptyDir, then run it from every image, so the
    /// kubelet pulls each image with the node's own runtime and credentials. Restricted-PSS clean.
    fn kubelet_pod_spec(&self, images: &[(usize, &Image)]) -> PodSpec {
        let helper = self.helper_image.clone().unwrap_or_default();
        let noop = format!("{NOOP_DIR}/quayctl-noop");
        let containers = images
            .iter()
            .map(|(i, image)| Container {
                command: Some(vec![noop.clone()]),
                ..self.container(
                    (*i, image),
                    image.given.clone(),
                    image.pull_policy(self.settings.pull_policy).into(),
                    ("noop".into(), NOOP_DIR),
                )
            })
            .collect();
        PodSpec {
            security_context: Some(restricted_pod_security()),
            volumes: Some(vec![Volume {
                name: "noop".into(),
                empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("16Mi".into())), medium: None }),
                ..Default::default()
            }]),
            init_containers: Some(vec![Container {
                name: INSTALL_CONTAINER.into(),
                image: Some(helper),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec![NOOP_IN_HELPER.into(), "--install".into(), noop]),
                volume_mounts: Some(vec![VolumeMount {
                    name: "noop".into(),
                    mount_path: NOOP_DIR.into(),
                    ..Default::default()
                }]),
                security_context: Some(restricted_container_security()),
                resources: Some(self.resources()),
                ..Default::default()
            }]),
            containers,
            ..Default::default()
        }
    }

    /// Volume strategy: one image volume per image, each mounted (read-only) by one container of the
    /// runner image (pause) that prints its version and exits. The kubelet pulls every image volume
    /// before it starts any container, and a pull error fails exactly the containers that mount that
    /// volume: one per image, named as the kubelet strategy's, so a failure maps to its image. While
    /// the exited container exists, the image counts as in use for the kubelet's image GC.
    /// Restricted-PSS clean; no helper image.
    fn volume_pod_spec(&self, runner: &str, images: &[(usize, &Image)]) -> PodSpec {
        let volume = |i: usize| format!("image-{i}");
        let volumes = images
            .iter()
            .map(|(i, image)| Volume {
                name: volume(*i),
                image: Some(ImageVolumeSource {
                    reference: Some(image.given.clone()),
                    pull_policy: Some(image.pull_policy(self.settings.pull_policy).into()),
                }),
                ..Default::default()
            })
            .collect();
        let containers = images
            .iter()
            .map(|(i, image)| Container {
                args: Some(vec!["-v".into()]),
                ..self.container((*i, image), runner.to_string(), "IfNotPresent".into(), (volume(*i), IMAGE_MOUNT))
            })
            .collect();
        PodSpec {
            security_context: Some(restricted_pod_security()),
            volumes: Some(volumes),
            containers,
            ..Default::default()
        }
    }

    /// With the volume strategy: the apiserver kept every image volume of the puller it created.
    /// An apiserver whose `ImageVolume` gate is off (Kubernetes 1.33 and 1.34 by default) drops them
    /// and their mounts without a word, and the runner would then "succeed" without pulling; the
    /// reason says so.
    pub fn dropped_image_volumes(&self, created: &Puller) -> Option<String> {
        if !matches!(self.settings.strategy, PullStrategy::Volume { .. }) {
            return None;
        }
        let spec = match created {
            Puller::Job(job) => job.spec.as_ref()?.template.spec.as_ref()?,
            Puller::Pod(pod) => pod.spec.as_ref()?,
        };
        let volumes = spec.volumes.iter().flatten().filter(|v| v.image.is_some()).count();
        (volumes < spec.containers.len()).then(|| {
            "the apiserver dropped the puller's image volumes: PULL_STRATEGY=volume needs the ImageVolume \
             feature (on by default from Kubernetes 1.35; off on 1.33 and 1.34); use PULL_STRATEGY=kubelet"
                .to_string()
        })
    }

    /// quayctl strategy, as the 2017 original: one `puller` container with the list in `QUAY_IMAGES`,
    /// the node's docker socket, and host networking for the BitTorrent ports.
    fn quayctl_pod_spec(&self, quayctl_image: &str, images: &[(usize, &Image)]) -> PodSpec {
        let list: Vec<&str> = images.iter().map(|(_, i)| i.given.as_str()).collect();
        let socket = "/var/run/docker.sock";
        let q = |cpu: &str, memory: &str| {
            let mut m = BTreeMap::from([("memory".to_string(), Quantity(memory.into()))]);
            if !cpu.is_empty() {
                m.insert("cpu".to_string(), Quantity(cpu.into()));
            }
            m
        };
        PodSpec {
            host_network: Some(true),
            dns_policy: Some("ClusterFirstWithHostNet".into()),
            volumes: Some(vec![Volume {
                name: "docker-socket".into(),
                host_path: Some(HostPathVolumeSource { path: socket.into(), type_: Some("Socket".into()) }),
                ..Default::default()
            }]),
            containers: vec![Container {
                name: QUAYCTL_CONTAINER.into(),
                image: Some(quayctl_image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                env: Some(vec![EnvVar { name: "QUAY_IMAGES".into(), value: Some(list.join(";")), value_from: None }]),
                volume_mounts: Some(vec![VolumeMount {
                    name: "docker-socket".into(),
                    mount_path: socket.into(),
                    ..Default::default()
                }]),
                resources: Some(ResourceRequirements {
                    requests: Some(q("50m", "64Mi")),
                    limits: Some(q("", "256Mi")),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

/// Pin to the node by name, as the DaemonSet controller does (the hostname label can differ).
fn node_affinity(node: &str) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![node.into()]),
                    }]),
                    match_expressions: None,
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    }
}

fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        ..Default::default()
    }
}

/// The node a Job was built for (from its annotation).
pub fn node_of(job: &Job) -> Option<&str> {
    job.metadata.annotations.as_ref()?.get(ANNOTATION_NODE).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::{PullPolicy, all_images, parse_image_list};
    use crate::workloads::{Catalog, first};

    use serde_json::{Value, json};

    pub(crate) fn template(strategy: PullStrategy) -> PullerTemplate {
        let vars = [("QUAY_IMAGES", "nginx:1.27;ghcr.io/org/model:v1"), ("HELPER_IMAGE", "h:1")];
        let config = Config::from_vars(vars.map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        let run = RunIdentity {
            run_id: "nightly-7".into(),
            instance: "default".into(),
            namespace: "prepull".into(),
            helper_image: Some("ghcr.io/x/quayctl-controller:0.1.0".to_string()),
            owner: None,
        };
        let mut template = PullerTemplate::new(&config, run, Catalog::explicit(config.images.clone()));
        template.settings.strategy = strategy;
        template
    }

    /// The default configuration's deadlines.
    const DEADLINES: Deadlines = Deadlines { pod: 300, job: 360 };

    /// The puller Job for every image of the run on an untainted `node`.
    pub(crate) fn build_for(t: &PullerTemplate, node: &str) -> Job {
        let count = t.catalog.images.len();
        t.job(
            &EligibleNode { name: node.into(), set: first(count), images: all_images(count), ..Default::default() },
            DEADLINES,
        )
    }

    fn as_json(job: &Job) -> Value {
        serde_json::to_value(job).unwrap()
    }

    #[test]
    fn common_job_fields() {
        let job = build_for(&template(PullStrategy::Kubelet), "node-a.example.com");
        let j = as_json(&job);
        assert_eq!(j["metadata"]["name"], naming::puller_name("nightly-7", "node-a.example.com"));
        assert_eq!(j["metadata"]["namespace"], "prepull");
        assert_eq!(j["spec"]["activeDeadlineSeconds"], 360, "the outer bound, with room for control-plane lag");
        assert_eq!(j["spec"]["template"]["spec"]["activeDeadlineSeconds"], 300, "the pull deadline, from pod start");
        assert_eq!(
            j["spec"]["podFailurePolicy"]["rules"][0],
            json!({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})
        );
        assert_eq!(j["spec"]["backoffLimit"], 0);
        assert!(j["spec"].get("ttlSecondsAfterFinished").is_none(), "KEEP_LAST_PULLER (default): no TTL");
        let mut ttl = template(PullStrategy::Kubelet);
        ttl.settings.keep_last = false;
        assert_eq!(as_json(&build_for(&ttl, "n"))["spec"]["ttlSecondsAfterFinished"], 3600);
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let term =
            &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchFields"],
            json!([{"key": "metadata.name", "operator": "In", "values": ["node-a.example.com"]}])
        );
        assert!(term.get("matchExpressions").is_none(), "never pinned by the hostname label");
        for labels in [&j["metadata"]["labels"], &j["spec"]["template"]["metadata"]["labels"]] {
            assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
            assert_eq!(labels[LABEL_NAME], PULLER_NAME);
            assert_eq!(labels[LABEL_RUN], "nightly-7");
            assert_eq!(labels[LABEL_NODE], "node-a.example.com");
        }
        assert_eq!(node_of(&job), Some("node-a.example.com"));
        assert!(j["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn long_node_names_are_label_safe_with_the_full_name_annotated() {
        let node = format!("{}.internal", "n".repeat(80));
        let job = build_for(&template(PullStrategy::Kubelet), &node);
        let labels = job.metadata.labels.as_ref().unwrap();
        assert!(labels[LABEL_NODE].len() <= 63);
        assert_eq!(node_of(&job), Some(node.as_str()));
        assert!(job.metadata.name.as_ref().unwrap().len() <= 63);
    }

    #[test]
    fn kubelet_strategy_runs_a_noop_from_every_image_under_restricted_pss() {
        let j = as_json(&build_for(&template(PullStrategy::Kubelet), "n1"));
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
        assert_eq!(pod["volumes"], json!([{"name": "noop", "emptyDir": {"sizeLimit": "16Mi"}}]));
        let init = &pod["initContainers"][0];
        assert_eq!(init["image"], "ghcr.io/x/quayctl-controller:0.1.0");
        assert_eq!(init["command"], json!(["/quayctl-noop", "--install", "/.quayctl-noop/quayctl-noop"]));
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["name"], "pull-0-nginx");
        assert_eq!(containers[0]["image"], "nginx:1.27");
        assert_eq!(containers[0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(containers[1]["name"], "pull-1-model");
        assert_eq!(containers[1]["image"], "ghcr.io/org/model:v1");
        for c in containers.iter().chain([init]) {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert!(c["resources"]["limits"]["memory"].is_string());
        }
        for c in containers {
            assert_eq!(c["command"], json!(["/.quayctl-noop/quayctl-noop"]));
            assert_eq!(c["volumeMounts"][0]["readOnly"], true);
        }
    }

    #[test]
    fn volume_strategy_mounts_each_image_in_a_runner_of_its_own_without_a_helper() {
        let strategy = PullStrategy::Volume { runner: "registry.k8s.io/pause:3.10.2".into() };
        let job = build_for(&template(strategy), "n1");
        let j = as_json(&job);
        let pod = &j["spec"]["template"]["spec"];
        assert!(pod.get("initContainers").is_none(), "no helper image");
        assert_eq!(
            pod["volumes"],
            json!([
                {"name": "image-0", "image": {"reference": "nginx:1.27", "pullPolicy": "IfNotPresent"}},
                {"name": "image-1", "image": {"reference": "ghcr.io/org/model:v1", "pullPolicy": "IfNotPresent"}}
            ])
        );
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2, "one runner per image: a failure names its image");
        for (i, (c, name)) in containers.iter().zip(["pull-0-nginx", "pull-1-model"]).enumerate() {
            assert_eq!(c["name"], name);
            assert_eq!(c["image"], "registry.k8s.io/pause:3.10.2");
            assert_eq!(c["args"], json!(["-v"]));
            assert_eq!(
                c["volumeMounts"],
                json!([{"name": format!("image-{i}"), "mountPath": "/image", "readOnly": true}])
            );
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        }
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");

        let t = template(PullStrategy::Volume { runner: "r:1".into() });
        let created = Puller::Job(Box::new(build_for(&t, "n1")));
        assert_eq!(t.dropped_image_volumes(&created), None);
        let mut dropped = build_for(&t, "n1");
        let spec = dropped.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.volumes = None;
        for c in &mut spec.containers {
            c.volume_mounts = None;
        }
        let reason = t.dropped_image_volumes(&Puller::Job(Box::new(dropped))).expect("dropped");
        assert!(reason.contains("ImageVolume") && reason.contains("1.35"), "{reason}");
        assert_eq!(template(PullStrategy::Kubelet).dropped_image_volumes(&created), None, "only for volume");
        let other_runner = template(PullStrategy::Volume { runner: "r:2".into() });
        assert_ne!(t.spec_hash(), other_runner.spec_hash(), "the runner is part of what a run pulls");
    }

    #[test]
    fn quayctl_strategy_is_faithful_to_the_original() {
        let strategy = PullStrategy::Quayctl { image: "quay.io/coreos/quayctl:v0.0.1".into() };
        let j = as_json(&build_for(&template(strategy), "n1"));
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
        assert_eq!(pod["volumes"][0]["hostPath"], json!({"path": "/var/run/docker.sock", "type": "Socket"}));
        let c = &pod["containers"][0];
        assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
        assert_eq!(c["name"], "puller");
        assert_eq!(c["image"], "quay.io/coreos/quayctl:v0.0.1");
        assert_eq!(c["env"], json!([{"name": "QUAY_IMAGES", "value": "nginx:1.27;ghcr.io/org/model:v1"}]));
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/run/docker.sock");
        assert!(pod.get("initContainers").is_none());
    }

    #[test]
    fn owner_reference_is_set_when_known() {
        let mut t = template(PullStrategy::Kubelet);
        t.owner = Some(OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "quayctl-controller-29384756".into(),
            uid: "0b7f3f5e-1111-2222-3333-444455556666".into(),
            ..Default::default()
        });
        let j = as_json(&build_for(&t, "n1"));
        assert_eq!(j["metadata"]["ownerReferences"][0]["name"], "quayctl-controller-29384756");
        assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "Job");
    }

    #[test]
    fn selector_and_adoption_decision() {
        let t = template(PullStrategy::Kubelet);
        assert_eq!(
            t.run_selector(),
            "app.kubernetes.io/managed-by=quayctl-controller,quayctl-controller/instance=default,quayctl-controller/run=nightly-7"
        );
        assert_eq!(
            t.other_runs_selector(),
            "app.kubernetes.io/managed-by=quayctl-controller,quayctl-controller/instance=default,quayctl-controller/run!=nightly-7",
            "another installation's pullers are never this run's to clean up"
        );
        let job = build_for(&t, "n1");
        assert_eq!(t.adoption(&job.metadata, "n1", &first(2)), Adoption::Adopt(0b11));
        assert!(
            matches!(t.adoption(&job.metadata, "n2", &first(2)), Adoption::Refuse(r) if r.contains("does not belong"))
        );
        let mut other_run = t.clone();
        other_run.run_id = "nightly-8".into();
        assert!(matches!(other_run.adoption(&job.metadata, "n1", &first(2)), Adoption::Refuse(_)));
        assert!(matches!(t.adoption(&ObjectMeta::default(), "n1", &first(2)), Adoption::Refuse(_)));

        let mut other_images = t.clone();
        other_images.catalog = Catalog::explicit(parse_image_list("nginx:1.27;ghcr.io/org/model:v2").unwrap().images);
        let Adoption::Refuse(reason) = other_images.adoption(&job.metadata, "n1", &first(2)) else {
            panic!("adopted other images")
        };
        assert!(
            reason.contains("other images")
                && reason.contains("new RUN_ID")
                && reason.contains("kubectl -n prepull delete job"),
            "{reason}"
        );
        let mut other_policy = t.clone();
        other_policy.settings.pull_policy = PullPolicy::Always;
        assert!(matches!(other_policy.adoption(&job.metadata, "n1", &first(2)), Adoption::Refuse(_)));
        let quayctl = template(PullStrategy::Quayctl { image: "q:1".into() });
        assert!(matches!(quayctl.adoption(&job.metadata, "n1", &first(2)), Adoption::Refuse(_)));

        let partial =
            t.job(&EligibleNode { name: "n1".into(), set: first(2), images: 0b10, ..Default::default() }, DEADLINES);
        assert_eq!(t.adoption(&partial.metadata, "n1", &first(2)), Adoption::Adopt(0b10), "adopts what that Job pulls");
    }

    #[test]
    fn per_node_images_tolerations_secrets_priority_and_resources() {
        let mut t = template(PullStrategy::Kubelet);
        let gpu = k8s_openapi::api::core::v1::Taint {
            key: "gpu".into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let spot = k8s_openapi::api::core::v1::Taint { key: "spot".into(), value: Some("true".into()), ..gpu.clone() };
        let taints: Box<[u16]> = Box::new([t.taints.intern(&gpu)]);
        t.taints.intern(&spot);
        t.settings.image_pull_secrets = vec!["regcred".into(), "other".into()];
        t.settings.priority_class_name = Some("prepull-low".into());
        t.settings.pull_policy = PullPolicy::Always;
        t.settings.resources.memory_limit = "32Mi".into();
        let node = EligibleNode { name: "g1".into(), taints, set: first(2), images: 0b10, ..Default::default() };
        let j = as_json(&t.job(&node, DEADLINES));
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(
            pod["tolerations"],
            json!([{"key": "gpu", "operator": "Equal", "value": "", "effect": "NoSchedule"}]),
            "exactly its node's taints"
        );
        assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}, {"name": "other"}]));
        assert_eq!(pod["priorityClassName"], "prepull-low");
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "only the images the node still needs");
        assert_eq!(containers[0]["name"], "pull-1-model");
        assert_eq!(containers[0]["imagePullPolicy"], "Always");
        assert_eq!(containers[0]["resources"]["limits"]["memory"], "32Mi");
        assert_eq!(j["metadata"]["annotations"][ANNOTATION_IMAGES], "ghcr.io/org/model:v1");
        let plain = as_json(&build_for(&template(PullStrategy::Kubelet), "n"));
        let plain_pod = &plain["spec"]["template"]["spec"];
        assert!(plain_pod.get("tolerations").is_none() && plain_pod.get("imagePullSecrets").is_none());
    }

    #[test]
    fn the_run_identity_comes_from_config_then_the_own_pod() {
        let config = |vars: &[(&str, &str)]| {
            let mut all = vec![("QUAY_IMAGES", "nginx")];
            all.extend_from_slice(vars);
            Config::from_vars(all.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
        };
        let owner = OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "quayctl-controller-29384756".into(),
            uid: "u".into(),
            ..Default::default()
        };
        let cronjob = OwnerReference {
            kind: "CronJob".into(),
            name: "quayctl-controller".into(),
            uid: "c".into(),
            ..owner.clone()
        };
        let me = SelfInfo {
            owner_job: Some(owner.clone()),
            cronjob: Some(cronjob.clone()),
            run_deadline: None,
            image: Some("reg/qc:1".into()),
            event_target: None,
        };
        let now: Timestamp = "2026-11-22T21:34:05Z".parse().unwrap();
        let in_pod = config(&[("POD_NAME", "p"), ("POD_NAMESPACE", "ops"), ("KEEP_LAST_PULLER", "false")]);

        let run = RunIdentity::decide(&in_pod, &me, "ops", now).unwrap();
        assert_eq!(run.run_id, "quayctl-controller-29384756", "the owning Job names the run");
        assert_eq!(run.helper_image.as_deref(), Some("reg/qc:1"), "the pod's own image is the helper");
        assert_eq!(run.owner, Some(owner.clone()), "owned by the run's Job, within the pod's namespace");
        let kept = config(&[("POD_NAME", "p"), ("POD_NAMESPACE", "ops")]);
        let run = RunIdentity::decide(&kept, &me, "ops", now).unwrap();
        assert_eq!(run.owner, Some(cronjob), "KEEP_LAST_PULLER: owned by the CronJob, outliving the run's Job");
        let no_cronjob = SelfInfo { cronjob: None, ..me.clone() };
        assert_eq!(RunIdentity::decide(&kept, &no_cronjob, "ops", now).unwrap().owner, None);

        let elsewhere = RunIdentity::decide(&in_pod, &me, "pullers", now).unwrap();
        assert_eq!(elsewhere.owner, None, "never owned across namespaces");

        let no_image = SelfInfo { image: None, ..me.clone() };
        let error = RunIdentity::decide(&in_pod, &no_image, "ops", now).unwrap_err();
        assert!(error.to_string().contains("set HELPER_IMAGE"), "{error}");

        let outside = config(&[("HELPER_IMAGE", "reg/qc:2"), ("RUN_ID", "nightly")]);
        let run = RunIdentity::decide(&outside, &SelfInfo::default(), "ops", now).unwrap();
        assert_eq!((run.run_id.as_str(), run.helper_image.as_deref(), run.owner), ("nightly", Some("reg/qc:2"), None));
        let timed = RunIdentity::decide(&config(&[("HELPER_IMAGE", "h")]), &SelfInfo::default(), "ops", now).unwrap();
        assert_eq!(timed.run_id, "20261122-213405", "a UTC timestamp without a Job or RUN_ID");
        let quayctl = config(&[("PULL_STRATEGY", "quayctl"), ("QUAYCTL_IMAGE", "q:1")]);
        assert_eq!(RunIdentity::decide(&quayctl, &SelfInfo::default(), "ops", now).unwrap().helper_image, None);
    }

    #[test]
    fn leftovers_of_earlier_runs_are_read_from_their_status() {
        let job = |status: serde_json::Value| -> Job {
            serde_json::from_value(json!({
                "metadata": {"name": "prepull-r0-n1", "annotations": {ANNOTATION_NODE: "n1.example.com"}},
                "status": status,
            }))
            .unwrap()
        };
        let state = |status| Leftover::from_job(&job(status)).unwrap().state;
        assert_eq!(state(json!({})), LeftoverState::Unstarted, "no startTime: nothing counts its deadline");
        assert_eq!(state(json!({"startTime": "2026-01-01T00:00:00Z"})), LeftoverState::Running);
        assert_eq!(state(json!({"succeeded": 1})), LeftoverState::Succeeded, "counted before Complete");
        let complete = json!({"conditions": [{"type": "Complete", "status": "True"}]});
        assert_eq!(state(complete), LeftoverState::Succeeded);
        let failed = json!({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]});
        assert_eq!(state(failed), LeftoverState::Failed);
        let l = Leftover::from_job(&job(json!({}))).unwrap();
        assert_eq!((l.kind, l.name.as_str(), l.node.as_str()), (PullerKind::Job, "prepull-r0-n1", "n1.example.com"));
        let unannotated: Job = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(Leftover::from_job(&unannotated), None, "not a puller");

        let pod = |phase: &str, owned: bool| -> Pod {
            let mut p = json!({"metadata": {"name": "prepull-r0-n1", "annotations": {ANNOTATION_NODE: "n1"}},
                "status": {"phase": phase}});
            if owned {
                p["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}]);
            }
            serde_json::from_value(p).unwrap()
        };
        assert_eq!(Leftover::from_pod(&pod("Succeeded", false)).unwrap().state, LeftoverState::Succeeded);
        assert_eq!(Leftover::from_pod(&pod("Failed", false)).unwrap().state, LeftoverState::Failed);
        assert_eq!(Leftover::from_pod(&pod("Running", false)).unwrap().kind, PullerKind::Pod);
        assert_eq!(Leftover::from_pod(&pod("Succeeded", true)), None, "a puller Job's pod goes with its Job");
    }
}
