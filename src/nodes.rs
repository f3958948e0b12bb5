//! Step 2 of the data path: which nodes get a puller Job, and what it pulls there. A pure decision
//! per node; only what the run needs of each node is kept (name, zone, two small bit masks), not the
//! Node object, so memory follows the page size, not the cluster.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::jiff::Timestamp;

use crate::config::{Config, PullStrategy, PullerSettings, Selection};
use crate::images::ImageMask;
use crate::taints::{StartupTaint, TaintTable, Toleration, is_blocking, match_taints};
use crate::workloads::{Catalog, Fits, ImageSet, LeftOuts};

pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";

/// Why a node gets no puller Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    Cordoned,
    NotReady {
        status: String,
        reason: Option<String>,
    },
    Tainted {
        key: String,
        effect: String,
    },
    /// The no-op and the quayctl image are Linux binaries.
    NotLinux {
        os: String,
    },
    /// The kubelet strategy: the helper image has no no-op for the node's architecture.
    Architecture {
        arch: String,
        have: String,
    },
    /// The volume strategy: the node cannot mount image volumes (its kubelet or runtime is too old).
    NoImageVolumes {
        why: String,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Cordoned => write!(f, "cordoned (spec.unschedulable)"),
            SkipReason::NotReady { status, reason: Some(reason) } => write!(f, "not Ready (Ready={status}, {reason})"),
            SkipReason::NotReady { status, reason: None } => write!(f, "not Ready (Ready={status})"),
            SkipReason::Tainted { key, effect } => {
                write!(f, "tainted {key}:{effect} (add it to TOLERATIONS to reach this node)")
            }
            SkipReason::NotLinux { os } => write!(f, "not a Linux node ({LABEL_OS}={os})"),
            SkipReason::Architecture { arch, have } => {
                write!(f, "architecture {arch}: the helper image has the no-op for {have} only (HELPER_ARCHITECTURES)")
            }
            SkipReason::NoImageVolumes { why } => write!(f, "cannot mount image volumes (PULL_STRATEGY=volume): {why}"),
        }
    }
}

/// What the run decides about the nodes, the same for every node: a view of the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Eligibility<'c> {
    /// `TOLERATIONS`, `STARTUP_TAINT` (nodes carrying it are eligible whatever `TOLERATIONS` says),
    /// `STARTUP_TAINT_ONLY`, `SKIP_PRESENT`.
    pub selection: &'c Selection,
    /// The strategy, the pull policy and the helper's architectures: what a node must support.
    pub puller: &'c PullerSettings,
}

impl<'c> From<&'c Config> for Eligibility<'c> {
    fn from(config: &'c Config) -> Self {
        Eligibility { selection: &config.selection, puller: &config.puller }
    }
}

/// `Ok` when the node can run the strategy's pullers: the kubelet strategy needs the helper's no-op
/// for its architecture; the volume strategy needs image volumes, that is a kubelet of 1.35 or later
/// (on by default from then, GA from 1.36) and containerd 2.1+ or CRI-O 1.31+. A version that cannot
/// be read (a simulated node) is given the benefit of the doubt.
pub fn supports(node: &Node, puller: &PullerSettings) -> Result<(), SkipReason> {
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    match &puller.strategy {
        PullStrategy::Kubelet => match architecture(node) {
            Some(arch) if !puller.helper_architectures.is_empty() && !puller.helper_architectures.contains(arch) => {
                Err(SkipReason::Architecture { arch: arch.clone(), have: puller.helper_architectures.join(", ") })
            }
            _ => Ok(()),
        },
        PullStrategy::Volume { .. } => {
            let Some(info) = info else { return Ok(()) };
            if let Some((1, minor)) = version(&info.kubelet_version)
                && minor < 35
            {
                return Err(SkipReason::NoImageVolumes {
                    why: format!("kubelet {} (Kubernetes 1.35 or later)", info.kubelet_version),
                });
            }
            let runtime = &info.container_runtime_version;
            let too_old = match runtime.split_once("://") {
                Some(("containerd", v)) => version(v).is_some_and(|(major, minor)| (major, minor) < (2, 1)),
                Some(("cri-o", v)) => version(v).is_some_and(|(major, minor)| (major, minor) < (1, 31)),
                _ => false,
            };
            if too_old {
                return Err(SkipReason::NoImageVolumes {
                    why: format!("{runtime} (containerd 2.1 or later, CRI-O 1.31 or later)"),
                });
            }
            Ok(())
        }
        PullStrategy::Quayctl { .. } => Ok(()),
    }
}

