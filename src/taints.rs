//! `TOLERATIONS`: the taints puller pods may accept, in kubectl's taint syntax, and the one matcher
//! that both node eligibility and the pod spec use (so a node is eligible exactly when the
//! tolerations its Job carries let the scheduler place the pod there).

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

/// For a node's taints: `Ok(mask)` of the tolerations (bit i = `tolerations[i]`) that its Job must
/// carry — exactly those that match one of its blocking taints — or `Err(taint)`, the first blocking
/// taint nothing tolerates.
pub fn match_taints<'t>(taints: &'t [Taint], tolerations: &[Toleration]) -> Result<u32, &'t Taint> {
    let mut mask = 0u32;
    for taint in taints.iter().filter(|t| is_blocking(t)) {
        let matching =
            tolerations.iter().enumerate().filter(|(_, t)| t.tolerates(taint)).fold(0u32, |m, (i, _)| m | 1 << i);
        if matching == 0 {
            return Err(taint);
        }
        mask |= matching;
    }
    Ok(mask)
}

/// The tolerations selected by `mask` (see [`match_taints`]).
pub fn selected(tolerations: &[Toleration], mask: u32) -> Vec<K8sToleration> {
    tolerations.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| t.to_k8s()).collect()
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
    fn a_node_needs_every_blocking_taint_tolerated_and_gets_exactly_the_matching_tolerations() {
        let tolerations = parse_tolerations("gpu:NoSchedule,spot:NoExecute,other:NoSchedule").unwrap();
        let taints = [
            taint("gpu", None, "NoSchedule"),
            taint("spot", Some("true"), "NoExecute"),
            taint("soft", None, "PreferNoSchedule"),
        ];
        let mask = match_taints(&taints, &tolerations).unwrap();
        assert_eq!(mask, 0b011, "PreferNoSchedule does not block and needs nothing");
        let selected = selected(&tolerations, mask);
        assert_eq!(selected.len(), 2);
        assert_eq!(selected[0].operator.as_deref(), Some("Exists"));
        assert_eq!(selected[1].key.as_deref(), Some("spot"));
        let blocked = [taint("gpu", None, "NoSchedule"), taint("infra", None, "NoExecute")];
        assert_eq!(match_taints(&blocked, &tolerations).unwrap_err().key, "infra");
        assert_eq!(match_taints(&[], &tolerations), Ok(0));
    }
}
