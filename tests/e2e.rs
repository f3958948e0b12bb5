//! End-to-end suite: the real static binary against a real kube-apiserver, kube-controller-manager,
//! kube-scheduler and etcd, with kwok simulating the nodes (see hack/cluster.sh, hack/kwok/stages.yaml).
//!
//! Run with `make e2e` (or `hack/e2e.sh`), which builds and starts everything and sets:
//! `KUBECONFIG` (admin), `QUAYCTL_BIN` (the binary under test), `QUAYCTL_E2E_BIN` (kubectl & co.),
//! `QUAYCTL_E2E_STATE` and `QUAYCTL_REPO`. The tests are `#[ignore]`d so that `cargo test` alone
//! never needs a cluster.
//!
//! Every test owns a namespace and a group of nodes (label `e2e-group`, used as `NODE_SELECTOR`), so
//! tests run in parallel on one cluster without seeing each other's nodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;

const HELPER_IMAGE: &str = "quayctl-controller:e2e";
const RUN_SELECTOR_PREFIX: &str = "app.kubernetes.io/managed-by=quayctl-controller";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the e2e suite with `make e2e`"))
}

fn repo() -> PathBuf {
    PathBuf::from(env("QUAYCTL_REPO"))
}

fn kubectl_path() -> PathBuf {
    PathBuf::from(env("QUAYCTL_E2E_BIN")).join("kubectl")
}

async fn client() -> Client {
    Client::try_default().await.expect("admin kubeconfig from KUBECONFIG")
}

/// Poll `check` every 200 ms until it returns `Some`, or fail after `timeout` naming `what`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A namespace, optionally with labels (Pod Security), created fresh.
async fn namespace(client: &Client, name: &str, labels: &[(&str, &str)]) {
    let api: Api<Namespace> = Api::all(client.clone());
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let ns = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    // The ServiceAccount admission plugin needs the namespace's `default` ServiceAccount.
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), name);
    eventually("the default ServiceAccount", Duration::from_secs(30), || async {
        sa.get_opt("default").await.ok().flatten()
    })
    .await;
}

/// Create kwok nodes `name:shape` (see hack/nodes.sh) labelled `e2e-group=<group>`, and wait until kwok
/// has given each its Ready condition.
async fn nodes(client: &Client, group: &str, specs: &[String]) {
    let manifest = std::process::Command::new(repo().join("hack/nodes.sh"))
        .args(specs)
        .env("NODE_LABELS", format!("e2e-group={group}"))
        .output()
        .expect("hack/nodes.sh");
    assert!(manifest.status.success(), "nodes.sh: {}", String::from_utf8_lossy(&manifest.stderr));
    let applied = kubectl(&["apply", "-f", "-"], Some(&manifest.stdout)).await;
    assert!(applied.0, "kubectl apply nodes: {}", applied.1);
    let api: Api<Node> = Api::all(client.clone());
    let selector = format!("e2e-group={group}");
    eventually(
        &format!("kwok to initialize the {} nodes of {group}", specs.len()),
        Duration::from_secs(60),
        || async {
            let list = api.list(&ListParams::default().labels(&selector)).await.ok()?;
            let ready = |n: &Node| {
                let want = if n.metadata.name.as_deref()?.starts_with("notready-") { "False" } else { "True" };
                n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status == want)
            };
            (list.items.len() == specs.len() && list.items.iter().all(|n| ready(n) == Some(true))).then_some(())
        },
    )
    .await;
}

/// A path for a test's file in the cluster's state directory (beside the admin kubeconfig), which
/// the harness removes with the cluster, also when a test fails before its own clean-up.
fn state_path(name: &str) -> PathBuf {
    Path::new(&env("KUBECONFIG")).with_file_name(format!("e2e-{name}"))
}

/// A kubeconfig authenticating as ServiceAccount `sa` of `namespace` (a token from the TokenRequest
/// API), with `namespace` as its default namespace.
async fn token_kubeconfig(namespace: &str, sa: &str) -> PathBuf {
    let (ok, token) = kubectl(&["-n", namespace, "create", "token", sa], None).await;
    assert!(ok, "{token}");
    let admin = std::fs::read_to_string(env("KUBECONFIG")).unwrap();
    let server = admin.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap();
    let ca = admin.lines().find_map(|l| l.trim().strip_prefix("certificate-authority: ")).unwrap();
    // Owner-only: it holds a token.
    let kubeconfig = state_path(&format!("{namespace}-{sa}.kubeconfig"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: {server}, certificate-authority: {ca}}}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: sa, namespace: {namespace}}}\ncurrent-context: c\n\
             users:\n- name: sa\n  user: {{token: {}}}\n",
            token.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kubeconfig, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    kubeconfig
}

/// Run kubectl (admin); returns (success, stdout + stderr).
async fn kubectl(args: &[&str], stdin: Option<&[u8]>) -> (bool, String) {
    let mut child = tokio::process::Command::new(kubectl_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).await.unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    finished: Instant,
    elapsed: Duration,
}

impl Outcome {
    fn row(&self, node: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("no report row for {node}:\n{}\n{}", self.stdout, self.stderr))
    }

    fn rows_with(&self, outcome: &str) -> usize {
        self.stdout.lines().filter(|l| l.split_whitespace().nth(1) == Some(outcome)).count()
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Start the binary under test in the background with exactly `vars` (plus the admin KUBECONFIG
/// unless `vars` gives one); its output is collected when it ends.
fn spawn_controller(vars: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env("QUAYCTL_BIN"));
    cmd.env_clear().env("KUBECONFIG", env("KUBECONFIG")).env("RUST_LOG", "info");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).spawn().expect("spawn the controller")
}

/// Read `child`'s stderr as it comes until a line contains `needle` (bounded at a minute); the
/// task keeps collecting it and hands it all over once the child ends.
async fn watch_stderr(child: &mut tokio::process::Child, needle: &str) -> tokio::task::JoinHandle<Vec<u8>> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let needle = needle.to_string();
    let task = tokio::spawn(async move {
        let (mut all, mut seen) = (Vec::new(), Some(seen_tx));
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(&needle)
                && let Some(tx) = seen.take()
            {
                let _ = tx.send(());
            }
            all.extend_from_slice(line.as_bytes());
            all.push(b'\n');
        }
        all
    });
    tokio::time::timeout(Duration::from_secs(60), seen_rx).await.expect("the line within a minute").ok();
    task
}

/// Run the binary under test with exactly `vars` (see [`spawn_controller`]) and a 3-minute cap.
async fn controller(vars: &[(&str, &str)]) -> Outcome {
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(180), spawn_controller(vars).wait_with_output())
        .await
        .expect("the controller ends within 3 minutes")
        .expect("collect the controller's output");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        finished: Instant::now(),
        elapsed: started.elapsed(),
    }
}

/// One test's world on the shared cluster: the admin client, a fresh namespace `e2e-<name>` (with
/// `labels`, e.g. Pod Security) and kwok nodes `specs` labelled `e2e-group=<name>`, all initialized.
struct Setup {
    client: Client,
    ns: String,
    selector: String,
}

impl Setup {
    async fn new(name: &str, labels: &[(&str, &str)], specs: &[String]) -> Setup {
        let client = client().await;
        let ns = format!("e2e-{name}");
        namespace(&client, &ns, labels).await;
        if !specs.is_empty() {
            nodes(&client, name, specs).await;
        }
        Setup { client, ns, selector: format!("e2e-group={name}") }
    }

    /// The usual variables for a run in this test's namespace over its nodes.
    fn base<'a>(&'a self, run_id: &'a str) -> Vec<(&'a str, &'a str)> {
        base(&self.ns, &self.selector, run_id)
    }
}

/// The puller kinds (`PULLER_KIND`) every run-behaviour test covers, one after the other.
const KINDS: [&str; 2] = ["job", "pod"];

impl Setup {
    /// This test's namespace for one puller kind, `e2e-<name>-<kind>` (same Pod Security labels).
    async fn for_kind(&self, kind: &str, labels: &[(&str, &str)]) -> String {
        let ns = format!("{}-{kind}", self.ns);
        namespace(&self.client, &ns, labels).await;
        ns
    }

    /// A run over this test's nodes in `ns` with pullers of `kind`.
    fn run<'a>(&'a self, ns: &'a str, kind: &'a str, run_id: &'a str) -> Vec<(&'a str, &'a str)> {
        with(base(ns, &self.selector, run_id), &[("PULLER_KIND", kind)])
    }
}

/// A run's pullers in `ns` (Jobs, or bare pods), with the node each is pinned to by name.
async fn pullers(client: &Client, ns: &str, kind: &str) -> Vec<(String, String)> {
    let pinned = |spec: &k8s_openapi::api::core::v1::PodSpec| {
        let affinity = spec.affinity.as_ref().unwrap().node_affinity.as_ref().unwrap();
        let term =
            &affinity.required_during_scheduling_ignored_during_execution.as_ref().unwrap().node_selector_terms[0];
        term.match_fields.as_ref().unwrap()[0].values.as_ref().unwrap()[0].clone()
    };
    if kind == "job" {
        let list = jobs(client, ns).await;
        list.iter().map(|j| (j.name_any(), pinned(j.spec.as_ref().unwrap().template.spec.as_ref().unwrap()))).collect()
    } else {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let list = api.list(&ListParams::default().labels(RUN_SELECTOR_PREFIX)).await.unwrap().items;
        list.iter().map(|p| (p.name_any(), pinned(p.spec.as_ref().unwrap()))).collect()
    }
}

/// Creates of pullers (Jobs, or bare pods) in `ns` by the controller (not the Job controller's pods),
/// from the audit log.
fn audit_puller_creates(ns: &str, kind: &str) -> usize {
    let resource = if kind == "job" { "jobs" } else { "pods" };
    audit(|e| {
        e["verb"] == "create"
            && e["objectRef"]["resource"] == resource
            && e["objectRef"]["namespace"] == ns
            && e["objectRef"]["subresource"].is_null()
            && e["user"]["username"] != "system:kube-controller-manager"
    })
}

/// The usual variables for a test: its namespace and node group, a helper image, a run id.
fn base<'a>(ns: &'a str, selector: &'a str, run_id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("QUAY_IMAGES", "nginx:1.27;registry.example.com/ml/pytorch:2.4"),
        ("HELPER_IMAGE", HELPER_IMAGE),
        ("NAMESPACE", ns),
        ("NODE_SELECTOR", selector),
        ("RUN_ID", run_id),
        ("DEADLINE_SECONDS", "60"),
        ("WAIT_GRACE_SECONDS", "30"),
    ]
}

fn with<'a>(mut vars: Vec<(&'a str, &'a str)>, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    vars.extend_from_slice(extra);
    vars
}

async fn jobs(client: &Client, ns: &str) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(RUN_SELECTOR_PREFIX)).await.unwrap().items
}

fn condition_true(job: &Job, kind: &str) -> bool {
    job.status.iter().flat_map(|s| s.conditions.iter().flatten()).any(|c| c.type_ == kind && c.status == "True")
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

// 1. Happy path, both kinds: 20 nodes, 3 ineligible → 17 pullers succeed, one per node, pinned by
//    name, exit 0, 3 skipped with reasons.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn happy_path_twenty_nodes_three_skipped() {
    let mut specs = names("happy", 17);
    specs.extend(["happy-cordoned:cordoned", "happy-tainted:noexecute", "notready-happy:notready"].map(String::from));
    let t = Setup::new("happy", &[], &specs).await;
    let client = t.client.clone();
    for kind in KINDS {
        let ns = t.for_kind(kind, &[]).await;
        let run = controller(&t.run(&ns, kind, "happy-1")).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        assert_eq!(run.rows_with("succeeded"), 17, "{run:?}");
        assert!(run.row("happy-cordoned").contains("skipped") && run.row("happy-cordoned").contains("cordoned"));
        assert!(run.row("happy-tainted").contains("tainted dedicated:NoExecute"), "{run:?}");
        assert!(run.row("notready-happy").contains("not Ready (Ready=False, KubeletNotReady)"));
        assert!(run.stdout.contains("17/17 eligible nodes succeeded") && run.stdout.contains("3 skipped of 20 nodes"));

        let mut pinned: Vec<String> = pullers(&client, &ns, kind).await.into_iter().map(|(_, node)| node).collect();
        pinned.sort();
        let mut expected = names("happy", 17);
        expected.sort();
        assert_eq!(pinned, expected, "{kind}: one puller per eligible node, pinned by name");
        if kind == "job" {
            // The controller decides from the pods; `Complete` follows once the pods are fully done.
            eventually("every Job to be Complete in the API", Duration::from_secs(30), || async {
                jobs(&client, &ns).await.iter().all(|j| condition_true(j, "Complete")).then_some(())
            })
            .await;
        } else {
            assert!(jobs(&client, &ns).await.is_empty(), "PULLER_KIND=pod makes no Job");
        }
        // The pods really ran on the node they were pinned to.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for pod in pods.list(&ListParams::default().labels(RUN_SELECTOR_PREFIX)).await.unwrap() {
            let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
            assert_eq!(pod.labels()["quayctl-controller/node"], node);
            if kind == "pod" {
                // Its User-Agent names the controller as the manager of the fields it set.
                let managers: Vec<_> =
                    pod.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
                assert!(managers.iter().any(|m| m == "quayctl-controller"), "{managers:?}");
            }
            assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Succeeded"), "{kind}: kept, finished");
        }
    }
    assert_eq!(audit_puller_creates("e2e-happy-pod", "pod"), 17, "one create per node");
    let named = audit(|e| {
        e["verb"] == "create"
            && e["objectRef"]["resource"] == "pods"
            && e["objectRef"]["namespace"] == "e2e-happy-pod"
            && e["objectRef"]["subresource"].is_null()
            && e["userAgent"].as_str().is_some_and(|a| a.starts_with("quayctl-controller/"))
    });
    assert_eq!(named, 17, "every create names the controller in its User-Agent");
    let job_controller_writes = audit(|e| {
        e["objectRef"]["namespace"] == "e2e-happy-pod"
            && e["user"]["username"] == "system:kube-controller-manager"
            && ["create", "update", "patch"].contains(&e["verb"].as_str().unwrap_or_default())
            && ["jobs", "pods"].contains(&e["objectRef"]["resource"].as_str().unwrap_or_default())
    });
    assert_eq!(job_controller_writes, 0, "PULLER_KIND=pod: nothing for the Job controller to write");
}

// 2. Failures: nodes whose pods fail → exit 1, each named with its reason.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn failing_nodes_exit_1_with_reasons() {
    let t = Setup::new("fail", &[], &["fail-a-0:fail".into(), "fail-a-1:fail".into()]).await;
    nodes(&t.client, "fail2", &["good-0".into(), "fail-b-0:fail".into()]).await;

    let run = controller(&base(&t.ns, "e2e-group in (fail, fail2)", "fail-1")).await;
    assert_eq!(run.code, 1, "{run:?}");
    for node in ["fail-a-0", "fail-a-1", "fail-b-0"] {
        let row = run.row(node);
        assert!(row.contains(" failed "), "{row}");
        // Decided from the failed pod, before the Job controller marks the Job failed.
        assert!(row.contains("exited 1 (Error): simulated pull failure"), "{row}");
    }
    assert!(run.row("good-0").contains("succeeded"));
    assert!(run.stdout.contains("1/4 eligible nodes succeeded, 3 failed"), "{run:?}");
}