/// `kubernetes.io/arch`, else `status.nodeInfo.architecture`.
fn architecture(node: &Node) -> Option<&String> {
    let label = node.metadata.labels.as_ref().and_then(|l| l.get(LABEL_ARCH));
    label.or_else(|| node.status.as_ref()?.node_info.as_ref().map(|i| &i.architecture)).filter(|a| !a.is_empty())
}

/// `v1.34.2`, `2.0.5`, `1.31.0-rc.1` -> (major, minor).
fn version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim_start_matches('v').split(['.', '-', '+']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// One node that gets a puller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EligibleNode {
    pub name: String,
    /// Its UID, for the Events the run publishes about it.
    pub uid: Option<String>,
    /// Its blocking taints when the run decided, as indices into the run's [`TaintTable`]: its puller
    /// tolerates exactly these.
    pub taints: Box<[u16]>,
    /// It carries `STARTUP_TAINT`, which the run removes once every image is on it.
    pub startup_tainted: bool,
    /// Since when it has carried it: the taint's `timeAdded`, else the node's creation (the kubelet
    /// registers without `timeAdded`). `STARTUP_TAINT_MAX_HOLD_SECONDS` counts from here.
    pub held_since: Option<Timestamp>,
    /// The images still to pull there; with `SKIP_PRESENT` may be fewer than all.
    pub images: ImageMask,
    /// `topology.kubernetes.io/zone`, for spreading the seed wave.
    pub zone: Option<String>,
    /// Its images (global indices into the run's images): bit i of `images` is `set[i]`.
    pub set: ImageSet,
    /// What its set left out (more than 64 images wanted there).
    pub left_out: LeftOuts,
    /// The workload placements it fits (`IMAGES_FROM`), and the run's images it lists as present
    /// (`SKIP_PRESENT`): what [`assign_images`] decides its set from.
    pub fits: Fits,
    pub present: Box<[u32]>,
    /// `kubernetes.io/arch` (else `status.nodeInfo.architecture`), for the report of a pull that
    /// finds no variant for it.
    pub arch: Option<String>,
}

/// `Ok(blocking taints)` when a puller pod could run on the node now, else the first reason it
/// cannot. Cordoned beats NotReady beats OS beats taints, so the most actionable reason is shown.
/// Each `NoSchedule`/`NoExecute` taint must be tolerated by `TOLERATIONS`, except on a node held by
/// the startup taint: the run must release it, so its puller tolerates exactly the blocking taints
/// it has (a joining GPU node's `nvidia.com/gpu` included), whatever `TOLERATIONS` says.
pub fn eligibility<'n>(
    node: &'n Node,
    tolerations: &[Toleration],
    startup: Option<&StartupTaint>,
) -> Result<Vec<&'n Taint>, SkipReason> {
    let spec = node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        return Err(SkipReason::Cordoned);
    }
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(c) if c.status == "True" => {}
        Some(c) => {
            return Err(SkipReason::NotReady { status: c.status.clone(), reason: c.reason.clone() });
        }
        None => {
            return Err(SkipReason::NotReady { status: "Unknown".into(), reason: Some("no Ready condition".into()) });
        }
    }
    let os = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_OS))
        .or_else(|| node.status.as_ref()?.node_info.as_ref().map(|i| &i.operating_system));
    if let Some(os) = os.filter(|os| os.as_str() != "linux") {
        return Err(SkipReason::NotLinux { os: os.clone() });
    }
    let taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default();
    if startup_taint_of(node, startup).is_some() {
        return Ok(taints.iter().filter(|t| is_blocking(t)).collect());
    }
    match_taints(taints, tolerations, startup)
        .map_err(|taint| SkipReason::Tainted { key: taint.key.clone(), effect: taint.effect.clone() })
}

