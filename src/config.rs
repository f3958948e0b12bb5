//! Step 1 of the data path: configuration from the environment, validated before any API call.
//!
//! Every problem names the variable and the value; all problems are reported at once. One parser per
//! concern (images, deadlines, where the controller runs, strategy, node selection, pacing, the puller
//! pods, output); the Kubernetes grammars they check live in [`crate::grammar`]. What the numbers mean
//! for a run (deadlines, slack, grace) is derived once, in [`crate::policy`].

use std::fmt;

use serde::Deserialize;

use crate::grammar::{is_dns_label, is_dns_subdomain, is_label_value, is_quantity, validate_label_selector};
use crate::images::{Image, PullPolicy, parse_image_list};
use crate::pullers::PullerKind;
use crate::taints::{StartupTaint, Toleration, parse_tolerations};

pub const DEFAULT_DEADLINE_SECONDS: i64 = 300;
pub const MAX_DEADLINE_SECONDS: i64 = 86_400;
pub const DEFAULT_TTL_SECONDS_AFTER_FINISHED: i32 = 3600;
pub const DEFAULT_CREATE_CONCURRENCY: usize = 16;
pub const MAX_CREATE_CONCURRENCY: usize = 256;
pub const DEFAULT_WAIT_GRACE_SECONDS: u64 = 60;
pub const DEFAULT_PULL_ERROR_GRACE_SECONDS: u64 = 30;
/// More containers than this in one pod is not a pre-pull any more; it also bounds per-node state.
pub const MAX_IMAGES: usize = 64;

/// The raw variables, all as strings so that a bad value is reported in our words, not serde's.
#[derive(Deserialize, Debug, Default)]
struct RawEnv {
    quay_images: Option<String>,
    deadline_seconds: Option<String>,
    namespace: Option<String>,
    pod_name: Option<String>,
    pod_namespace: Option<String>,
    pull_strategy: Option<String>,
    quayctl_image: Option<String>,
    helper_image: Option<String>,
    ttl_seconds_after_finished: Option<String>,
    run_id: Option<String>,
    dry_run: Option<String>,
    node_selector: Option<String>,
    create_concurrency: Option<String>,
    wait_grace_seconds: Option<String>,
    pull_error_grace_seconds: Option<String>,
    report_format: Option<String>,
    report_file: Option<String>,
    tolerations: Option<String>,
    image_pull_secrets: Option<String>,
    priority_class_name: Option<String>,
    pull_policy: Option<String>,
    puller_cpu_request: Option<String>,
    puller_memory_request: Option<String>,
    puller_cpu_limit: Option<String>,
    puller_memory_limit: Option<String>,
    max_parallel: Option<String>,
    seed_nodes: Option<String>,
    skip_present: Option<String>,
    startup_taint: Option<String>,
    startup_taint_only: Option<String>,
    keep_last_puller: Option<String>,
    puller_kind: Option<String>,
}

/// How the images get onto a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullStrategy {
    /// One no-op container per image: the kubelet pulls with the node's runtime and credentials.
    Kubelet,
    /// The original: a `quayctl` container talks to the node's docker socket.
    Quayctl { image: String },
}

impl PullStrategy {
    pub fn name(&self) -> &'static str {
        match self {
            PullStrategy::Kubelet => "kubelet",
            PullStrategy::Quayctl { .. } => "quayctl",
        }
    }
}

/// Where the kubelet strategy's helper image (the one carrying `/quayctl-noop`) comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelperImage {
    /// `HELPER_IMAGE`.
    Given(String),
    /// The controller's own image, read from its pod (`POD_NAME`/`POD_NAMESPACE` are set).
    OwnPod,
    /// The quayctl strategy has no helper.
    NotNeeded,
}

