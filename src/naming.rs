//! Deterministic, valid names the run makes: puller names (DNS-1123 labels, at most 63 characters),
//! label values, and the container-name scheme of a puller pod (built here and read back here).
//! Whenever a value has to be changed to fit (lowercased, characters replaced, truncated), a short
//! hash of the original is appended so that two different inputs never map to the same output.

use sha2::{Digest, Sha256};

use crate::grammar::{MAX_LABEL_LEN as MAX_NAME_LEN, is_label_value};
use crate::images::{ImageMask, all_images};

const HASH_LEN: usize = 10;
/// The quayctl strategy's one container; it pulls every image.
pub const QUAYCTL_CONTAINER: &str = "puller";
/// The kubelet strategy's init container that copies the no-op from the helper image.
pub const INSTALL_CONTAINER: &str = "install-noop";

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

/// The name of the puller (a Job, or a pod) for one node in one run: `prepull-<run>-<node>`.
pub fn puller_name(run_id: &str, node: &str) -> String {
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

/// The container name (DNS-1123 label) of the `index`-th image's puller: `pull-<index>-<short name>`.
pub fn container_name(index: usize, short: &str) -> String {
    let original = format!("pull-{index}-{short}");
    let body = to_dns_chars(&original);
    let body = body.trim_matches('-');
    let cut: String = body.chars().take(MAX_NAME_LEN).collect();
    cut.trim_end_matches('-').to_string()
}

/// Which images of the run a puller container pulls, read back from its name: `pull-<i>-…` is image
/// i ([`container_name`]); the quayctl `puller` pulls all of them; the helper's init container none.
/// The mask is over `set`, the node's images as the run numbers them (bit p: image `set[p]`).
pub fn images_of_container(name: &str, set: &[u32]) -> ImageMask {
    if name == QUAYCTL_CONTAINER {
        return all_images(set.len());
    }
    name.strip_prefix("pull-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|i| i.parse::<u32>().ok())
        .and_then(|i| set.iter().position(|&id| id == i))
        .map_or(0, |p| 1 << p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::is_dns_label;

    #[test]
    fn short_names_are_kept_readable() {
        assert_eq!(puller_name("20261122-0214", "worker-1"), "prepull-20261122-0214-worker-1");
        assert_eq!(label_value("worker-1"), "worker-1");
        assert_eq!(label_value("ip-10-0-0-1.ec2.internal"), "ip-10-0-0-1.ec2.internal");
    }

    #[test]
    fn changed_names_get_a_hash() {
        let name = puller_name("run", "ip-10-0-0-1.ec2.internal");
        assert_eq!(
            name,
            format!("prepull-run-ip-10-0-0-1-ec2-internal-{}", short_hash("prepull-run-ip-10-0-0-1.ec2.internal"))
        );
        assert!(is_dns_label(&name));
        // `a.b` and `a-b` would collide without the hash.
        assert_ne!(puller_name("run", "a.b"), puller_name("run", "a-b"));
        assert_ne!(puller_name("Run", "a"), puller_name("run", "a"));
    }

    #[test]
    fn long_names_are_truncated_with_a_hash_and_stay_distinct() {
        let long = "gke-production-ml-pool-a100-highmem-96-7f3c9d2e-node-0001.us-central1-a.c.project.internal";
        let a = puller_name("quayctl-controller-29384756", long);
        let b = puller_name("quayctl-controller-29384756", &long.replace("0001", "0002"));
        for name in [&a, &b] {
            assert!(is_dns_label(name), "{name}");
            assert_eq!(name.len(), 63, "{name}");
        }
        assert_ne!(a, b);
        assert_eq!(a, puller_name("quayctl-controller-29384756", long), "deterministic");
        let node_label = label_value(&format!("{long}{long}"));
        assert!(node_label.len() <= 63 && is_dns_label(&node_label), "{node_label}");
    }

    #[test]
    fn odd_inputs_still_give_valid_names() {
        for (run, node) in [("r", "-"), ("R_U_N", "__"), ("r", &"x".repeat(300)), ("r", "ÄÖÜ"), ("1", "2")] {
            let name = puller_name(run, node);
            assert!(is_dns_label(&name), "{run}/{node}: {name}");
        }
        for value in ["-", "_a_", "ÄÖÜ", &"y".repeat(64)] {
            let label = label_value(value);
            assert!(is_dns_label(&label), "{value}: {label}");
        }
    }

    #[test]
    fn container_names_are_built_and_read_back() {
        assert_eq!(container_name(0, "nginx"), "pull-0-nginx");
        assert_eq!(container_name(3, "my_image.v2"), "pull-3-my-image-v2");
        let long = container_name(12, &"z".repeat(80));
        assert!(is_dns_label(&long) && long.len() == 63, "{long}");
        let set: Vec<u32> = (0..13).collect();
        assert_eq!(images_of_container(&container_name(0, "nginx"), &set[..2]), 0b01);
        assert_eq!(images_of_container(&container_name(1, "model"), &set[..2]), 0b10);
        assert_eq!(images_of_container(&long, &set), 1 << 12);
        assert_eq!(images_of_container("pull-7-x", &set[..2]), 0, "not in the node's set");
        assert_eq!(images_of_container(QUAYCTL_CONTAINER, &set[..3]), 0b111);
        assert_eq!(images_of_container(INSTALL_CONTAINER, &set[..3]), 0);
        // A node whose set is images 4, 9 and 2 of the run (IMAGES_FROM): places in its set.
        assert_eq!(images_of_container(&container_name(9, "model"), &[4, 9, 2]), 0b010);
        assert_eq!(images_of_container(&container_name(2, "web"), &[4, 9, 2]), 0b100);
    }
}
