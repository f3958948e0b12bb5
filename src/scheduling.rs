//! Could a pod of this template be scheduled on this node? The scheduler's own filters, for the
//! three things `IMAGES_FROM` filters by: the template's `nodeSelector`, its required node affinity
//! (`requiredDuringSchedulingIgnoredDuringExecution`) and its tolerations against the node's
//! `NoSchedule`/`NoExecute` taints. Ported from Kubernetes v1.37.2 and tested with its own cases:
//! `k8s.io/component-helpers/scheduling/corev1/nodeaffinity` (`NewRequiredNodeAffinity`,
//! `LazyErrorNodeSelector`), `k8s.io/apimachinery/pkg/labels` (`Requirement.Matches`) and
//! `k8s.io/api/core/v1` (`Toleration.ToleratesTaint`), as the scheduler's NodeAffinity and
//! TaintToleration filters and the DaemonSet controller call them. Preferred affinity, topology
//! spread and resources do not filter (a pre-pull is not a placement).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};

use crate::grammar::{MAX_LABEL_LEN, is_label_key, is_label_value};

/// What a template asks of a node: the scheduler's required constraints, and nothing else.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Constraints {
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity; `None`: any node.
    pub affinity: Option<NodeSelector>,
    pub tolerations: Vec<Toleration>,
}

/// The node as the filters see it.
#[derive(Clone, Copy, Debug)]
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Its taints that count (the startup taint left out by the caller: a workload tolerates its
    /// absence).
    pub taints: &'a [&'a Taint],
}

impl Constraints {
    /// Both filters pass.
    pub fn fit(&self, node: &NodeFacts) -> bool {
        self.affinity_matches(node) && self.untolerated(node.taints).is_none()
    }

    /// `RequiredNodeAffinity.Match`: the `nodeSelector` (every key, with that exact value), then the
    /// required node affinity when there is one.
    pub fn affinity_matches(&self, node: &NodeFacts) -> bool {
        self.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v))
            && self.affinity.as_ref().is_none_or(|selector| selector_matches(selector, node))
    }

    /// The first `NoSchedule`/`NoExecute` taint no toleration tolerates
    /// (`FindMatchingUntoleratedTaint` with `DoNotScheduleTaintsFilterFunc`).
    pub fn untolerated<'t>(&self, taints: &[&'t Taint]) -> Option<&'t Taint> {
        taints
            .iter()
            .copied()
            .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
            .find(|t| !self.tolerations.iter().any(|tol| tolerates(tol, t)))
    }
}

/// `LazyErrorNodeSelector.Match`: the terms are ORed; a term with neither expressions nor fields is
/// dropped (no term left: nothing matches); a term that does not parse is skipped.
fn selector_matches(selector: &NodeSelector, node: &NodeFacts) -> bool {
    selector.node_selector_terms.iter().filter(|t| !is_empty_term(t)).any(|t| term_matches(t, node) == Some(true))
}

fn is_empty_term(term: &NodeSelectorTerm) -> bool {
    term.match_expressions.as_ref().is_none_or(Vec::is_empty) && term.match_fields.as_ref().is_none_or(Vec::is_empty)
}

/// One term: its expressions and fields ANDed; `None` when it does not parse.
fn term_matches(term: &NodeSelectorTerm, node: &NodeFacts) -> Option<bool> {
    let expressions: Vec<Requirement> =
        term.match_expressions.iter().flatten().map(Requirement::parse).collect::<Option<_>>()?;
    let fields: Vec<(&NodeSelectorRequirement, bool)> = term
        .match_fields
        .iter()
        .flatten()
        .map(|f| field_requirement(f).map(|negated| (f, negated)))
        .collect::<Option<_>>()?;
    let labels_match = expressions.iter().all(|r| r.matches(node.labels));
    // Fields count only for a node with a name (the only field is `metadata.name`); an unknown key
    // reads as "".
    let fields_match = node.name.is_empty()
        || fields.iter().all(|(f, negated)| {
            let value = if f.key == "metadata.name" { node.name } else { "" };
            (f.values.as_deref().unwrap_or_default()[0] == value) != *negated
        });
    Some(labels_match && fields_match)
}