/// The node's taint that `startup` matches, if it carries one.
pub fn startup_taint_of<'n>(node: &'n Node, startup: Option<&StartupTaint>) -> Option<&'n Taint> {
    let startup = startup?;
    let taints = node.spec.as_ref()?.taints.as_deref()?;
    taints.iter().find(|t| startup.matches(t))
}

/// Since when `node` has been held by `taint`: its `timeAdded`, else the node's creation.
fn held_since(node: &Node, taint: &Taint) -> Option<Timestamp> {
    taint.time_added.as_ref().or(node.metadata.creation_timestamp.as_ref()).map(|t| t.0)
}

/// Give `node` its image set (`QUAY_IMAGES`, and with `IMAGES_FROM` the images of the workloads
/// that could run there, ranked) and what of it the node still needs: all of it, or with
/// `SKIP_PRESENT` what its `status.images` does not show. The kubelet lists at most 50 images per
/// node by default (`nodeStatusMaxImages`), so an image that is not listed is "unknown", and is
/// pulled. Once the node list is complete: a rank counts every node a workload fits.
pub fn assign_images(node: &mut EligibleNode, catalog: &mut Catalog) {
    let (set, left_out) = catalog.set_for(&node.fits);
    node.images = set.iter().enumerate().filter(|(_, id)| !node.present.contains(id)).fold(0, |m, (i, _)| m | 1 << i);
    node.set = set;
    node.left_out = left_out;
}

/// A node that gets no Job, for the log and the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub node: String,
    pub reason: SkipReason,
}

/// A node held by the startup taint that no puller can reach: it is not skipped, it is a node the
/// run does not release (its verdict says why).
#[derive(Clone, Debug, PartialEq)]
pub struct Unreachable {
    /// The node as far as the run knows it (no images, no taints to tolerate).
    pub node: EligibleNode,
    pub reason: SkipReason,
}

/// Eligible nodes and skipped nodes, built up page by page, with the blocking taints of the
/// eligible ones, each once.
#[derive(Debug, Default, PartialEq)]
pub struct Partition {
    pub eligible: Vec<EligibleNode>,
    pub skipped: Vec<Skipped>,
    /// Held by the startup taint, and cordoned, not Ready or not Linux.
    pub unreachable: Vec<Unreachable>,
    pub taints: TaintTable,
    /// `STARTUP_TAINT_ONLY`: nodes without the startup taint, not considered at all.
    pub not_considered: usize,
    /// Nodes asked about (those earlier runs left pullers for) and which of them were listed.
    pub asked: std::collections::HashSet<String>,
    pub listed: std::collections::HashSet<String>,
}

/// What the run makes of one node.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Eligible(EligibleNode),
    /// Held by the startup taint, and no puller can reach it.
    Unreachable(Unreachable),
    Skipped(Skipped),
    /// `STARTUP_TAINT_ONLY` and it does not carry the startup taint.
    NotConsidered,
}