/// Where the controller itself runs, from the downward API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub images: Vec<Image>,
    /// Entries of `QUAY_IMAGES` dropped as duplicates (logged as a warning).
    pub duplicate_images: Vec<String>,
    pub deadline_seconds: i64,
    /// `NAMESPACE`, else `POD_NAMESPACE`; `None` means the kubeconfig's namespace.
    pub namespace: Option<String>,
    pub pod: Option<PodRef>,
    pub strategy: PullStrategy,
    pub helper_image: HelperImage,
    pub ttl_seconds_after_finished: i32,
    pub run_id: Option<String>,
    pub dry_run: bool,
    pub node_selector: Option<String>,
    pub create_concurrency: usize,
    pub wait_grace_seconds: u64,
    /// How long an image may keep failing to pull (the kubelet retries) before it counts as failed.
    pub pull_error_grace_seconds: u64,
    pub report_format: ReportFormat,
    /// Also write the JSON report to this file.
    pub report_file: Option<String>,
    pub tolerations: Vec<Toleration>,
    pub image_pull_secrets: Vec<String>,
    pub priority_class_name: Option<String>,
    pub pull_policy: PullPolicy,
    pub resources: PullerResources,
    /// At most this many nodes pulling at once; `None` = no limit beyond pacing.
    pub max_parallel: Option<usize>,
    /// Pull on this many nodes first, then fan out (0 = no seed wave).
    pub seed_nodes: usize,
    pub skip_present: bool,
    /// `STARTUP_TAINT`: the taint new nodes carry until the run has put every image on them.
    pub startup_taint: Option<StartupTaint>,
    /// `STARTUP_TAINT_ONLY`: consider only the nodes carrying the startup taint (joining nodes).
    pub startup_taint_only: bool,
    /// `KEEP_LAST_PULLER` (default on): each node's latest successful puller stays until a later run
    /// succeeds there, so the kubelet's image GC sees the images in use.
    pub keep_last_puller: bool,
    /// `PULLER_KIND`: `job` (default, one node-pinned Job per node) or `pod` (one node-pinned pod).
    pub puller_kind: PullerKind,
}

/// How the final report is printed on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Requests and limits of every puller container (Kubernetes quantities, validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullerResources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

impl Default for PullerResources {
    fn default() -> Self {
        PullerResources {
            cpu_request: "1m".into(),
            memory_request: "4Mi".into(),
            cpu_limit: "50m".into(),
            memory_limit: "16Mi".into(),
        }
    }
}

/// One bad variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: Option<String>,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={:?}: {}", self.variable, value, self.problem),
            None => write!(f, "{} is not set: {}", self.variable, self.problem),
        }
    }
}

impl Config {
    /// Read a set of variables (`main` passes the process environment, tests their own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, Vec<ConfigError>> {
        let raw: RawEnv = envy::from_iter(vars)
            .map_err(|e| vec![ConfigError { variable: "environment", value: None, problem: e.to_string() }])?;
        Validator::default().validate(raw)
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn fail(&mut self, variable: &'static str, value: &str, problem: impl Into<String>) {
        self.errors.push(ConfigError { variable, value: Some(value.to_string()), problem: problem.into() });
    }

    fn unset(&mut self, variable: &'static str, problem: impl Into<String>) {
        if !self.errors.iter().any(|e| e.variable == variable) {
            self.errors.push(ConfigError { variable, value: None, problem: problem.into() });
        }
    }

