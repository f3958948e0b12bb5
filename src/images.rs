//! The `QUAY_IMAGES` list: `;`-separated OCI image references, parsed with `oci-spec`'s reference
//! grammar (the one the distribution spec and Docker use), normalized and de-duplicated.

use oci_spec::distribution::Reference;

/// One image to put on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The entry as the user wrote it (trimmed); this is what the Pod spec uses.
    pub given: String,
    /// Fully qualified form, e.g. `docker.io/library/nginx:latest`; used to drop duplicates.
    pub normalized: String,
    /// True when the reference is pinned by digest or names a tag other than `latest`.
    pub pinned: bool,
}

impl Image {
    pub fn parse(entry: &str) -> Result<Image, String> {
        let reference = Reference::try_from(entry).map_err(|e| e.to_string())?;
        let pinned = reference.digest().is_some() || reference.tag().is_some_and(|t| t != "latest");
        Ok(Image { given: entry.to_string(), normalized: reference.whole(), pinned })
    }

    /// The pull policy the kubelet would default to for this reference: `Always` for `latest`
    /// (so a moved tag is refreshed), `IfNotPresent` for anything pinned.
    pub fn pull_policy(&self) -> &'static str {
        if self.pinned { "IfNotPresent" } else { "Always" }
    }

    /// The last path segment of the repository (`docker.io/library/nginx:1` -> `nginx`).
    pub fn short_name(&self) -> &str {
        let without_digest = self.normalized.split('@').next().unwrap_or_default();
        let last = without_digest.rsplit('/').next().unwrap_or_default();
        last.split(':').next().unwrap_or_default()
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
            assert_eq!(Image::parse(entry).unwrap().pull_policy(), policy, "{entry}");
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