/// Decide about one node: eligible (with the taints its puller tolerates, interned in `taints`,
/// and what its image set is decided from, counted in `catalog`), held but unreachable, skipped
/// with the reason, or not considered.
pub fn decide(node: &Node, rule: &Eligibility, taints: &mut TaintTable, catalog: &mut Catalog) -> Decision {
    let startup = rule.selection.startup_taint.as_ref();
    let held = startup_taint_of(node, startup);
    if rule.selection.startup_taint_only && held.is_none() {
        return Decision::NotConsidered;
    }
    let mut eligible = EligibleNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone(),
        startup_tainted: held.is_some(),
        held_since: held.and_then(|t| held_since(node, t)),
        ..Default::default()
    };
    // With IMAGES_FROM, a tainted node that a workload tolerates is reached without TOLERATIONS:
    // where its pods may run, its puller may too (tolerating exactly the node's taints).
    let mut fits = None;
    let reached = eligibility(node, &rule.selection.tolerations, startup).or_else(|reason| match reason {
        SkipReason::Tainted { .. } if rule.selection.images_from.is_some() => {
            let workloads = fits.insert(catalog.fits(node, startup));
            if workloads.is_empty() {
                return Err(reason);
            }
            let all = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
            Ok(all.iter().filter(|t| is_blocking(t)).collect())
        }
        reason => Err(reason),
    });
    match reached.and_then(|blocking| supports(node, rule.puller).map(|()| blocking)) {
        Ok(blocking) => {
            eligible.zone = node.metadata.labels.as_ref().and_then(|l| l.get(LABEL_ZONE)).cloned();
            eligible.arch = architecture(node).cloned();
            eligible.taints = blocking.into_iter().map(|t| taints.intern(t)).collect();
            eligible.fits = fits.unwrap_or_else(|| catalog.fits(node, startup));
            if rule.selection.skip_present {
                eligible.present = catalog.present(node, rule.puller.pull_policy).into();
            }
            Decision::Eligible(eligible)
        }
        Err(reason) if held.is_some() => Decision::Unreachable(Unreachable { node: eligible, reason }),
        Err(reason) => Decision::Skipped(Skipped { node: eligible.name, reason }),
    }
}

impl Partition {
    /// Sort one more page of nodes into eligible and skipped.
    pub fn add(&mut self, nodes: &[Node], rule: &Eligibility, catalog: &mut Catalog) {
        for node in nodes {
            if let Some(name) = node.metadata.name.as_ref().filter(|n| self.asked.contains(*n)) {
                self.listed.insert(name.clone());
            }
            match decide(node, rule, &mut self.taints, catalog) {
                Decision::Eligible(eligible) => self.eligible.push(eligible),
                Decision::Unreachable(unreachable) => self.unreachable.push(unreachable),
                Decision::Skipped(skipped) => self.skipped.push(skipped),
                Decision::NotConsidered => self.not_considered += 1,
            }
        }
    }

