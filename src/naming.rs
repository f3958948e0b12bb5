//! Deterministic, valid names: Job names (DNS-1123 labels, at most 63 characters) and label values.
//! Whenever a value has to be changed to fit (lowercased, characters replaced, truncated), a short
//! hash of the original is appended so that two different inputs never map to the same output.

use sha2::{Digest, Sha256};

pub const MAX_NAME_LEN: usize = 63;
const HASH_LEN: usize = 10;

/// A DNS-1123 label: namespaces, Job and container names.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
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
        && s.len() <= MAX_NAME_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// First `HASH_LEN` hex digits of the SHA-256 of `input`.
pub fn short_hash(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let mut hex = String::with_capacity(HASH_LEN);
    for byte in digest.iter().take(HASH_LEN / 2) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Lowercase, map every character outside `[a-z0-9-]` to `-`, squeeze repeated dashes.
fn to_dns_chars(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// `<body>` if it fits and is unchanged, else `<truncated body>-<hash of original>`; always a valid
/// DNS-1123 label of at most `max` characters (which must leave room for the hash).
fn fit(original: &str, body: String, max: usize) -> String {
    let trimmed = body.trim_matches('-');
    if trimmed == original && !trimmed.is_empty() && trimmed.len() <= max {
        return trimmed.to_string();
    }
    let room = max - HASH_LEN - 1;
    let head: String = trimmed.chars().take(room).collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() { short_hash(original) } else { format!("{head}-{}", short_hash(original)) }
}

/// The name of the puller Job for one node in one run: `prepull-<run>-<node>`.
pub fn job_name(run_id: &str, node: &str) -> String {
    let original = format!("prepull-{run_id}-{node}");
    fit(&original, to_dns_chars(&original), MAX_NAME_LEN)
}

/// A label value standing for `value` (node names may be DNS subdomains up to 253 characters).
pub fn label_value(value: &str) -> String {
    if is_label_value(value) {
        return value.to_string();
    }
    fit(value, to_dns_chars(value), MAX_NAME_LEN)
}

/// A container name (DNS-1123 label) for the `index`-th image.
pub fn container_name(index: usize, short: &str) -> String {
    let original = format!("pull-{index}-{short}");
    let body = to_dns_chars(&original);
    let body = body.trim_matches('-');
    let cut: String = body.chars().take(MAX_NAME_LEN).collect();
    cut.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_readable() {
        assert_eq!(job_name("20261122-0214", "worker-1"), "prepull-20261122-0214-worker-1");
        assert_eq!(label_value("worker-1"), "worker-1");
        assert_eq!(label_value("ip-10-0-0-1.ec2.internal"), "ip-10-0-0-1.ec2.internal");
    }

    #[test]
    fn changed_names_get_a_hash() {
        let name = job_name("run", "ip-10-0-0-1.ec2.internal");
        assert_eq!(
            name,
            format!("prepull-run-ip-10-0-0-1-ec2-internal-{}", short_hash("prepull-run-ip-10-0-0-1.ec2.internal"))
        );
        assert!(is_dns_label(&name));
        // `a.b` and `a-b` would collide without the hash.
        assert_ne!(job_name("run", "a.b"), job_name("run", "a-b"));
        assert_ne!(job_name("Run", "a"), job_name("run", "a"));
    }

    #[test]
    fn long_names_are_truncated_with_a_hash_and_stay_distinct() {
        let long = "gke-production-ml-pool-a100-highmem-96-7f3c9d2e-node-0001.us-central1-a.c.project.internal";
        let a = job_name("quayctl-controller-29384756", long);
        let b = job_name("quayctl-controller-29384756", &long.replace("0001", "0002"));
        for name in [&a, &b] {
            assert!(is_dns_label(name), "{name}");
            assert_eq!(name.len(), 63, "{name}");
        }
        assert_ne!(a, b);
        assert_eq!(a, job_name("quayctl-controller-29384756", long), "deterministic");
        let node_label = label_value(&format!("{long}{long}"));
        assert!(node_label.len() <= 63 && is_dns_label(&node_label), "{node_label}");
    }

    #[test]
    fn odd_inputs_still_give_valid_names() {
        for (run, node) in [("r", "-"), ("R_U_N", "__"), ("r", &"x".repeat(300)), ("r", "ÄÖÜ"), ("1", "2")] {
            let name = job_name(run, node);
            assert!(is_dns_label(&name), "{run}/{node}: {name}");
        }
        for value in ["-", "_a_", "ÄÖÜ", &"y".repeat(64)] {
            let label = label_value(value);
            assert!(is_dns_label(&label), "{value}: {label}");
        }
    }

    #[test]
    fn container_names() {
        assert_eq!(container_name(0, "nginx"), "pull-0-nginx");
        assert_eq!(container_name(3, "my_image.v2"), "pull-3-my-image-v2");
        let long = container_name(12, &"z".repeat(80));
        assert!(is_dns_label(&long) && long.len() == 63, "{long}");
    }
}
