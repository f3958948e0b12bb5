//! Taints, for nodes and pullers:
//! - `TOLERATIONS`: the taints puller pods may accept, in kubectl's taint syntax; one matcher decides
//!   eligibility ([`match_taints`]);
//! - each puller tolerates exactly its node's blocking taints as they were when the run decided
//!   (never a blanket `Exists`, which would also tolerate `unschedulable` or `unreachable` taints that
//!   appear later): a run-wide [`TaintTable`] holds them once, nodes keep indices;
//! - `STARTUP_TAINT` ([`StartupTaint`]): the taint new nodes carry until their images are there; a
//!   node carrying it is eligible whatever `TOLERATIONS` says, and the run removes it with
//!   [`removal_patch`] once every image is on the node.

use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation};
use k8s_openapi::api::core::v1::{Taint, Toleration as K8sToleration};

use crate::grammar::{is_label_key, is_label_value};

/// One accepted taint pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration {
    /// `None` = every key (`*`).
    pub key: Option<String>,
    /// `None` = any value (operator `Exists`); `Some` = operator `Equal`.
    pub value: Option<String>,
    /// `None` = every effect.
    pub effect: Option<String>,
}

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Parse `key=value:Effect,key:Effect,key,key=value,*` (comma-separated, whitespace ignored).
pub fn parse_tolerations(text: &str) -> Result<Vec<Toleration>, String> {
    text.split(',').map(str::trim).map(parse_one).collect()
}

fn parse_one(entry: &str) -> Result<Toleration, String> {
    if entry.is_empty() {
        return Err("empty entry (two `,` in a row?)".into());
    }
    if entry == "*" {
        return Ok(Toleration { key: None, value: None, effect: None });
    }
    let (rest, effect) = match entry.rsplit_once(':') {
        Some((rest, effect)) if EFFECTS.contains(&effect) => (rest, Some(effect.to_string())),
        Some((_, effect)) => {
            return Err(format!("`{entry}`: unknown effect `{effect}` (NoSchedule, PreferNoSchedule or NoExecute)"));
        }
        None => (entry, None),
    };
    let (key, value) = match rest.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (rest, None),
    };
    if !is_label_key(key) {
        return Err(format!("`{entry}`: `{key}` is not a valid taint key"));
    }
    if let Some(v) = value.as_deref().filter(|v| !v.is_empty() && !is_label_value(v)) {
        return Err(format!("`{entry}`: `{v}` is not a valid taint value"));
    }
    Ok(Toleration { key: Some(key.to_string()), value, effect })
}

impl Toleration {
    /// Kubernetes' rule (`Toleration.ToleratesTaint`): same effect or any, same key or any, and for
    /// `Equal` the same value.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        self.effect.as_deref().is_none_or(|e| e == taint.effect)
            && self.key.as_deref().is_none_or(|k| k == taint.key)
            && self.value.as_deref().is_none_or(|v| Some(v) == taint.value.as_deref().or(Some("")))
    }

    /// The pod-spec form.
    pub fn to_k8s(&self) -> K8sToleration {
        K8sToleration {
            key: self.key.clone(),
            operator: Some(if self.value.is_some() { "Equal" } else { "Exists" }.into()),
            value: self.value.clone(),
            effect: self.effect.clone(),
            toleration_seconds: None,
        }
    }
}

/// Taints that keep a pod off a node unless tolerated.
pub fn is_blocking(taint: &Taint) -> bool {
    taint.effect == "NoSchedule" || taint.effect == "NoExecute"
}

/// The startup taint: `key`, `key=value` or `key=value:Effect` (a value or effect left out matches
/// any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupTaint {
    pub key: String,
    pub value: Option<String>,
    pub effect: Option<String>,
}

