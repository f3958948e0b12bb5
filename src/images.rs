//! The `QUAY_IMAGES` list: `;`-separated image references, parsed with the reference grammar of
//! the distribution spec and Docker (`crate::reference`), normalized and de-duplicated.

use crate::reference::Reference;

/// Images per puller, at most: more containers than this in one pod is not a pre-pull any more
/// (`QUAY_IMAGES` is refused above it; with `IMAGES_FROM` a node's set is cut at it); it also bounds
/// per-node state.
pub const MAX_IMAGES: usize = 64;

/// A set of a node's images: bit i set = the i-th image of its set (at most [`MAX_IMAGES`]).
pub type ImageMask = u64;

/// Every image of a run of `count` images.
pub fn all_images(count: usize) -> ImageMask {
    if count >= 64 { u64::MAX } else { (1u64 << count) - 1 }
}

/// One image to put on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The entry as the user wrote it (trimmed); this is what the Pod spec uses.
    pub given: String,
    /// Fully qualified form, e.g. `docker.io/library/nginx:latest`; used to drop duplicates.
    pub normalized: String,
    /// True when the reference is pinned by digest or names a tag other than `latest`.
    pub pinned: bool,
    /// The parsed reference `normalized` prints: registry, repository, tag, digest.
    pub reference: Reference,
}

/// `PULL_POLICY`: what the puller containers tell the kubelet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(into = "&'static str")]
pub enum PullPolicy {
    /// What the kubelet would default to: `Always` for `latest`/untagged, `IfNotPresent` otherwise.
    Auto,
    Always,
    IfNotPresent,
}

impl From<PullPolicy> for &'static str {
    fn from(policy: PullPolicy) -> Self {
        policy.name()
    }
}

impl PullPolicy {
    pub fn name(self) -> &'static str {
        match self {
            PullPolicy::Auto => "auto",
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
        }
    }
}

impl Image {
    pub fn parse(entry: &str) -> Result<Image, String> {
        let reference = Reference::parse(entry)?;
        let pinned = reference.digest.is_some() || reference.tag.as_deref().is_some_and(|t| t != "latest");
        Ok(Image { given: entry.to_string(), normalized: reference.to_string(), pinned, reference })
    }

    /// The `imagePullPolicy` of this image's puller container under `policy`. `auto` is what the
    /// kubelet would default to: `Always` for `latest` (so a moved tag is refreshed), `IfNotPresent`
    /// for anything pinned.
    pub fn pull_policy(&self, policy: PullPolicy) -> &'static str {
        match policy {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Auto if self.pinned => "IfNotPresent",
            PullPolicy::Auto => "Always",
        }
    }

    /// `SKIP_PRESENT`: does a node whose `status.images[].names` include `names` already hold this
    /// image, such that pulling again would change nothing? A digest reference matches its digest
    /// (`repo@sha256:...`); a tag counts only where the pull policy is `IfNotPresent`, i.e. never for
    /// `latest` nor with `PULL_POLICY=Always`. Names are compared after normalisation.
    pub fn present_in<'a>(&self, names: impl IntoIterator<Item = &'a str>, policy: PullPolicy) -> bool {
        if self.pull_policy(policy) != "IfNotPresent" {
            return false;
        }
        let mine = &self.reference;
        names.into_iter().any(|name| {
            let Ok(theirs) = Reference::parse(name) else { return false };
            match &mine.digest {
                // Same repository and digest, whatever tag the node lists it under.
                Some(_) => {
                    theirs.digest == mine.digest
                        && theirs.registry == mine.registry
                        && theirs.repository == mine.repository
                }
                None => theirs == *mine,
            }
        })
    }

    /// The last path segment of the repository (`docker.io/library/nginx:1` -> `nginx`).
    pub fn short_name(&self) -> &str {
        self.reference.repository.rsplit('/').next().unwrap_or_default()
    }
}

/// Parsed list plus the entries dropped as duplicates (for a warning).
#[derive(Debug, PartialEq, Eq)]
pub struct ImageList {
    pub images: Vec<Image>,
    pub duplicates: Vec<String>,
}

