//! Step 2 of the data path: which nodes get a puller Job, and what it pulls there. A pure decision
//! per node; only what the run needs of each node is kept (name, zone, two small bit masks), not the
//! Node object, so memory follows the page size, not the cluster.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::jiff::Timestamp;

use crate::config::{Config, Selection};
use crate::images::{Image, ImageMask, PullPolicy, all_images};
use crate::taints::{StartupTaint, TaintTable, Toleration, is_blocking, match_taints};

pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

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
        }
    }
}

/// What the run decides about the nodes, the same for every node: a view of the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Eligibility<'c> {
    /// `TOLERATIONS`, `STARTUP_TAINT` (nodes carrying it are eligible whatever `TOLERATIONS` says),
    /// `STARTUP_TAINT_ONLY`, `SKIP_PRESENT`.
    pub selection: &'c Selection,
    pub pull_policy: PullPolicy,
    pub images: &'c [Image],
}

impl<'c> From<&'c Config> for Eligibility<'c> {
    fn from(config: &'c Config) -> Self {
        Eligibility { selection: &config.selection, pull_policy: config.puller.pull_policy, images: &config.images }
    }
}

/// One node that gets a puller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// The images of `rule.images` that `node` still needs: all of them, or with `SKIP_PRESENT` those
/// its `status.images` does not show. The kubelet lists at most 50 images per node by default
/// (`nodeStatusMaxImages`), so an image that is not listed is "unknown", and is pulled.
pub fn images_needed(node: &Node, rule: &Eligibility) -> ImageMask {
    let all = all_images(rule.images.len());
    if !rule.selection.skip_present {
        return all;
    }
    let policy = rule.pull_policy;
    let listed = node.status.as_ref().and_then(|s| s.images.as_deref()).unwrap_or_default();
    let names = || listed.iter().flat_map(|i| i.names.iter().flatten()).map(String::as_str);
    rule.images
        .iter()
        .enumerate()
        .filter(|(_, image)| image.present_in(names(), policy))
        .fold(all, |m, (i, _)| m & !(1 << i))
}

/// A node that gets no Job, for the log and the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub node: String,
    pub reason: SkipReason,
}

/// A node held by the startup taint that no puller can reach: it is not skipped, it is a node the
/// run does not release (its verdict says why).
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Eligible(EligibleNode),
    /// Held by the startup taint, and no puller can reach it.
    Unreachable(Unreachable),
    Skipped(Skipped),
    /// `STARTUP_TAINT_ONLY` and it does not carry the startup taint.
    NotConsidered,
}

/// Decide about one node: eligible (with what it pulls and the taints its puller tolerates,
/// interned in `taints`), held but unreachable, skipped with the reason, or not considered.
pub fn decide(node: &Node, rule: &Eligibility, taints: &mut TaintTable) -> Decision {
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
    match eligibility(node, &rule.selection.tolerations, startup) {
        Ok(blocking) => {
            eligible.zone = node.metadata.labels.as_ref().and_then(|l| l.get(LABEL_ZONE)).cloned();
            eligible.taints = blocking.into_iter().map(|t| taints.intern(t)).collect();
            eligible.images = images_needed(node, rule);
            Decision::Eligible(eligible)
        }
        Err(reason) if held.is_some() => Decision::Unreachable(Unreachable { node: eligible, reason }),
        Err(reason) => Decision::Skipped(Skipped { node: eligible.name, reason }),
    }
}

impl Partition {
    /// Sort one more page of nodes into eligible and skipped.
    pub fn add(&mut self, nodes: &[Node], rule: &Eligibility) {
        for node in nodes {
            if let Some(name) = node.metadata.name.as_ref().filter(|n| self.asked.contains(*n)) {
                self.listed.insert(name.clone());
            }
            match decide(node, rule, &mut self.taints) {
                Decision::Eligible(eligible) => self.eligible.push(eligible),
                Decision::Unreachable(unreachable) => self.unreachable.push(unreachable),
                Decision::Skipped(skipped) => self.skipped.push(skipped),
                Decision::NotConsidered => self.not_considered += 1,
            }
        }
    }

    /// Both lists sorted by node name.
    pub fn sorted(mut self) -> Partition {
        self.eligible.sort_by(|a, b| a.name.cmp(&b.name));
        self.skipped.sort_by(|a, b| a.node.cmp(&b.node));
        self.unreachable.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
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
        all.add(&[joining.clone(), node("old", Some("True"), false, &[])], &(&config).into());
        assert_eq!(all.eligible.len(), 2);
        assert!(all.eligible[0].startup_tainted && !all.eligible[1].startup_tainted);
        assert_eq!(all.taints.tolerations(&all.eligible[0].taints).len(), 2, "the startup taint and gpu, exactly");
        let mut only = Partition::default();
        let only_joining = super::tests::config(&[
            ("TOLERATIONS", "gpu"),
            ("STARTUP_TAINT", "images-pending"),
            ("STARTUP_TAINT_ONLY", "true"),
        ]);
        only.add(&[joining, node("old", Some("True"), false, &[])], &(&only_joining).into());
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
        p.add(&[gpu, joining_not_ready, cordoned, plain_gpu], &(&config).into());
        let p = p.sorted();
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
        q.add(&[timed], &(&config).into());
        assert_eq!(q.eligible[0].held_since, Some("2026-02-02T00:00:00Z".parse().unwrap()), "from timeAdded");
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
        let off = config(&[("QUAY_IMAGES", images)]);
        assert_eq!(images_needed(&n, &(&off).into()), 0b111);
        let on = config(&[("QUAY_IMAGES", images), ("SKIP_PRESENT", "true")]);
        assert_eq!(
            images_needed(&n, &(&on).into()),
            0b110,
            "nginx:1.27 is there; redis is latest; model is not listed"
        );
        let mut page = Partition::default();
        page.add(&[n], &(&on).into());
        assert_eq!(page.eligible[0].images, 0b110);
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
        partition.add(&nodes[..2], &rule);
        partition.add(&nodes[2..], &rule);
        let Partition { eligible, skipped, .. } = partition.sorted();
        assert_eq!(eligible.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(skipped.iter().map(|s| s.node.as_str()).collect::<Vec<_>>(), ["b", "d"]);
    }
}