impl StartupTaint {
    pub fn parse(text: &str) -> Result<StartupTaint, String> {
        let text = text.trim();
        if text.contains(',') {
            return Err("one taint only: `key`, `key=value` or `key=value:Effect`".into());
        }
        if text == "*" {
            return Err("a taint key is needed, not `*`".into());
        }
        let Toleration { key, value, effect } = parse_one(text)?;
        Ok(StartupTaint { key: key.expect("parse_one gives a key unless `*`"), value, effect })
    }

    /// Does this node taint match (same key; same value and effect where given)?
    pub fn matches(&self, taint: &Taint) -> bool {
        self.key == taint.key
            && self.value.as_deref().is_none_or(|v| v == taint.value.as_deref().unwrap_or_default())
            && self.effect.as_deref().is_none_or(|e| e == taint.effect)
    }
}

/// `key=value:Effect` with what is given, as `TOLERATIONS` and `STARTUP_TAINT` write it.
fn write_pattern(
    f: &mut std::fmt::Formatter<'_>,
    key: Option<&str>,
    value: Option<&str>,
    effect: Option<&str>,
) -> std::fmt::Result {
    write!(f, "{}", key.unwrap_or("*"))?;
    if let Some(value) = value {
        write!(f, "={value}")?;
    }
    if let Some(effect) = effect {
        write!(f, ":{effect}")?;
    }
    Ok(())
}

impl std::fmt::Display for StartupTaint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_pattern(f, Some(&self.key), self.value.as_deref(), self.effect.as_deref())
    }
}

impl std::fmt::Display for Toleration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_pattern(f, self.key.as_deref(), self.value.as_deref(), self.effect.as_deref())
    }
}

/// Both are reported as they are written in the configuration.
impl serde::Serialize for StartupTaint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl serde::Serialize for Toleration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// For a node's taints: `Ok(blocking)`, every `NoSchedule`/`NoExecute` taint of the node (each one is
/// tolerated, by `TOLERATIONS` or as the startup taint), or `Err(taint)`, the first one nothing
/// tolerates.
pub fn match_taints<'t>(
    taints: &'t [Taint],
    tolerations: &[Toleration],
    startup: Option<&StartupTaint>,
) -> Result<Vec<&'t Taint>, &'t Taint> {
    let mut blocking = Vec::new();
    for taint in taints.iter().filter(|t| is_blocking(t)) {
        if !startup.is_some_and(|s| s.matches(taint)) && !tolerations.iter().any(|t| t.tolerates(taint)) {
            return Err(taint);
        }
        blocking.push(taint);
    }
    Ok(blocking)
}

/// The distinct blocking taints of a run's eligible nodes, each once; a node keeps their indices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaintTable {
    taints: Vec<Taint>,
}

impl TaintTable {
    /// The index of `taint` (key, value, effect; not when it was added), added if new.
    pub fn intern(&mut self, taint: &Taint) -> u16 {
        let same = |t: &Taint| t.key == taint.key && t.value == taint.value && t.effect == taint.effect;
        if let Some(i) = self.taints.iter().position(same) {
            return i as u16;
        }
        self.taints.push(Taint { time_added: None, ..taint.clone() });
        (self.taints.len() - 1) as u16
    }

    /// Exactly one toleration per taint of `set`: same key, `Equal` to its value (empty when it has
    /// none), same effect.
    pub fn tolerations(&self, set: &[u16]) -> Vec<K8sToleration> {
        set.iter()
            .filter_map(|&i| self.taints.get(i as usize))
            .map(|t| K8sToleration {
                key: Some(t.key.clone()),
                operator: Some("Equal".into()),
                value: Some(t.value.clone().unwrap_or_default()),
                effect: Some(t.effect.clone()),
                toleration_seconds: None,
            })
            .collect()
    }
}