// 3. Deadline: pods that never finish → DeadlineExceeded, exit 1, named as timed out, and the process
//    exits within a few seconds of the last Job's terminal condition (not at deadline + grace).
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn deadline_exceeded_is_reported_as_timed_out_promptly() {
    let t = Setup::new("deadline", &[], &["slow-d-0:slow".into(), "slow-d-1:slow".into(), "quick-d-0".into()]).await;
    let client = t.client.clone();

    // kwok does not enforce the pod's own activeDeadlineSeconds (the kubelet does, see e2e-real);
    // the Job's, DEADLINE_SECONDS + WAIT_GRACE_SECONDS, is the outer bound that ends these. Without
    // KEEP_LAST_PULLER the timed-out Jobs stay (to their TTL) for the check below.
    let vars = with(
        t.base("deadline-1"),
        &[("DEADLINE_SECONDS", "6"), ("WAIT_GRACE_SECONDS", "4"), ("KEEP_LAST_PULLER", "false")],
    );
    let run = controller(&vars).await;
    assert_eq!(run.code, 1, "{run:?}");
    for node in ["slow-d-0", "slow-d-1"] {
        let row = run.row(node);
        assert!(row.contains("timed-out") && row.contains("DeadlineExceeded"), "{row}");
    }
    assert!(run.row("quick-d-0").contains("succeeded"));
    assert!(run.elapsed < Duration::from_secs(6 + 4 + 15), "ended by the Jobs' conditions: {run:?}");
    // Every 5 s while it waits (this run takes at least the Jobs' 10 s), a progress line with the
    // counts as they are: the quick node done, the slow two pulling.
    let progress: Vec<&str> = run.stderr.lines().filter(|l| l.contains("progress: ")).collect();
    assert!(
        progress.iter().any(|l| l.contains("progress: 1/3 done (0 failed), 0 queued, 0 creating, 2 pulling; Job start lag median")),
        "{run:?}"
    );

    // When did the Job controller mark the last Job terminal? The process must exit soon after.
    let last_terminal = eventually("terminal conditions on the slow Jobs", Duration::from_secs(30), || async {
        let all = jobs(&client, "e2e-deadline").await;
        let times: Vec<_> = all
            .iter()
            .filter(|j| j.metadata.name.as_deref().unwrap().contains("slow"))
            .filter_map(|j| {
                j.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .filter(|c| (c.type_ == "FailureTarget" || c.type_ == "Failed") && c.status == "True")
                    .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
                    .min()
            })
            .collect();
        (times.len() == 2).then(|| times.into_iter().max().unwrap())
    })
    .await;
    let now = k8s_openapi::jiff::Timestamp::now();
    let exited_ago = Duration::from_secs_f64(Instant::now().duration_since(run.finished).as_secs_f64());
    let lag = (now.as_millisecond() - last_terminal.as_millisecond()) as f64 / 1000.0 - exited_ago.as_secs_f64();
    // Condition times have 1 s resolution; the process should exit within a few seconds of the last one.
    assert!(lag < 5.0, "exited {lag:.1}s after the last terminal condition: {run:?}");
}

// 4. quayctl strategy: the apiserver accepts the Jobs; the pod spec carries the image list, the docker
//    socket and host networking.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn quayctl_strategy_jobs_are_accepted_and_faithful() {
    let t = Setup::new("quayctl", &[("pod-security.kubernetes.io/enforce", "privileged")], &names("quayctl", 2)).await;
    let client = t.client.clone();
    let vars = with(
        t.base("quayctl-1"),
        &[("PULL_STRATEGY", "quayctl"), ("QUAYCTL_IMAGE", "quay.io/coreos/quayctl:v0.0.1"), ("HELPER_IMAGE", "")],
    );
    let run = controller(&vars).await;
    assert_eq!(run.code, 0, "{run:?}");
    let jobs = jobs(&client, "e2e-quayctl").await;
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.host_network, Some(true));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("quay.io/coreos/quayctl:v0.0.1"));
        let env = c.env.as_ref().unwrap();
        assert_eq!(env[0].name, "QUAY_IMAGES");
        assert_eq!(env[0].value.as_deref(), Some("nginx:1.27;registry.example.com/ml/pytorch:2.4"));
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, "/var/run/docker.sock");
        let socket = pod.volumes.as_ref().unwrap()[0].host_path.as_ref().unwrap();
        assert_eq!((socket.path.as_str(), socket.type_.as_deref()), ("/var/run/docker.sock", Some("Socket")));
    }
}

// 5. Adoption, both kinds: re-run with the same RUN_ID, and two instances at once: no duplicate
//    puller, correct tally; a new run id replaces the kept pullers as it succeeds.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn same_run_id_is_idempotent_even_when_concurrent() {
    let t = Setup::new("rerun", &[], &names("rerun", 5)).await;
    let client = t.client.clone();
    for kind in KINDS {
        let ns = t.for_kind(kind, &[]).await;
        let vars = t.run(&ns, kind, "rerun-1");
        let (a, b) = tokio::join!(controller(&vars), controller(&vars));
        for run in [&a, &b] {
            assert_eq!(run.code, 0, "{kind}: {run:?}");
            assert!(run.stdout.contains("5/5 eligible nodes succeeded"), "{run:?}");
        }
        let adopted = [&a, &b].iter().map(|r| r.stderr.matches("adopting it").count()).sum::<usize>();
        assert!(adopted >= 1, "{kind}: the slower instance adopts the other's pullers:\n{a:?}\n{b:?}");
        assert_eq!(pullers(&client, &ns, kind).await.len(), 5, "{kind}: no duplicate pullers");

        let again = controller(&vars).await;
        assert_eq!(again.code, 0, "{again:?}");
        assert_eq!(again.stderr.matches("adopting it").count(), 5, "{again:?}");
        assert_eq!(pullers(&client, &ns, kind).await.len(), 5);

        let other = controller(&with(vars.clone(), &[("RUN_ID", "rerun-2")])).await;
        assert_eq!(other.code, 0, "{other:?}");
        // A new run id is a new set of pullers; as each succeeds, it replaces the earlier run's kept one.
        let left = eventually("rerun-1's pullers to be replaced", Duration::from_secs(30), || async {
            let left = pullers(&client, &ns, kind).await;
            (left.len() == 5).then_some(left)
        })
        .await;
        assert!(left.iter().all(|(name, _)| name.starts_with("prepull-rerun-2-")), "{kind}: {left:?}");
        assert_eq!(other.stdout.matches("replaced 1 older puller(s)").count(), 5, "{other:?}");
    }
}

// 6 + 7. RBAC and Pod Security: apply k8s/deploy (server dry-run first), run with a token of ITS
// ServiceAccount in its `restricted` namespace → succeeds; remove one needed verb → exit 3, forbidden.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn deploy_manifests_rbac_and_pod_security() {
    let client = client().await;
    nodes(&client, "rbac", &names("rbac", 3)).await; // into the shipped manifest's own namespace
    let manifest = std::fs::read_to_string(repo().join("k8s/deploy/quayctl-controller-cronjob.yaml")).unwrap();
    let documents: Vec<&str> = manifest.split("\n---\n").collect();
    // The Namespace first (everything else lives in it), then a server-side dry run of every document.
    let (ok, out) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(documents[0].as_bytes())).await;
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(documents[0].as_bytes())).await;
    assert!(ok, "{out}");
    for doc in &documents {
        let (ok, out) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(doc.as_bytes())).await;
        assert!(ok, "server dry-run rejected a manifest: {out}\n{doc}");
    }
    let deploy = repo().join("k8s/deploy");
    let (ok, out) = kubectl(&["apply", "-k", deploy.to_str().unwrap()], None).await;
    assert!(ok, "{out}");
    // Keep the hourly schedule from firing during the suite.
    let (ok, out) = kubectl(
        &["-n", "quayctl-controller", "patch", "cronjob", "quayctl-controller", "-p", r#"{"spec":{"suspend":true}}"#],
        None,
    )
    .await;
    assert!(ok, "{out}");

    let kubeconfig = token_kubeconfig("quayctl-controller", "quayctl-controller").await;
    let kc = kubeconfig.to_str().unwrap();
    let vars = vec![
        ("KUBECONFIG", kc),
        ("QUAY_IMAGES", "busybox:1.36;nginx:1.27"),
        ("HELPER_IMAGE", HELPER_IMAGE),
        ("NODE_SELECTOR", "e2e-group=rbac"),
        ("RUN_ID", "rbac-1"),
        ("DEADLINE_SECONDS", "30"),
    ];
    // rbac-00 joined with the startup taint: the run removes it, as the ServiceAccount, through the
    // admission policy.
    let startup = format!("{STARTUP_TAINT}=pending:NoSchedule");
    assert!(kubectl(&["taint", "node", "rbac-00", &startup], None).await.0);
    let vars: Vec<(&str, &str)> = vars.into_iter().chain([("STARTUP_TAINT", STARTUP_TAINT)]).collect();
    let run = controller(&vars).await;
    assert_eq!(run.code, 0, "the ServiceAccount's RBAC is enough, and restricted PSS admits the pods: {run:?}");
    assert!(run.stdout.contains("3/3 eligible nodes succeeded"));
    assert!(run.row("rbac-00").contains("startup taint removed"), "{run:?}");
    assert!(taints_of(&client, "rbac-00").await.is_empty());

    // IMAGES_FROM's component (k8s/deploy/images-from): the base grants no read of the workloads;
    // with the component the ServiceAccount may `list` them (and nothing more), and a run reads them.
    let sa = "--as=system:serviceaccount:quayctl-controller:quayctl-controller";
    let can = |verb: &'static str, resource: &'static str| async move {
        kubectl(&["auth", "can-i", verb, resource, "--all-namespaces", sa], None).await.1.trim().to_string()
    };
    assert_eq!(can("list", "deployments.apps").await, "no", "the base alone");
    let overlay = state_path("images-from-overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    let relative = |p: &str| {
        let depth = overlay.components().count() - 1;
        format!("{}{}", "../".repeat(depth), repo().join(p).display().to_string().trim_start_matches('/'))
    };
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!("resources: [{}]\ncomponents: [{}]\n", relative("k8s/deploy"), relative("k8s/deploy/images-from")),
    )
    .unwrap();
    let (ok, out) = kubectl(&["apply", "-k", overlay.to_str().unwrap()], None).await;
    assert!(ok, "{out}");
    for resource in
        ["deployments.apps", "statefulsets.apps", "daemonsets.apps", "cronjobs.batch", "jobs.batch", "namespaces"]
    {
        assert_eq!(can("list", resource).await, "yes", "list {resource}");
    }
    assert_eq!(
        (can("get", "deployments.apps").await, can("watch", "deployments.apps").await),
        ("no".into(), "no".into())
    );
    let (ok, from) = kubectl(
        &["-n", "quayctl-controller", "get", "configmap", "quayctl-controller", "-o", "jsonpath={.data.IMAGES_FROM}"],
        None,
    )
    .await;
    assert!(ok && from == "namespaces=*", "{from}");
    // A dry run: the same lists with the ServiceAccount, nothing created (the kept pullers stay).
    let from_vars = [("RUN_ID", "rbac-from"), ("IMAGES_FROM", "namespaces=*;kinds=statefulsets"), ("DRY_RUN", "true")];
    let run = controller(&with(vars.clone(), &from_vars)).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("# node rbac-00: "), "{run:?}");
    assert!(run.stderr.contains("listed the workloads (IMAGES_FROM)"), "{run:?}");
    let (ok, out) =
        kubectl(&["delete", "clusterrolebinding,clusterrole", "quayctl-controller-images-from"], None).await;
    assert!(ok, "{out}");

    // The admission policy: `patch nodes` lets the ServiceAccount remove the startup taint and do
    // nothing else to a node.
    let (ok, out) = kubectl(&[sa, "label", "node", "rbac-01", "sneaky=1"], None).await;
    assert!(!ok && out.contains("ValidatingAdmissionPolicy") && out.contains("does not carry"), "{out}");
    assert!(kubectl(&["taint", "node", "rbac-01", &startup, "other=x:NoSchedule"], None).await.0);
    let (ok, out) = kubectl(&[sa, "taint", "node", "rbac-01", "other-"], None).await;
    assert!(!ok && out.contains("leaving its other taints as they are"), "another taint: {out}");
    let (ok, out) = kubectl(&[sa, "label", "node", "rbac-01", "sneaky=1"], None).await;
    assert!(!ok && out.contains("ValidatingAdmissionPolicy"), "a label, the startup taint still there: {out}");
    let both = r#"[{"op":"replace","path":"/spec/taints","value":[{"key":"other","value":"x","effect":"NoSchedule"}]},
        {"op":"add","path":"/spec/unschedulable","value":true}]"#;
    let (ok, out) = kubectl(&[sa, "patch", "node", "rbac-01", "--type=json", "-p", both], None).await;
    assert!(!ok && out.contains("the rest of its spec must not change"), "the taint and a cordon at once: {out}");
    let (ok, out) = kubectl(&[sa, "taint", "node", "rbac-01", &format!("{STARTUP_TAINT}-")], None).await;
    assert!(ok, "removing only the startup taint is allowed: {out}");
    assert_eq!(taints_of(&client, "rbac-01").await, ["other=x:NoSchedule"]);
    assert!(kubectl(&["taint", "node", "rbac-01", "other-"], None).await.0);
    assert_eq!(jobs(&client, "quayctl-controller").await.len(), 3, "namespace from the kubeconfig");

    // PULLER_KIND=pod with the same ServiceAccount: the Role's pod verbs are enough. (Once the Job
    // controller has marked the first run's Jobs, so that the new run sees them succeeded.)
    eventually("the first run's Jobs to be Complete", Duration::from_secs(30), || async {
        jobs(&client, "quayctl-controller").await.iter().all(|j| condition_true(j, "Complete")).then_some(())
    })
    .await;
    let pod_vars = with(vars.clone(), &[("RUN_ID", "rbac-pod"), ("PULLER_KIND", "pod")]);
    let run = controller(&pod_vars).await;
    assert_eq!(run.code, 0, "PULLER_KIND=pod under the shipped RBAC: {run:?}");
    assert!(run.stdout.contains("3/3 eligible nodes succeeded"), "{run:?}");
    assert_eq!(run.stdout.matches("replaced 1 older puller(s)").count(), 3, "the Jobs of the first run go: {run:?}");

    // Every removal is announced on the node, by the ServiceAccount, in the `default` namespace.
    let events = node_events(&client, "rbac-00").await;
    assert!(events.iter().any(|(kind, reason, _)| kind == "Normal" && reason == "StartupTaintRemoved"), "{events:?}");

    // Without `patch nodes` the removal is refused: the node is held, not succeeded, and the run
    // exits 3 (the API refused it its rights), naming the node, the taint and the API's words.
    let no_patch = r#"[{"op":"replace","path":"/rules/0/verbs","value":["get","list","watch"]}]"#;
    assert!(kubectl(&["patch", "clusterrole", "quayctl-controller", "--type=json", "-p", no_patch], None).await.0);
    assert!(kubectl(&["taint", "node", "rbac-02", &startup], None).await.0);
    let run = controller(&with(vars.clone(), &[("RUN_ID", "rbac-nopatch")])).await;
    assert_eq!(run.code, 3, "{run:?}");
    let row = run.row("rbac-02");
    assert!(row.contains("held") && row.contains(STARTUP_TAINT) && row.contains("cannot patch resource"), "{run:?}");
    assert!(
        run.stdout.contains("held: rbac-02 (rbac-02: every image is on the node, but"),
        "the summary (the Event): {run:?}"
    );
    assert_eq!(taints_of(&client, "rbac-02").await, std::slice::from_ref(&startup));
    assert!(kubectl(&["taint", "node", "rbac-02", &format!("{STARTUP_TAINT}-")], None).await.0);

    // Remove one needed verb: creating Jobs.
    let patch = r#"[{"op":"replace","path":"/rules/0/verbs","value":["get","list","watch","delete"]}]"#;
    let (ok, out) =
        kubectl(&["-n", "quayctl-controller", "patch", "role", "quayctl-controller", "--type=json", "-p", patch], None)
            .await;
    assert!(ok, "{out}");
    let run = controller(&with(vars.clone(), &[("RUN_ID", "rbac-2")])).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("forbidden: cannot create jobs.batch in namespace \"quayctl-controller\""), "{run:?}");
    assert!(
        run.stderr.contains("cannot create resource \\\"jobs\\\"")
            || run.stderr.contains("cannot create resource \"jobs\""),
        "{run:?}"
    );

    // And without `list` on nodes the run stops before creating anything.
    let (ok, out) = kubectl(&["delete", "clusterrolebinding", "quayctl-controller"], None).await;
    assert!(ok, "{out}");
    let count = || async {
        pullers(&client, "quayctl-controller", "job").await.len()
            + pullers(&client, "quayctl-controller", "pod").await.len()
    };
    let before = count().await;
    let run = controller(&with(vars, &[("RUN_ID", "rbac-3")])).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("forbidden: cannot list nodes"), "{run:?}");
    assert_eq!(count().await, before, "nothing new was created");
    let _ = std::fs::remove_file(kubeconfig);
}

