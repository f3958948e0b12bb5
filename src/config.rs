//! Step 1 of the data path: configuration from the environment, validated before any API call.
//!
//! Every problem names the variable and the value; all problems are reported at once. One parser per
//! concern (images, deadlines, where the controller runs, strategy, node selection, pacing, the puller
//! pods, output); the Kubernetes grammars they check live in [`crate::grammar`]. What the numbers mean
//! for a run (deadlines, slack, grace) is derived once, in [`crate::policy`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::grammar::{is_dns_label, is_dns_subdomain, is_label_value, is_quantity, validate_label_selector};
use crate::images::{Image, PullPolicy, parse_image_list};
use crate::taints::{StartupTaint, Toleration, parse_tolerations};
use crate::types::{PodRef, PullerKind};
use crate::workloads::ImagesFrom;

pub const MAX_DEADLINE_SECONDS: u64 = 86_400;
pub const MAX_CREATE_CONCURRENCY: usize = 256;
pub use crate::images::MAX_IMAGES;
/// At most this many `TOLERATIONS` entries.
pub const MAX_TOLERATIONS: usize = 32;
/// `STARTUP_TAINT_MAX_HOLD_SECONDS` at most: a day.
pub const MAX_HOLD_SECONDS: u64 = 86_400;

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
    helper_architectures: Option<String>,
    runner_image: Option<String>,
    ttl_seconds_after_finished: Option<String>,
    run_id: Option<String>,
    instance: Option<String>,
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
    startup_taint_max_hold_seconds: Option<String>,
    startup_taint_watch_seconds: Option<String>,
    keep_last_puller: Option<String>,
    puller_kind: Option<String>,
    images_from: Option<String>,
}

/// How the images get onto a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "&'static str")]
pub enum PullStrategy {
    /// One no-op container per image: the kubelet pulls with the node's runtime and credentials.
    Kubelet,
    /// One image volume per image, each mounted by one container of `runner` running `-v` (the
    /// pause image: it prints its version and exits): no helper image, and data-only images and
    /// OCI artifacts pull as well as runnable ones (Kubernetes 1.35+, containerd 2.1+).
    Volume { runner: String },
    /// The original: a `quayctl` container talks to the node's docker socket.
    Quayctl { image: String },
}

/// `RUNNER_IMAGE`'s default: the pause image and tag Kubernetes 1.37 uses for the sandbox
/// (kubeadm's `PauseVersion`, containerd 2.3+'s default sandbox image), so that on most nodes
/// nothing more is pulled. It is multi-arch.
pub const DEFAULT_RUNNER_IMAGE: &str = "registry.k8s.io/pause:3.10.2";

/// `HELPER_ARCHITECTURES`' default: what the shipped image's index holds the no-op for.
pub const DEFAULT_HELPER_ARCHITECTURES: [&str; 2] = ["amd64", "arm64"];

impl From<PullStrategy> for &'static str {
    fn from(strategy: PullStrategy) -> Self {
        strategy.name()
    }
}

impl PullStrategy {
    pub fn name(&self) -> &'static str {
        match self {
            PullStrategy::Kubelet => "kubelet",
            PullStrategy::Volume { .. } => "volume",
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

/// The validated configuration, grouped by the step of the data path that reads it. Each group is
/// handed on whole (never field by field), and its `Default` holds the defaults, so a new setting is
/// added in one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `QUAY_IMAGES`, normalized and de-duplicated.
    pub images: Vec<Image>,
    /// Entries of `QUAY_IMAGES` dropped as duplicates (logged as a warning).
    pub duplicate_images: Vec<String>,
    pub placement: Placement,
    pub selection: Selection,
    pub puller: PullerSettings,
    pub timing: Timing,
    pub pacing: Pacing,
    pub output: Output,
}

/// Where the controller runs and where the pullers go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// `NAMESPACE`, else `POD_NAMESPACE`; `None` means the kubeconfig's namespace.
    pub namespace: Option<String>,
    /// `POD_NAME` and `POD_NAMESPACE`, both set: the controller runs in that pod.
    pub pod: Option<PodRef>,
}