/// The patch that removes the startup taint from a node whose taints are `current`: a `test` of the
/// whole list as it was read (a concurrent change to any taint fails it, so nothing is clobbered;
/// the caller reads again and retries), then the list without the startup taint. `None` when no taint
/// of the node matches.
pub fn removal_patch(current: &[Taint], startup: &StartupTaint) -> Option<Patch> {
    if !current.iter().any(|t| startup.matches(t)) {
        return None;
    }
    let path = PointerBuf::parse("/spec/taints").expect("a valid JSON pointer");
    let kept: Vec<&Taint> = current.iter().filter(|t| !startup.matches(t)).collect();
    let test = PatchOperation::Test(TestOperation {
        path: path.clone(),
        value: serde_json::to_value(current).expect("taints serialize"),
    });
    let change = if kept.is_empty() {
        PatchOperation::Remove(RemoveOperation { path })
    } else {
        PatchOperation::Replace(ReplaceOperation {
            path,
            value: serde_json::to_value(&kept).expect("taints serialize"),
        })
    };
    Some(Patch(vec![test, change]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint { key: key.into(), value: value.map(Into::into), effect: effect.into(), time_added: None }
    }

    #[test]
    fn parses_kubectl_syntax() {
        let t = parse_tolerations("nvidia.com/gpu=present:NoSchedule, dedicated:NoExecute,spot, pool=ml ,*").unwrap();
        assert_eq!(
            t[0],
            Toleration {
                key: Some("nvidia.com/gpu".into()),
                value: Some("present".into()),
                effect: Some("NoSchedule".into())
            }
        );
        assert_eq!(t[1], Toleration { key: Some("dedicated".into()), value: None, effect: Some("NoExecute".into()) });
        assert_eq!(t[2], Toleration { key: Some("spot".into()), value: None, effect: None });
        assert_eq!(t[3], Toleration { key: Some("pool".into()), value: Some("ml".into()), effect: None });
        assert_eq!(t[4], Toleration { key: None, value: None, effect: None });
    }

    #[test]
    fn rejects_bad_entries() {
        for (text, needle) in [
            ("a:NoSchedul", "unknown effect"),
            ("a,,b", "empty entry"),
            ("-bad-:NoSchedule", "not a valid taint key"),
            ("a=b c:NoSchedule", "not a valid taint value"),
            ("=v", "not a valid taint key"),
        ] {
            let e = parse_tolerations(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn matching_follows_kubernetes() {
        let gpu = taint("nvidia.com/gpu", Some("present"), "NoSchedule");
        let t = parse_tolerations("nvidia.com/gpu=present:NoSchedule").unwrap();
        assert!(t[0].tolerates(&gpu));
        assert!(!t[0].tolerates(&taint("nvidia.com/gpu", Some("absent"), "NoSchedule")), "Equal compares values");
        assert!(!t[0].tolerates(&taint("nvidia.com/gpu", Some("present"), "NoExecute")), "other effect");
        let any_effect = parse_tolerations("nvidia.com/gpu").unwrap();
        assert!(any_effect[0].tolerates(&taint("nvidia.com/gpu", Some("x"), "NoExecute")));
        let everything = parse_tolerations("*").unwrap();
        assert!(everything[0].tolerates(&taint("anything", None, "NoExecute")));
        let empty_value = parse_tolerations("k=:NoSchedule").unwrap();
        assert!(empty_value[0].tolerates(&taint("k", None, "NoSchedule")), "empty value equals no value");
    }

    #[test]
    fn a_node_needs_every_blocking_taint_tolerated_and_its_puller_tolerates_exactly_those() {
        let tolerations = parse_tolerations("gpu:NoSchedule,spot:NoExecute,other:NoSchedule").unwrap();
        let taints = [
            taint("gpu", None, "NoSchedule"),
            taint("spot", Some("true"), "NoExecute"),
            taint("soft", None, "PreferNoSchedule"),
        ];
        let blocking = match_taints(&taints, &tolerations, None).unwrap();
        assert_eq!(blocking, [&taints[0], &taints[1]], "PreferNoSchedule does not block and needs nothing");
        let blocked = [taint("gpu", None, "NoSchedule"), taint("infra", None, "NoExecute")];
        assert_eq!(match_taints(&blocked, &tolerations, None).unwrap_err().key, "infra");
        assert_eq!(match_taints(&[], &tolerations, None), Ok(vec![]));

        // `*` matches every taint, but the puller still tolerates exactly the node's own taints.
        let everything = parse_tolerations("*").unwrap();
        let mut table = TaintTable::default();
        let set: Vec<u16> =
            match_taints(&taints, &everything, None).unwrap().into_iter().map(|t| table.intern(t)).collect();
        let again = table.intern(&taint("gpu", None, "NoSchedule"));
        assert_eq!((set.as_slice(), again), (&[0u16, 1][..], 0), "interned once");
        let k8s = table.tolerations(&set);
        assert_eq!(
            serde_json::to_value(&k8s).unwrap(),
            serde_json::json!([
                {"key": "gpu", "operator": "Equal", "value": "", "effect": "NoSchedule"},
                {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute"}
            ])
        );
    }

    #[test]
    fn the_startup_taint_is_parsed_matched_and_makes_a_node_eligible() {
        let key = "startup-taint.cluster-autoscaler.kubernetes.io/quayctl-images";
        let plain = StartupTaint::parse(key).unwrap();
        assert_eq!((plain.value.as_deref(), plain.effect.as_deref()), (None, None));
        let full = StartupTaint::parse(&format!(" {key}=pending:NoSchedule ")).unwrap();
        assert_eq!(full.to_string(), format!("{key}=pending:NoSchedule"));
        for bad in ["", "*", "a,b", "a:Sometimes", "bad key"] {
            assert!(StartupTaint::parse(bad).is_err(), "{bad:?}");
        }
        let on_node = taint(key, Some("pending"), "NoSchedule");
        assert!(plain.matches(&on_node) && full.matches(&on_node));
        assert!(!full.matches(&taint(key, Some("other"), "NoSchedule")), "the value, where given");
        assert!(!full.matches(&taint(key, Some("pending"), "NoExecute")), "the effect, where given");
        assert!(!plain.matches(&taint("other", None, "NoSchedule")));
        let node = [on_node.clone(), taint("gpu", None, "NoSchedule")];
        let gpu = parse_tolerations("gpu").unwrap();
        assert_eq!(
            match_taints(&node, &[], Some(&plain)).unwrap_err().key,
            "gpu",
            "other taints still need TOLERATIONS"
        );
        assert_eq!(match_taints(&node, &gpu, Some(&plain)).unwrap().len(), 2, "the startup taint needs none");
        assert_eq!(match_taints(&node, &gpu, None).unwrap_err().key, key, "without STARTUP_TAINT it blocks");
    }

    #[test]
    fn the_removal_patch_tests_the_list_it_read_and_removes_only_the_startup_taint() {
        let startup = StartupTaint::parse("images-pending").unwrap();
        let mine = taint("images-pending", None, "NoSchedule");
        let other = taint("dedicated", Some("ml"), "NoSchedule");
        let patch = removal_patch(&[other.clone(), mine.clone()], &startup).unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!([
                {"op": "test", "path": "/spec/taints", "value": [
                    {"key": "dedicated", "value": "ml", "effect": "NoSchedule"},
                    {"key": "images-pending", "effect": "NoSchedule"}]},
                {"op": "replace", "path": "/spec/taints", "value": [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]}
            ])
        );
        let alone = removal_patch(std::slice::from_ref(&mine), &startup).unwrap();
        assert_eq!(
            serde_json::to_value(&alone).unwrap()[1],
            serde_json::json!({"op": "remove", "path": "/spec/taints"})
        );
        assert_eq!(removal_patch(&[other], &startup), None, "nothing to remove: no patch");
        assert_eq!(removal_patch(&[], &startup), None);
    }
}