// 7. Pod Security: the kubelet strategy's pods pass `restricted`; the quayctl strategy's do not (the
//    negative control shows the namespace really enforces).
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn restricted_pod_security_admits_kubelet_strategy_pods() {
    let restricted = [
        ("pod-security.kubernetes.io/enforce", "restricted"),
        ("pod-security.kubernetes.io/enforce-version", "latest"),
    ];
    let t = Setup::new("restricted", &restricted, &names("restricted", 2)).await;
    let client = t.client.clone();
    let vars = t.base("pss-1");
    let run = controller(&vars).await;
    assert_eq!(run.code, 0, "{run:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "e2e-restricted");
    let admitted = pods.list(&ListParams::default().labels("quayctl-controller/run=pss-1")).await.unwrap();
    assert_eq!(admitted.items.len(), 2, "PodSecurity admitted both puller pods");
    // PULLER_KIND=pod: the same pod spec, created directly, is admitted too.
    let run = controller(&with(vars.clone(), &[("RUN_ID", "pss-pod"), ("PULLER_KIND", "pod")])).await;
    assert_eq!(run.code, 0, "{run:?}");
    let admitted = pods.list(&ListParams::default().labels("quayctl-controller/run=pss-pod")).await.unwrap();
    assert_eq!(admitted.items.len(), 2, "PodSecurity admitted both bare puller pods");

    let quayctl = with(
        vars,
        &[
            ("RUN_ID", "pss-2"),
            ("PULL_STRATEGY", "quayctl"),
            ("QUAYCTL_IMAGE", "quay.io/coreos/quayctl:v0.0.1"),
            ("DEADLINE_SECONDS", "4"),
        ],
    );
    let run = controller(&quayctl).await;
    assert_eq!(run.code, 1, "{run:?}");
    let events =
        kubectl(&["-n", "e2e-restricted", "get", "events", "--field-selector", "reason=FailedCreate"], None).await.1;
    assert!(events.contains("violates PodSecurity \"restricted:latest\""), "{events}");
}

// 8. Ownership and cleanup: as if in a pod owned by the CronJob's Job → puller Jobs carry the
//    ownerReference and its name as run id; deleting the parent removes them; TTL removes finished Jobs.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn ownership_garbage_collection_and_ttl() {
    let t = Setup::new("owner", &[], &names("owner", 3)).await;
    let client = t.client.clone();
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), "e2e-owner");
    let parent: Job = serde_json::from_value(json!({
        "metadata": {"name": "quayctl-controller-29000000"},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": HELPER_IMAGE}]}}},
    }))
    .unwrap();
    let parent = jobs_api.create(&PostParams::default(), &parent).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "e2e-owner");
    let me: Pod = serde_json::from_value(json!({
        "metadata": {"name": "quayctl-controller-29000000-abcde", "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": parent.metadata.name, "uid": parent.metadata.uid,
            "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeSelector": {"e2e-group": "nowhere"}, "containers": [
            {"name": "quayctl-controller", "image": "registry.example.com/platform/quayctl-controller:0.1.0"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &me).await.unwrap();

    let run = controller(&[
        ("QUAY_IMAGES", "nginx:1.27"),
        ("NODE_SELECTOR", "e2e-group=owner"),
        ("POD_NAME", "quayctl-controller-29000000-abcde"),
        ("POD_NAMESPACE", "e2e-owner"),
        ("TTL_SECONDS_AFTER_FINISHED", "600"),
        ("KEEP_LAST_PULLER", "false"),
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let pullers = jobs(&client, "e2e-owner").await;
    assert_eq!(pullers.len(), 3);
    for job in &pullers {
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Job", "quayctl-controller-29000000"));
        assert_eq!(Some(&owner.uid), parent.metadata.uid.as_ref());
        assert_eq!(job.labels()["quayctl-controller/run"], "quayctl-controller-29000000", "run id = parent Job");
        let init = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
        assert_eq!(
            init.image.as_deref(),
            Some("registry.example.com/platform/quayctl-controller:0.1.0"),
            "helper = own image"
        );
    }
    // The run's summary is published as an Event on the parent Job.
    let events = kubectl(
        &["-n", "e2e-owner", "get", "events", "--field-selector", "reason=PrePullSucceeded", "-o", "name"],
        None,
    )
    .await;
    assert!(events.0 && !events.1.trim().is_empty(), "summary Event: {}", events.1);

    jobs_api.delete("quayctl-controller-29000000", &DeleteParams::background()).await.unwrap();
    eventually("the garbage collector to delete the puller Jobs", Duration::from_secs(90), || async {
        jobs(&client, "e2e-owner").await.is_empty().then_some(())
    })
    .await;

    // TTL: finished Jobs and their pods are removed by the ttl-after-finished controller.
    let run =
        controller(&with(t.base("ttl-1"), &[("TTL_SECONDS_AFTER_FINISHED", "1"), ("KEEP_LAST_PULLER", "false")])).await;
    assert_eq!(run.code, 0, "{run:?}");
    eventually("the TTL controller to delete finished Jobs and their pods", Duration::from_secs(90), || async {
        let no_jobs = jobs(&client, "e2e-owner").await.is_empty();
        let no_pods =
            pods.list(&ListParams::default().labels("quayctl-controller/run=ttl-1")).await.ok()?.items.is_empty();
        (no_jobs && no_pods).then_some(())
    })
    .await;
}

// 9. Bad inputs → exit 2, the message names the variable, and nothing was created.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn bad_inputs_exit_2_and_create_nothing() {
    let t = Setup::new("bad", &[], &names("bad", 2)).await;
    let client = t.client.clone();
    let good = t.base("bad-1");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("QUAY_IMAGES", "")], "QUAY_IMAGES=\"\""),
        (&[("QUAY_IMAGES", "nginx;Not A Ref")], "QUAY_IMAGES=\"nginx;Not A Ref\": entry 2"),
        (&[("QUAY_IMAGES", "a;;b")], "QUAY_IMAGES=\"a;;b\": entry 2 is empty"),
        (&[("DEADLINE_SECONDS", "0")], "DEADLINE_SECONDS=\"0\""),
        (&[("DEADLINE_SECONDS", "-1")], "DEADLINE_SECONDS=\"-1\""),
        (&[("DEADLINE_SECONDS", "soon")], "DEADLINE_SECONDS=\"soon\""),
        (&[("PULL_STRATEGY", "bittorrent")], "PULL_STRATEGY=\"bittorrent\""),
        (&[("PULL_STRATEGY", "quayctl")], "QUAYCTL_IMAGE is not set"),
        (&[("LOG_FORMAT", "xml")], "LOG_FORMAT=\"xml\""),
    ];
    for (extra, expected) in cases {
        let run = controller(&with(good.clone(), extra)).await;
        assert_eq!(run.code, 2, "{extra:?}: {run:?}");
        assert!(run.stderr.contains(expected), "{extra:?}: expected `{expected}` in {run:?}");
        assert!(run.stderr.contains("nothing was created"), "{run:?}");
    }
    let unset = controller(&good.iter().copied().filter(|(k, _)| *k != "QUAY_IMAGES").collect::<Vec<_>>()).await;
    assert_eq!(unset.code, 2, "{unset:?}");
    assert!(unset.stderr.contains("QUAY_IMAGES is not set"));
    assert!(jobs(&client, "e2e-bad").await.is_empty(), "no Job was created by any bad run");
}

// 10. DRY_RUN=true creates nothing and prints Jobs that the apiserver accepts.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn dry_run_prints_jobs_the_apiserver_accepts() {
    let t = Setup::new("dry", &[], &names("dry", 3)).await;
    let client = t.client.clone();
    for strategy in [vec![], vec![("PULL_STRATEGY", "quayctl"), ("QUAYCTL_IMAGE", "quay.io/coreos/quayctl:v0.0.1")]] {
        let mut extra = vec![("DRY_RUN", "true")];
        extra.extend(strategy);
        let run = controller(&with(t.base("dry-1"), &extra)).await;
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stdout.matches("kind: Job").count(), 3, "{run:?}");
        let (ok, out) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(run.stdout.as_bytes())).await;
        assert!(ok, "{out}");
        assert_eq!(out.matches("created (server dry run)").count(), 3, "{out}");
        assert!(jobs(&client, "e2e-dry").await.is_empty(), "dry run created nothing");
    }
}

// The shipped binary is fully static: it runs from an empty root with only a kubeconfig, as in
// `docker run -v kubeconfig ... quayctl-controller` on distroless/static.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn static_binary_runs_in_an_empty_root() {
    let t = Setup::new("static", &[], &names("static", 2)).await;
    let root = state_path("static-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(env("QUAYCTL_BIN"), root.join("quayctl-controller")).unwrap();
    let admin = std::fs::read_to_string(env("KUBECONFIG")).unwrap();
    let ca = admin.lines().find_map(|l| l.trim().strip_prefix("certificate-authority: ")).unwrap();
    std::fs::copy(ca, root.join("ca.crt")).unwrap();
    std::fs::write(root.join("kubeconfig"), admin.replace(ca, "/ca.crt")).unwrap();
    let chroot =
        ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"].into_iter().find(|p| std::path::Path::new(p).exists());
    let out = tokio::process::Command::new(chroot.expect("chroot(8) is installed (coreutils)"))
        .arg(&root)
        .arg("/quayctl-controller")
        .env_clear()
        .envs([
            ("KUBECONFIG", "/kubeconfig"),
            ("QUAY_IMAGES", "nginx:1.27"),
            ("HELPER_IMAGE", HELPER_IMAGE),
            ("NAMESPACE", t.ns.as_str()),
            ("NODE_SELECTOR", t.selector.as_str()),
            ("RUN_ID", "static-1"),
            ("LOG_FORMAT", "json"),
        ])
        .output()
        .await
        .expect("chroot (the suite runs as root)");
    std::fs::remove_dir_all(&root).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&out.stdout));
    for line in stderr.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("LOG_FORMAT=json line {line:?}: {e}"));
        assert!(entry["level"].is_string() && entry["message"].is_string(), "{line}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("2/2 eligible nodes succeeded"));
}

// Signals, both kinds (a CronJob's activeDeadlineSeconds, a drained node): SIGTERM stops the run, it
// prints a partial report and exits 143, leaving the created pullers to finish.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn sigterm_prints_a_partial_report_and_exits_143() {
    let t = Setup::new("sigterm", &[], &["slow-t-0:slow".into(), "slow-t-1:slow".into(), "quick-t-0".into()]).await;
    let client = t.client.clone();
    for kind in KINDS {
        let ns = t.for_kind(kind, &[]).await;
        let vars = with(t.run(&ns, kind, "sigterm-1"), &[("RUST_LOG", "info,quayctl_controller::tracker=debug")]);
        let mut child = spawn_controller(&vars);
        // Once the run has concluded the quick node, it waits with the slow ones still open.
        let stderr = watch_stderr(&mut child, "node concluded node=quick-t-0").await;
        let pid = child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let mut out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .expect("exits promptly")
            .unwrap();
        out.stderr = stderr.await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "{kind}: {stdout}\n{stderr}");
        assert!(stdout.contains("interrupted by SIGTERM"), "{stdout}");
        for node in ["slow-t-0", "slow-t-1"] {
            let row = stdout.lines().find(|l| l.starts_with(node)).unwrap_or_default();
            assert!(row.contains("unfinished"), "{stdout}");
        }
        assert!(stdout.lines().any(|l| l.starts_with("quick-t-0") && l.contains("succeeded")), "{stdout}");
        assert_eq!(pullers(&client, &ns, kind).await.len(), 3, "{kind}: created pullers are left to finish");
        if kind == "job" {
            // KEEP_LAST_PULLER (the default): no TTL; a later run deletes them once they have finished.
            let left = jobs(&client, &ns).await;
            assert!(left.iter().all(|j| j.spec.as_ref().unwrap().ttl_seconds_after_finished.is_none()));
        }
    }
}

// ---- The run loop (one event loop) and reach/pace features ----

/// POSTs of Jobs into `ns` seen in the audit log (the request log every create passes through).
fn audit_job_creates(ns: &str) -> usize {
    audit(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "jobs" && e["objectRef"]["namespace"] == ns)
}

// TTL 0 with many nodes: Jobs deleted by their TTL right after success are still successes (the
// watch runs before the first create).
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn ttl_zero_on_many_nodes_is_all_succeeded() {
    let t = Setup::new("ttl0", &[], &names("ttl0", 40)).await;
    let vars = with(t.base("ttl0-1"), &[("TTL_SECONDS_AFTER_FINISHED", "0"), ("KEEP_LAST_PULLER", "false")]);
    let run = controller(&vars).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("40/40 eligible nodes succeeded"), "{run:?}");
}