/// Step 2: which nodes get a puller, and what it pulls there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// `NODE_SELECTOR`: a label selector the node list is asked with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// `TOLERATIONS`: the taints the pullers may accept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// `SKIP_PRESENT`: leave out images the node lists in `status.images`.
    pub skip_present: bool,
    /// `STARTUP_TAINT`: the taint new nodes carry until the run has put every image on them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_taint: Option<StartupTaint>,
    /// `STARTUP_TAINT_ONLY`: consider only the nodes carrying the startup taint (joining nodes).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub startup_taint_only: bool,
    /// `STARTUP_TAINT_MAX_HOLD_SECONDS`: a node held longer than this (from the taint's `timeAdded`,
    /// else the node's creation) is released without every image; 0 = never (fail closed).
    pub startup_taint_max_hold_seconds: u64,
    /// `STARTUP_TAINT_WATCH_SECONDS`: after its node list the run watches the nodes this long, and
    /// pre-pulls (then releases) every node that appears with the startup taint; 0 = no watch.
    #[serde(skip_serializing_if = "is_zero")]
    pub startup_taint_watch_seconds: u64,
    /// `IMAGES_FROM`: also the images of these workloads, each to the nodes its pods could be
    /// scheduled on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_from: Option<ImagesFrom>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Below the cluster autoscaler's 15 minutes (`--max-node-provision-time` from the scale-up,
/// `--max-node-startup-time` from the node's creation; README "Nodes that join").
pub const DEFAULT_MAX_HOLD_SECONDS: u64 = 600;

impl Default for Selection {
    fn default() -> Self {
        Selection {
            node_selector: None,
            tolerations: Vec::new(),
            skip_present: false,
            startup_taint: None,
            startup_taint_only: false,
            startup_taint_max_hold_seconds: DEFAULT_MAX_HOLD_SECONDS,
            startup_taint_watch_seconds: 0,
            images_from: None,
        }
    }
}

/// Step 3: what every puller is, besides its node and its images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PullerSettings {
    /// `PULLER_KIND`: `job` (one node-pinned Job per node) or `pod` (one node-pinned pod).
    #[serde(rename = "puller_kind")]
    pub kind: PullerKind,
    /// `PULL_STRATEGY` (with `QUAYCTL_IMAGE`).
    pub strategy: PullStrategy,
    /// `HELPER_IMAGE`, or where it comes from (resolved with the run's identity).
    #[serde(skip)]
    pub helper_image: HelperImage,
    /// `HELPER_ARCHITECTURES`: the architectures the helper image has the no-op for (the kubelet
    /// strategy); nodes of another are skipped before any puller is created.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub helper_architectures: Vec<String>,
    /// `PULL_POLICY`.
    pub pull_policy: PullPolicy,
    /// `PULLER_CPU_REQUEST` and the three others.
    pub resources: PullerResources,
    /// `IMAGE_PULL_SECRETS`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// `PRIORITY_CLASS_NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// `TTL_SECONDS_AFTER_FINISHED` (Jobs, without `KEEP_LAST_PULLER`).
    pub ttl_seconds_after_finished: i32,
    /// `KEEP_LAST_PULLER`: each node's latest successful puller stays until a later run succeeds
    /// there, so the kubelet's image GC sees the images in use.
    #[serde(rename = "keep_last_puller")]
    pub keep_last: bool,
}

impl Default for PullerSettings {
    fn default() -> Self {
        PullerSettings {
            kind: PullerKind::Job,
            strategy: PullStrategy::Kubelet,
            helper_image: HelperImage::NotNeeded,
            helper_architectures: DEFAULT_HELPER_ARCHITECTURES.map(String::from).to_vec(),
            pull_policy: PullPolicy::Auto,
            resources: PullerResources::default(),
            image_pull_secrets: Vec::new(),
            priority_class_name: None,
            ttl_seconds_after_finished: 3600,
            keep_last: true,
        }
    }
}