    /// The node list is complete: each eligible node gets its image set; both lists sorted by
    /// node name.
    pub fn finish(mut self, catalog: &mut Catalog) -> Partition {
        for node in &mut self.eligible {
            assign_images(node, catalog);
        }
        self.eligible.sort_by(|a, b| a.name.cmp(&b.name));
        self.skipped.sort_by(|a, b| a.node.cmp(&b.node));
        self.unreachable.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::images::PullPolicy;
    use serde_json::json;

    /// A node fixture: `ready` is the Ready condition status (None: no condition).
    pub fn node(name: &str, ready: Option<&str>, unschedulable: bool, taints: &[(&str, &str)]) -> Node {
        let conditions: Vec<_> =
            ready.iter().map(|s| json!({"type": "Ready", "status": s, "reason": "KubeletReady"})).collect();
        let taints: Vec<_> = taints.iter().map(|(k, e)| json!({"key": k, "effect": e})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/os": "linux"}},
            "spec": {"unschedulable": unschedulable, "taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    /// A configuration of these variables (`QUAY_IMAGES` and `HELPER_IMAGE` set unless given).
    pub fn config(vars: &[(&str, &str)]) -> Config {
        let mut all = vec![("QUAY_IMAGES", "nginx"), ("HELPER_IMAGE", "h:1")];
        all.retain(|(k, _)| !vars.iter().any(|(v, _)| v == k));
        all.extend_from_slice(vars);
        Config::from_vars(all.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    /// The catalog of a configuration's `QUAY_IMAGES`.
    fn cat(config: &Config) -> Catalog {
        Catalog::explicit(config.images.clone())
    }

    /// Eligibility with `TOLERATIONS` only: the keys of the blocking taints, or why not.
    fn keys(node: &Node, tolerations: &[Toleration]) -> Result<Vec<String>, SkipReason> {
        eligibility(node, tolerations, None).map(|taints| taints.iter().map(|t| t.key.clone()).collect())
    }

    #[test]
    fn ready_untainted_node_is_eligible() {
        assert_eq!(keys(&node("a", Some("True"), false, &[]), &[]), Ok(vec![]));
        assert_eq!(keys(&node("a", Some("True"), false, &[("gpu", "PreferNoSchedule")]), &[]), Ok(vec![]));
    }

    #[test]
    fn cordoned_node_is_skipped_first() {
        let n = node("a", Some("False"), true, &[("node.kubernetes.io/unschedulable", "NoSchedule")]);
        assert_eq!(keys(&n, &[]), Err(SkipReason::Cordoned));
    }

    #[test]
    fn not_ready_and_unknown_are_skipped() {
        assert_eq!(
            keys(&node("a", Some("False"), false, &[]), &[]),
            Err(SkipReason::NotReady { status: "False".into(), reason: Some("KubeletReady".into()) })
        );
        assert!(matches!(keys(&node("a", Some("Unknown"), false, &[]), &[]), Err(SkipReason::NotReady { .. })));
        assert!(matches!(keys(&node("a", None, false, &[]), &[]), Err(SkipReason::NotReady { .. })));
    }

    #[test]
    fn no_schedule_and_no_execute_taints_are_skipped() {
        for effect in ["NoSchedule", "NoExecute"] {
            let n = node("a", Some("True"), false, &[("dedicated", effect)]);
            assert_eq!(keys(&n, &[]), Err(SkipReason::Tainted { key: "dedicated".into(), effect: effect.into() }));
            assert!(keys(&n, &[]).unwrap_err().to_string().starts_with(&format!("tainted dedicated:{effect}")));
        }
    }

    #[test]
    fn tolerated_taints_make_a_node_eligible_and_its_puller_tolerates_exactly_its_taints() {
        let tolerations = crate::taints::parse_tolerations("dedicated:NoSchedule,gpu:NoSchedule").unwrap();
        let n = node("a", Some("True"), false, &[("gpu", "NoSchedule")]);
        assert_eq!(keys(&n, &tolerations), Ok(vec!["gpu".to_string()]));
        let blocked = node("a", Some("True"), false, &[("gpu", "NoSchedule"), ("spot", "NoExecute")]);
        assert_eq!(
            keys(&blocked, &tolerations),
            Err(SkipReason::Tainted { key: "spot".into(), effect: "NoExecute".into() })
        );
    }

    #[test]
    fn the_startup_taint_reaches_a_node_and_startup_only_considers_nothing_else() {
        let joining = node("j", Some("True"), false, &[("images-pending", "NoSchedule"), ("gpu", "NoSchedule")]);
        let config = config(&[("TOLERATIONS", "gpu"), ("STARTUP_TAINT", "images-pending")]);
        let mut all = Partition::default();
        all.add(&[joining.clone(), node("old", Some("True"), false, &[])], &(&config).into(), &mut cat(&config));
        assert_eq!(all.eligible.len(), 2);
        assert!(all.eligible[0].startup_tainted && !all.eligible[1].startup_tainted);
        assert_eq!(all.taints.tolerations(&all.eligible[0].taints).len(), 2, "the startup taint and gpu, exactly");
        let mut only = Partition::default();
        let only_joining = super::tests::config(&[
            ("TOLERATIONS", "gpu"),
            ("STARTUP_TAINT", "images-pending"),
            ("STARTUP_TAINT_ONLY", "true"),
        ]);
        only.add(&[joining, node("old", Some("True"), false, &[])], &(&only_joining).into(), &mut cat(&only_joining));
        assert_eq!((only.eligible.len(), only.skipped.len(), only.not_considered), (1, 0, 1));
    }

    #[test]
    fn a_held_node_is_reached_with_exactly_its_taints_or_is_unreachable_never_skipped() {
        // A joining GPU node: nvidia.com/gpu is not in TOLERATIONS, yet the run must release it.
        let mut gpu =
            node("gpu-1", Some("True"), false, &[("images-pending", "NoSchedule"), ("nvidia.com/gpu", "NoSchedule")]);
        gpu.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-01-01T00:00:00Z".parse().unwrap()));
        gpu.metadata.uid = Some("u-gpu".into());
        let joining_not_ready = node("j-2", Some("False"), false, &[("images-pending", "NoSchedule")]);
        let cordoned = node("j-3", Some("True"), true, &[("images-pending", "NoSchedule")]);
        let plain_gpu = node("gpu-2", Some("True"), false, &[("nvidia.com/gpu", "NoSchedule")]);
        let config = config(&[("STARTUP_TAINT", "images-pending:NoSchedule")]);
        let mut p = Partition::default();
        p.add(&[gpu, joining_not_ready, cordoned, plain_gpu], &(&config).into(), &mut cat(&config));
        let p = p.finish(&mut cat(&config));
        assert_eq!(p.eligible.len(), 1);
        let reached = &p.eligible[0];
        assert_eq!((reached.name.as_str(), reached.uid.as_deref()), ("gpu-1", Some("u-gpu")));
        assert_eq!(reached.held_since, Some("2026-01-01T00:00:00Z".parse().unwrap()), "from the node's creation");
        let keys: Vec<_> = p.taints.tolerations(&reached.taints).into_iter().filter_map(|t| t.key).collect();
        assert_eq!(keys, ["images-pending", "nvidia.com/gpu"], "exactly the taints it had when listed");
        let unreachable: Vec<(&str, String)> =
            p.unreachable.iter().map(|u| (u.node.name.as_str(), u.reason.to_string())).collect();
        assert_eq!(
            unreachable,
            [
                ("j-2", "not Ready (Ready=False, KubeletReady)".to_string()),
                ("j-3", "cordoned (spec.unschedulable)".to_string())
            ],
            "held but unreachable: not skipped"
        );
        assert_eq!(p.skipped.len(), 1, "a GPU node without the startup taint still needs TOLERATIONS");
        assert_eq!(p.skipped[0].node, "gpu-2");
        let mut timed = node("t", Some("True"), false, &[]);
        timed.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "images-pending".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-02-02T00:00:00Z".parse().unwrap(),
            )),
        }]);
        let mut q = Partition::default();
        q.add(&[timed], &(&config).into(), &mut cat(&config));
        assert_eq!(q.eligible[0].held_since, Some("2026-02-02T00:00:00Z".parse().unwrap()), "from timeAdded");
    }

    #[test]
    fn each_strategy_reaches_the_nodes_that_can_run_it() {
        let with_info = |name: &str, arch: &str, kubelet: &str, runtime: &str| {
            let mut n = node(name, Some("True"), false, &[]);
            n.metadata.labels.as_mut().unwrap().insert(LABEL_ARCH.into(), arch.into());
            n.status.as_mut().unwrap().node_info = Some(
                serde_json::from_value(json!({
                "architecture": arch, "kubeletVersion": kubelet, "containerRuntimeVersion": runtime,
                "bootID": "", "kernelVersion": "", "kubeProxyVersion": "", "machineID": "",
                "operatingSystem": "linux", "osImage": "", "systemUUID": ""}))
                .unwrap(),
            );
            n
        };
        let nodes = [
            with_info("amd", "amd64", "v1.37.2", "containerd://2.4.2"),
            with_info("arm", "arm64", "v1.37.2", "containerd://2.4.2"),
            with_info("riscv", "riscv64", "v1.37.2", "containerd://2.4.2"),
            with_info("old-kubelet", "amd64", "v1.34.5", "containerd://2.1.0"),
            with_info("old-runtime", "amd64", "v1.35.0", "containerd://2.0.5"),
            with_info("crio", "amd64", "v1.36.1", "cri-o://1.36.0"),
            with_info("kwok", "amd64", "kwok", "kwok"),
        ];
        let skipped = |vars: &[(&str, &str)]| {
            let config = config(vars);
            let mut p = Partition::default();
            p.add(&nodes, &(&config).into(), &mut cat(&config));
            p.finish(&mut cat(&config))
                .skipped
                .into_iter()
                .map(|s| format!("{}: {}", s.node, s.reason))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            skipped(&[]),
            [
                "riscv: architecture riscv64: the helper image has the no-op for amd64, arm64 only (HELPER_ARCHITECTURES)"
            ]
        );
        assert!(skipped(&[("HELPER_ARCHITECTURES", "amd64")]).iter().any(|s| s.starts_with("arm: architecture arm64")));
        assert_eq!(
            skipped(&[("PULL_STRATEGY", "volume")]),
            [
                "old-kubelet: cannot mount image volumes (PULL_STRATEGY=volume): kubelet v1.34.5 (Kubernetes 1.35 or later)",
                "old-runtime: cannot mount image volumes (PULL_STRATEGY=volume): containerd://2.0.5 (containerd 2.1 or later, CRI-O 1.31 or later)",
            ],
            "every architecture has the pause image; versions that cannot be read pass"
        );
    }

    #[test]
    fn with_images_from_a_node_its_workloads_tolerate_is_reached_without_tolerations() {
        use crate::scheduling::Constraints;
        use crate::workloads::{Kind, Workload, WorkloadRef};
        let gpu = node("gpu-1", Some("True"), false, &[("nvidia.com/gpu", "NoSchedule")]);
        let from = config(&[("IMAGES_FROM", "namespaces=ml")]);
        let trainer = |tolerates: bool| Workload {
            id: WorkloadRef { kind: Kind::Deployment, namespace: "ml".into(), name: "trainer".into() },
            replicas: 1,
            daemon: false,
            constraints: Constraints {
                tolerations: if tolerates {
                    vec![k8s_openapi::api::core::v1::Toleration {
                        key: Some("nvidia.com/gpu".into()),
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            },
            images: vec!["cuda:12".into()],
        };
        let decide_with = |tolerates: bool| {
            let mut catalog = Catalog::new(from.images.clone(), vec![trainer(tolerates)]);
            let mut taints = TaintTable::default();
            let decision = decide(&gpu, &(&from).into(), &mut taints, &mut catalog);
            (decision, taints)
        };
        let (Decision::Eligible(reached), taints) = decide_with(true) else { panic!("not reached") };
        let keys: Vec<_> = taints.tolerations(&reached.taints).into_iter().filter_map(|t| t.key).collect();
        assert_eq!(keys, ["nvidia.com/gpu"], "exactly the node's taints");
        assert!(matches!(decide_with(false).0, Decision::Skipped(Skipped { reason: SkipReason::Tainted { .. }, .. })));
        let plain = config(&[]);
        let mut catalog = Catalog::new(plain.images.clone(), vec![trainer(true)]);
        assert!(
            matches!(decide(&gpu, &(&plain).into(), &mut TaintTable::default(), &mut catalog), Decision::Skipped(_)),
            "without IMAGES_FROM, TOLERATIONS decides"
        );
    }

    #[test]
    fn only_linux_nodes_are_eligible() {
        let mut windows = node("w", Some("True"), false, &[]);
        windows.metadata.labels = Some([(LABEL_OS.to_string(), "windows".to_string())].into());
        assert_eq!(keys(&windows, &[]), Err(SkipReason::NotLinux { os: "windows".into() }));
        assert_eq!(keys(&windows, &[]).unwrap_err().to_string(), "not a Linux node (kubernetes.io/os=windows)");
        let mut unlabelled = node("u", Some("True"), false, &[]);
        unlabelled.metadata.labels = None;
        assert_eq!(keys(&unlabelled, &[]), Ok(vec![]), "no label and no nodeInfo: assume Linux");
    }

    #[test]
    fn skip_present_leaves_out_listed_images_only() {
        let images = "nginx:1.27;redis;quay.io/org/model:v3";
        let mut n = node("a", Some("True"), false, &[]);
        n.status.as_mut().unwrap().images = Some(vec![
            serde_json::from_value(
                json!({"names": ["docker.io/library/nginx:1.27", "docker.io/library/nginx@sha256:aa"], "sizeBytes": 1}),
            )
            .unwrap(),
            serde_json::from_value(json!({"names": ["docker.io/library/redis:latest"], "sizeBytes": 1})).unwrap(),
        ]);
        let needed = |config: &Config| {
            let mut catalog = cat(config);
            let mut page = Partition::default();
            page.add(std::slice::from_ref(&n), &config.into(), &mut catalog);
            page.finish(&mut catalog).eligible[0].images
        };
        assert_eq!(needed(&config(&[("QUAY_IMAGES", images)])), 0b111);
        let on = config(&[("QUAY_IMAGES", images), ("SKIP_PRESENT", "true")]);
        assert_eq!(needed(&on), 0b110, "nginx:1.27 is there; redis is latest; model is not listed");
        let pinned = config(&[
            ("QUAY_IMAGES", "nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;nginx:1.27"),
            ("SKIP_PRESENT", "true"),
            ("PULL_POLICY", "Always"),
        ]);
        assert_eq!(needed(&pinned), 0b11, "PULL_POLICY=Always pulls again");
        let mut by_digest = n.clone();
        by_digest.status.as_mut().unwrap().images = Some(vec![
            serde_json::from_value(json!({"names": [
                "docker.io/library/nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], "sizeBytes": 1}))
            .unwrap(),
        ]);
        let digest = config(&[
            (
                "QUAY_IMAGES",
                "nginx:9@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;nginx:1.27",
            ),
            ("SKIP_PRESENT", "true"),
        ]);
        let catalog = cat(&digest);
        assert_eq!(catalog.present(&by_digest, PullPolicy::Auto), [0], "the same digest, whatever the tag");
        for (i, image) in catalog.images.iter().enumerate() {
            let names = by_digest.status.as_ref().unwrap().images.as_ref().unwrap()[0].names.clone().unwrap();
            assert_eq!(
                catalog.present(&by_digest, PullPolicy::Auto).contains(&(i as u32)),
                image.present_in(names.iter().map(String::as_str), PullPolicy::Auto),
                "the index agrees with Image::present_in"
            );
        }
    }

    #[test]
    fn partition_collects_pages_and_sorts_both_sides() {
        let nodes = [
            node("c", Some("True"), false, &[]),
            node("b", Some("True"), true, &[]),
            node("a", Some("True"), false, &[]),
            node("d", Some("False"), false, &[]),
        ];
        let mut partition = Partition::default();
        let config = config(&[]);
        let rule = Eligibility::from(&config);
        let mut catalog = cat(&config);
        partition.add(&nodes[..2], &rule, &mut catalog);
        partition.add(&nodes[2..], &rule, &mut catalog);
        let Partition { eligible, skipped, .. } = partition.finish(&mut catalog);
        assert_eq!(eligible.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(skipped.iter().map(|s| s.node.as_str()).collect::<Vec<_>>(), ["b", "d"]);
    }
}
