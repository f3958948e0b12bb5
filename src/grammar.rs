//! The Kubernetes grammars the run checks locally, so that bad input is a configuration error (exit 2)
//! before any request, and names the run makes are valid: DNS-1123 labels and subdomains, label keys
//! and values (taint keys share the label-key grammar), resource quantities and label selectors.
//! [`crate::naming`] builds names that satisfy them.

/// The longest DNS-1123 label and label value.
pub const MAX_LABEL_LEN: usize = 63;

/// A DNS-1123 label: namespaces, Job and container names.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: object names such as node and pod names.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A non-empty Kubernetes label value.
pub fn is_label_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A label key, `[prefix/]name` with a DNS subdomain prefix; taint keys follow the same grammar.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(|p| !p.is_empty() && is_dns_subdomain(p)) && is_label_value(name)
}

/// The apiserver's quantity grammar: a non-negative decimal number and an optional suffix
/// (binary `Ki`..`Ei`, decimal `n u m k M G T P E`, or an exponent `e3`/`E-2`).
pub fn is_quantity(s: &str) -> bool {
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let digits = number.replace('.', "");
    if digits.is_empty() || number.matches('.').count() > 1 {
        return false;
    }
    const SUFFIXES: [&str; 16] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"];
    if SUFFIXES.contains(&suffix) {
        return true;
    }
    let exponent = suffix.strip_prefix(['e', 'E']).map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    exponent.is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()))
}

/// Check a label selector string (`a=b,c!=d,e in (f,g),!h`) the way the apiserver parses it.
pub fn validate_label_selector(selector: &str) -> Result<(), String> {
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut requirements = Vec::new();
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced `)`")?,
            ',' if depth == 0 => {
                requirements.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced `(`".into());
    }
    requirements.push(&selector[start..]);
    for requirement in requirements {
        validate_requirement(requirement.trim())
            .map_err(|problem| format!("requirement `{}`: {problem}", requirement.trim()))?;
    }
    Ok(())
}

fn validate_requirement(req: &str) -> Result<(), String> {
    if req.is_empty() {
        return Err("empty requirement".into());
    }
    let key_ok = |key: &str| {
        if is_label_key(key.trim()) { Ok(()) } else { Err(format!("invalid label key `{}`", key.trim())) }
    };
    let value_ok = |value: &str| {
        let value = value.trim();
        if value.is_empty() || is_label_value(value) { Ok(()) } else { Err(format!("invalid label value `{value}`")) }
    };
    if let Some(key) = req.strip_prefix('!') {
        return key_ok(key);
    }
    for op in ["!=", "==", "="] {
        if let Some((key, value)) = req.split_once(op) {
            key_ok(key)?;
            return value_ok(value);
        }
    }
    for op in [" notin ", " in "] {
        if let Some((key, values)) = req.split_once(op) {
            key_ok(key)?;
            let values = values.trim();
            let inner = values
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("expected a `(value, ...)` list after `{}`", op.trim()))?;
            return inner.split(',').try_for_each(value_ok);
        }
    }
    key_ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_keys() {
        assert!(is_dns_label("prepull-r1-n1") && !is_dns_label("-a") && !is_dns_label("A") && !is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("ip-10-0-0-1.ec2.internal") && !is_dns_subdomain("a..b"));
        assert!(is_label_value("a.b_c-d") && !is_label_value("_a") && !is_label_value(""));
        assert!(is_label_key("nvidia.com/gpu") && is_label_key("gpu") && !is_label_key("/gpu") && !is_label_key("a/"));
        assert!(!is_label_key("Bad Key") && !is_label_key("-bad-"));
    }

    #[test]
    fn quantities() {
        for good in ["1", "100m", "64Mi", "1.5", "2e3", "1E-2", "0.5Gi", ".5"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "m", "1.2.3", "-1", "64MB", "1e", "1x"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn label_selectors() {
        for good in [
            "a=b",
            "a==b",
            "a!=b",
            "a",
            "!a",
            "a in (b, c)",
            "a notin (b)",
            "example.com/a=b,c",
            "a=",
            "x in (a,b),y=z",
        ] {
            assert_eq!(validate_label_selector(good), Ok(()), "{good}");
        }
        for bad in ["", "a=b,", "=b", "a=b c", "a in b", "a in (b", "a)", "-a=b", "a=-b", "Ex ample=b"] {
            assert!(validate_label_selector(bad).is_err(), "{bad}");
        }
    }
}