// Re-running a RUN_ID with other images adopts nothing: the old Jobs pull something else.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn rerun_with_other_images_is_refused_not_adopted() {
    let t = Setup::new("reimg", &[], &names("reimg", 3)).await;
    let first = controller(&t.base("reimg-1")).await;
    assert_eq!(first.code, 0, "{first:?}");
    let vars = with(t.base("reimg-1"), &[("QUAY_IMAGES", "redis:7.4")]);
    let second = controller(&vars).await;
    assert_eq!(second.code, 1, "{second:?}");
    for node in names("reimg", 3) {
        let row = second.row(&node);
        assert!(
            row.contains("not-created") && row.contains("pulls other images") && row.contains("new RUN_ID"),
            "{row}"
        );
    }
}

// SIGTERM while creating: every node is in the partial report (not-started included), and a re-run
// with the same RUN_ID completes the rest with no duplicate Job.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn sigterm_mid_create_then_rerun_completes_without_duplicates() {
    let t = Setup::new("midcreate", &[], &names("midc", 24)).await;
    let client = t.client.clone();
    let vars = with(t.base("midcreate-1"), &[("MAX_PARALLEL", "2"), ("CREATE_CONCURRENCY", "1")]);
    let child = spawn_controller(&vars);
    let api: Api<Job> = Api::namespaced(client.clone(), "e2e-midcreate");
    eventually("a few Jobs created", Duration::from_secs(60), || async {
        (api.list(&ListParams::default()).await.ok()?.items.len() >= 3).then_some(())
    })
    .await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(143), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows = stdout.lines().filter(|l| l.starts_with("midc-")).count();
    assert_eq!(rows, 24, "every eligible node is in the partial report:\n{stdout}");
    assert!(stdout.contains("not-started") && stdout.contains("interrupted by SIGTERM"), "{stdout}");

    let rerun = controller(&vars).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert!(rerun.stdout.contains("24/24 eligible nodes succeeded"), "{rerun:?}");
    let all = jobs(&client, "e2e-midcreate").await;
    assert_eq!(all.len(), 24, "one Job per node, none duplicated");
}

// A ResourceQuota below the node count: per-node not-created with the quota message, exit 1, and
// no create storm (the audit log counts the POSTs).
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn quota_below_the_node_count_is_per_node_and_bounded() {
    let t = Setup::new("quota", &[], &names("quota", 12)).await;
    let quota =
        serde_json::from_value(json!({"metadata": {"name": "jobs"}, "spec": {"hard": {"count/jobs.batch": "3"}}}))
            .unwrap();
    let quotas = Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(t.client.clone(), &t.ns);
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    eventually("the resourcequota controller to fill in the quota's status", Duration::from_secs(30), || async {
        quotas.get("jobs").await.ok()?.status?.hard.map(|_| ())
    })
    .await;
    let vars = with(t.base("quota-1"), &[("CREATE_CONCURRENCY", "1")]);
    let run = controller(&vars).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("3/12 eligible nodes succeeded"), "{run:?}");
    assert!(run.stdout.contains("9 not created"), "{run:?}");
    assert!(run.stdout.contains("exceeded quota"), "{run:?}");
    let posts = audit_job_creates("e2e-quota");
    assert!(posts <= 3 + 3, "three identical denials stop the creates: {posts} POSTs");
}

// Eligibility: Windows nodes are skipped with the reason; a tainted pool is reached only with
// TOLERATIONS, and its Jobs carry exactly the matching toleration.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn windows_skipped_and_tainted_pool_reached_with_tolerations() {
    let t = Setup::new("reach", &[], &["reach-0".into(), "gpu-0:noschedule".into(), "gpu-1:noschedule".into()]).await;
    let client = t.client.clone();
    let manifest = std::process::Command::new(repo().join("hack/nodes.sh"))
        .arg("win-0")
        .env("NODE_LABELS", "e2e-group=reach,kubernetes.io/os=windows")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&manifest.stdout).replace("kubernetes.io/os: linux, ", "");
    assert!(kubectl(&["apply", "-f", "-"], Some(text.as_bytes())).await.0);
    let without = controller(&t.base("reach-1")).await;
    assert!(without.row("win-0").contains("not a Linux node (kubernetes.io/os=windows)"), "{without:?}");
    assert!(without.row("gpu-0").contains("tainted dedicated:NoSchedule"), "{without:?}");
    assert_eq!(without.code, 0, "{without:?}");

    let vars = with(t.base("reach-2"), &[("TOLERATIONS", "dedicated=infra:NoSchedule,spot:NoExecute")]);
    let with_tolerations = controller(&vars).await;
    assert_eq!(with_tolerations.code, 0, "{with_tolerations:?}");
    assert!(with_tolerations.row("gpu-1").contains("succeeded"), "{with_tolerations:?}");
    let gpu_job = jobs(&client, "e2e-reach")
        .await
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some("prepull-reach-2-gpu-0"))
        .unwrap();
    let tolerations = gpu_job.spec.unwrap().template.spec.unwrap().tolerations.unwrap();
    assert_eq!(tolerations.len(), 1, "exactly the matching toleration: {tolerations:?}");
    assert_eq!(tolerations[0].key.as_deref(), Some("dedicated"));
    let plain = jobs(&client, "e2e-reach")
        .await
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some("prepull-reach-2-reach-0"))
        .unwrap();
    assert!(plain.spec.unwrap().template.spec.unwrap().tolerations.is_none());

    // `*` reaches every tainted node, yet each puller tolerates exactly its node's taints as they
    // were (no blanket `Exists`, which would also tolerate a later unschedulable or unreachable).
    let everything = controller(&with(t.base("reach-3"), &[("TOLERATIONS", "*")])).await;
    assert_eq!(everything.code, 0, "{everything:?}");
    let gpu_job = jobs(&client, "e2e-reach")
        .await
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some("prepull-reach-3-gpu-0"))
        .unwrap();
    let tolerations = gpu_job.spec.unwrap().template.spec.unwrap().tolerations.unwrap();
    assert_eq!(
        serde_json::to_value(&tolerations).unwrap(),
        json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]),
        "exactly the node's taint"
    );
}

const STARTUP_TAINT: &str = "startup-taint.cluster-autoscaler.kubernetes.io/quayctl-images";

/// Apply kwok nodes `specs` (see hack/nodes.sh) of group `group` carrying `taints` besides their
/// shape's, and wait until each is initialized (Ready, or NotReady for `notready-*`).
async fn tainted_nodes(client: &Client, group: &str, specs: &[&str], taints: &str) {
    pool_nodes(client, group, specs, "", taints).await;
}

/// Create kwok nodes `specs` labelled `e2e-group=<group>` and `labels` (`k=v,k2=v2`), with `taints`
/// (hack/nodes.sh's NODE_TAINTS), and wait until kwok has initialized each.
async fn pool_nodes(client: &Client, group: &str, specs: &[&str], labels: &str, taints: &str) {
    let labels = if labels.is_empty() { format!("e2e-group={group}") } else { format!("e2e-group={group},{labels}") };
    let manifest = std::process::Command::new(repo().join("hack/nodes.sh"))
        .args(specs)
        .env("NODE_LABELS", labels)
        .env("NODE_TAINTS", taints)
        .output()
        .unwrap();
    assert!(manifest.status.success(), "nodes.sh: {}", String::from_utf8_lossy(&manifest.stderr));
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(&manifest.stdout)).await;
    assert!(ok, "{out}");
    let api: Api<Node> = Api::all(client.clone());
    for name in specs.iter().map(|s| s.split(':').next().unwrap()) {
        let want = if name.starts_with("notready-") { "False" } else { "True" };
        eventually(&format!("{name} initialized"), Duration::from_secs(60), || async {
            let node = api.get(name).await.ok()?;
            let ready = node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.status == want).then_some(())
        })
        .await;
    }
}

// The startup gate never holds a node silently: a joining GPU node is reached whatever TOLERATIONS
// says (its puller tolerates exactly its taints); a held node no puller can reach is `held`, with
// the reason, and fails the run; one held past STARTUP_TAINT_MAX_HOLD_SECONDS is released anyway,
// with a Warning Event on it; every removal is an Event on the node.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn the_startup_gate_never_holds_a_node_silently() {
    let t = Setup::new("gate", &[], &[]).await;
    let client = t.client.clone();
    let held = format!("{STARTUP_TAINT}:NoSchedule");
    tainted_nodes(&client, "gate", &["gpu-gate-0:gpu", "notready-gate-0:notready", "gate-0"], &held).await;
    let run =
        controller(&with(t.base("gate-1"), &[("STARTUP_TAINT", STARTUP_TAINT), ("STARTUP_TAINT_ONLY", "true")])).await;
    assert_eq!(run.code, 1, "a held node the run cannot reach fails it: {run:?}");
    assert!(
        run.row("gpu-gate-0").contains("succeeded") && run.row("gpu-gate-0").contains("startup taint removed"),
        "{run:?}"
    );
    assert_eq!(
        taints_of(&client, "gpu-gate-0").await,
        ["nvidia.com/gpu=present:NoSchedule"],
        "only the startup taint goes"
    );
    let gpu = jobs(&client, &t.ns).await.into_iter().find(|j| j.name_any() == "prepull-gate-1-gpu-gate-0").unwrap();
    let keys: Vec<String> =
        gpu.spec.unwrap().template.spec.unwrap().tolerations.unwrap().iter().map(|t| t.key.clone().unwrap()).collect();
    assert_eq!(keys, ["nvidia.com/gpu", STARTUP_TAINT], "exactly the node's taints, without TOLERATIONS");
    let row = run.row("notready-gate-0");
    assert!(row.contains("held") && row.contains("unreachable: not Ready"), "{run:?}");
    assert!(run.stdout.contains("held: notready-gate-0"), "the summary (the Event) names it: {run:?}");
    let events = node_events(&client, "gpu-gate-0").await;
    assert!(events.iter().any(|(kind, reason, _)| kind == "Normal" && reason == "StartupTaintRemoved"), "{events:?}");

    // Held past the maximum: the nodes are older than 1 s by now. The one no puller can reach, and
    // one whose pull fails, are released anyway, each with a Warning Event; the run still fails.
    tainted_nodes(&client, "gate", &["fail-gate-0:fail"], &held).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = controller(&with(
        t.base("gate-2"),
        &[("STARTUP_TAINT", STARTUP_TAINT), ("STARTUP_TAINT_ONLY", "true"), ("STARTUP_TAINT_MAX_HOLD_SECONDS", "1")],
    ))
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    for node in ["notready-gate-0", "fail-gate-0"] {
        let row = run.row(node);
        assert!(row.contains("released") && row.contains("past STARTUP_TAINT_MAX_HOLD_SECONDS (1s)"), "{run:?}");
        assert!(!taints_of(&client, node).await.contains(&held), "{node} released");
        let events = eventually(&format!("the Warning Event on {node}"), Duration::from_secs(10), || async {
            let events = node_events(&client, node).await;
            events
                .iter()
                .any(|(kind, reason, _)| kind == "Warning" && reason == "StartupTaintReleased")
                .then_some(events)
        })
        .await;
        assert!(events.iter().any(|(_, _, note)| note.contains("STARTUP_TAINT_MAX_HOLD_SECONDS=1")), "{events:?}");
    }
    assert!(run.row("fail-gate-0").contains("failed: "), "the pull's own failure is said too: {run:?}");
}

// Joining nodes within seconds: a joining run (STARTUP_TAINT_WATCH_SECONDS) that is already watching
// pre-pulls a node that joins with the startup taint and releases it a few seconds after it is
// Ready (kwok's pull takes 0.6-3.1 s), with 2 writes by the controller (its puller, the patch).
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn a_node_that_joins_during_the_window_is_released_within_seconds_of_its_pull() {
    let t = Setup::new("join", &[], &[]).await;
    let client = t.client.clone();
    let vars = with(
        t.base("join-1"),
        &[
            ("STARTUP_TAINT", STARTUP_TAINT),
            ("STARTUP_TAINT_ONLY", "true"),
            ("STARTUP_TAINT_WATCH_SECONDS", "20"),
            ("PULLER_KIND", "pod"),
        ],
    );
    let started = Instant::now();
    let mut child = spawn_controller(&vars);
    let stderr = watch_stderr(&mut child, "listed nodes").await;
    tainted_nodes(&client, "join", &["join-0"], &format!("{STARTUP_TAINT}:NoSchedule")).await;
    let ready = Instant::now();
    eventually("join-0 released", Duration::from_secs(30), || async {
        (!taints_of(&client, "join-0").await.iter().any(|t| t.starts_with(STARTUP_TAINT))).then_some(())
    })
    .await;
    let released = ready.elapsed();
    assert!(released < Duration::from_secs(3 + 10), "released {released:?} after it was Ready");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.await.unwrap()).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(20), "the run keeps its window open");
    assert!(stdout.contains("join-0") && stdout.contains("startup taint removed"), "{stdout}");
    let writes = |resource: &str, verb: &str| {
        audit(|e| {
            e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["subresource"].is_null()
                && e["user"]["username"] != "system:kube-controller-manager"
                && e["userAgent"].as_str().is_some_and(|a| a.starts_with("quayctl-controller/"))
                && (e["objectRef"]["name"].as_str().is_some_and(|n| n.contains("join-0"))
                    || e["objectRef"]["namespace"] == t.ns.as_str())
        })
    };
    assert_eq!((writes("pods", "create"), writes("nodes", "patch")), (1, 1), "2 writes for the joining node");
}

