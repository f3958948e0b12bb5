//! Step 2 of the data path: which nodes get a puller Job. A pure decision per node.

use k8s_openapi::api::core::v1::Node;

/// Why a node gets no puller Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    Cordoned,
    NotReady { status: String, reason: Option<String> },
    Tainted { key: String, effect: String },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Cordoned => write!(f, "cordoned (spec.unschedulable)"),
            SkipReason::NotReady { status, reason: Some(reason) } => write!(f, "not Ready (Ready={status}, {reason})"),
            SkipReason::NotReady { status, reason: None } => write!(f, "not Ready (Ready={status})"),
            SkipReason::Tainted { key, effect } => write!(f, "tainted {key}:{effect}"),
        }
    }
}

/// `Ok(())` when a puller pod could run on the node now, else the first reason it cannot.
/// Cordoned beats NotReady beats taints, so the most actionable reason is shown.
pub fn eligibility(node: &Node) -> Result<(), SkipReason> {
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
    let blocking = spec
        .and_then(|s| s.taints.as_ref())
        .and_then(|taints| taints.iter().find(|t| t.effect == "NoSchedule" || t.effect == "NoExecute"));
    if let Some(taint) = blocking {
        return Err(SkipReason::Tainted { key: taint.key.clone(), effect: taint.effect.clone() });
    }
    Ok(())
}

/// A node that gets no Job, for the log and the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub node: String,
    pub reason: SkipReason,
}

/// Eligible node names and skipped nodes, built up page by page.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Partition {
    pub eligible: Vec<String>,
    pub skipped: Vec<Skipped>,
}

impl Partition {
    /// Sort one more page of nodes into eligible and skipped.
    pub fn add(&mut self, nodes: &[Node]) {
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            match eligibility(node) {
                Ok(()) => self.eligible.push(name),
                Err(reason) => self.skipped.push(Skipped { node: name, reason }),
            }
        }
    }

    /// Both lists sorted by node name.
    pub fn sorted(mut self) -> Partition {
        self.eligible.sort();
        self.skipped.sort_by(|a, b| a.node.cmp(&b.node));
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
            "metadata": {"name": name},
            "spec": {"unschedulable": unschedulable, "taints": taints},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn ready_untainted_node_is_eligible() {
        assert_eq!(eligibility(&node("a", Some("True"), false, &[])), Ok(()));
        assert_eq!(eligibility(&node("a", Some("True"), false, &[("gpu", "PreferNoSchedule")])), Ok(()));
    }

    #[test]
    fn cordoned_node_is_skipped_first() {
        let n = node("a", Some("False"), true, &[("node.kubernetes.io/unschedulable", "NoSchedule")]);
        assert_eq!(eligibility(&n), Err(SkipReason::Cordoned));
    }

    #[test]
    fn not_ready_and_unknown_are_skipped() {
        assert_eq!(
            eligibility(&node("a", Some("False"), false, &[])),
            Err(SkipReason::NotReady { status: "False".into(), reason: Some("KubeletReady".into()) })
        );
        assert!(matches!(eligibility(&node("a", Some("Unknown"), false, &[])), Err(SkipReason::NotReady { .. })));
        assert!(matches!(eligibility(&node("a", None, false, &[])), Err(SkipReason::NotReady { .. })));
    }

    #[test]
    fn no_schedule_and_no_execute_taints_are_skipped() {
        for effect in ["NoSchedule", "NoExecute"] {
            let n = node("a", Some("True"), false, &[("dedicated", effect)]);
            assert_eq!(eligibility(&n), Err(SkipReason::Tainted { key: "dedicated".into(), effect: effect.into() }));
            assert_eq!(eligibility(&n).unwrap_err().to_string(), format!("tainted dedicated:{effect}"));
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
        partition.add(&nodes[..2]);
        partition.add(&nodes[2..]);
        let Partition { eligible, skipped } = partition.sorted();
        assert_eq!(eligible, ["a", "c"]);
        assert_eq!(skipped.iter().map(|s| s.node.as_str()).collect::<Vec<_>>(), ["b", "d"]);
    }
}