/// Parse `QUAY_IMAGES`. Surrounding whitespace and one trailing `;` are tolerated; an empty entry
/// elsewhere is an error, and so is an entry that is not an image reference.
pub fn parse_image_list(raw: &str) -> Result<ImageList, String> {
    let trimmed = raw.trim();
    let body = trimmed.strip_suffix(';').unwrap_or(trimmed);
    if body.trim().is_empty() {
        return Err("no image given; expected `;`-separated image references".into());
    }
    let mut images: Vec<Image> = Vec::new();
    let mut duplicates = Vec::new();
    for (index, entry) in body.split(';').enumerate() {
        let entry = entry.trim();
        let position = index + 1;
        if entry.is_empty() {
            return Err(format!("entry {position} is empty (two `;` in a row?)"));
        }
        let image = Image::parse(entry)
            .map_err(|e| format!("entry {position} `{entry}` is not a valid image reference: {e}"))?;
        if images.iter().any(|seen| seen.normalized == image.normalized) {
            duplicates.push(entry.to_string());
        } else {
            images.push(image);
        }
    }
    Ok(ImageList { images, duplicates })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(list: &ImageList) -> Vec<&str> {
        list.images.iter().map(|i| i.given.as_str()).collect()
    }

    #[test]
    fn present_images_match_by_name_or_digest_but_never_for_moving_tags() {
        let image = |s: &str| Image::parse(s).unwrap();
        let names = [
            "docker.io/library/nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "docker.io/library/nginx:1.27",
            "docker.io/library/redis:latest",
            "quay.io/org/model:v3",
        ];
        let auto = PullPolicy::Auto;
        assert!(image("nginx:1.27").present_in(names, auto), "normalised tag");
        assert!(image("quay.io/org/model:v3").present_in(names, auto));
        assert!(!image("quay.io/org/model:v4").present_in(names, auto));
        assert!(!image("nginx:1.27").present_in(names, PullPolicy::Always), "Always re-pulls");
        assert!(!image("redis").present_in(names, auto), "latest may have moved");
        assert!(image("redis").present_in(names, PullPolicy::IfNotPresent), "IfNotPresent trusts the tag");
        let by_digest = "nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(image(by_digest).present_in(names, auto), "digest");
        let tag_and_digest = "nginx:1.25@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(image(tag_and_digest).present_in(names, auto), "the digest decides, not the tag");
        let other = "nginx@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        assert!(!image(other).present_in(names, auto));
        let elsewhere = "ghcr.io/x/nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert!(!image(elsewhere).present_in(names, auto), "same digest in another repository");
        assert!(!image("nginx:1.27").present_in(["not a reference!"], auto));
    }

    #[test]
    fn pull_policies() {
        let latest = Image::parse("nginx").unwrap();
        let pinned = Image::parse("nginx:1.27").unwrap();
        assert_eq!(latest.pull_policy(PullPolicy::Auto), "Always");
        assert_eq!(pinned.pull_policy(PullPolicy::Auto), "IfNotPresent");
        assert_eq!(latest.pull_policy(PullPolicy::IfNotPresent), "IfNotPresent");
        assert_eq!(pinned.pull_policy(PullPolicy::Always), "Always");
    }

    #[test]
    fn parses_and_normalizes() {
        let list = parse_image_list(" nginx ; quay.io/coreos/etcd:v3.5.0 ;").unwrap();
        assert_eq!(given(&list), ["nginx", "quay.io/coreos/etcd:v3.5.0"]);
        assert_eq!(list.images[0].normalized, "docker.io/library/nginx:latest");
        assert_eq!(list.images[1].normalized, "quay.io/coreos/etcd:v3.5.0");
        assert!(list.duplicates.is_empty());
    }

    #[test]
    fn drops_duplicates_after_normalization() {
        let list = parse_image_list("nginx;docker.io/library/nginx:latest;library/nginx;redis").unwrap();
        assert_eq!(given(&list), ["nginx", "redis"]);
        assert_eq!(list.duplicates, ["docker.io/library/nginx:latest", "library/nginx"]);
    }

    #[test]
    fn rejects_empty_lists_and_entries() {
        for raw in ["", "   ", ";", " ; "] {
            assert!(parse_image_list(raw).unwrap_err().contains("no image"), "{raw:?}");
        }
        assert_eq!(parse_image_list("a;;b").unwrap_err(), "entry 2 is empty (two `;` in a row?)");
        assert!(parse_image_list(";a").unwrap_err().contains("entry 1 is empty"));
        assert!(parse_image_list("a;;").unwrap_err().contains("entry 2 is empty"));
    }

    #[test]
    fn rejects_invalid_references() {
        for bad in ["Nginx", "nginx:", "nginx@sha256:abc", "foo bar", "nginx:tag:tag", "-nginx"] {
            let err = parse_image_list(&format!("redis;{bad}")).unwrap_err();
            assert!(err.starts_with(&format!("entry 2 `{bad}` is not a valid image reference")), "{err}");
        }
    }

    #[test]
    fn pull_policy_follows_the_kubelet_default() {
        let digest = format!("nginx@sha256:{}", "a".repeat(64));
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            (&digest, "IfNotPresent"),
        ];
        for (entry, policy) in cases {
            assert_eq!(Image::parse(entry).unwrap().pull_policy(PullPolicy::Auto), policy, "{entry}");
        }
    }

    #[test]
    fn short_name_is_the_last_repository_segment() {
        let digest = format!("registry.example.com:5000/ml/pytorch@sha256:{}", "b".repeat(64));
        assert_eq!(Image::parse("nginx").unwrap().short_name(), "nginx");
        assert_eq!(Image::parse(&digest).unwrap().short_name(), "pytorch");
        assert_eq!(Image::parse("localhost:5000/a/b:1").unwrap().short_name(), "b");
    }
}