// KEEP_LAST_PULLER never unprotects an image: two installations (INSTANCE) in one namespace leave
// each other's kept pullers alone; with SKIP_PRESENT the new puller holds what is already there, so
// the older one may go; with NODE_SELECTOR the kept puller of a deleted node goes; a puller pod that
// never started goes once its run would have given up.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn retention_never_unprotects_an_image() {
    let t = Setup::new("retain", &[], &["retain-0".into(), "retain-1".into()]).await;
    let client = t.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &t.ns);
    let kept = || async {
        let mut kept: Vec<(String, String)> = pods
            .list(&ListParams::default().labels(RUN_SELECTOR_PREFIX))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| (p.labels()["quayctl-controller/instance"].clone(), p.name_any()))
            .collect();
        kept.sort();
        kept
    };
    let run = |id: &'static str, instance: &'static str, images: &'static str| {
        with(t.base(id), &[("INSTANCE", instance), ("QUAY_IMAGES", images), ("PULLER_KIND", "pod")])
    };
    // Two installations, two image lists.
    assert_eq!(controller(&run("a-1", "web", "nginx:1.27")).await.code, 0);
    assert_eq!(controller(&run("b-1", "ml", "registry.example.com/ml/pytorch:2.4")).await.code, 0);
    assert_eq!(
        kept().await,
        [
            ("ml".into(), "prepull-b-1-retain-0".into()),
            ("ml".into(), "prepull-b-1-retain-1".into()),
            ("web".into(), "prepull-a-1-retain-0".into()),
            ("web".into(), "prepull-a-1-retain-1".into()),
        ],
        "b's run left a's kept pullers alone"
    );

    // SKIP_PRESENT: nginx is on retain-0 (held by a-1's puller). The next run of `web` asks for one
    // more image: its puller holds both (nginx is found on the node), so a-1's may go.
    let api: Api<Node> = Api::all(client.clone());
    let listed = json!({"status": {"images": [{"names": ["docker.io/library/nginx:1.27"], "sizeBytes": 1000}]}});
    api.patch_status("retain-0", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&listed)).await.unwrap();
    let two = with(run("a-2", "web", "nginx:1.27;redis:7"), &[("SKIP_PRESENT", "true")]);
    let second = controller(&two).await;
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.row("retain-0").contains("replaced 1 older puller(s)"), "{second:?}");
    let report = controller(&with(two.clone(), &[("RUN_ID", "a-3"), ("REPORT_FORMAT", "json")])).await;
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let node0 = report["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "retain-0").unwrap();
    assert_eq!(node0["images"][0]["result"], "present", "nothing pulled for it: {node0}");
    let a3 = pods.get("prepull-a-3-retain-0").await.unwrap();
    assert_eq!(a3.spec.unwrap().containers.len(), 2, "the kept puller holds the present image too");
    let left = eventually("one kept puller per node of `web`, and b's", Duration::from_secs(30), || async {
        let left = kept().await;
        (left.len() == 4).then_some(left)
    })
    .await;
    assert_eq!(
        left,
        [
            ("ml".into(), "prepull-b-1-retain-0".into()),
            ("ml".into(), "prepull-b-1-retain-1".into()),
            ("web".into(), "prepull-a-3-retain-0".into()),
            ("web".into(), "prepull-a-3-retain-1".into()),
        ]
    );

    // NODE_SELECTOR: retain-1 is deleted. A kept Job stays where the pod garbage collector takes
    // its pod: the next run of that installation, over the group, deletes it.
    let jobs_of = |id: &'static str| with(run(id, "batch", "nginx:1.27"), &[("PULLER_KIND", "job")]);
    assert_eq!(controller(&jobs_of("d-1")).await.code, 0);
    // The run decides from the pods; the Job controller marks the Jobs a moment later.
    eventually("d-1's Jobs to be Complete", Duration::from_secs(30), || async {
        jobs(&client, &t.ns).await.iter().all(|j| condition_true(j, "Complete")).then_some(())
    })
    .await;
    assert!(kubectl(&["delete", "node", "retain-1"], None).await.0);
    let third = controller(&jobs_of("d-2")).await;
    assert_eq!(third.code, 0, "{third:?}");
    let remaining = eventually("the kept Job of the deleted node to be gone", Duration::from_secs(30), || async {
        let mut names: Vec<String> = jobs(&client, &t.ns).await.iter().map(|j| j.name_any()).collect();
        names.sort();
        (!names.contains(&"prepull-d-1-retain-1".to_string())).then_some(names)
    })
    .await;
    assert_eq!(remaining, ["prepull-d-2-retain-0"], "{third:?}");

    // A puller pod that never starts (no node has room for it), left by a run that was interrupted:
    // the next run removes it once that run would have given up (DEADLINE 3 s, WAIT_GRACE 2 s,
    // slack 2.5 s), by its UID.
    let short = [
        ("DEADLINE_SECONDS", "3"),
        ("WAIT_GRACE_SECONDS", "2"),
        ("PULLER_CPU_REQUEST", "64"),
        ("PULLER_CPU_LIMIT", "64"),
    ];
    let mut child = spawn_controller(&with(run("c-1", "stuck", "nginx:1.27"), &short));
    let pending = eventually("the puller pod, unschedulable", Duration::from_secs(30), || async {
        pods.get_opt("prepull-c-1-retain-0").await.ok().flatten()
    })
    .await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait().await.unwrap();
    assert_eq!(out.code(), Some(143));
    assert!(pending.status.as_ref().and_then(|s| s.start_time.as_ref()).is_none(), "never started");
    let early = controller(&with(run("c-2", "stuck", "nginx:1.27"), &[("DEADLINE_SECONDS", "600")])).await;
    assert!(pods.get_opt("prepull-c-1-retain-0").await.unwrap().is_some(), "young: left alone ({early:?})");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let late = controller(&with(run("c-3", "stuck", "nginx:1.27"), &short)).await;
    eventually("the never-started pod to be gone", Duration::from_secs(30), || async {
        pods.get_opt("prepull-c-1-retain-0").await.unwrap().is_none().then_some(())
    })
    .await;
    let by_the_run = audit(|e| {
        e["verb"] == "delete"
            && e["objectRef"]["name"] == "prepull-c-1-retain-0"
            && e["objectRef"]["namespace"] == t.ns.as_str()
            && e["userAgent"].as_str().is_some_and(|a| a.starts_with("quayctl-controller/"))
    });
    assert_eq!(by_the_run, 1, "deleted by the run: {late:?}");
}

/// The apiserver's minor version.
async fn server_minor() -> u32 {
    let (ok, out) = kubectl(&["version", "-o", "json"], None).await;
    assert!(ok, "{out}");
    let start = out.find('{').unwrap();
    let version: serde_json::Value = serde_json::from_str(&out[start..]).unwrap();
    version["serverVersion"]["minor"].as_str().unwrap().trim_end_matches('+').parse().unwrap()
}

/// Set a kwok node's `status.nodeInfo` fields (kwok reports `kwok` for the versions).
async fn node_info(client: &Client, node: &str, info: serde_json::Value) {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": {"nodeInfo": info}});
    api.patch_status(node, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
}

// PULL_STRATEGY=volume: one image volume per image, a pause container per volume, no helper image,
// under `restricted`. An apiserver without ImageVolume (1.33 and 1.34 by default) drops the volumes:
// the run says so and creates nothing more, instead of "succeeding" without a pull. Nodes whose
// kubelet or runtime cannot mount image volumes are skipped with the reason, before any create.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn the_volume_strategy_pulls_through_image_volumes_or_says_why_it_cannot() {
    let restricted = [("pod-security.kubernetes.io/enforce", "restricted")];
    let t = Setup::new("volume", &restricted, &names("volume", 3)).await;
    let client = t.client.clone();
    node_info(
        &client,
        "volume-02",
        json!({"kubeletVersion": "v1.34.4", "containerRuntimeVersion": "containerd://2.1.4"}),
    )
    .await;
    // One create at a time, so that exactly one tells on an apiserver without image volumes.
    let vars =
        with(t.base("volume-1"), &[("PULL_STRATEGY", "volume"), ("HELPER_IMAGE", ""), ("CREATE_CONCURRENCY", "1")]);
    let run = controller(&vars).await;
    assert!(
        run.stdout.contains("volume-02")
            && run.row("volume-02").contains("skipped")
            && run.row("volume-02").contains("cannot mount image volumes (PULL_STRATEGY=volume): kubelet v1.34.4"),
        "{run:?}"
    );
    if server_minor().await >= 35 {
        assert_eq!(run.code, 0, "{run:?}");
        let job =
            jobs(&client, &t.ns).await.into_iter().find(|j| j.name_any() == "prepull-volume-1-volume-00").unwrap();
        let spec = job.spec.unwrap().template.spec.unwrap();
        let volumes: Vec<String> =
            spec.volumes.unwrap().iter().filter_map(|v| v.image.as_ref().and_then(|i| i.reference.clone())).collect();
        assert_eq!(volumes, ["nginx:1.27", "registry.example.com/ml/pytorch:2.4"]);
        assert!(spec.init_containers.is_none(), "no helper image");
        assert!(spec.containers.iter().all(|c| c.args.as_deref() == Some(&["-v".to_string()][..])));
    } else {
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stdout.contains("the apiserver dropped the puller's image volumes")
                && run.stdout.contains("ImageVolume"),
            "{run:?}"
        );
        assert_eq!(
            audit(|e| e["verb"] == "create"
                && e["objectRef"]["resource"] == "jobs"
                && e["objectRef"]["namespace"] == t.ns.as_str()),
            1,
            "one create tells; the rest are not attempted"
        );
        eventually("the puller without volumes to be gone", Duration::from_secs(30), || async {
            jobs(&client, &t.ns).await.is_empty().then_some(())
        })
        .await;
    }
}

// Mixed architectures, one run (the kubelet strategy): amd64 and arm64 nodes get pullers that name
// the helper image as given (its index), never an architecture's digest; a node of an architecture
// the helper lacks is skipped before any puller is created.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn amd64_and_arm64_nodes_share_one_helper_index_and_other_architectures_are_skipped() {
    let t = Setup::new("arch", &[], &names("arch", 3)).await;
    let client = t.client.clone();
    for (node, arch) in [("arch-00", "amd64"), ("arch-01", "arm64"), ("arch-02", "riscv64")] {
        assert!(kubectl(&["label", "node", node, &format!("kubernetes.io/arch={arch}"), "--overwrite"], None).await.0);
    }
    let run = controller(&t.base("arch-1")).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.row("arch-02").contains("skipped")
            && run
                .row("arch-02")
                .contains("architecture riscv64: the helper image has the no-op for amd64, arm64 only"),
        "{run:?}"
    );
    let mut helpers: Vec<(String, String)> = jobs(&client, &t.ns)
        .await
        .into_iter()
        .map(|j| {
            let spec = j.spec.unwrap().template.spec.unwrap();
            (j.metadata.name.unwrap(), spec.init_containers.unwrap()[0].image.clone().unwrap())
        })
        .collect();
    helpers.sort();
    assert_eq!(
        helpers,
        [
            ("prepull-arch-1-arch-00".into(), HELPER_IMAGE.to_string()),
            ("prepull-arch-1-arch-01".into(), HELPER_IMAGE.to_string()),
        ],
        "the same reference on both: the index, resolved by each node's runtime"
    );
}

/// The Events about a node (in `default`, as for every cluster-scoped object): (type, reason, note).
async fn node_events(client: &Client, node: &str) -> Vec<(String, String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let selector = format!("regarding.name={node},regarding.kind=Node");
    let list = api.list(&ListParams::default().fields(&selector)).await.unwrap().items;
    list.into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("quayctl-controller"))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// The taints of a node, as `key=value:Effect` (value left out when empty).
async fn taints_of(client: &Client, node: &str) -> Vec<String> {
    let node = Api::<Node>::all(client.clone()).get(node).await.unwrap();
    node.spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| match t.value.filter(|v| !v.is_empty()) {
            Some(v) => format!("{}={v}:{}", t.key, t.effect),
            None => format!("{}:{}", t.key, t.effect),
        })
        .collect()
}

// STARTUP_TAINT: nodes that carry it are reached without TOLERATIONS and lose exactly that taint once
// every image is on them, their other taints intact, a taint added while the pull runs included; a
// node that failed keeps it; STARTUP_TAINT_ONLY then considers only the node still carrying it.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn startup_taint_is_removed_only_where_every_image_landed() {
    let t = Setup::new("startup", &[], &[]).await;
    let client = t.client.clone();
    let manifest = std::process::Command::new(repo().join("hack/nodes.sh"))
        .args(["st-0", "st-1:noschedule", "late-st-0:late", "fail-st-0:fail"])
        .env("NODE_LABELS", "e2e-group=startup")
        .env("NODE_TAINTS", format!("{STARTUP_TAINT}=pending:NoSchedule,soft:PreferNoSchedule"))
        .output()
        .unwrap();
    assert!(kubectl(&["apply", "-f", "-"], Some(&manifest.stdout)).await.0);
    let plain = std::process::Command::new(repo().join("hack/nodes.sh"))
        .arg("st-plain")
        .env("NODE_LABELS", "e2e-group=startup")
        .output()
        .unwrap();
    assert!(kubectl(&["apply", "-f", "-"], Some(&plain.stdout)).await.0);
    eventually("the tainted nodes to be Ready", Duration::from_secs(60), || async {
        let list = Api::<Node>::all(client.clone()).list(&ListParams::default().labels(&t.selector)).await.ok()?;
        (list.items.len() == 5
            && list.items.iter().all(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            }))
        .then_some(())
    })
    .await;
    let vars =
        with(t.base("startup-1"), &[("STARTUP_TAINT", STARTUP_TAINT), ("TOLERATIONS", "dedicated=infra:NoSchedule")]);
    let child = spawn_controller(&vars);
    // While late-st-0 pulls, someone else taints it: that taint must survive the removal.
    running_pod(&client, &t.ns, "late-st-0").await;
    assert!(kubectl(&["taint", "node", "late-st-0", "maintenance=soon:PreferNoSchedule"], None).await.0);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "fail-st-0 failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let row = |node: &str| stdout.lines().find(|l| l.starts_with(&format!("{node} "))).unwrap_or_default().to_string();
    for node in ["st-0", "st-1", "late-st-0"] {
        assert!(row(node).contains("succeeded") && row(node).contains("startup taint removed"), "{stdout}");
    }
    assert!(row("fail-st-0").contains("taint kept: the node did not succeed (failed)"), "{stdout}");
    assert!(!row("st-plain").contains("taint"), "{stdout}");
    assert!(stdout.contains("startup taint removed from 3, kept on 1"), "{stdout}");
    assert_eq!(taints_of(&client, "st-0").await, ["soft:PreferNoSchedule"]);
    assert_eq!(taints_of(&client, "st-1").await, ["dedicated=infra:NoSchedule", "soft:PreferNoSchedule"]);
    let mut late = taints_of(&client, "late-st-0").await;
    late.sort();
    assert_eq!(late, ["maintenance=soon:PreferNoSchedule", "soft:PreferNoSchedule"], "the concurrent taint stays");
    assert_eq!(
        taints_of(&client, "fail-st-0").await,
        [format!("{STARTUP_TAINT}=pending:NoSchedule"), "soft:PreferNoSchedule".into()]
    );
    assert!(taints_of(&client, "st-plain").await.is_empty());
    // Each puller tolerated exactly its node's blocking taints: the startup taint (and `dedicated`).
    let st1 = jobs(&client, &t.ns).await.into_iter().find(|j| j.name_any() == "prepull-startup-1-st-1").unwrap();
    let keys: Vec<String> =
        st1.spec.unwrap().template.spec.unwrap().tolerations.unwrap().iter().map(|t| t.key.clone().unwrap()).collect();
    assert_eq!(keys, ["dedicated", STARTUP_TAINT], "in the node's order");

    // The frequent run for joining nodes: only the node that still carries the taint.
    let only =
        controller(&with(t.base("startup-2"), &[("STARTUP_TAINT", STARTUP_TAINT), ("STARTUP_TAINT_ONLY", "true")]))
            .await;
    assert_eq!(only.code, 1, "{only:?}");
    assert!(
        only.stdout.contains("0/1 eligible nodes succeeded")
            && only.stdout.contains("4 without the startup taint not considered"),
        "{only:?}"
    );
    let second: Vec<String> = jobs(&client, &t.ns)
        .await
        .into_iter()
        .filter(|j| j.labels()["quayctl-controller/run"] == "startup-2")
        .map(|j| j.name_any())
        .collect();
    assert!(second.is_empty(), "its failed puller is deleted (no TTL): {second:?}");
    assert_eq!(
        audit(|e| e["verb"] == "create"
            && e["objectRef"]["resource"] == "jobs"
            && e["objectRef"]["namespace"] == t.ns.as_str()
            && e["objectRef"]["name"].as_str().is_some_and(|n| n.starts_with("prepull-startup-2-"))),
        1,
        "one puller: fail-st-0's"
    );
    // Nothing joined: exit 0, nothing created.
    let quiet =
        controller(&with(t.base("startup-3"), &[("STARTUP_TAINT", "no-such-taint"), ("STARTUP_TAINT_ONLY", "true")]))
            .await;
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert!(quiet.stdout.contains("no node with the startup taint to pre-pull"), "{quiet:?}");
}