/// The run's clock settings, in seconds; [`crate::policy::Policy`] derives every bound from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// `DEADLINE_SECONDS`: each puller pod's `activeDeadlineSeconds`.
    pub deadline_seconds: u64,
    /// `WAIT_GRACE_SECONDS`: the Job's `activeDeadlineSeconds` is the pull deadline plus this.
    pub wait_grace_seconds: u64,
    /// `PULL_ERROR_GRACE_SECONDS`: how long an image may keep failing to pull before it counts.
    pub pull_error_grace_seconds: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { deadline_seconds: 300, wait_grace_seconds: 60, pull_error_grace_seconds: 30 }
    }
}

/// How fast the pullers go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Pacing {
    /// `CREATE_CONCURRENCY`: creates in flight.
    pub create_concurrency: usize,
    /// `MAX_PARALLEL`: at most this many nodes pulling at once; `None` = no limit beyond pacing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
    /// `SEED_NODES`: pull on this many nodes first, then fan out (0 = no seed wave).
    pub seed_nodes: usize,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing { create_concurrency: 16, max_parallel: None, seed_nodes: 0 }
    }
}

/// Who the run says it is and what it prints.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Output {
    /// `RUN_ID`.
    pub run_id: Option<String>,
    /// `INSTANCE`: the installation the run belongs to (its pullers carry it; it cleans up only its
    /// own). Both CronJobs of one installation share it.
    pub instance: Option<String>,
    /// `DRY_RUN`: print the pullers, create nothing.
    pub dry_run: bool,
    /// `REPORT_FORMAT`.
    pub report_format: ReportFormat,
    /// `REPORT_FILE`: also write the JSON report to this file.
    pub report_file: Option<String>,
}

/// How the final report is printed on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportFormat {
    #[default]
    Text,
    Json,
}

