//! Image references: the grammar of distribution's `reference` package (what Docker, containerd and
//! the kubelet accept) and Docker's normalisation (`nginx` -> `docker.io/library/nginx:latest`).
//!
//! Hand-written rather than one big regular expression: the grammar is ASCII (Go's `\w` is
//! `[0-9A-Za-z_]`), and a Unicode-aware regex of it (`oci-spec`'s, used before) compiles to an
//! automaton that held 16.7 of the 20.6 MiB peak heap of a 5,000-node run (`make heap`).
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component { "/" path-component }
//! domain     := domain-component { "." domain-component } [ ":" port ]
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component   := [a-z0-9]+ { separator [a-z0-9]+ },  separator := "." | "_" | "__" | "-"+
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" hex,  algorithm := [A-Za-z][A-Za-z0-9]* { [-_+.] [A-Za-z][A-Za-z0-9]* }
//! ```

use std::fmt;

const NAME_TOTAL_LENGTH_MAX: usize = 255;
const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, &'static str> {
        if s.is_empty() {
            return Err("repository name must have at least one component");
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (s, None),
        };
        // A `:` after the last `/` starts the tag; one before it is a registry's port.
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        if !is_name(name) {
            return Err(if name.bytes().any(|b| b.is_ascii_uppercase()) && is_name(&name.to_ascii_lowercase()) {
                "repository name must be lowercase"
            } else {
                "invalid reference format"
            });
        }
        if tag.is_some_and(|t| !is_tag(t)) {
            return Err("invalid tag format");
        }
        if let Some(digest) = digest {
            check_digest(digest)?;
        }
        let (registry, repository) = split_domain(name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err("repository name must not be more than 255 characters");
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Reference { registry, repository, tag, digest: digest.map(str::to_string) })
    }
}

fn is_name(name: &str) -> bool {
    let path = |p: &str| p.split('/').all(is_path_component);
    path(name) || name.split_once('/').is_some_and(|(domain, rest)| is_domain(domain) && path(rest))
}

fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    // Between runs of [a-z0-9]: exactly ".", "_" or "__", or any number of "-".
    c.split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        .all(|sep| matches!(sep, "" | "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let component = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
    };
    host.split('.').all(component) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
    (1..=128).contains(&b.len()) && word(&b[0]) && b.iter().all(|x| word(x) || *x == b'.' || *x == b'-')
}

fn check_digest(digest: &str) -> Result<(), &'static str> {
    let Some((algorithm, hex)) = digest.split_once(':') else { return Err("invalid checksum digest format") };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && part.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("invalid reference format");
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != want {
        return Err("invalid checksum digest length");
    }
    Ok(())
}

/// Docker's normalisation: no domain (the first segment has no `.` or `:` and is not `localhost`)
/// means Docker Hub, `index.docker.io` is Docker Hub, and Docker Hub's one-segment names live in
/// `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => (left, right.to_string()),
        _ => (DOCKER_HUB, name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = DOCKER_HUB;
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain.to_string(), remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(s: &str) -> String {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).to_string()
    }

    #[test]
    fn normalises_like_docker() {
        let sha = format!("sha256:{}", "a".repeat(64));
        for (given, want) in [
            ("nginx", "docker.io/library/nginx:latest".to_string()),
            ("library/nginx:1.27", "docker.io/library/nginx:1.27".into()),
            ("index.docker.io/bitnami/redis:7", "docker.io/bitnami/redis:7".into()),
            ("quay.io/coreos/etcd:v3.5.0", "quay.io/coreos/etcd:v3.5.0".into()),
            ("localhost/a", "localhost/a:latest".into()),
            ("localhost:5000/a/b:1", "localhost:5000/a/b:1".into()),
            ("127.0.0.1:5000/pause:3.10", "127.0.0.1:5000/pause:3.10".into()),
            ("Registry.Example.com/team/app", "Registry.Example.com/team/app:latest".into()),
            ("foo/bar", "docker.io/foo/bar:latest".into()),
            (&format!("nginx@{sha}"), format!("docker.io/library/nginx@{sha}")),
            (&format!("nginx:1.27@{sha}"), format!("docker.io/library/nginx:1.27@{sha}")),
            ("a.b-c__d---e/f_g.h:TAG_1.x-y", "a.b-c__d---e/f_g.h:TAG_1.x-y".into()),
        ] {
            assert_eq!(whole(given), want, "{given}");
        }
    }

    #[test]
    fn rejects_what_the_grammar_does_not_allow() {
        let long = "a".repeat(256);
        let tag129 = format!("nginx:{}", "t".repeat(129));
        for (bad, why) in [
            ("", "at least one component"),
            ("Nginx", "lowercase"),
            ("team/Nginx", "lowercase"),
            ("nginx:", "tag"),
            ("nginx:.x", "tag"),
            ("nginx:tag:tag", "invalid"),
            (tag129.as_str(), "tag"),
            ("nginx:tâg", "tag"),
            ("ngînx", "invalid"),
            ("foo bar", "invalid"),
            ("-nginx", "invalid"),
            ("nginx-", "invalid"),
            ("a..b", "invalid"),
            ("a___b", "invalid"),
            ("a//b", "invalid"),
            ("a/", "invalid"),
            ("-host.io/a", "invalid"),
            ("host.io:/a", "invalid"),
            ("host.io:50x0/a", "invalid"),
            ("nginx@sha256:abc", "invalid"),
            ("nginx@sha256", "digest format"),
            (&format!("nginx@sha256:{}", "a".repeat(63)), "invalid"),
            (&format!("nginx@sha256:{}", "a".repeat(65)), "length"),
            (&format!("nginx@md5:{}", "a".repeat(32)), "unsupported"),
            (&format!("nginx@sha256:{}", "g".repeat(64)), "invalid"),
            (&long, "255"),
        ] {
            let err = Reference::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