// KEEP_LAST_PULLER (default): each node's latest successful puller stays; a later run deletes it
// only on the nodes where it succeeds itself (here: one skipped, one refused by a quota).
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn a_later_run_replaces_kept_pullers_only_where_it_succeeds() {
    let t = Setup::new("keep", &[], &["keep-0".into(), "keep-1".into(), "keep-skip-0".into()]).await;
    let client = t.client.clone();
    let first = controller(&t.base("keep-1")).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(first.stdout.matches("puller kept").count(), 3, "{first:?}");
    // The run decides from the pods; the Job controller marks the Jobs a moment later.
    let kept = eventually("the kept Jobs to be Complete", Duration::from_secs(30), || async {
        let all = jobs(&client, &t.ns).await;
        all.iter().all(|j| condition_true(j, "Complete")).then_some(all)
    })
    .await;
    assert_eq!(kept.len(), 3);
    assert!(kept.iter().all(|j| j.spec.as_ref().unwrap().ttl_seconds_after_finished.is_none()), "no TTL");
    // The second run: keep-0 succeeds; keep-1's create is refused (a quota with room for one more
    // Job; creates go one at a time, in node order); keep-skip-0 is skipped (an untolerated taint).
    assert!(kubectl(&["taint", "node", "keep-skip-0", "dedicated=infra:NoSchedule"], None).await.0);
    let quota = json!({"metadata": {"name": "jobs"}, "spec": {"hard": {"count/jobs.batch": "4"}}});
    let quotas = Api::<k8s_openapi::api::core::v1::ResourceQuota>::namespaced(client.clone(), &t.ns);
    quotas.create(&PostParams::default(), &serde_json::from_value(quota).unwrap()).await.unwrap();
    eventually("the resourcequota controller to count the kept Jobs", Duration::from_secs(30), || async {
        let used = quotas.get("jobs").await.ok()?.status?.used?;
        (used.get("count/jobs.batch")?.0 == "3").then_some(())
    })
    .await;
    let second = controller(&with(t.base("keep-2"), &[("CREATE_CONCURRENCY", "1")])).await;
    assert_eq!(second.code, 1, "{second:?}");
    assert!(
        second.row("keep-0").contains("succeeded") && second.row("keep-0").contains("replaced 1 older puller(s)"),
        "{second:?}"
    );
    assert!(
        second.row("keep-1").contains("not-created") && second.row("keep-1").contains("exceeded quota"),
        "{second:?}"
    );
    let left = eventually("keep-0's first puller to be gone", Duration::from_secs(30), || async {
        let mut left: Vec<String> = jobs(&client, &t.ns).await.iter().map(|j| j.name_any()).collect();
        left.sort();
        (left.len() == 3).then_some(left)
    })
    .await;
    assert_eq!(
        left,
        ["prepull-keep-1-keep-1", "prepull-keep-1-keep-skip-0", "prepull-keep-2-keep-0"],
        "keep-0's first puller replaced; the others kept where the second run did not succeed"
    );
}

// MAX_PARALLEL=3 on 20 nodes, both kinds: from a watch of the pods, never more than 3 pullers
// unfinished at once.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn max_parallel_bounds_the_pullers_in_flight() {
    use kube::runtime::watcher;
    let t = Setup::new("parallel", &[], &names("par", 20)).await;
    for kind in KINDS {
        let ns = t.for_kind(kind, &[]).await;
        let pods: Api<Pod> = Api::namespaced(t.client.clone(), &ns);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel::<()>();
        let observer = tokio::spawn(async move {
            let stream = watcher(pods, watcher::Config::default());
            futures::pin_mut!(stream);
            let mut open: std::collections::BTreeSet<String> = Default::default();
            let (mut most, mut seen) = (0usize, std::collections::BTreeSet::new());
            let mut listed = Some(listed_tx);
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    Some(Ok(event)) = futures::StreamExt::next(&mut stream) => match event {
                        watcher::Event::InitDone => {
                            if let Some(tx) = listed.take() { let _ = tx.send(()); }
                        }
                        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                            let name = pod.name_any();
                            seen.insert(name.clone());
                            let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
                            if phase == "Succeeded" || phase == "Failed" { open.remove(&name); } else { open.insert(name); }
                            most = most.max(open.len());
                        }
                        watcher::Event::Delete(pod) => { open.remove(&pod.name_any()); }
                        watcher::Event::Init => {}
                    },
                }
            }
            (most, seen.len())
        });
        // The observer's initial list is done before the controller starts: it sees every pod.
        listed_rx.await.expect("the observer's watch lists the namespace");
        let vars = with(t.run(&ns, kind, "par-1"), &[("MAX_PARALLEL", "3")]);
        let run = controller(&vars).await;
        let _ = stop_tx.send(());
        let (most, seen) = observer.await.unwrap();
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        assert_eq!(seen, 20, "{kind}: every node's puller pod was seen");
        assert!(most <= 3, "{kind}: {most} pullers unfinished at once");
        assert!(most >= 2, "{kind}: the limit was used, not serialised: {most}");
    }
}

// SEED_NODES=2, both kinds: the fan-out waits until the seeds are done; when both seeds fail the
// run stops, the rest are not-started with "seed wave failed", exit 1.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn seed_wave_gates_the_fan_out_and_stops_when_it_fails() {
    let mut specs: Vec<String> = vec!["fail-s-0:fail".into(), "fail-s-1:fail".into()];
    specs.extend(names("seedok", 6));
    let failing = Setup::new("seed", &[], &specs).await;
    let good = Setup::new("seed-ok", &[], &names("seedb", 6)).await;
    for kind in KINDS {
        let ns = failing.for_kind(kind, &[]).await;
        let run = controller(&with(failing.run(&ns, kind, "seed-1"), &[("SEED_NODES", "2")])).await;
        assert_eq!(run.code, 1, "{kind}: {run:?}");
        for node in names("seedok", 6) {
            let row = run.row(&node);
            assert!(row.contains("not-started") && row.contains("seed wave failed"), "{row}");
        }
        assert_eq!(audit_puller_creates(&ns, kind), 2, "{kind}: only the seeds were created");

        let ns = good.for_kind(kind, &[]).await;
        let run =
            controller(&with(good.run(&ns, kind, "seed-2"), &[("SEED_NODES", "2"), ("LOG_FORMAT", "json")])).await;
        assert_eq!(run.code, 0, "{kind}: {run:?}");
        assert!(run.stderr.contains("seed wave done; fanning out"), "{run:?}");
        // The fan-out pullers are created only after both seeds are done: compare their creation
        // as the apiserver recorded it.
        let created = |name: &str| {
            audit_first(|e| {
                e["verb"] == "create"
                    && e["objectRef"]["namespace"] == ns.as_str()
                    && e["objectRef"]["name"] == name
                    && e["responseStatus"]["code"] == 201
            })
            .unwrap_or_else(|| panic!("{name} was created"))
        };
        let first_fanout =
            ["prepull-seed-2-seedb-02", "prepull-seed-2-seedb-03"].map(created).into_iter().min().unwrap();
        let last_seed = ["prepull-seed-2-seedb-00", "prepull-seed-2-seedb-01"].map(created).into_iter().max().unwrap();
        assert!(first_fanout > last_seed, "{kind}: fan-out pullers come after the seeds");
    }
}

// Pull errors fail fast (not at the deadline), and after three nodes the image is not sent again;
// both kinds.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn pull_errors_fail_fast_and_trip_the_image_breaker() {
    let specs: Vec<String> = (0..8).map(|i| format!("pullerr-{i:02}:pullerr")).collect();
    let t = Setup::new("pullerr", &[], &specs).await;
    for kind in KINDS {
        let ns = t.for_kind(kind, &[]).await;
        let report_file = state_path(&format!("pullerr-{kind}.json"));
        let vars = with(
            t.run(&ns, kind, "pullerr-1"),
            &[
                ("QUAY_IMAGES", "registry.example.com/ml/pytorch:2.4-typo"),
                ("DEADLINE_SECONDS", "300"),
                ("PULL_ERROR_GRACE_SECONDS", "3"),
                ("MAX_PARALLEL", "3"),
                ("REPORT_FILE", report_file.to_str().unwrap()),
            ],
        );
        let run = controller(&vars).await;
        assert_eq!(run.code, 1, "{kind}: {run:?}");
        assert!(run.elapsed < Duration::from_secs(60), "fail-fast, not DEADLINE_SECONDS: {run:?}");
        let row = run.row("pullerr-00");
        assert!(row.contains("failed") && row.contains("ErrImagePull") && row.contains("not found"), "{row}");
        assert!(run.stdout.contains("not sent to the remaining nodes: it failed on the first 3 nodes"), "{run:?}");
        let report = std::fs::read_to_string(&report_file).unwrap();
        std::fs::remove_file(&report_file).unwrap();
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        assert_eq!(report["counts"]["failed"], 8);
        assert_eq!(report["settings"]["puller_kind"], kind);
        assert_eq!(report["nodes"][7]["images"][0]["result"], "not-sent", "{report}");
        assert!(audit_puller_creates(&ns, kind) < 8, "{kind}: the broken image was not sent to every node");
        // What failed was deleted (so the kubelet stops retrying), nothing is left behind.
        let left = eventually("the failed pullers to be deleted", Duration::from_secs(30), || async {
            let left = pullers(&t.client, &ns, kind).await;
            left.is_empty().then_some(())
        });
        left.await;
    }
}

// SKIP_PRESENT: a node whose status.images lists every image gets no Job and is already-present.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn skip_present_leaves_out_nodes_that_have_the_images() {
    let t = Setup::new("present", &[], &names("present", 3)).await;
    let client = t.client.clone();
    let patch = json!({"status": {"images": [
        {"names": ["docker.io/library/nginx:1.27", "docker.io/library/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000"], "sizeBytes": 1000},
        {"names": ["registry.example.com/ml/pytorch:2.4"], "sizeBytes": 1000}]}});
    let api: Api<Node> = Api::all(client.clone());
    api.patch_status("present-00", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    let half = json!({"status": {"images": [{"names": ["docker.io/library/nginx:1.27"], "sizeBytes": 1000}]}});
    api.patch_status("present-01", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&half)).await.unwrap();
    // Without KEEP_LAST_PULLER (with it, the kept puller holds the present images too: see
    // retention_never_unprotects_an_image).
    let vars = with(t.base("present-1"), &[("SKIP_PRESENT", "true"), ("KEEP_LAST_PULLER", "false")]);
    let run = controller(&vars).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.row("present-00").contains("already-present"), "{run:?}");
    assert!(run.row("present-01").contains("succeeded"));
    let all = jobs(&client, "e2e-present").await;
    assert_eq!(all.len(), 2, "no Job for the node that has everything");
    let half_job = all.iter().find(|j| j.metadata.name.as_deref() == Some("prepull-present-1-present-01")).unwrap();
    let containers = &half_job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers;
    assert_eq!(containers.len(), 1, "only the missing image");
}

// Pull secrets and priority class are on the pods; a missing secret is refused before any create.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn pull_secrets_and_priority_class() {
    let t = Setup::new("secrets", &[], &names("secrets", 2)).await;
    let client = t.client.clone();
    let missing = controller(&with(t.base("sec-1"), &[("IMAGE_PULL_SECRETS", "regcred")])).await;
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("IMAGE_PULL_SECRETS=\"regcred\": no Secret of that name"), "{missing:?}");
    assert_eq!(audit_job_creates("e2e-secrets"), 0);
    assert!(
        kubectl(
            &[
                "-n",
                "e2e-secrets",
                "create",
                "secret",
                "docker-registry",
                "regcred",
                "--docker-server=r.example",
                "--docker-username=u",
                "--docker-password=p"
            ],
            None
        )
        .await
        .0
    );
    let (created, output) = kubectl(&["create", "priorityclass", "prepull-low", "--value=-10"], None).await;
    assert!(created, "{output}");
    let vars = with(t.base("sec-2"), &[("IMAGE_PULL_SECRETS", "regcred"), ("PRIORITY_CLASS_NAME", "prepull-low")]);
    let run = controller(&vars).await;
    assert_eq!(run.code, 0, "{run:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "e2e-secrets");
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert!(!list.items.is_empty());
    for pod in list.items {
        let spec = pod.spec.unwrap();
        assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "regcred");
        assert_eq!(spec.priority_class_name.as_deref(), Some("prepull-low"));
        assert_eq!(spec.priority, Some(-10), "the apiserver resolved the class");
    }
}

/// When the first audit-log entry (ResponseComplete) matching `keep` was received.
fn audit_first(keep: impl Fn(&serde_json::Value) -> bool) -> Option<String> {
    let log = std::fs::read_to_string(env("QUAYCTL_E2E_AUDIT_LOG")).unwrap();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete" && keep(e))
        .filter_map(|e| e["requestReceivedTimestamp"].as_str().map(String::from))
        .min()
}

/// Audit-log entries (ResponseComplete) matching `keep`.
fn audit(keep: impl Fn(&serde_json::Value) -> bool) -> usize {
    let log = std::fs::read_to_string(env("QUAYCTL_E2E_AUDIT_LOG")).unwrap();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete" && keep(e))
        .count()
}

/// A running puller pod in `ns` on `node`.
async fn running_pod(client: &Client, ns: &str, node: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(&format!("a running puller pod on {node}"), Duration::from_secs(60), || async {
        pods.list(&ListParams::default()).await.ok()?.items.into_iter().find(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
    })
    .await
}

// A node deleted mid-pull is concluded (`deleted`) when the pod garbage collector says so, not at
// the deadline (a Job alone would keep making pods for a node that is gone); both kinds.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn a_node_deleted_mid_run_is_concluded_without_waiting_for_the_deadline() {
    let t = Setup::new("gone", &[], &[]).await;
    for kind in KINDS {
        let (group, slow) = (format!("gone-{kind}"), format!("slow-g-{kind}"));
        nodes(&t.client, &group, &[format!("{slow}:slow"), format!("gone-ok-{kind}")]).await;
        let ns = t.for_kind(kind, &[]).await;
        let selector = format!("e2e-group={group}");
        let vars = with(base(&ns, &selector, "gone-1"), &[("DEADLINE_SECONDS", "600"), ("PULLER_KIND", kind)]);
        let child = spawn_controller(&vars);
        running_pod(&t.client, &ns, &slow).await;
        let deleted_at = Instant::now();
        assert!(kubectl(&["delete", "node", &slow, "--wait=false"], None).await.0);
        let out =
            tokio::time::timeout(Duration::from_secs(150), child.wait_with_output()).await.expect("ends").unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{kind}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let row = stdout.lines().find(|l| l.starts_with(&format!("{slow} "))).unwrap_or_default();
        assert!(row.contains(" deleted "), "{kind}: {stdout}");
        assert!(row.contains("the node was deleted") || row.contains("pod deleted before it finished"), "{stdout}");
        assert!(
            deleted_at.elapsed() < Duration::from_secs(120),
            "concluded {:?} after the delete",
            deleted_at.elapsed()
        );
    }
}