    /// A non-empty, trimmed value, or `None` when unset or blank.
    fn present(value: Option<String>) -> Option<String> {
        value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn integer<T>(&mut self, variable: &'static str, value: Option<String>, default: T, range: (T, T)) -> T
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(text) = value else { return default };
        match text.trim().parse::<T>() {
            Ok(n) if n >= range.0 && n <= range.1 => n,
            Ok(_) => {
                self.fail(variable, &text, format!("must be between {} and {}", range.0, range.1));
                default
            }
            Err(_) => {
                self.fail(variable, &text, format!("must be a whole number between {} and {}", range.0, range.1));
                default
            }
        }
    }

    fn boolean(&mut self, variable: &'static str, value: Option<String>) -> bool {
        match Self::present(value) {
            None => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    self.fail(variable, &v, "must be `true` or `false`");
                    false
                }
            },
        }
    }

    /// One of `choices` (the first is the default when unset), mapped to its value.
    fn choice<T: Copy>(&mut self, variable: &'static str, value: Option<String>, choices: &[(&str, T)]) -> T {
        let Some(value) = Self::present(value) else { return choices[0].1 };
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == value) {
            return *v;
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
        let (last, rest) = names.split_last().expect("at least one choice");
        self.fail(variable, &value, format!("must be {} (default) or {last}", rest.join(", ")));
        choices[0].1
    }

    /// A Kubernetes resource quantity (`100m`, `64Mi`, `1.5`, `2e3`), or the default when unset.
    fn quantity(&mut self, variable: &'static str, value: Option<String>, default: String) -> String {
        let Some(value) = Self::present(value) else { return default };
        if is_quantity(&value) {
            value
        } else {
            self.fail(variable, &value, "not a Kubernetes quantity (e.g. `100m`, `64Mi`, `1`)");
            default
        }
    }

    fn image(&mut self, variable: &'static str, value: Option<String>) -> Option<String> {
        let value = Self::present(value)?;
        match Image::parse(&value) {
            Ok(_) => Some(value),
            Err(e) => {
                self.fail(variable, &value, format!("not a valid image reference: {e}"));
                None
            }
        }
    }

    /// `QUAY_IMAGES`: the images and the entries dropped as duplicates.
    fn images(&mut self, value: Option<String>) -> (Vec<Image>, Vec<String>) {
        let Some(text) = value else {
            self.unset("QUAY_IMAGES", "required: `;`-separated image references, e.g. `nginx:1.27;quay.io/org/app:v2`");
            return (Vec::new(), Vec::new());
        };
        match parse_image_list(&text) {
            Ok(list) if list.images.len() > MAX_IMAGES => {
                self.fail("QUAY_IMAGES", &text, format!("{} images; at most {MAX_IMAGES} per run", list.images.len()));
                (Vec::new(), Vec::new())
            }
            Ok(list) => (list.images, list.duplicates),
            Err(problem) => {
                self.fail("QUAY_IMAGES", &text, problem);
                (Vec::new(), Vec::new())
            }
        }
    }

    /// Where the controller runs (`POD_NAME`/`POD_NAMESPACE`) and where the pullers go (`NAMESPACE`).
    fn placement(&mut self, raw: &mut RawEnv) -> (Option<PodRef>, Option<String>) {
        let pod_name = Self::present(raw.pod_name.take());
        let pod_namespace = Self::present(raw.pod_namespace.take());
        for (variable, value) in [("POD_NAME", &pod_name), ("POD_NAMESPACE", &pod_namespace)] {
            if let Some(v) = value.as_deref().filter(|v| !is_dns_subdomain(v)) {
                self.fail(variable, v, "not a valid Kubernetes object name");
            }
        }
        let pod = match (pod_name, pod_namespace.clone()) {
            (Some(name), Some(namespace)) => Some(PodRef { name, namespace }),
            _ => None,
        };
        let namespace = Self::present(raw.namespace.take()).or(pod_namespace);
        if let Some(ns) = namespace.as_deref().filter(|ns| !is_dns_label(ns)) {
            self.fail("NAMESPACE", ns, "not a valid namespace name (lowercase DNS-1123 label, at most 63 characters)");
        }
        (pod, namespace)
    }

    /// `PULL_STRATEGY` with its image (`QUAYCTL_IMAGE`), and where the helper image comes from.
    fn strategy(&mut self, raw: &mut RawEnv, in_pod: bool) -> (PullStrategy, HelperImage) {
        let quayctl_image = self.image("QUAYCTL_IMAGE", raw.quayctl_image.take());
        let strategy = match Self::present(raw.pull_strategy.take()).as_deref().unwrap_or("kubelet") {
            "kubelet" => PullStrategy::Kubelet,
            "quayctl" => match quayctl_image {
                Some(image) => PullStrategy::Quayctl { image },
                None => {
                    self.unset("QUAYCTL_IMAGE", "required when PULL_STRATEGY=quayctl");
                    PullStrategy::Kubelet
                }
            },
            other => {
                self.fail("PULL_STRATEGY", other, "unknown strategy; choose `kubelet` (default) or `quayctl`");
                PullStrategy::Kubelet
            }
        };
        let given = self.image("HELPER_IMAGE", raw.helper_image.take());
        let helper = match (&strategy, given) {
            (PullStrategy::Quayctl { .. }, _) => HelperImage::NotNeeded,
            (PullStrategy::Kubelet, Some(image)) => HelperImage::Given(image),
            (PullStrategy::Kubelet, None) if in_pod => HelperImage::OwnPod,
            (PullStrategy::Kubelet, None) => {
                self.unset(
                    "HELPER_IMAGE",
                    "required for PULL_STRATEGY=kubelet outside a pod (POD_NAME/POD_NAMESPACE unset): \
                     the image of this controller, which carries /quayctl-noop",
                );
                HelperImage::NotNeeded
            }
        };
        (strategy, helper)
    }

    /// `STARTUP_TAINT` and `STARTUP_TAINT_ONLY` (which needs the former).
    fn startup_taint(&mut self, raw: &mut RawEnv) -> (Option<StartupTaint>, bool) {
        let taint = match Self::present(raw.startup_taint.take()) {
            None => None,
            Some(text) => match StartupTaint::parse(&text) {
                Ok(taint) => Some(taint),
                Err(problem) => {
                    self.fail("STARTUP_TAINT", &text, problem);
                    None
                }
            },
        };
        let only = self.boolean("STARTUP_TAINT_ONLY", raw.startup_taint_only.take());
        if only && taint.is_none() {
            self.unset("STARTUP_TAINT", "required with STARTUP_TAINT_ONLY=true: the taint joining nodes carry");
        }
        (taint, only)
    }

    /// Which nodes: `NODE_SELECTOR`, `TOLERATIONS`, `SKIP_PRESENT`.
    fn selection(&mut self, raw: &mut RawEnv) -> (Option<String>, Vec<Toleration>, bool) {
        let node_selector = Self::present(raw.node_selector.take());
        if let Some(selector) = node_selector.as_deref()
            && let Err(problem) = validate_label_selector(selector)
        {
            self.fail("NODE_SELECTOR", selector, problem);
        }
        let tolerations = match Self::present(raw.tolerations.take()) {
            None => Vec::new(),
            Some(text) => match parse_tolerations(&text) {
                Ok(list) if list.len() > 32 => {
                    self.fail("TOLERATIONS", &text, "at most 32 entries");
                    Vec::new()
                }
                Ok(list) => list,
                Err(problem) => {
                    self.fail("TOLERATIONS", &text, problem);
                    Vec::new()
                }
            },
        };
        let skip_present = self.boolean("SKIP_PRESENT", raw.skip_present.take());
        (node_selector, tolerations, skip_present)
    }

    /// What goes into every puller pod besides the images: pull secrets, priority class, pull policy,
    /// resources.
    fn puller_pod(&mut self, raw: &mut RawEnv) -> (Vec<String>, Option<String>, PullPolicy, PullerResources) {
        let image_pull_secrets: Vec<String> = match Self::present(raw.image_pull_secrets.take()) {
            None => Vec::new(),
            Some(text) => {
                let names: Vec<String> = text.split(',').map(|n| n.trim().to_string()).collect();
                if let Some(bad) = names.iter().find(|n| !is_dns_subdomain(n)) {
                    self.fail(
                        "IMAGE_PULL_SECRETS",
                        &text,
                        format!("`{bad}` is not a valid Secret name (comma-separated names of Secrets in the puller namespace)"),
                    );
                }
                names
            }
        };
        let priority_class_name = Self::present(raw.priority_class_name.take());
        if let Some(name) = priority_class_name.as_deref().filter(|n| !is_dns_subdomain(n)) {
            self.fail("PRIORITY_CLASS_NAME", name, "not a valid PriorityClass name");
        }
        let pull_policy = self.choice(
            "PULL_POLICY",
            raw.pull_policy.take(),
            &[("auto", PullPolicy::Auto), ("Always", PullPolicy::Always), ("IfNotPresent", PullPolicy::IfNotPresent)],
        );
        let defaults = PullerResources::default();
        let resources = PullerResources {
            cpu_request: self.quantity("PULLER_CPU_REQUEST", raw.puller_cpu_request.take(), defaults.cpu_request),
            memory_request: self.quantity(
                "PULLER_MEMORY_REQUEST",
                raw.puller_memory_request.take(),
                defaults.memory_request,
            ),
            cpu_limit: self.quantity("PULLER_CPU_LIMIT", raw.puller_cpu_limit.take(), defaults.cpu_limit),
            memory_limit: self.quantity("PULLER_MEMORY_LIMIT", raw.puller_memory_limit.take(), defaults.memory_limit),
        };
        (image_pull_secrets, priority_class_name, pull_policy, resources)
    }

    fn run_id(&mut self, value: Option<String>) -> Option<String> {
        let run_id = Self::present(value);
        if let Some(id) = run_id.as_deref().filter(|id| !is_label_value(id)) {
            self.fail(
                "RUN_ID",
                id,
                "must be at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric",
            );
        }
        run_id
    }

    fn validate(mut self, mut raw: RawEnv) -> Result<Config, Vec<ConfigError>> {
        let (images, duplicate_images) = self.images(raw.quay_images.take());
        let deadline_seconds = self.integer(
            "DEADLINE_SECONDS",
            raw.deadline_seconds.take(),
            DEFAULT_DEADLINE_SECONDS,
            (1, MAX_DEADLINE_SECONDS),
        );
        let wait_grace_seconds =
            self.integer("WAIT_GRACE_SECONDS", raw.wait_grace_seconds.take(), DEFAULT_WAIT_GRACE_SECONDS, (0, 3600));
        let pull_error_grace_seconds = self.integer(
            "PULL_ERROR_GRACE_SECONDS",
            raw.pull_error_grace_seconds.take(),
            DEFAULT_PULL_ERROR_GRACE_SECONDS,
            (0, 3600),
        );
        let ttl_seconds_after_finished = self.integer(
            "TTL_SECONDS_AFTER_FINISHED",
            raw.ttl_seconds_after_finished.take(),
            DEFAULT_TTL_SECONDS_AFTER_FINISHED,
            (0, i32::MAX),
        );
        let (pod, namespace) = self.placement(&mut raw);
        let (strategy, helper_image) = self.strategy(&mut raw, pod.is_some());
        let (node_selector, tolerations, skip_present) = self.selection(&mut raw);
        let (startup_taint, startup_taint_only) = self.startup_taint(&mut raw);
        let puller_kind =
            self.choice("PULLER_KIND", raw.puller_kind.take(), &[("job", PullerKind::Job), ("pod", PullerKind::Pod)]);
        let keep_last_puller = match raw.keep_last_puller.take() {
            None => true,
            value => self.boolean("KEEP_LAST_PULLER", value),
        };
        let create_concurrency = self.integer(
            "CREATE_CONCURRENCY",
            raw.create_concurrency.take(),
            DEFAULT_CREATE_CONCURRENCY,
            (1, MAX_CREATE_CONCURRENCY),
        );
        let max_parallel = match self.integer("MAX_PARALLEL", raw.max_parallel.take(), 0usize, (0, 100_000)) {
            0 => None,
            n => Some(n),
        };
        let seed_nodes = self.integer("SEED_NODES", raw.seed_nodes.take(), 0usize, (0, 10_000));
        let (image_pull_secrets, priority_class_name, pull_policy, resources) = self.puller_pod(&mut raw);
        let run_id = self.run_id(raw.run_id.take());
        let dry_run = self.boolean("DRY_RUN", raw.dry_run.take());
        let report_format = self.choice(
            "REPORT_FORMAT",
            raw.report_format.take(),
            &[("text", ReportFormat::Text), ("json", ReportFormat::Json)],
        );
        let report_file = Self::present(raw.report_file.take());

        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        Ok(Config {
            images,
            duplicate_images,
            deadline_seconds,
            namespace,
            pod,
            strategy,
            helper_image,
            ttl_seconds_after_finished,
            run_id,
            dry_run,
            node_selector,
            create_concurrency,
            wait_grace_seconds,
            pull_error_grace_seconds,
            report_format,
            report_file,
            tolerations,
            image_pull_secrets,
            priority_class_name,
            pull_policy,
            resources,
            max_parallel,
            seed_nodes,
            skip_present,
            startup_taint,
            startup_taint_only,
            keep_last_puller,
            puller_kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn ok(pairs: &[(&str, &str)]) -> Config {
        Config::from_vars(vars(pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {e:?}"))
    }

    fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
        Config::from_vars(vars(pairs))
            .expect_err("expected a configuration error")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const BASE: [(&str, &str); 2] = [("QUAY_IMAGES", "nginx"), ("HELPER_IMAGE", "ghcr.io/x/quayctl-controller:1")];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut all: Vec<_> = BASE.iter().filter(|(k, _)| !extra.iter().any(|(e, _)| e == k)).copied().collect();
        all.extend_from_slice(extra);
        all
    }

    #[test]
    fn defaults() {
        let c = ok(&BASE);
        assert_eq!(c.images.len(), 1);
        assert_eq!(c.deadline_seconds, 300);
        assert_eq!(c.ttl_seconds_after_finished, 3600);
        assert_eq!(c.strategy, PullStrategy::Kubelet);
        assert_eq!(c.namespace, None);
        assert_eq!(c.pod, None);
        assert_eq!(c.run_id, None);
        assert!(!c.dry_run);
        assert_eq!(c.create_concurrency, DEFAULT_CREATE_CONCURRENCY);
        assert_eq!(c.wait_grace_seconds, DEFAULT_WAIT_GRACE_SECONDS);
        assert_eq!((c.startup_taint, c.startup_taint_only, c.keep_last_puller), (None, false, true));
        assert_eq!(c.puller_kind, PullerKind::Job);
        assert_eq!(ok(&with(&[("PULLER_KIND", "pod")])).puller_kind, PullerKind::Pod);
    }

    #[test]
    fn startup_taint_and_retention() {
        let c = ok(&with(&[
            ("STARTUP_TAINT", "startup-taint.cluster-autoscaler.kubernetes.io/quayctl-images"),
            ("STARTUP_TAINT_ONLY", "true"),
            ("KEEP_LAST_PULLER", "false"),
        ]));
        let taint = c.startup_taint.expect("parsed");
        assert_eq!(taint.key, "startup-taint.cluster-autoscaler.kubernetes.io/quayctl-images");
        assert!(c.startup_taint_only && !c.keep_last_puller);
    }

    #[test]
    fn all_variables_set() {
        let c = ok(&[
            ("QUAY_IMAGES", "nginx;redis:7;nginx:latest;"),
            ("DEADLINE_SECONDS", " 600 "),
            ("NAMESPACE", "prepull"),
            ("POD_NAME", "quayctl-controller-123-abcde"),
            ("POD_NAMESPACE", "kube-system"),
            ("PULL_STRATEGY", "quayctl"),
            ("QUAYCTL_IMAGE", "quay.io/coreos/quayctl:v0.0.1"),
            ("TTL_SECONDS_AFTER_FINISHED", "0"),
            ("RUN_ID", "nightly-1"),
            ("DRY_RUN", "TRUE"),
            ("NODE_SELECTOR", "pool=gpu,kubernetes.io/os in (linux)"),
            ("CREATE_CONCURRENCY", "4"),
            ("WAIT_GRACE_SECONDS", "5"),
        ]);
        assert_eq!(c.images.len(), 2);
        assert_eq!(c.duplicate_images, ["nginx:latest"]);
        assert_eq!(c.deadline_seconds, 600);
        assert_eq!(c.namespace.as_deref(), Some("prepull"));
        assert_eq!(
            c.pod,
            Some(PodRef { name: "quayctl-controller-123-abcde".into(), namespace: "kube-system".into() })
        );
        assert_eq!(c.strategy, PullStrategy::Quayctl { image: "quay.io/coreos/quayctl:v0.0.1".into() });
        assert_eq!(c.ttl_seconds_after_finished, 0);
        assert_eq!(c.run_id.as_deref(), Some("nightly-1"));
        assert!(c.dry_run);
        assert_eq!(c.create_concurrency, 4);
        assert_eq!(c.wait_grace_seconds, 5);
    }

    #[test]
    fn namespace_falls_back_to_pod_namespace() {
        let c = ok(&[("QUAY_IMAGES", "nginx"), ("POD_NAME", "p"), ("POD_NAMESPACE", "ops")]);
        assert_eq!(c.namespace.as_deref(), Some("ops"));
        assert_eq!(c.helper_image, HelperImage::OwnPod, "read from the pod at run time");
    }

    #[test]
    fn each_bad_input_names_the_variable_and_value() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("HELPER_IMAGE", "x")], "QUAY_IMAGES is not set"),
            (&with(&[("QUAY_IMAGES", "")]), "QUAY_IMAGES=\"\": no image given"),
            (&with(&[("QUAY_IMAGES", "a;;b")]), "QUAY_IMAGES=\"a;;b\": entry 2 is empty"),
            (
                &with(&[("QUAY_IMAGES", "nginx;Bad Ref")]),
                "QUAY_IMAGES=\"nginx;Bad Ref\": entry 2 `Bad Ref` is not a valid image reference",
            ),
            (&with(&[("DEADLINE_SECONDS", "0")]), "DEADLINE_SECONDS=\"0\": must be between 1 and 86400"),
            (&with(&[("DEADLINE_SECONDS", "-1")]), "DEADLINE_SECONDS=\"-1\": must be between 1 and 86400"),
            (&with(&[("DEADLINE_SECONDS", "86401")]), "DEADLINE_SECONDS=\"86401\": must be between 1 and 86400"),
            (&with(&[("DEADLINE_SECONDS", "five")]), "DEADLINE_SECONDS=\"five\": must be a whole number"),
            (&with(&[("DEADLINE_SECONDS", "1.5")]), "DEADLINE_SECONDS=\"1.5\": must be a whole number"),
            (
                &with(&[("PULL_STRATEGY", "torrent")]),
                "PULL_STRATEGY=\"torrent\": unknown strategy; choose `kubelet` (default) or `quayctl`",
            ),
            (&with(&[("PULL_STRATEGY", "quayctl")]), "QUAYCTL_IMAGE is not set: required when PULL_STRATEGY=quayctl"),
            (
                &with(&[("PULL_STRATEGY", "quayctl"), ("QUAYCTL_IMAGE", "::")]),
                "QUAYCTL_IMAGE=\"::\": not a valid image reference",
            ),
            (&[("QUAY_IMAGES", "nginx")], "HELPER_IMAGE is not set: required for PULL_STRATEGY=kubelet outside a pod"),
            (&with(&[("HELPER_IMAGE", "UPPER")]), "HELPER_IMAGE=\"UPPER\": not a valid image reference"),
            (
                &with(&[("TTL_SECONDS_AFTER_FINISHED", "-5")]),
                "TTL_SECONDS_AFTER_FINISHED=\"-5\": must be between 0 and",
            ),
            (&with(&[("NAMESPACE", "Kube_System")]), "NAMESPACE=\"Kube_System\": not a valid namespace name"),
            (&with(&[("RUN_ID", "-bad-")]), "RUN_ID=\"-bad-\": must be at most 63"),
            (&with(&[("DRY_RUN", "maybe")]), "DRY_RUN=\"maybe\": must be `true` or `false`"),
            (
                &with(&[("NODE_SELECTOR", "pool in gpu")]),
                "NODE_SELECTOR=\"pool in gpu\": requirement `pool in gpu`: expected a `(value, ...)` list",
            ),
            (&with(&[("NODE_SELECTOR", "a=b,,c")]), "NODE_SELECTOR=\"a=b,,c\": requirement ``: empty requirement"),
            (&with(&[("CREATE_CONCURRENCY", "0")]), "CREATE_CONCURRENCY=\"0\": must be between 1 and 256"),
            (&with(&[("WAIT_GRACE_SECONDS", "x")]), "WAIT_GRACE_SECONDS=\"x\": must be a whole number"),
            (&with(&[("STARTUP_TAINT", "a,b")]), "STARTUP_TAINT=\"a,b\": one taint only"),
            (&with(&[("STARTUP_TAINT", "*")]), "STARTUP_TAINT=\"*\": a taint key is needed"),
            (&with(&[("STARTUP_TAINT", "k:Never")]), "STARTUP_TAINT=\"k:Never\": `k:Never`: unknown effect"),
            (
                &with(&[("STARTUP_TAINT_ONLY", "true")]),
                "STARTUP_TAINT is not set: required with STARTUP_TAINT_ONLY=true",
            ),
            (&with(&[("KEEP_LAST_PULLER", "sometimes")]), "KEEP_LAST_PULLER=\"sometimes\": must be `true` or `false`"),
            (&with(&[("PULLER_KIND", "daemonset")]), "PULLER_KIND=\"daemonset\": must be `job` (default) or `pod`"),
        ];
        for (pairs, expected) in cases {
            let errs = errors(pairs);
            assert!(errs.iter().any(|e| e.starts_with(expected)), "{pairs:?}: expected `{expected}`, got {errs:?}");
        }
    }

    #[test]
    fn reports_every_problem_at_once() {
        let errs = errors(&[("QUAY_IMAGES", "a;;b"), ("DEADLINE_SECONDS", "0"), ("PULL_STRATEGY", "x")]);
        let vars: Vec<&str> = errs.iter().map(|e| e.split(['=', ' ']).next().unwrap()).collect();
        assert_eq!(vars, ["QUAY_IMAGES", "DEADLINE_SECONDS", "PULL_STRATEGY", "HELPER_IMAGE"]);
    }
}