/// `nodeSelectorRequirementsAsFieldSelector`: `In` or `NotIn` (`Some(negated)`) with exactly one value.
fn field_requirement(f: &NodeSelectorRequirement) -> Option<bool> {
    if f.values.as_ref().map_or(0, Vec::len) != 1 {
        return None;
    }
    match f.operator.as_str() {
        "In" => Some(false),
        "NotIn" => Some(true),
        _ => None,
    }
}

/// A label value as `labels.NewRequirement` validates it: empty, or a label value.
fn valid_value(v: &str) -> bool {
    v.is_empty() || (v.len() <= MAX_LABEL_LEN && is_label_value(v))
}

/// A parsed `matchExpressions` entry (`labels.Requirement`).
enum Requirement<'a> {
    In(&'a str, &'a [String]),
    NotIn(&'a str, &'a [String]),
    Exists(&'a str),
    DoesNotExist(&'a str),
    Gt(&'a str, i64),
    Lt(&'a str, i64),
}

impl<'a> Requirement<'a> {
    /// `labels.NewRequirement`'s checks: a valid key, every value a valid label value, and the
    /// number of values each operator takes; `Gt`/`Lt` one integer.
    fn parse(r: &'a NodeSelectorRequirement) -> Option<Requirement<'a>> {
        let key = r.key.as_str();
        let values = r.values.as_deref().unwrap_or_default();
        if !is_label_key(key) || !values.iter().all(|v| valid_value(v)) {
            return None;
        }
        let number = || (values.len() == 1).then(|| values[0].parse::<i64>().ok()).flatten();
        match r.operator.as_str() {
            "In" if !values.is_empty() => Some(Requirement::In(key, values)),
            "NotIn" if !values.is_empty() => Some(Requirement::NotIn(key, values)),
            "Exists" if values.is_empty() => Some(Requirement::Exists(key)),
            "DoesNotExist" if values.is_empty() => Some(Requirement::DoesNotExist(key)),
            "Gt" => number().map(|n| Requirement::Gt(key, n)),
            "Lt" => number().map(|n| Requirement::Lt(key, n)),
            _ => None,
        }
    }

    /// `Requirement.Matches`: `NotIn` and `DoesNotExist` match a node without the label; `Gt`/`Lt`
    /// need the label, as an integer.
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let number = |k: &str| labels.get(k).and_then(|v| parse_go_int(v));
        match self {
            Requirement::In(k, values) => labels.get(*k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(*k).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(k) => labels.contains_key(*k),
            Requirement::DoesNotExist(k) => !labels.contains_key(*k),
            Requirement::Gt(k, n) => number(k).is_some_and(|v| v > *n),
            Requirement::Lt(k, n) => number(k).is_some_and(|v| v < *n),
        }
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then decimal digits (leading zeros fine).
fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// `Toleration.ToleratesTaint`: the effect (if given) and the key (if given) must be the taint's;
/// `Exists` then tolerates, `Equal` (or no operator) wants the same value. The numeric `Gt`/`Lt`
/// operators (KEP-5471) are alpha and off by default through 1.37: they tolerate nothing, as the
/// scheduler with its gate off decides.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        "Exists" => true,
        _ => false,
    }
}

/// The tolerations the DaemonSet controller adds to every daemon pod
/// (`AddOrUpdateDaemonPodTolerations`): it runs on not-ready, unreachable, pressured and cordoned
/// nodes, and on nodes without a network when it uses the host's.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut added = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        added.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    added
        .into_iter()
        .map(|(key, effect)| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Cases from Kubernetes v1.37.2's own tests, named by file and case; a few marked "probe" were
    //! checked against the Go code (v0.37.2) where upstream has no case.
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn term(expressions: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: (!expressions.is_empty()).then_some(expressions),
            match_fields: (!fields.is_empty()).then_some(fields),
        }
    }

    fn affinity(terms: Vec<NodeSelectorTerm>) -> Option<NodeSelector> {
        Some(NodeSelector { node_selector_terms: terms })
    }

    fn fits(c: &Constraints, name: &str, node_labels: &[(&str, &str)]) -> bool {
        c.affinity_matches(&NodeFacts { name, labels: &labels(node_labels), taints: &[] })
    }

    fn selector(pairs: &[(&str, &str)]) -> Constraints {
        Constraints { node_selector: labels(pairs), ..Default::default() }
    }

    fn with(terms: Vec<NodeSelectorTerm>) -> Constraints {
        Constraints { affinity: affinity(terms), ..Default::default() }
    }

    /// component-helpers nodeaffinity_test.go, TestPodMatchesNodeSelectorAndAffinityTerms.
    #[test]
    fn node_selector_and_affinity_terms() {
        let e = |k, op, v: &[&str]| term(vec![req(k, op, v)], vec![]);
        type Case<'a> = (&'a str, Constraints, &'a str, Vec<(&'a str, &'a str)>, bool);
        let cases: Vec<Case> = vec![
            ("no selector", Constraints::default(), "", vec![], true),
            ("missing labels", selector(&[("foo", "bar")]), "", vec![], false),
            ("node labels are superset", selector(&[("foo", "bar")]), "", vec![("foo", "bar"), ("baz", "blah")], true),
            ("node labels are subset", selector(&[("foo", "bar"), ("baz", "blah")]), "", vec![("foo", "bar")], false),
            ("In that matches", with(vec![e("foo", "In", &["bar", "value2"])]), "", vec![("foo", "bar")], true),
            (
                "Gt that matches",
                with(vec![e("kernel-version", "Gt", &["0204"])]),
                "",
                vec![("kernel-version", "0206")],
                true,
            ),
            (
                "NotIn that matches",
                with(vec![e("mem-type", "NotIn", &["DDR", "DDR2"])]),
                "",
                vec![("mem-type", "DDR3")],
                true,
            ),
            ("Exists that matches", with(vec![e("GPU", "Exists", &[])]), "", vec![("GPU", "NVIDIA-GRID-K1")], true),
            (
                "affinity that does not match",
                with(vec![e("foo", "In", &["value1", "value2"])]),
                "",
                vec![("foo", "bar")],
                false,
            ),
            ("empty []NodeSelectorTerm", with(vec![]), "", vec![("foo", "bar")], false),
            ("empty MatchExpressions", with(vec![term(vec![], vec![])]), "", vec![("foo", "bar")], false),
            (
                "nil NodeSelector in NodeAffinity",
                Constraints { affinity: None, ..Default::default() },
                "",
                vec![("foo", "bar")],
                true,
            ),
            (
                "matchExpressions ANDed that match",
                with(vec![term(vec![req("GPU", "Exists", &[]), req("GPU", "NotIn", &["AMD", "INTER"])], vec![])]),
                "",
                vec![("GPU", "NVIDIA-GRID-K1")],
                true,
            ),
            (
                "matchExpressions ANDed that do not match",
                with(vec![term(vec![req("GPU", "Exists", &[]), req("GPU", "In", &["AMD", "INTER"])], vec![])]),
                "",
                vec![("GPU", "NVIDIA-GRID-K1")],
                false,
            ),
            (
                "NodeSelectorTerms ORed",
                with(vec![e("foo", "In", &["bar", "value2"]), e("diffkey", "In", &["wrong", "value2"])]),
                "",
                vec![("foo", "bar")],
                true,
            ),
            (
                "affinity and nodeSelector both satisfied",
                Constraints {
                    node_selector: labels(&[("foo", "bar")]),
                    affinity: affinity(vec![e("foo", "Exists", &[])]),
                    ..Default::default()
                },
                "",
                vec![("foo", "bar")],
                true,
            ),
            (
                "affinity matches, nodeSelector does not",
                Constraints {
                    node_selector: labels(&[("foo", "bar")]),
                    affinity: affinity(vec![e("foo", "Exists", &[])]),
                    ..Default::default()
                },
                "",
                vec![("foo", "barrrrrr")],
                false,
            ),
            (
                "invalid value in affinity term",
                with(vec![e("foo", "NotIn", &["invalid value: ___@#$%^"])]),
                "",
                vec![("foo", "bar")],
                false,
            ),
            (
                "matchFields In that matches",
                with(vec![term(vec![], vec![req("metadata.name", "In", &["node_1"])])]),
                "node_1",
                vec![],
                true,
            ),
            (
                "matchFields In that does not match",
                with(vec![term(vec![], vec![req("metadata.name", "In", &["node_1"])])]),
                "node_2",
                vec![],
                false,
            ),
            (
                "two terms: matchFields does not match, matchExpressions does",
                with(vec![term(vec![], vec![req("metadata.name", "In", &["node_1"])]), e("foo", "In", &["bar"])]),
                "node_2",
                vec![("foo", "bar")],
                true,
            ),
            (
                "one term: matchFields does not match, matchExpressions does",
                with(vec![term(vec![req("foo", "In", &["bar"])], vec![req("metadata.name", "In", &["node_1"])])]),
                "node_2",
                vec![("foo", "bar")],
                false,
            ),
            (
                "one term: both match",
                with(vec![term(vec![req("foo", "In", &["bar"])], vec![req("metadata.name", "In", &["node_1"])])]),
                "node_1",
                vec![("foo", "bar")],
                true,
            ),
        ];
        for (name, c, node, node_labels, want) in cases {
            assert_eq!(fits(&c, node, &node_labels), want, "{name}");
        }
    }

    /// The scheduler's node_affinity_test.go (TestNodeAffinity), component-helpers helpers_test.go
    /// (TestMatchNodeSelectorTerms) and nodeaffinity_test.go (TestNodeSelectorMatch): fields.
    #[test]
    fn match_fields() {
        let f = |values: &[&str]| term(vec![], vec![req("metadata.name", "In", values)]);
        assert!(fits(&with(vec![f(&["node1"]), f(&["node2"])]), "node2", &[]), "two terms of node.Name affinity");
        assert!(
            !fits(
                &with(vec![term(
                    vec![],
                    vec![req("metadata.name", "In", &["node1"]), req("metadata.name", "In", &["node2"])]
                )]),
                "node2",
                &[("foo", "bar")]
            ),
            "two conflicting matchField requirements"
        );
        assert!(
            !fits(&with(vec![f(&["host_1", "host_2"])]), "host_1", &[]),
            "invalid node field requirement (two values)"
        );
        assert!(
            !fits(&with(vec![f(&["host_1"])]), "not_host_1", &[("metadata.name", "host_1")]),
            "fieldSelectorTerm with node labels"
        );
        assert!(
            !fits(&with(vec![term(vec![req("metadata.name", "In", &["host_1"])], vec![])]), "host_1", &[]),
            "labelSelectorTerm with node fields"
        );
        assert!(
            fits(
                &with(vec![term(vec![req("label_1", "In", &["label_1_val"])], vec![]), f(&["host_1"])]),
                "host_1",
                &[("label_1", "label_1_val-failed")]
            ),
            "multi-selector with one mismatched"
        );
        assert!(
            !fits(
                &with(vec![term(
                    vec![req("label_1", "In", &["label_1_val"])],
                    vec![req("metadata.name", "In", &["host_1"])]
                )]),
                "host_1",
                &[]
            ),
            "node matches field selector, but not labels"
        );
        // probe: an unknown field key reads as ""; a node without a name skips fields.
        let uid = |op| with(vec![term(vec![], vec![req("metadata.uid", op, &["x"])])]);
        assert!(!fits(&uid("In"), "n", &[]) && fits(&uid("NotIn"), "n", &[]));
        assert!(fits(&with(vec![f(&["node1"])]), "", &[]));
    }

    /// apimachinery selector_test.go (TestSelectorMatches) and probes of the operators' edges.
    #[test]
    fn operators() {
        let one = |k, op, v: &[&str]| with(vec![term(vec![req(k, op, v)], vec![])]);
        assert!(fits(&one("x", "Gt", &["1"]), "", &[("x", "2")]));
        assert!(!fits(&one("x", "Gt", &["1"]), "", &[("x", "0")]));
        assert!(fits(&one("x", "Lt", &["1"]), "", &[("x", "0")]));
        assert!(fits(&one("x", "DoesNotExist", &[]), "", &[("y", "z")]));
        assert!(fits(&one("zone", "NotIn", &["a"]), "", &[]), "NotIn matches a node without the label");
        assert!(!fits(&one("v", "Gt", &["1"]), "", &[]), "Gt needs the label");
        assert!(!fits(&one("v", "Gt", &["1"]), "", &[("v", "x")]), "Gt needs an integer label");
        assert!(!fits(&one("v", "Gt", &["abc"]), "", &[("v", "5")]), "a Gt threshold that is no integer");
        assert!(!fits(&one("v", "Lt", &["-1"]), "", &[("v", "-5")]), "-1 is no label value: the term does not parse");
        assert!(!fits(&one("v", "Gt", &["1", "2"]), "", &[("v", "5")]), "Gt takes one value");
        assert!(!fits(&one("v", "In", &[]), "", &[("v", "5")]), "In needs values");
        assert!(!fits(&one("v", "Exists", &["5"]), "", &[("v", "5")]), "Exists takes none");
        assert!(!fits(&one("v", "Matches", &["5"]), "", &[("v", "5")]), "unknown operator");
        assert!(!fits(&one("bad key!", "Exists", &[]), "", &[]), "invalid key");
        assert!(fits(&one("v", "In", &[""]), "", &[("v", "")]), "an empty value is a label value");
        let skip =
            with(vec![term(vec![req("v", "Gt", &["abc"])], vec![]), term(vec![req("v", "Exists", &[])], vec![])]);
        assert!(fits(&skip, "", &[("v", "5")]), "a term that does not parse is skipped");
        let empty_and_real = with(vec![term(vec![], vec![]), term(vec![req("v", "Exists", &[])], vec![])]);
        assert!(fits(&empty_and_real, "", &[("v", "5")]), "an empty term beside a real one");
        let both =
            Constraints { node_selector: labels(&[("k", "v")]), affinity: affinity(vec![]), ..Default::default() };
        assert!(!fits(&both, "", &[("k", "v")]), "nodeSelector with an empty required affinity");
        assert_eq!(parse_go_int("0206"), Some(206));
        assert_eq!(parse_go_int("+5"), Some(5));
        assert_eq!(parse_go_int("9223372036854775808"), None);
        assert_eq!(parse_go_int(" 5"), None);
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.map(String::from), effect: effect.into(), ..Default::default() }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: some(key),
            operator: some(op),
            value: some(value),
            effect: some(effect),
            ..Default::default()
        }
    }

    /// api core/v1 toleration_test.go (TestTolerationToleratesTaint), the scheduler's
    /// taint_toleration_test.go (TestTaintTolerationFilter, ...WithFeatureGate) and
    /// component-helpers helpers_test.go (TestFindMatchingUntoleratedTaint).
    #[test]
    fn tolerations() {
        let cases: Vec<(&str, Toleration, Taint, bool)> = vec![
            (
                "same key and effect, Exists, no value",
                tol("foo", "Exists", "", "NoSchedule"),
                taint("foo", None, "NoSchedule"),
                true,
            ),
            (
                "empty key and Exists",
                tol("", "Exists", "", "NoSchedule"),
                taint("foo", Some("bar"), "NoSchedule"),
                true,
            ),
            (
                "same key, effect and value, Equal",
                tol("foo", "Equal", "bar", "NoSchedule"),
                taint("foo", Some("bar"), "NoSchedule"),
                true,
            ),
            (
                "different values, Equal",
                tol("foo", "Equal", "value1", "NoSchedule"),
                taint("foo", Some("value2"), "NoSchedule"),
                false,
            ),
            (
                "different effects",
                tol("foo", "Equal", "bar", "NoSchedule"),
                taint("foo", Some("bar"), "NoExecute"),
                false,
            ),
            (
                "no operator is Equal",
                tol("dedicated", "", "user1", "NoSchedule"),
                taint("dedicated", Some("user1"), "NoSchedule"),
                true,
            ),
            (
                "non-empty effect does not match",
                tol("foo", "Equal", "bar", "PreferNoSchedule"),
                taint("foo", Some("bar"), "NoSchedule"),
                false,
            ),
            ("empty effect matches all", tol("foo", "Equal", "bar", ""), taint("foo", Some("bar"), "NoSchedule"), true),
            (
                "Gt with the gate off (1.37 default)",
                tol("sla", "Gt", "750", "NoSchedule"),
                taint("sla", Some("950"), "NoSchedule"),
                false,
            ),
            (
                "probe: key only, Equal, taint with a value",
                tol("k", "", "", ""),
                taint("k", Some("v"), "NoSchedule"),
                false,
            ),
            (
                "probe: key only, Equal, taint without a value",
                tol("k", "", "", ""),
                taint("k", None, "NoSchedule"),
                true,
            ),
            ("probe: lowercase exists", tol("k", "exists", "", ""), taint("k", None, "NoSchedule"), false),
        ];
        for (name, t, taint, want) in cases {
            assert_eq!(tolerates(&t, &taint), want, "{name}");
        }

        let c = |tolerations: Vec<Toleration>| Constraints { tolerations, ..Default::default() };
        let dedicated = taint("dedicated", Some("user1"), "NoSchedule");
        assert_eq!(c(vec![]).untolerated(&[&dedicated]), Some(&dedicated), "no tolerations");
        let prefer = taint("dedicated", Some("user1"), "PreferNoSchedule");
        assert_eq!(c(vec![]).untolerated(&[&prefer]), None, "PreferNoSchedule does not filter");
        let (a, b) = (taint("dedicated", Some("user2"), "NoSchedule"), taint("foo", Some("bar"), "NoSchedule"));
        let both = c(vec![tol("dedicated", "Equal", "user2", "NoSchedule"), tol("foo", "Exists", "", "NoSchedule")]);
        assert_eq!(both.untolerated(&[&a, &b]), None, "multiple tolerations, all taints tolerated");
        let sla = taint("sla", Some("950"), "NoSchedule");
        let mixed = c(vec![tol("dedicated", "Equal", "user1", "NoSchedule"), tol("sla", "Gt", "750", "NoSchedule")]);
        assert_eq!(mixed.untolerated(&[&dedicated]), None, "mixed: only Equal is honored");
        assert_eq!(mixed.untolerated(&[&dedicated, &sla]), Some(&sla), "a Gt toleration needed but filtered out");
        assert_eq!(c(vec![]).untolerated(&[]), None, "empty tolerations tolerate empty taints");
    }

    /// daemon_controller_test.go: a daemon pod tolerates the node-condition and cordon taints.
    #[test]
    fn daemon_pods_tolerate_what_the_daemonset_controller_adds() {
        let daemon = Constraints { tolerations: daemon_tolerations(false), ..Default::default() };
        let pressure = taint("node.kubernetes.io/memory-pressure", None, "NoSchedule");
        let cordon = taint("node.kubernetes.io/unschedulable", None, "NoSchedule");
        assert_eq!(daemon.untolerated(&[&pressure, &cordon]), None);
        let network = taint("node.kubernetes.io/network-unavailable", None, "NoSchedule");
        assert_eq!(daemon.untolerated(&[&network]), Some(&network));
        let host = Constraints { tolerations: daemon_tolerations(true), ..Default::default() };
        assert_eq!(host.untolerated(&[&network]), None);
        assert!(!Constraints::default().fit(&NodeFacts { name: "n", labels: &labels(&[]), taints: &[&cordon] }));
    }
}