// An evicted puller is not a failure, both kinds: the Job's pod failure policy ignores the
// disruption and makes a new pod; with PULLER_KIND=pod the run replaces the pod itself. The new
// pod pulls within the same deadline.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn an_evicted_puller_is_retried_within_the_deadline() {
    let t = Setup::new("evict", &[], &["late-e-0:late".into()]).await;
    for kind in KINDS {
        let ns = t.for_kind(kind, &[]).await;
        let child = spawn_controller(&t.run(&ns, kind, "evict-1"));
        let pod = running_pod(&t.client, &ns, "late-e-0").await;
        let pods: Api<Pod> = Api::namespaced(t.client.clone(), &ns);
        pods.evict(&pod.name_any(), &kube::api::EvictParams::default()).await.unwrap();
        let out =
            tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.expect("ends").unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{kind}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1/1 eligible nodes succeeded"), "{stdout}");
        let pod_creates = audit(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "pods"
                && e["objectRef"]["namespace"] == ns.as_str()
                && e["objectRef"]["subresource"].is_null()
                && e["responseStatus"]["code"] == 201
        });
        assert!(pod_creates >= 2, "{kind}: a new pod after the eviction: {pod_creates}");
        if kind == "pod" {
            assert!(String::from_utf8_lossy(&out.stderr).contains("replacing it once it is gone"));
            assert_eq!(audit_puller_creates(&ns, kind), pod_creates, "the run made both pods");
        }
    }
}

// API Priority and Fairness squeezing the controller's user: 429s are honoured by the client's own
// retries, every Job is created exactly once, every node succeeds.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn api_priority_and_fairness_429s_are_honoured() {
    let t = Setup::new("apf", &[], &names("apf", 30)).await;
    let client = t.client.clone();
    let setup = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: squeezed, namespace: e2e-apf}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-apf-squeezed}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: squeezed, namespace: e2e-apf}]
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: e2e-squeezed}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    lendablePercent: 0
    limitResponse: {type: Queue, queuing: {queues: 1, handSize: 1, queueLengthLimit: 1}}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: e2e-squeezed}
spec:
  priorityLevelConfiguration: {name: e2e-squeezed}
  matchingPrecedence: 100
  distinguisherMethod: {type: ByUser}
  rules:
  - subjects: [{kind: ServiceAccount, serviceAccount: {name: squeezed, namespace: e2e-apf}}]
    resourceRules: [{verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"], clusterScope: true}]
"#;
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(setup.as_bytes())).await;
    assert!(ok, "{out}");
    let kubeconfig = token_kubeconfig("e2e-apf", "squeezed").await;
    let kc = kubeconfig.to_str().unwrap().to_string();
    let vars = with(t.base("apf-1"), &[("KUBECONFIG", &kc), ("CREATE_CONCURRENCY", "64")]);
    let run = controller(&vars).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("30/30 eligible nodes succeeded"), "{run:?}");
    assert_eq!(jobs(&client, "e2e-apf").await.len(), 30, "every Job created once");
    let throttled = audit(|e| {
        e["user"]["username"] == "system:serviceaccount:e2e-apf:squeezed" && e["responseStatus"]["code"] == 429
    });
    assert!(throttled > 0, "APF really squeezed the controller's user");
    let _ = std::fs::remove_file(kubeconfig);
}

// kube-apiserver restarted mid-watch: the watches resume (or relist), creates in flight are tried
// again, and every node gets the right verdict with no duplicate Job.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn apiserver_restart_mid_watch_keeps_verdicts_right() {
    let specs: Vec<String> = (0..6).map(|i| format!("late-r-{i}:late")).collect();
    let t = Setup::new("restart", &[], &specs).await;
    let client = t.client.clone();
    let child = spawn_controller(&t.base("restart-1"));
    running_pod(&client, "e2e-restart", "late-r-0").await;
    let restarted = std::process::Command::new(repo().join("hack/cluster.sh"))
        .args(["restart", &env("QUAYCTL_E2E_STATE"), "kube-apiserver"])
        .output()
        .unwrap();
    assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.expect("ends").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("6/6 eligible nodes succeeded"), "{stdout}");
    let client = self::client().await;
    assert_eq!(jobs(&client, "e2e-restart").await.len(), 6, "no duplicate Job");
}

// A node going NotReady mid-pull (its kubelet gone quiet): the pod never reports, and the Job's own
// deadline ends it as timed-out, not a hang; the other nodes are unaffected.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn a_node_going_not_ready_mid_pull_times_out_at_the_jobs_deadline() {
    let t = Setup::new("notready", &[], &["slow-nr-0:slow".into(), "nr-ok".into()]).await;
    let client = t.client.clone();
    let vars = with(t.base("notready-1"), &[("DEADLINE_SECONDS", "8"), ("WAIT_GRACE_SECONDS", "4")]);
    let child = spawn_controller(&vars);
    running_pod(&client, "e2e-notready", "slow-nr-0").await;
    // Take the node from kwok (as a kubelet that stops), then mark it NotReady as the node
    // lifecycle controller would.
    assert!(kubectl(&["annotate", "node", "slow-nr-0", "kwok.x-k8s.io/node-"], None).await.0);
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": null, "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string()}]}});
    let api: Api<Node> = Api::all(client.clone());
    api.patch_status("slow-nr-0", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(&patch))
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("ends").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with("slow-nr-0 ")).unwrap_or_default();
    assert!(row.contains("timed-out") && row.contains("DeadlineExceeded"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("nr-ok ") && l.contains("succeeded")), "{stdout}");
}

// ---- The Helm chart (charts/quayctl-controller) ----

/// Run the Helm binary of the suite (hack/build-helm.sh); returns (success, stdout, stderr).
fn helm(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env("QUAYCTL_HELM")).args(args).current_dir(repo()).output().expect("helm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Manifests as the objects they describe: kubectl's client-side parse (no server), Helm's own labels
/// dropped, sorted by kind and name.
async fn objects(manifests: &str) -> Vec<serde_json::Value> {
    let (ok, out) = kubectl(&["create", "--dry-run=client", "-o", "json", "-f", "-"], Some(manifests.as_bytes())).await;
    assert!(ok, "{out}");
    // One JSON document per object (or a List).
    let mut items: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .map(|doc| doc.unwrap_or_else(|e| panic!("{e}: {out}")))
        .flat_map(|doc| match doc["kind"].as_str() {
            Some("List") => doc["items"].as_array().unwrap().clone(),
            _ => vec![doc],
        })
        .collect();
    for item in &mut items {
        if let Some(labels) = item["metadata"]["labels"].as_object_mut() {
            for helm_label in [
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by",
                "helm.sh/chart",
            ] {
                labels.remove(helm_label);
            }
        }
    }
    items.sort_by_key(|i| format!("{}/{}", i["kind"], i["metadata"]["name"]));
    items
}

// The chart with its default values is k8s/deploy, object for object; `helm lint --strict` passes;
// what it renders the apiserver accepts (server-side dry run); and its values.schema.json refuses
// at `helm template` what the controller refuses with exit 2.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn helm_chart_is_the_shipped_manifests_and_refuses_what_the_controller_refuses() {
    let chart = "charts/quayctl-controller";
    let (ok, out, err) = helm(&["lint", "--strict", chart]);
    assert!(ok, "helm lint --strict: {out}{err}");

    let (ok, rendered, err) = helm(&["template", "quayctl-controller", chart]);
    assert!(ok, "{err}");
    let (ok, kustomized) = kubectl(&["kustomize", repo().join("k8s/deploy").to_str().unwrap()], None).await;
    assert!(ok, "{kustomized}");
    let (from_chart, from_deploy) = (objects(&rendered).await, objects(&kustomized).await);
    let names = |v: &[serde_json::Value]| {
        v.iter().map(|i| format!("{}/{}", i["kind"], i["metadata"]["name"])).collect::<Vec<_>>()
    };
    assert_eq!(names(&from_chart), names(&from_deploy), "the same objects");
    for (chart_object, deploy_object) in from_chart.iter().zip(&from_deploy) {
        assert_eq!(chart_object, deploy_object, "the chart's {} differs from k8s/deploy's", chart_object["kind"]);
    }

    // Into an existing namespace, under another name: the apiserver accepts every object.
    let t = Setup::new("helm-dry", &[], &[]).await;
    let (ok, rendered, err) = helm(&[
        "template",
        "dry",
        chart,
        "--namespace",
        &t.ns,
        "--set-string",
        &format!("namespace.name={}", t.ns),
        "--set",
        "namespace.create=false",
        "--set",
        "name=quayctl-dry",
        "--set",
        "joining.enabled=true",
        "--set",
        "config.pullerKind=pod",
        "--set",
        "config.maxParallel=100000",
        "--set",
        "config.ttlSecondsAfterFinished=2147483647",
    ]);
    assert!(ok, "{err}");
    assert!(
        rendered.contains("MAX_PARALLEL: \"100000\"")
            && rendered.contains("TTL_SECONDS_AFTER_FINISHED: \"2147483647\""),
        "whole numbers: {rendered}"
    );
    assert!(rendered.contains("system:serviceaccount:e2e-helm-dry:quayctl-dry"), "the policy names its ServiceAccount");
    let (ok, out) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(rendered.as_bytes())).await;
    assert!(ok, "server-side dry run: {out}");
    assert!(out.contains("cronjob.batch/quayctl-dry-joining created (server dry run)"), "{out}");

    // The schema against the controller: each value it refuses at `helm template`, the controller
    // refuses with exit 2 (and a valid one, both accept).
    let cases: &[(&str, &str, &str)] = &[
        ("config.quayImages=a;;b", "QUAY_IMAGES", "a;;b"),
        ("config.quayImages=Not A Ref", "QUAY_IMAGES", "Not A Ref"),
        ("config.deadlineSeconds=0", "DEADLINE_SECONDS", "0"),
        ("config.deadlineSeconds=86401", "DEADLINE_SECONDS", "86401"),
        ("config.waitGraceSeconds=3601", "WAIT_GRACE_SECONDS", "3601"),
        ("config.createConcurrency=257", "CREATE_CONCURRENCY", "257"),
        ("config.pullerKind=daemonset", "PULLER_KIND", "daemonset"),
        ("config.pullPolicy=Sometimes", "PULL_POLICY", "Sometimes"),
        ("config.reportFormat=xml", "REPORT_FORMAT", "xml"),
        ("config.pullerMemoryLimit=64MB", "PULLER_MEMORY_LIMIT", "64MB"),
        ("config.startupTaint=a:Never", "STARTUP_TAINT", "a:Never"),
        ("config.tolerations=a:NoSchedul", "TOLERATIONS", "a:NoSchedul"),
        ("config.pullStrategy=quayctl", "PULL_STRATEGY", "quayctl"),
    ];
    // Numbers as numbers (`--set`), not only as strings: the schema's ranges, not its types, refuse.
    let numbers: &[(&str, &str, &str)] = &[
        ("config.deadlineSeconds=0", "DEADLINE_SECONDS", "0"),
        ("config.deadlineSeconds=86401", "DEADLINE_SECONDS", "86401"),
        ("config.createConcurrency=0", "CREATE_CONCURRENCY", "0"),
        ("config.maxParallel=100001", "MAX_PARALLEL", "100001"),
        ("config.startupTaintMaxHoldSeconds=86401", "STARTUP_TAINT_MAX_HOLD_SECONDS", "86401"),
        ("config.ttlSecondsAfterFinished=-1", "TTL_SECONDS_AFTER_FINISHED", "-1"),
    ];
    // Grammars as the apiserver checks them: taint keys and values, Secret names, selectors, the
    // 64-image limit, label values.
    let too_many = (0..65).map(|i| format!("img{i}")).collect::<Vec<_>>().join(";");
    let sixty_four = (0..64).map(|i| format!("img{i}")).collect::<Vec<_>>().join(";");
    let grammars: Vec<(String, &str, String)> = vec![
        (format!("config.quayImages={too_many}"), "QUAY_IMAGES", too_many.clone()),
        ("config.startupTaint=-bad-key:NoSchedule".into(), "STARTUP_TAINT", "-bad-key:NoSchedule".into()),
        (
            format!("config.startupTaint=k={}:NoSchedule", "v".repeat(64)),
            "STARTUP_TAINT",
            format!("k={}:NoSchedule", "v".repeat(64)),
        ),
        ("config.tolerations=gpu=a b:NoSchedule".into(), "TOLERATIONS", "gpu=a b:NoSchedule".into()),
        ("config.imagePullSecrets=Reg_Cred".into(), "IMAGE_PULL_SECRETS", "Reg_Cred".into()),
        ("config.nodeSelector=pool in gpu".into(), "NODE_SELECTOR", "pool in gpu".into()),
        ("config.nodeSelector=a=b\\,\\,c".into(), "NODE_SELECTOR", "a=b,,c".into()),
        ("config.instance=two words".into(), "INSTANCE", "two words".into()),
        ("config.runId=-x-".into(), "RUN_ID", "-x-".into()),
        ("config.helperArchitectures=amd64\\,\\,arm64".into(), "HELPER_ARCHITECTURES", "amd64,,arm64".into()),
        ("config.helperArchitectures=AMD64".into(), "HELPER_ARCHITECTURES", "AMD64".into()),
        ("config.runnerImage=Pause:3.10".into(), "RUNNER_IMAGE", "Pause:3.10".into()),
    ];
    let too_many_tolerations = (0..33).map(|i| format!("k{i}")).collect::<Vec<_>>().join(",");
    let (ok, _, err) = helm(&[
        "template",
        "x",
        chart,
        "--set-string",
        &format!("config.tolerations={}", too_many_tolerations.replace(',', "\\,")),
    ]);
    assert!(!ok && err.contains("values don't meet"), "33 tolerations: {err}");
    // imagesFrom: QUAY_IMAGES may go; IMAGES_FROM and a RoleBinding in each named namespace come.
    let (ok, _, err) = helm(&["template", "x", chart, "--set", "config.quayImages=null"]);
    assert!(!ok && err.contains("quayImages"), "no images at all: {err}");
    let from = ["template", "x", chart, "--set", "config.quayImages=null", "--set", "imagesFrom.namespaces={ml,web}"];
    let (ok, rendered, err) = helm(&from);
    assert!(ok, "{err}");
    assert!(rendered.contains("IMAGES_FROM: \"namespaces=ml,web\"") && !rendered.contains("QUAY_IMAGES"), "{rendered}");
    assert_eq!(
        rendered.matches("kind: RoleBinding\nmetadata:\n  name: quayctl-controller-images-from").count(),
        2,
        "{rendered}"
    );
    let (ok, _, err) = helm(&[
        "template",
        "x",
        chart,
        "--set",
        "imagesFrom.namespaces={ml}",
        "--set",
        "imagesFrom.namespaceSelector=a=b",
    ]);
    assert!(!ok && err.contains("values don't meet"), "namespaces and a selector: {err}");
    let run = controller(&[
        ("QUAY_IMAGES", "nginx:1.27"),
        ("HELPER_IMAGE", HELPER_IMAGE),
        ("TOLERATIONS", &too_many_tolerations),
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    for (set, var, value) in numbers.iter().map(|(a, b, c)| (a.to_string(), *b, c.to_string())).chain(grammars) {
        let flag = if numbers.iter().any(|(n, _, _)| *n == set) { "--set" } else { "--set-string" };
        let (ok, _, err) = helm(&["template", "x", chart, flag, &set]);
        assert!(
            !ok && err.contains("values don't meet the specifications of the schema"),
            "helm accepted {set}: {err}"
        );
        let run = controller(&[("QUAY_IMAGES", "nginx:1.27"), ("HELPER_IMAGE", HELPER_IMAGE), (var, &value)]).await;
        assert_eq!(run.code, 2, "the controller accepted {var}={value}: {run:?}");
    }
    let (ok, _, err) = helm(&["template", "x", chart, "--set-string", &format!("config.quayImages={sixty_four}")]);
    assert!(ok, "64 images are fine: {err}");
    // Names the chart renders: `name` leaves room for the joining CronJob's `-joining` (52 at most).
    let (ok, _, err) = helm(&["template", "x", chart, "--set", &format!("name={}", "n".repeat(45))]);
    assert!(!ok && err.contains("values don't meet"), "a name too long for the joining CronJob: {err}");
    let (ok, rendered, err) = helm(&["template", "x", chart, "--set", &format!("name={}", "n".repeat(44))]);
    assert!(ok && rendered.contains(&format!("name: {}-joining", "n".repeat(44))), "{err}");
    // Creating the release namespace itself would fail the install (it must exist already).
    let (ok, _, err) = helm(&["template", "x", chart, "--set", "namespace.name=", "--set", "namespace.create=true"]);
    assert!(!ok && err.contains("values don't meet"), "namespace.name empty with create: {err}");
    let (ok, _, err) = helm(&["template", "x", chart, "--set", "namespace.name=", "--set", "namespace.create=false"]);
    assert!(ok, "the release namespace, not created: {err}");
    // The chart grants what its values need: no `patch`/`watch` on nodes without a startup taint,
    // `get` on the named Secrets only.
    let (ok, rendered, err) = helm(&["template", "x", chart, "--set", "config.startupTaint=null"]);
    assert!(ok, "{err}");
    assert!(
        rendered.contains(r#"verbs: ["get", "list"]"#)
            && !rendered.contains(r#""patch""#)
            && !rendered.contains("node-events"),
        "{rendered}"
    );
    assert!(!rendered.contains("kind: ValidatingAdmissionPolicy"), "no policy without a taint to remove");
    let (ok, rendered, err) =
        helm(&["template", "x", chart, "--set-string", r"config.imagePullSecrets=regcred\,other"]);
    assert!(ok, "{err}");
    assert!(rendered.contains("resourceNames:\n  - \"regcred\"\n  - \"other\""), "{rendered}");
    for (set, var, value) in cases {
        let (ok, _, err) = helm(&["template", "x", chart, "--set-string", set]);
        assert!(
            !ok && err.contains("values don't meet the specifications of the schema"),
            "helm accepted {set}: {err}"
        );
        let run = controller(&[("QUAY_IMAGES", "nginx:1.27"), ("HELPER_IMAGE", HELPER_IMAGE), (var, value)]).await;
        assert_eq!(run.code, 2, "the controller accepted {var}={value}: {run:?}");
    }
    let (ok, _, err) = helm(&["template", "x", chart, "--set", "config.quayImages=null"]);
    assert!(!ok && err.contains("quayImages"), "QUAY_IMAGES is required: {err}");
    let (ok, _, err) =
        helm(&["template", "x", chart, "--set", "config.deadlineSeconds=600", "--set-string", "config.tolerations=*"]);
    assert!(ok, "valid values: {err}");
}

/// The images each puller of `ns` pulls (its `quayctl-controller/images` annotation), by node.
async fn images_by_node(client: &Client, ns: &str, kind: &str) -> BTreeMap<String, Vec<String>> {
    let metas: Vec<kube::api::ObjectMeta> = if kind == "job" {
        jobs(client, ns).await.into_iter().map(|j| j.metadata).collect()
    } else {
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        api.list(&ListParams::default().labels(RUN_SELECTOR_PREFIX))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.metadata)
            .collect()
    };
    // Pods of puller Jobs carry the node's name but not the images: the Job says those.
    metas
        .into_iter()
        .filter_map(|m| {
            let a = m.annotations.unwrap_or_default();
            let images = a.get("quayctl-controller/images")?.split(';').map(String::from).collect();
            Some((a["quayctl-controller/node-name"].clone(), images))
        })
        .collect()
}

// IMAGES_FROM: workloads in three namespaces (selected by a namespace label, one workload opted out
// by the workload selector, a fourth namespace not selected) over a GPU pool with a taint and a web
// pool in two zones. Each node's puller carries exactly QUAY_IMAGES and the images of what could
// be scheduled there (a Deployment's init container and image volume, a zone-pinned StatefulSet,
// a DaemonSet, a CronJob); the report names the workloads; DRY_RUN says why each node gets each
// image; a GPU node joining with the startup taint gets its pool's images before its workload is
// scheduled there; without the right to list the workloads the run exits 3 and creates nothing.
#[tokio::test]
#[ignore = "needs the local control plane: make e2e"]
async fn images_from_what_the_cluster_runs_reach_the_nodes_that_can_run_them() {
    let t = Setup::new("from", &[], &[]).await;
    let client = t.client.clone();
    let gpu = "pool=gpu,topology.kubernetes.io/zone=a";
    pool_nodes(&client, "from", &["from-gpu-0", "from-gpu-1"], gpu, "nvidia.com/gpu=present:NoSchedule").await;
    pool_nodes(&client, "from", &["from-web-0"], "pool=web,topology.kubernetes.io/zone=a", "").await;
    pool_nodes(&client, "from", &["from-web-1"], "pool=web,topology.kubernetes.io/zone=b", "").await;
    for ns in ["e2e-from-ml", "e2e-from-web", "e2e-from-data"] {
        namespace(&client, ns, &[("e2e-from", "workloads")]).await;
    }
    namespace(&client, "e2e-from-other", &[]).await;
    let r = "registry.example.com";
    let workloads = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: trainer, namespace: e2e-from-ml}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: trainer}}}}
  template:
    metadata: {{labels: {{app: trainer}}}}
    spec:
      nodeSelector: {{pool: gpu}}
      tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
      initContainers: [{{name: fetch, image: "{r}/ml/fetch:1"}}]
      containers: [{{name: train, image: "{r}/ml/trainer:2.4", volumeMounts: [{{name: weights, mountPath: /w}}]}}]
      volumes: [{{name: weights, image: {{reference: "{r}/ml/weights:v3"}}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: frontend, namespace: e2e-from-web}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: frontend}}}}
  template:
    metadata: {{labels: {{app: frontend}}}}
    spec:
      nodeSelector: {{pool: web}}
      containers: [{{name: web, image: "{r}/web/frontend:7"}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: opted-out, namespace: e2e-from-web, labels: {{prepull: "false"}}}}