/// Requests and limits of every puller container (Kubernetes quantities, validated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
            // A whole number the type cannot hold (`-1` for a count) is out of range all the same.
            Ok(_) | Err(_) if text.trim().parse::<i128>().is_ok() => {
                self.fail(variable, &text, format!("must be between {} and {}", range.0, range.1));
                default
            }
            Ok(_) | Err(_) => {
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

    /// `QUAY_IMAGES`: the images and the entries dropped as duplicates. It may be left out when
    /// `IMAGES_FROM` (`from`) names where the images come from.
    fn images(&mut self, value: Option<String>, from: bool) -> (Vec<Image>, Vec<String>) {
        let Some(text) = value.filter(|v| !from || !v.trim().is_empty()) else {
            if !from {
                self.unset(
                    "QUAY_IMAGES",
                    "required (unless IMAGES_FROM is set): `;`-separated image references, e.g. `nginx:1.27;quay.io/org/app:v2`",
                );
            }
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
    fn placement(&mut self, raw: &mut RawEnv) -> Placement {
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
        Placement { namespace, pod }
    }

    /// `PULL_STRATEGY` with its image (`QUAYCTL_IMAGE`), and where the helper image comes from.
    fn strategy(&mut self, raw: &mut RawEnv, in_pod: bool) -> (PullStrategy, HelperImage, Vec<String>) {
        let quayctl_image = self.image("QUAYCTL_IMAGE", raw.quayctl_image.take());
        let runner = self.image("RUNNER_IMAGE", raw.runner_image.take());
        let strategy = match Self::present(raw.pull_strategy.take()).as_deref().unwrap_or("kubelet") {
            "kubelet" => PullStrategy::Kubelet,
            "volume" => PullStrategy::Volume { runner: runner.unwrap_or_else(|| DEFAULT_RUNNER_IMAGE.into()) },
            "quayctl" => match quayctl_image {
                Some(image) => PullStrategy::Quayctl { image },
                None => {
                    self.unset("QUAYCTL_IMAGE", "required when PULL_STRATEGY=quayctl");
                    PullStrategy::Kubelet
                }
            },
            other => {
                self.fail(
                    "PULL_STRATEGY",
                    other,
                    "unknown strategy; choose `kubelet` (default), `volume` or `quayctl`",
                );
                PullStrategy::Kubelet
            }
        };
        let given = self.image("HELPER_IMAGE", raw.helper_image.take());
        let helper = match (&strategy, given) {
            (PullStrategy::Quayctl { .. } | PullStrategy::Volume { .. }, _) => HelperImage::NotNeeded,
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
        let architectures = match Self::present(raw.helper_architectures.take()) {
            None => DEFAULT_HELPER_ARCHITECTURES.map(String::from).to_vec(),
            Some(text) => {
                let list: Vec<String> = text.split(',').map(|a| a.trim().to_string()).collect();
                if let Some(bad) = list.iter().find(|a| !is_dns_label(a)) {
                    self.fail(
                        "HELPER_ARCHITECTURES",
                        &text,
                        format!("`{bad}` is not an architecture (comma-separated GOARCH names: amd64, arm64, ...)"),
                    );
                }
                list
            }
        };
        (strategy, helper, architectures)
    }

    /// Which nodes: `NODE_SELECTOR`, `TOLERATIONS`, `SKIP_PRESENT`, `STARTUP_TAINT` and
    /// `STARTUP_TAINT_ONLY` (which needs the former).
    fn selection(&mut self, raw: &mut RawEnv) -> Selection {
        let node_selector = Self::present(raw.node_selector.take());
        if let Some(selector) = node_selector.as_deref()
            && let Err(problem) = validate_label_selector(selector)
        {
            self.fail("NODE_SELECTOR", selector, problem);
        }
        let tolerations = match Self::present(raw.tolerations.take()) {
            None => Vec::new(),
            Some(text) => match parse_tolerations(&text) {
                Ok(list) if list.len() > MAX_TOLERATIONS => {
                    self.fail("TOLERATIONS", &text, format!("at most {MAX_TOLERATIONS} entries"));
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
        let startup_taint = match Self::present(raw.startup_taint.take()) {
            None => None,
            Some(text) => match StartupTaint::parse(&text) {
                Ok(taint) => Some(taint),
                Err(problem) => {
                    self.fail("STARTUP_TAINT", &text, problem);
                    None
                }
            },
        };
        let startup_taint_only = self.boolean("STARTUP_TAINT_ONLY", raw.startup_taint_only.take());
        if startup_taint_only && startup_taint.is_none() {
            self.unset("STARTUP_TAINT", "required with STARTUP_TAINT_ONLY=true: the taint joining nodes carry");
        }
        let startup_taint_max_hold_seconds = self.integer(
            "STARTUP_TAINT_MAX_HOLD_SECONDS",
            raw.startup_taint_max_hold_seconds.take(),
            DEFAULT_MAX_HOLD_SECONDS,
            (0, MAX_HOLD_SECONDS),
        );
        let startup_taint_watch_seconds =
            self.integer("STARTUP_TAINT_WATCH_SECONDS", raw.startup_taint_watch_seconds.take(), 0, (0, 3600));
        if startup_taint_watch_seconds > 0 && startup_taint.is_none() {
            self.unset("STARTUP_TAINT", "required with STARTUP_TAINT_WATCH_SECONDS: the taint joining nodes carry");
        }
        let images_from = Self::present(raw.images_from.take()).and_then(|text| match ImagesFrom::parse(&text) {
            Ok(from) => Some(from),
            Err(problem) => {
                self.fail("IMAGES_FROM", &text, problem);
                None
            }
        });
        Selection {
            node_selector,
            tolerations,
            skip_present,
            startup_taint,
            startup_taint_only,
            startup_taint_max_hold_seconds,
            startup_taint_watch_seconds,
            images_from,
        }
    }

    /// What every puller is: kind, strategy and helper, pull policy, resources, pull secrets,
    /// priority class, TTL and retention.
    fn puller(&mut self, raw: &mut RawEnv, in_pod: bool) -> PullerSettings {
        let defaults = PullerSettings::default();
        let (strategy, helper_image, helper_architectures) = self.strategy(raw, in_pod);
        let kind =
            self.choice("PULLER_KIND", raw.puller_kind.take(), &[("job", PullerKind::Job), ("pod", PullerKind::Pod)]);
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
        let r = defaults.resources;
        let resources = PullerResources {
            cpu_request: self.quantity("PULLER_CPU_REQUEST", raw.puller_cpu_request.take(), r.cpu_request),
            memory_request: self.quantity("PULLER_MEMORY_REQUEST", raw.puller_memory_request.take(), r.memory_request),
            cpu_limit: self.quantity("PULLER_CPU_LIMIT", raw.puller_cpu_limit.take(), r.cpu_limit),
            memory_limit: self.quantity("PULLER_MEMORY_LIMIT", raw.puller_memory_limit.take(), r.memory_limit),
        };
        let ttl_seconds_after_finished = self.integer(
            "TTL_SECONDS_AFTER_FINISHED",
            raw.ttl_seconds_after_finished.take(),
            defaults.ttl_seconds_after_finished,
            (0, i32::MAX),
        );
        let keep_last = match raw.keep_last_puller.take() {
            None => defaults.keep_last,
            value => self.boolean("KEEP_LAST_PULLER", value),
        };
        PullerSettings {
            kind,
            strategy,
            helper_image,
            helper_architectures,
            pull_policy,
            resources,
            image_pull_secrets,
            priority_class_name,
            ttl_seconds_after_finished,
            keep_last,
        }
    }

    /// `DEADLINE_SECONDS`, `WAIT_GRACE_SECONDS`, `PULL_ERROR_GRACE_SECONDS`.
    fn timing(&mut self, raw: &mut RawEnv) -> Timing {
        let d = Timing::default();
        Timing {
            deadline_seconds: self.integer(
                "DEADLINE_SECONDS",
                raw.deadline_seconds.take(),
                d.deadline_seconds,
                (1, MAX_DEADLINE_SECONDS),
            ),
            wait_grace_seconds: self.integer(
                "WAIT_GRACE_SECONDS",
                raw.wait_grace_seconds.take(),
                d.wait_grace_seconds,
                (0, 3600),
            ),
            pull_error_grace_seconds: self.integer(
                "PULL_ERROR_GRACE_SECONDS",
                raw.pull_error_grace_seconds.take(),
                d.pull_error_grace_seconds,
                (0, 3600),
            ),
        }
    }

    /// `CREATE_CONCURRENCY`, `MAX_PARALLEL`, `SEED_NODES`.
    fn pacing(&mut self, raw: &mut RawEnv) -> Pacing {
        let d = Pacing::default();
        let create_concurrency = self.integer(
            "CREATE_CONCURRENCY",
            raw.create_concurrency.take(),
            d.create_concurrency,
            (1, MAX_CREATE_CONCURRENCY),
        );
        let max_parallel = match self.integer("MAX_PARALLEL", raw.max_parallel.take(), 0usize, (0, 100_000)) {
            0 => d.max_parallel,
            n => Some(n),
        };
        let seed_nodes = self.integer("SEED_NODES", raw.seed_nodes.take(), d.seed_nodes, (0, 10_000));
        Pacing { create_concurrency, max_parallel, seed_nodes }
    }

    /// `RUN_ID`, `INSTANCE`, `DRY_RUN`, `REPORT_FORMAT`, `REPORT_FILE`.
    fn output(&mut self, raw: &mut RawEnv) -> Output {
        let run_id = self.label_value("RUN_ID", raw.run_id.take());
        let instance = self.label_value("INSTANCE", raw.instance.take());
        let dry_run = self.boolean("DRY_RUN", raw.dry_run.take());
        let report_format = self.choice(
            "REPORT_FORMAT",
            raw.report_format.take(),
            &[("text", ReportFormat::Text), ("json", ReportFormat::Json)],
        );
        Output { run_id, instance, dry_run, report_format, report_file: Self::present(raw.report_file.take()) }
    }

    /// A value that goes into a label (`RUN_ID`, `INSTANCE`).
    fn label_value(&mut self, variable: &'static str, value: Option<String>) -> Option<String> {
        let value = Self::present(value);
        if let Some(v) = value.as_deref().filter(|v| !is_label_value(v)) {
            self.fail(
                variable,
                v,
                "must be at most 63 letters, digits, `-`, `_` or `.`, starting and ending alphanumeric",
            );
        }
        value
    }

    fn validate(mut self, mut raw: RawEnv) -> Result<Config, Vec<ConfigError>> {
        let from = Self::present(raw.images_from.clone()).is_some();
        let selection = self.selection(&mut raw);
        let (images, duplicate_images) = self.images(raw.quay_images.take(), from);
        let timing = self.timing(&mut raw);
        let placement = self.placement(&mut raw);
        let puller = self.puller(&mut raw, placement.pod.is_some());
        let pacing = self.pacing(&mut raw);
        let output = self.output(&mut raw);
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        Ok(Config { images, duplicate_images, placement, selection, puller, timing, pacing, output })
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
        assert_eq!(c.timing, Timing::default());
        assert_eq!(c.timing.deadline_seconds, 300);
        assert_eq!(c.puller.ttl_seconds_after_finished, 3600);
        assert_eq!(c.puller.strategy, PullStrategy::Kubelet);
        assert_eq!(c.placement, Placement::default());
        assert_eq!(c.output.run_id, None);
        assert!(!c.output.dry_run);
        assert_eq!(c.pacing, Pacing::default());
        assert_eq!(c.selection, Selection::default());
        assert!(c.puller.keep_last);
        assert_eq!(c.puller.kind, PullerKind::Job);
        assert_eq!(ok(&with(&[("PULLER_KIND", "pod")])).puller.kind, PullerKind::Pod);
    }

    #[test]
    fn startup_taint_and_retention() {
        let c = ok(&with(&[
            ("STARTUP_TAINT", "startup-taint.cluster-autoscaler.kubernetes.io/quayctl-images"),
            ("STARTUP_TAINT_ONLY", "true"),
            ("KEEP_LAST_PULLER", "false"),
        ]));
        let taint = c.selection.startup_taint.expect("parsed");
        assert_eq!(taint.key, "startup-taint.cluster-autoscaler.kubernetes.io/quayctl-images");
        assert!(c.selection.startup_taint_only && !c.puller.keep_last);
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
        assert_eq!(c.timing.deadline_seconds, 600);
        assert_eq!(c.placement.namespace.as_deref(), Some("prepull"));
        assert_eq!(
            c.placement.pod,
            Some(PodRef { name: "quayctl-controller-123-abcde".into(), namespace: "kube-system".into() })
        );
        assert_eq!(c.puller.strategy, PullStrategy::Quayctl { image: "quay.io/coreos/quayctl:v0.0.1".into() });
        assert_eq!(c.puller.ttl_seconds_after_finished, 0);
        assert_eq!(c.output.run_id.as_deref(), Some("nightly-1"));
        assert!(c.output.dry_run);
        assert_eq!(c.pacing.create_concurrency, 4);
        assert_eq!(c.timing.wait_grace_seconds, 5);
    }

    #[test]
    fn namespace_falls_back_to_pod_namespace() {
        let c = ok(&[("QUAY_IMAGES", "nginx"), ("POD_NAME", "p"), ("POD_NAMESPACE", "ops")]);
        assert_eq!(c.placement.namespace.as_deref(), Some("ops"));
        assert_eq!(c.puller.helper_image, HelperImage::OwnPod, "read from the pod at run time");
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
                "PULL_STRATEGY=\"torrent\": unknown strategy; choose `kubelet` (default), `volume` or `quayctl`",
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
            (&with(&[("INSTANCE", "two words")]), "INSTANCE=\"two words\": must be at most 63"),
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
            (
                &with(&[("STARTUP_TAINT_WATCH_SECONDS", "60")]),
                "STARTUP_TAINT is not set: required with STARTUP_TAINT_WATCH_SECONDS",
            ),
            (
                &with(&[("STARTUP_TAINT", "t"), ("STARTUP_TAINT_WATCH_SECONDS", "3601")]),
                "STARTUP_TAINT_WATCH_SECONDS=\"3601\": must be between 0 and 3600",
            ),
            (
                &with(&[("STARTUP_TAINT_MAX_HOLD_SECONDS", "86401")]),
                "STARTUP_TAINT_MAX_HOLD_SECONDS=\"86401\": must be between 0 and 86400",
            ),
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