spec:
  selector: {{matchLabels: {{app: opted-out}}}}
  template:
    metadata: {{labels: {{app: opted-out}}}}
    spec:
      containers: [{{name: c, image: "{r}/web/opted-out:1"}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: nightly, namespace: e2e-from-web}}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          nodeSelector: {{pool: web}}
          containers: [{{name: report, image: "{r}/web/report:1"}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: e2e-from-data}}
spec:
  serviceName: db
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{{key: topology.kubernetes.io/zone, operator: In, values: [a]}}]
      containers: [{{name: db, image: "{r}/data/postgres:17"}}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent, namespace: e2e-from-data}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      nodeSelector: {{e2e-group: from}}
      containers: [{{name: agent, image: "{r}/data/agent:2"}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: elsewhere, namespace: e2e-from-other}}
spec:
  selector: {{matchLabels: {{app: elsewhere}}}}
  template:
    metadata: {{labels: {{app: elsewhere}}}}
    spec:
      containers: [{{name: c, image: "{r}/other/elsewhere:1"}}]
"#
    );
    let (ok, out) = kubectl(&["apply", "-f", "-"], Some(workloads.as_bytes())).await;
    assert!(ok, "{out}");
    let from = "namespace-selector=e2e-from=workloads;selector=prepull!=false";
    let vars = with(t.base("from-1"), &[("QUAY_IMAGES", "busybox:1.36"), ("IMAGES_FROM", from)]);
    let run = controller(&vars).await;
    assert_eq!(run.code, 0, "{run:?}");
    let image = |path: &str| format!("{r}/{path}");
    let busybox = "docker.io/library/busybox:1.36".to_string();
    // The apiserver keeps a template's image volume only with its ImageVolume gate on (the default
    // from 1.35); 1.33 drops the field on write, so the Deployment it stores asks for two images.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), "e2e-from-ml");
    let stored = deployments.get("trainer").await.unwrap();
    let volume_kept =
        stored.spec.unwrap().template.spec.unwrap().volumes.unwrap_or_default().iter().any(|v| v.image.is_some());
    assert_eq!(volume_kept, server_minor().await >= 35, "the stored template's image volume");
    let mut trainer = vec![image("ml/fetch:1"), image("ml/trainer:2.4")];
    if volume_kept {
        trainer.push(image("ml/weights:v3"));
    }
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in ["from-gpu-0", "from-gpu-1"] {
        want.insert(node.into(), [busybox.clone()].into_iter().chain(trainer.iter().cloned()).collect());
    }
    // Ranked by pods expected on the node: frontend 4 over 2 nodes, db 1 on its 1, the agent's 1,
    // the CronJob's 1 over 2.
    want.insert(
        "from-web-0".into(),
        vec![
            busybox.clone(),
            image("web/frontend:7"),
            image("data/postgres:17"),
            image("data/agent:2"),
            image("web/report:1"),
        ],
    );
    want.insert(
        "from-web-1".into(),
        vec![busybox.clone(), image("web/frontend:7"), image("data/agent:2"), image("web/report:1")],
    );
    let mut got = images_by_node(&client, &t.ns, "job").await;
    for (node, images) in got.iter_mut() {
        if node.starts_with("from-gpu") {
            images[1..].sort(); // one Deployment's three images weigh the same
        }
    }
    assert_eq!(got, want, "{run:?}");
    assert!(
        run.stdout.contains("for Deployment e2e-from-ml/trainer")
            && run.stdout.contains("for StatefulSet e2e-from-data/db")
            && !run.stdout.contains("opted-out")
            && !run.stdout.contains("elsewhere"),
        "{run:?}"
    );
    assert!(run.stderr.contains("listed the workloads (IMAGES_FROM)"), "{run:?}");

    let json = controller(&with(vars.clone(), &[("RUN_ID", "from-json"), ("REPORT_FORMAT", "json")])).await;
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("the JSON report");
    let db = report["images"].as_array().unwrap().iter().find(|i| i["image"] == image("data/postgres:17").as_str());
    assert_eq!(db.unwrap()["workloads"], json!(["StatefulSet e2e-from-data/db"]), "{json:?}");

    let dry = controller(&with(vars.clone(), &[("RUN_ID", "from-dry"), ("DRY_RUN", "true")])).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains("# node from-web-0: 5 image(s)")
            && dry.stdout.contains(&format!("#   {} <- StatefulSet e2e-from-data/db", image("data/postgres:17")))
            && dry.stdout.contains("#   docker.io/library/busybox:1.36 <- QUAY_IMAGES"),
        "{dry:?}"
    );

    // A GPU node joins with the startup taint while a joining run watches: its pool's images first,
    // then its workload (pinned to it, not tolerating the startup taint) is scheduled there.
    let join = with(
        vars.clone(),
        &[
            ("RUN_ID", "from-join"),
            ("STARTUP_TAINT", STARTUP_TAINT),
            ("STARTUP_TAINT_ONLY", "true"),
            ("STARTUP_TAINT_WATCH_SECONDS", "20"),
            ("PULLER_KIND", "pod"),
        ],
    );
    let mut child = spawn_controller(&join);
    let stderr = watch_stderr(&mut child, "listed nodes").await;
    let workload = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "trainer-0", "namespace": "e2e-from-ml"}},
        "spec": {{"nodeSelector": {{"kubernetes.io/hostname": "from-gpu-2"}},
        "tolerations": [{{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}}],
        "containers": [{{"name": "train", "image": "{r}/ml/trainer:2.4"}}]}}}}"#
    );
    assert!(kubectl(&["apply", "-f", "-"], Some(workload.as_bytes())).await.0);
    let taints = format!("nvidia.com/gpu=present:NoSchedule,{STARTUP_TAINT}:NoSchedule");
    pool_nodes(&client, "from", &["from-gpu-2"], gpu, &taints).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "e2e-from-ml");
    let scheduled = eventually("the workload to be scheduled on from-gpu-2", Duration::from_secs(60), || async {
        let pod = pods.get("trainer-0").await.ok()?;
        let c = pod.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "True")?;
        c.last_transition_time.map(|t| t.0)
    })
    .await;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), stderr.await.unwrap());
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&stderr));
    let joined = images_by_node(&client, &t.ns, "pod").await;
    assert_eq!(
        joined["from-gpu-2"][1..].iter().cloned().collect::<std::collections::BTreeSet<_>>(),
        trainer.iter().cloned().collect()
    );
    let released = node_events(&client, "from-gpu-2").await;
    assert!(released.iter().any(|(_, reason, _)| reason == "StartupTaintRemoved"), "{released:?}");
    let removed_at = {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
        let list = api
            .list(&ListParams::default().fields("regarding.name=from-gpu-2,reason=StartupTaintRemoved"))
            .await
            .unwrap();
        list.items[0].event_time.as_ref().unwrap().0
    };
    assert!(
        scheduled.as_second() >= removed_at.as_second(),
        "scheduled at {scheduled}, before the startup taint went at {removed_at}"
    );

    // No right to list the workloads: exit 3 before anything is created.
    let (ok, out) = kubectl(&["-n", &t.ns, "create", "serviceaccount", "no-rights"], None).await;
    assert!(ok, "{out}");
    let kubeconfig = token_kubeconfig(&t.ns, "no-rights").await;
    let denied =
        controller(&with(vars.clone(), &[("RUN_ID", "from-denied"), ("KUBECONFIG", kubeconfig.to_str().unwrap())]))
            .await;
    assert_eq!(denied.code, 3, "{denied:?}");
    let said = format!("{}{}", denied.stdout, denied.stderr);
    assert!(
        said.contains("cannot list resource \"namespaces\"") || said.contains("cannot list resource \"deployments\""),
        "{denied:?}"
    );
    assert!(jobs(&client, &t.ns).await.iter().all(|j| !j.name_any().contains("from-denied")), "nothing created");
}
