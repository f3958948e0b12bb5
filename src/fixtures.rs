//! Mock-API scenario tests (tower-test, in the style of kube-rs/controller-rs `fixtures.rs`) for
//! the faults a real apiserver cannot easily produce on demand: 503s, 409 races, forbidden watches,
//! Jobs vanishing between list and watch. Everything else is proven against a real apiserver in
//! `tests/e2e.rs`; the tracker's decisions alone are tested as scenarios in `tracker/scenarios.rs`.
//!
//! The fake answers by route (one handler per route) rather than in a fixed order, because the Job
//! and pod watchers run concurrently. Watch requests are held open without an answer, like a quiet
//! long-poll, and answered when there is news. Tests wait on what the fake has seen (a number of
//! creates, a watch resumed past an event), never on the wall clock: they run on paused tokio time,
//! and the run and the fake read one [`Clock`] (tokio's, from a fixed moment), so a deadline is
//! asserted to the second without waiting for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::cluster::Cluster;
use crate::error::Error;
use crate::exit_code::ExitCode;
use crate::nodes::tests::node;
use crate::run::{Clock, Finished, execute};
use crate::signal::Signal;
use crate::workloads::Catalog;

/// Status code for the n-th (0-based) create of a Job name.
type CreateStatus = Box<dyn Fn(&str, usize) -> u16 + Send + Sync>;
/// Terminal condition `(type, reason)` of a Job by name; `None` while it runs.
type Condition = Box<dyn Fn(&str) -> Option<(&'static str, &'static str)> + Send + Sync>;
/// The pod status the fake's "Job controller" gives a Job's pod, by Job name; `None` = no pod.
type PodStatus = Box<dyn Fn(&str) -> Option<Value> + Send + Sync>;

/// What the fake apiserver does. Closures decide per request so a scenario reads as data.
struct Behavior {
    nodes: Vec<Node>,
    /// Status for listing nodes (200 = list them).
    list_nodes_status: u16,
    /// Status for the n-th (0-based) create of a Job name: 201 creates it.
    create_status: CreateStatus,
    /// Terminal condition (type, reason) a created Job gets right away; `None` = running.
    condition: Condition,
    /// The pod each created Job gets.
    pod_status: PodStatus,
    /// Status for the watcher's initial list of this run's Jobs.
    list_jobs_status: u16,
    /// Jobs that exist before the run (for 409 adoption).
    existing: Vec<Job>,
    /// Jobs (by name suffix) that are deleted right after they are created, before any condition.
    vanish: Vec<&'static str>,
    /// Jobs (by name suffix) whose GET after a 409 answers 404 once (deleted in between).
    gone_on_get: Vec<&'static str>,
    /// `ttlSecondsAfterFinished: 0` as the TTL controller applies it: a Job is deleted the moment it
    /// has a terminal condition (its DELETED event carries that last state).
    ttl_zero: bool,
    /// The controller's own pod, served for GET /api/v1/namespaces/{ns}/pods/{name}.
    own_pod: Option<Value>,
    /// A taint someone else adds to a node between the run's read of it and its first patch.
    taint_race: Option<(&'static str, Value)>,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            nodes: vec![node("n1", Some("True"), false, &[]), node("n2", Some("True"), false, &[])],
            list_nodes_status: 200,
            create_status: Box::new(|_, _| 201),
            condition: Box::new(|_| Some(("Complete", "CompletionsReached"))),
            pod_status: Box::new(|_| None),
            list_jobs_status: 200,
            existing: Vec::new(),
            vanish: Vec::new(),
            gone_on_get: Vec::new(),
            ttl_zero: false,
            own_pod: None,
            taint_race: None,
        }
    }
}

/// A watch held open until there is something to tell it.
struct HeldWatch {
    kind: &'static str,
    after: u64,
    send: tower_test::mock::SendResponse<Response<Body>>,
}

#[derive(Default)]
struct State {
    requests: Vec<String>,
    /// The nodes as JSON (read, listed and patched).
    nodes: BTreeMap<String, Value>,
    patches: usize,
    jobs: BTreeMap<String, Job>,
    create_attempts: BTreeMap<String, usize>,
    /// (resourceVersion, kind, watch event JSON), in order.
    events: Vec<(u64, &'static str, Value)>,
    resource_version: u64,
    held: Vec<HeldWatch>,
    /// The highest resourceVersion each kind's watch was (re)started from: the watcher asks again
    /// only once its consumer (the run loop) has taken every event it was given before.
    resumed: BTreeMap<&'static str, u64>,
    gets_gone: Vec<String>,
}

impl State {
    fn push(&mut self, kind: &'static str, event_type: &str, mut object: Value) -> u64 {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.events.push((self.resource_version, kind, json!({"type": event_type, "object": object})));
        self.resource_version
    }

    /// Answer every held watch that has news (the answer ends that watch; the watcher resumes it).
    fn flush(&mut self) {
        let held = std::mem::take(&mut self.held);
        for watch in held {
            let news: Vec<&Value> = self
                .events
                .iter()
                .filter(|(rv, k, _)| *rv > watch.after && *k == watch.kind)
                .map(|(_, _, e)| e)
                .collect();
            if news.is_empty() {
                self.held.push(watch);
            } else {
                watch.send.send_response(events_body(&news));
            }
        }
    }

    fn creates(&self) -> usize {
        self.requests.iter().filter(|r| r.starts_with("POST /apis/batch/v1/")).count()
    }
}

fn events_body(events: &[&Value]) -> Response<Body> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    Response::builder().status(200).header("content-type", "application/json").body(Body::from(body)).unwrap()
}

/// The fake apiserver as the test sees it.
struct Fake {
    state: Arc<Mutex<State>>,
    /// Notified after every request the fake has handled.
    seen: Arc<Notify>,
}

impl Fake {
    fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.requests().iter().filter(|r| r.starts_with(prefix)).count()
    }

    /// Wait until `ready` holds for what the fake has seen (bounded, so a broken test fails).
    async fn until(&self, what: &str, ready: impl Fn(&State) -> bool) {
        let wait = async {
            loop {
                let notified = self.seen.notified();
                if ready(&self.state.lock().unwrap()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or_else(|_| panic!("fake never saw {what}"));
    }
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}),
    )
}

/// A Job as the fake's "Job controller" shows it: with its terminal condition, if any.
fn with_condition(behavior: &Behavior, job: &Job) -> Value {
    let mut j = serde_json::to_value(job).unwrap();
    j["apiVersion"] = json!("batch/v1");
    j["kind"] = json!("Job");
    j["metadata"]["creationTimestamp"] = json!(now());
    if let Some((kind, reason)) = (behavior.condition)(job.metadata.name.as_deref().unwrap()) {
        j["status"] = json!({"startTime": now(),
            "conditions": [{"type": kind, "status": "True", "reason": reason, "message": ""}]});
    }
    j
}

thread_local! {
    /// The test's clock, set by [`serve`]: every test runs on its own thread, on a current-thread
    /// runtime whose time is paused, and the fake (a task of that runtime) shares it.
    static CLOCK: std::cell::Cell<Option<Clock>> = const { std::cell::Cell::new(None) };
}

/// The moment each test's clock starts from.
const EPOCH: &str = "2026-01-01T00:00:00Z";

/// The run's and the fake's clock.
fn clock() -> Clock {
    CLOCK.with(|c| c.get()).expect("serve() sets the clock first")
}

/// Timestamps as the apiserver writes them, now.
fn now() -> String {
    clock().now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Virtual seconds since the test's clock started.
fn elapsed() -> Duration {
    let start: k8s_openapi::jiff::Timestamp = EPOCH.parse().unwrap();
    Duration::try_from(clock().now().duration_since(start)).unwrap()
}

fn pod_of(job: &str, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{job}-abcde"), "namespace": "ops", "creationTimestamp": now(),
            "labels": {"app.kubernetes.io/managed-by": "quayctl-controller"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": "u", "controller": true}]},
        "status": status})
}

const QUOTA: &str = "jobs.batch \"{name}\" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, used: count/jobs.batch=2, limited: count/jobs.batch=2";
const RBAC: &str = "jobs.batch is forbidden: User \"system:serviceaccount:ops:quayctl\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"ops\"";

/// The routes the fake serves.
enum Route<'a> {
    Watch { kind: &'static str, after: u64 },
    ListNodes,
    GetNode(&'a str),
    PatchNode(&'a str),
    CreateJob,
    GetJob(&'a str),
    DeleteJob(&'a str),
    ListJobs(Selector),
    GetPod,
    ListPods,
    PostEvent,
    Unknown,
}

/// A label selector of `key=value` and `key!=value` terms, as the run sends them.
struct Selector(Vec<(String, bool, String)>);

impl Selector {
    fn parse(query: &str) -> Selector {
        let raw = query.split('&').find_map(|kv| kv.strip_prefix("labelSelector=")).unwrap_or("");
        let decoded = raw.replace("%2F", "/").replace("%3D", "=").replace("%2C", ",").replace("%21", "!");
        let terms = decoded
            .split(',')
            .filter(|t| !t.is_empty())
            .filter_map(|t| match t.split_once("!=") {
                Some((k, v)) => Some((k.to_string(), false, v.to_string())),
                None => t.split_once('=').map(|(k, v)| (k.to_string(), true, v.to_string())),
            })
            .collect();
        Selector(terms)
    }

    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.0.iter().all(|(k, equal, v)| (labels.and_then(|l| l.get(k)) == Some(v)) == *equal)
    }

    /// The run's own watch (`run=<id>`), not another run's list.
    fn is_this_run(&self) -> bool {
        self.0.iter().any(|(k, equal, _)| k == "quayctl-controller/run" && *equal)
    }
}

fn route<'a>(method: &Method, segments: &[&'a str], query: &str) -> Route<'a> {
    if query.contains("watch=true") {
        let after = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("resourceVersion="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return Route::Watch { kind: if segments.contains(&"jobs") { "jobs" } else { "pods" }, after };
    }
    match (method.clone(), segments) {
        (Method::GET, ["api", "v1", "nodes"]) => Route::ListNodes,
        (Method::GET, ["api", "v1", "nodes", name]) => Route::GetNode(name),
        (Method::PATCH, ["api", "v1", "nodes", name]) => Route::PatchNode(name),
        (Method::POST, ["apis", "batch", "v1", "namespaces", _, "jobs"]) => Route::CreateJob,
        (Method::GET, ["apis", "batch", "v1", "namespaces", _, "jobs", name]) => Route::GetJob(name),
        (Method::DELETE, ["apis", "batch", "v1", "namespaces", _, "jobs", name]) => Route::DeleteJob(name),
        (Method::GET, ["apis", "batch", "v1", "namespaces", _, "jobs"]) => Route::ListJobs(Selector::parse(query)),
        (Method::GET, ["api", "v1", "namespaces", _, "pods", _]) => Route::GetPod,
        (Method::GET, ["api", "v1", "namespaces", _, "pods"]) => Route::ListPods,
        (Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => Route::PostEvent,
        _ => Route::Unknown,
    }
}

fn list_nodes(behavior: &Behavior, state: &State) -> Response<Body> {
    if behavior.list_nodes_status != 200 {
        return status(behavior.list_nodes_status, "InternalError", "etcdserver: request timed out");
    }
    let items: Vec<&Value> = state.nodes.values().collect();
    respond(200, &json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}))
}

fn get_node(state: &State, name: &str) -> Response<Body> {
    match state.nodes.get(name) {
        Some(node) => respond(200, node),
        None => status(404, "NotFound", "nodes not found"),
    }
}

/// A JSON patch of a node, applied as the apiserver does: a failed `test` is a 422 that says so only
/// in its causes. `taint_race` changes the node's taints just before the first patch.
fn patch_node(behavior: &Behavior, state: &mut State, name: &str, patch: json_patch::Patch) -> Response<Body> {
    state.patches += 1;
    if let (1, Some((node, taint))) = (state.patches, &behavior.taint_race)
        && let Some(target) = state.nodes.get_mut(*node)
    {
        target["spec"]["taints"].as_array_mut().expect("the node has taints").push(taint.clone());
    }
    let Some(node) = state.nodes.get_mut(name) else { return status(404, "NotFound", "nodes not found") };
    let mut patched = node.clone();
    match json_patch::patch(&mut patched, &patch) {
        Ok(()) => {
            *node = patched;
            respond(200, node)
        }
        Err(e) => respond(
            422,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid",
                "message": "the server rejected our request due to an error in our request",
                "details": {"causes": [{"reason": "UnexpectedServerResponse", "message": e.to_string()}]}}),
        ),
    }
}

/// POST a Job: the status of `create_status`; a 201 creates it with what the fake's "controllers"
/// do to it at once (its pod, its condition, a TTL of 0, someone deleting it).
fn create_job(behavior: &Behavior, state: &mut State, job: Job) -> Response<Body> {
    let name = job.metadata.name.clone().unwrap();
    let attempt = *state.create_attempts.entry(name.clone()).and_modify(|n| *n += 1).or_insert(0);
    let code = (behavior.create_status)(&name, attempt);
    if state.jobs.contains_key(&name) {
        return status(409, "AlreadyExists", "jobs.batch already exists");
    }
    match code {
        201 => {}
        403 => return status(403, "Forbidden", RBAC),
        4031 => return status(403, "Forbidden", &QUOTA.replace("{name}", &name)),
        code => return status(code, "ServiceUnavailable", "the server is currently unable to handle the request"),
    }
    state.jobs.insert(name.clone(), job.clone());
    let mut created = serde_json::to_value(&job).unwrap();
    created["metadata"]["creationTimestamp"] = json!(now());
    state.push("jobs", "ADDED", created.clone());
    if behavior.vanish.iter().any(|v| name.ends_with(v)) {
        state.jobs.remove(&name);
        state.push("jobs", "DELETED", created.clone());
        return respond(201, &created);
    }
    if let Some(pod) = (behavior.pod_status)(&name) {
        state.push("pods", "ADDED", pod_of(&name, pod));
    }
    if (behavior.condition)(&name).is_some() {
        let finished = with_condition(behavior, &job);
        state.push("jobs", "MODIFIED", finished.clone());
        if behavior.ttl_zero {
            state.jobs.remove(&name);
            state.push("jobs", "DELETED", finished);
        }
    }
    respond(201, &created)
}

fn get_job(behavior: &Behavior, state: &mut State, name: &str) -> Response<Body> {
    if let Some(pos) = state.gets_gone.iter().position(|g| name.ends_with(g.as_str())) {
        state.gets_gone.remove(pos);
        state.jobs.remove(name);
        return status(404, "NotFound", "jobs.batch not found");
    }
    match state.jobs.get(name) {
        Some(job) => respond(200, &with_condition(behavior, job)),
        None => status(404, "NotFound", "not found"),
    }
}

fn delete_job(state: &mut State, name: &str) -> Response<Body> {
    match state.jobs.remove(name) {
        Some(job) => {
            let gone = serde_json::to_value(&job).unwrap();
            state.push("jobs", "DELETED", gone.clone());
            respond(200, &gone)
        }
        None => status(404, "NotFound", "not found"),
    }
}

fn list_jobs(behavior: &Behavior, state: &State, selector: &Selector) -> Response<Body> {
    if behavior.list_jobs_status != 200 && selector.is_this_run() {
        return status(
            behavior.list_jobs_status,
            "Forbidden",
            "jobs.batch is forbidden: User \"x\" cannot watch resource \"jobs\" in API group \"batch\"",
        );
    }
    let items: Vec<Value> = state
        .jobs
        .values()
        .filter(|job| selector.matches(job.metadata.labels.as_ref()))
        .map(|job| with_condition(behavior, job))
        .collect();
    respond(
        200,
        &json!({"kind": "JobList", "apiVersion": "batch/v1",
            "metadata": {"resourceVersion": state.resource_version.to_string()}, "items": items}),
    )
}

fn get_own_pod(behavior: &Behavior) -> Response<Body> {
    match &behavior.own_pod {
        Some(pod) => respond(200, pod),
        None => status(404, "NotFound", "pods not found"),
    }
}

fn list_pods(state: &State) -> Response<Body> {
    respond(
        200,
        &json!({"kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": state.resource_version.to_string()}, "items": []}),
    )
}

/// Start the fake; returns a client for it and a handle to inspect what it saw.
fn serve(behavior: Behavior) -> (Client, Fake) {
    CLOCK.with(|c| c.set(Some(Clock::starting_at(EPOCH.parse().unwrap()))));
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(State::default()));
    {
        let mut s = state.lock().unwrap();
        for job in &behavior.existing {
            s.jobs.insert(job.metadata.name.clone().unwrap(), job.clone());
        }
        s.resource_version = 5;
        s.gets_gone = behavior.gone_on_get.iter().map(|g| g.to_string()).collect();
        for node in &behavior.nodes {
            s.nodes.insert(node.metadata.name.clone().unwrap(), serde_json::to_value(node).unwrap());
        }
    }
    let (shared, seen) = (state.clone(), Arc::new(Notify::new()));
    let notify = seen.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_string();
            let query = parts.uri.query().unwrap_or("").to_string();
            let line = if query.is_empty() {
                format!("{} {path}", parts.method)
            } else {
                format!("{} {path}?{query}", parts.method)
            };
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let route = route(&parts.method, &segments, &query);
            // Bodies are read before the state is locked.
            let body = match route {
                Route::CreateJob | Route::PostEvent | Route::PatchNode(_) => Some(body.collect_bytes().await.unwrap()),
                _ => None,
            };
            let mut state = shared.lock().unwrap();
            state.requests.push(line);
            let response = match route {
                Route::Watch { kind, after } => {
                    let resumed = state.resumed.entry(kind).or_default();
                    *resumed = (*resumed).max(after);
                    state.held.push(HeldWatch { kind, after, send });
                    state.flush();
                    drop(state);
                    notify.notify_waiters();
                    continue;
                }
                Route::ListNodes => list_nodes(&behavior, &state),
                Route::GetNode(name) => get_node(&state, name),
                Route::PatchNode(name) => {
                    patch_node(&behavior, &mut state, name, serde_json::from_slice(&body.unwrap()).unwrap())
                }
                Route::CreateJob => create_job(&behavior, &mut state, serde_json::from_slice(&body.unwrap()).unwrap()),
                Route::GetJob(name) => get_job(&behavior, &mut state, name),
                Route::DeleteJob(name) => delete_job(&mut state, name),
                Route::ListJobs(selector) => list_jobs(&behavior, &state, &selector),
                Route::GetPod => get_own_pod(&behavior),
                Route::ListPods => list_pods(&state),
                Route::PostEvent => respond(201, &serde_json::from_slice::<Value>(&body.unwrap()).unwrap()),
                Route::Unknown => status(404, "NotFound", "route not faked"),
            };
            state.flush();
            drop(state);
            send.send_response(response);
            notify.notify_waiters();
        }
    });
    (Client::new(service, "default"), Fake { state, seen })
}

fn vars(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: BTreeMap<String, String> = [
        ("QUAY_IMAGES", "nginx:1.27;redis:7"),
        ("HELPER_IMAGE", "ghcr.io/x/quayctl-controller:1"),
        ("NAMESPACE", "ops"),
        ("RUN_ID", "r1"),
        ("DEADLINE_SECONDS", "30"),
        ("WAIT_GRACE_SECONDS", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        all.insert(k.to_string(), v.to_string());
    }
    all.into_iter().collect()
}

struct Run {
    result: Result<Finished, Error>,
    output: String,
}

impl Run {
    fn exit_code(&self) -> ExitCode {
        match &self.result {
            Ok(finished) => finished.exit_code(),
            Err(e) => e.exit_code(),
        }
    }
}

async fn run_with(client: Client, extra: &[(&str, &str)], shutdown: watch::Receiver<Option<Signal>>) -> Run {
    let mut out = Vec::new();
    let connect = |ns: Option<String>| async move { Ok(Cluster::new(client, ns.as_deref())) };
    let run = execute(vars(extra), connect, shutdown, &mut out, clock());
    let result = tokio::time::timeout(Duration::from_secs(600), run).await.expect("the run ends on its own");
    Run { result, output: String::from_utf8(out).unwrap() }
}

async fn run(client: Client, extra: &[(&str, &str)]) -> Run {
    let (_tx, rx) = watch::channel(None);
    run_with(client, extra, rx).await
}

fn outcome_line<'a>(output: &'a str, node: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(&format!("{node} ")))
        .unwrap_or_else(|| panic!("no row for {node} in\n{output}"))
}

#[tokio::test(start_paused = true)]
async fn all_nodes_succeed() {
    let (client, fake) = serve(Behavior::default());
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    assert!(outcome_line(&run.output, "n1").contains("succeeded"));
    assert!(outcome_line(&run.output, "n2").contains("succeeded"));
    assert_eq!(fake.count("POST /apis/batch/v1/namespaces/ops/jobs"), 2);
    assert_eq!(fake.count("GET /api/v1/nodes?"), 1);
    let list = fake
        .requests()
        .into_iter()
        .find(|r| r.starts_with("GET /apis/batch/v1/namespaces/ops/jobs?") && !r.contains("%21%3D"))
        .unwrap();
    assert!(
        list.contains(
            "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dquayctl-controller%2Cquayctl-controller%2Finstance%3Ddefault%2Cquayctl-controller%2Frun%3Dr1"
        ),
        "{list}"
    );
}

// REPORT_FORMAT=json: stdout is the JSON report alone, and REPORT_FILE holds the same document.
#[tokio::test(start_paused = true)]
async fn the_json_report_goes_to_stdout_and_report_file_alike() {
    let (client, _fake) = serve(Behavior::default());
    let file = std::env::temp_dir().join(format!("quayctl-fixture-report-{}.json", std::process::id()));
    let run = run(client, &[("REPORT_FORMAT", "json"), ("REPORT_FILE", file.to_str().unwrap())]).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    let written = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let report: serde_json::Value = serde_json::from_str(&run.output).expect("stdout is one JSON document");
    assert!(run.output.ends_with("}\n"), "{}", run.output);
    assert_eq!(report["counts"]["succeeded"], 2, "{report}");
    assert_eq!(report["nodes"].as_array().map(Vec::len), Some(2), "{report}");
    let from_file: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(from_file["counts"], report["counts"]);
    assert_eq!(from_file["nodes"], report["nodes"]);
}

#[tokio::test(start_paused = true)]
async fn one_node_fails() {
    let (client, _fake) = serve(Behavior {
        condition: Box::new(|job| {
            Some(if job.ends_with("n2") { ("Failed", "BackoffLimitExceeded") } else { ("Complete", "") })
        }),
        ..Behavior::default()
    });
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::NodesFailed);
    assert!(outcome_line(&run.output, "n2").contains("failed"), "{}", run.output);
    assert!(outcome_line(&run.output, "n2").contains("BackoffLimitExceeded"));
    assert!(outcome_line(&run.output, "n1").contains("succeeded"));
}

#[tokio::test(start_paused = true)]
async fn jobs_that_never_finish_time_out_at_deadline_plus_grace() {
    let (client, _fake) = serve(Behavior { condition: Box::new(|_| None), ..Behavior::default() });
    let run = run(client, &[("DEADLINE_SECONDS", "1"), ("WAIT_GRACE_SECONDS", "1")]).await;
    assert_eq!(run.exit_code(), ExitCode::NodesFailed);
    assert!(outcome_line(&run.output, "n1").contains("timed-out"), "{}", run.output);
    // The Job deadline (2 s) and the slack (1 s), on the clock's first tick at or after them.
    assert_eq!(elapsed(), Duration::from_secs(3), "a verdict at the node deadline, and the run ends with it");
}

#[tokio::test(start_paused = true)]
async fn deadline_exceeded_condition_is_a_timeout() {
    let (client, _fake) = serve(Behavior {
        condition: Box::new(|job| {
            Some(if job.ends_with("n1") { ("FailureTarget", "DeadlineExceeded") } else { ("SuccessCriteriaMet", "") })
        }),
        ..Behavior::default()
    });
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::NodesFailed);
    assert!(outcome_line(&run.output, "n1").contains("timed-out"));
    assert!(outcome_line(&run.output, "n1").contains("DeadlineExceeded"));
    assert!(outcome_line(&run.output, "n2").contains("succeeded"));
}

#[tokio::test(start_paused = true)]
async fn existing_job_of_the_same_run_is_adopted_not_duplicated() {
    use crate::images::parse_image_list;
    use crate::policy::Policy;
    use crate::pullers::{Puller, PullerTemplate, RunIdentity};
    use crate::tracker::Tracker;
    let config = crate::config::Config::from_vars(vars(&[])).unwrap();
    let identity = RunIdentity {
        run_id: "r1".into(),
        instance: "default".into(),
        namespace: "ops".into(),
        helper_image: Some("h".into()),
        owner: None,
    };
    let template = PullerTemplate::new(&config, identity, Catalog::explicit(config.images.clone()));
    // The Job a run of `template` would create for `node`.
    let build_for = |template: &PullerTemplate, node: &str| -> Job {
        let tracker = Tracker::new(Policy::from(&config), template.clone());
        let set = crate::workloads::first(template.catalog.images.len());
        let images = crate::images::all_images(set.len());
        let node = crate::nodes::EligibleNode { name: node.into(), set, images, ..Default::default() };
        match tracker.pullers(std::slice::from_ref(&node)).next() {
            Some((_, Puller::Job(job))) => *job,
            other => panic!("{other:?}"),
        }
    };
    let mut foreign = template.clone();
    foreign.run_id = "other".into();
    let mut squatter = build_for(&foreign, "n2");
    squatter.metadata.name = Some(template.puller_name("n2"));
    let mut other_images = template.clone();
    other_images.catalog = Catalog::explicit(parse_image_list("nginx:1.28").unwrap().images);
    let (client, fake) = serve(Behavior {
        nodes: vec![
            node("n1", Some("True"), false, &[]),
            node("n2", Some("True"), false, &[]),
            node("n3", Some("True"), false, &[]),
        ],
        existing: vec![build_for(&template, "n1"), squatter, build_for(&other_images, "n3")],
        ..Behavior::default()
    });
    let run = run(client, &[]).await;
    assert_eq!(fake.count("POST /apis/batch/v1/namespaces/ops/jobs"), 3);
    assert_eq!(fake.count("GET /apis/batch/v1/namespaces/ops/jobs/prepull-r1-n1"), 1, "409 is followed by a GET");
    assert!(outcome_line(&run.output, "n1").contains("succeeded"), "adopted: {}", run.output);
    assert!(outcome_line(&run.output, "n2").contains("not-created"));
    assert!(outcome_line(&run.output, "n2").contains("does not belong to run r1"));
    assert!(outcome_line(&run.output, "n3").contains("not-created"), "same run, other images: {}", run.output);
    assert!(outcome_line(&run.output, "n3").contains("pulls other images"));
    assert_eq!(run.exit_code(), ExitCode::NodesFailed);
}

#[tokio::test(start_paused = true)]
async fn transient_create_errors_are_retried() {
    let (client, fake) = serve(Behavior {
        create_status: Box::new(|job, attempt| if job.ends_with("n1") && attempt < 2 { 503 } else { 201 }),
        ..Behavior::default()
    });
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    assert_eq!(fake.count("POST /apis/batch/v1/namespaces/ops/jobs"), 4);
}

#[tokio::test(start_paused = true)]
async fn forbidden_create_stops_the_run_with_exit_3() {
    let (client, fake) = serve(Behavior { create_status: Box::new(|_, _| 403), ..Behavior::default() });
    let run = run(client, &[("CREATE_CONCURRENCY", "1")]).await;
    assert_eq!(run.exit_code(), ExitCode::ClusterError);
    assert!(
        run.output.contains("stopped by an API error: forbidden: cannot create jobs.batch in namespace \"ops\""),
        "the report is printed: {}",
        run.output
    );
    assert!(run.output.contains("RBAC"));
    assert!(outcome_line(&run.output, "n1").contains("unfinished"), "{}", run.output);
    assert!(outcome_line(&run.output, "n2").contains("not-started"));
    assert_eq!(fake.count("POST"), 1, "no further creates after a 403");
}

#[tokio::test(start_paused = true)]
async fn forbidden_watch_stops_the_run_with_exit_3() {
    let (client, fake) = serve(Behavior { list_jobs_status: 403, ..Behavior::default() });
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::ClusterError);
    assert!(run.output.contains("forbidden: cannot watch jobs.batch in namespace \"ops\""), "{}", run.output);
    assert!(outcome_line(&run.output, "n1").contains("not-started"), "every node is in the report");
    assert_eq!(fake.count("POST"), 0, "the watch is up before the first create");
}

#[tokio::test(start_paused = true)]
async fn api_error_listing_nodes_exits_3_and_creates_nothing() {
    let (client, fake) = serve(Behavior { list_nodes_status: 500, ..Behavior::default() });
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::ClusterError);
    assert!(run.result.unwrap_err().to_string().contains("cannot list nodes"));
    assert_eq!(fake.count("GET /api/v1/nodes"), 1, "kube's client retries 503s itself; nothing is stacked on it");
    assert_eq!(fake.count("POST"), 0);
}

#[tokio::test(start_paused = true)]
async fn bad_configuration_sends_no_request_at_all() {
    let (client, fake) = serve(Behavior::default());
    let run = run(client, &[("QUAY_IMAGES", "a;;b"), ("DEADLINE_SECONDS", "0")]).await;
    assert_eq!(run.exit_code(), ExitCode::BadConfig);
    let message = run.result.unwrap_err().to_string();
    assert!(message.contains("QUAY_IMAGES=\"a;;b\"") && message.contains("DEADLINE_SECONDS=\"0\""), "{message}");
    tokio::task::yield_now().await;
    assert_eq!(fake.requests(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_job_deleted_by_someone_else_is_an_outcome() {
    let (client, _fake) = serve(Behavior { vanish: vec!["n2"], condition: Box::new(|_| None), ..Behavior::default() });
    let run = run(client, &[("DEADLINE_SECONDS", "2")]).await;
    assert!(outcome_line(&run.output, "n2").contains("deleted"), "{}", run.output);
    assert!(outcome_line(&run.output, "n1").contains("timed-out"));
    assert!(outcome_line(&run.output, "n1").contains("no verdict 3s after the Job was created"), "{}", run.output);
}

#[tokio::test(start_paused = true)]
async fn no_eligible_node_exits_1_without_creating() {
    let (client, fake) = serve(Behavior {
        nodes: vec![node("c", Some("True"), true, &[]), node("t", Some("True"), false, &[("gpu", "NoSchedule")])],
        ..Behavior::default()
    });
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::NodesFailed);
    assert!(run.output.contains("no eligible node"), "{}", run.output);
    assert_eq!(fake.count("POST"), 0);
}

#[tokio::test(start_paused = true)]
async fn sigterm_during_the_wait_prints_a_partial_report_and_exits_143() {
    let (client, fake) = serve(Behavior {
        condition: Box::new(|job| job.ends_with("n1").then_some(("Complete", ""))),
        ..Behavior::default()
    });
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        // Both Jobs created, and the Job watch resumed past n1's Complete: the run has taken it in.
        fake.until("both creates and n1's condition taken", |s| {
            let complete =
                s.events.iter().find(|(_, k, e)| *k == "jobs" && e["type"] == "MODIFIED").map(|(rv, _, _)| *rv);
            s.creates() == 2 && complete.is_some_and(|rv| s.resumed.get("jobs").is_some_and(|r| *r >= rv))
        })
        .await;
        tx.send(Some(Signal::Terminate)).unwrap();
        tx.closed().await;
    });
    let run = run_with(client, &[], rx).await;
    assert_eq!(run.exit_code(), ExitCode::Terminated);
    assert!(outcome_line(&run.output, "n1").contains("succeeded"), "{}", run.output);
    assert!(outcome_line(&run.output, "n2").contains("unfinished"));
    assert!(run.output.contains("interrupted by SIGTERM"));
}

#[tokio::test(start_paused = true)]
async fn dry_run_prints_yaml_and_creates_nothing() {
    let (client, fake) = serve(Behavior::default());
    let run = run(client, &[("DRY_RUN", "true")]).await;
    assert_eq!(run.exit_code(), ExitCode::Success);
    assert_eq!(fake.count("POST"), 0);
    let docs: Vec<&str> = run.output.split("---\n").filter(|d| !d.trim().is_empty()).collect();
    assert_eq!(docs.len(), 2, "{}", run.output);
    assert!(run.output.starts_with("---\n"));
    for doc in docs {
        let job: Job = serde_saphyr::from_str(doc).unwrap();
        assert_eq!(job.metadata.namespace.as_deref(), Some("ops"));
    }
}

/// The controller's pod, owned by the CronJob's Job `cron-123` in namespace `ops`.
fn own_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cron-123-xyz", "namespace": "ops", "uid": "pod-uid",
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "cron-123", "uid": "job-uid", "controller": true}]},
        "spec": {"containers": [{"name": "quayctl-controller", "image": "registry.example.com/quayctl-controller:1"}]}})
}

fn created_jobs(fake: &Fake) -> Vec<Job> {
    fake.state.lock().unwrap().jobs.values().cloned().collect()
}

#[tokio::test(start_paused = true)]
async fn in_a_pod_owned_by_a_job_pullers_are_owned_and_named_after_it() {
    let (client, fake) = serve(Behavior { own_pod: Some(own_pod()), ..Behavior::default() });
    let pod = [
        ("POD_NAME", "cron-123-xyz"),
        ("POD_NAMESPACE", "ops"),
        ("RUN_ID", ""),
        ("HELPER_IMAGE", ""),
        ("KEEP_LAST_PULLER", "false"),
    ];
    let run = run(client, &pod).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    let jobs = created_jobs(&fake);
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        let owner = &job.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!((owner.name.as_str(), owner.uid.as_str()), ("cron-123", "job-uid"));
        assert_eq!(job.metadata.labels.as_ref().unwrap()["quayctl-controller/run"], "cron-123");
        let init = &job.spec.unwrap().template.spec.unwrap().init_containers.unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("registry.example.com/quayctl-controller:1"));
    }
    assert_eq!(fake.count("POST /apis/events.k8s.io/v1/namespaces/ops/events"), 1, "summary Event");
}

/// The CronJob's Job `cron-123` that runs the controller, owned by CronJob `quayctl-controller`.
fn own_job() -> Job {
    serde_json::from_value(json!({"metadata": {"name": "cron-123", "namespace": "ops", "uid": "job-uid",
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "quayctl-controller",
            "uid": "cronjob-uid", "controller": true, "blockOwnerDeletion": true}]}}))
    .unwrap()
}

// KEEP_LAST_PULLER (the default): the pullers must outlive the run's Job (the CronJob's history
// limit deletes it), so they are owned by the CronJob itself, never as its controller.
#[tokio::test(start_paused = true)]
async fn kept_pullers_are_owned_by_the_cronjob_not_the_runs_job() {
    let (client, fake) = serve(Behavior { own_pod: Some(own_pod()), existing: vec![own_job()], ..Behavior::default() });
    let pod = [("POD_NAME", "cron-123-xyz"), ("POD_NAMESPACE", "ops"), ("RUN_ID", ""), ("HELPER_IMAGE", "")];
    let run = run(client, &pod).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    for job in created_jobs(&fake).into_iter().filter(|j| j.metadata.name.as_deref() != Some("cron-123")) {
        let owners = job.metadata.owner_references.as_ref().expect("owned");
        assert_eq!(owners.len(), 1);
        assert_eq!((owners[0].kind.as_str(), owners[0].name.as_str()), ("CronJob", "quayctl-controller"));
        assert_eq!((owners[0].controller, owners[0].block_owner_deletion), (None, None), "not its controller");
        assert_eq!(job.spec.unwrap().ttl_seconds_after_finished, None, "no TTL: kept until a later run succeeds");
    }
    assert!(run.output.contains("puller kept"), "{}", run.output);
}

#[tokio::test(start_paused = true)]
async fn pullers_in_another_namespace_are_not_owned_across_namespaces() {
    let (client, fake) = serve(Behavior { own_pod: Some(own_pod()), ..Behavior::default() });
    let pod = [("POD_NAME", "cron-123-xyz"), ("POD_NAMESPACE", "ops"), ("NAMESPACE", "pullers"), ("RUN_ID", "")];
    let run = run(client, &pod).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    assert_eq!(fake.count("POST /apis/batch/v1/namespaces/pullers/jobs"), 2);
    for job in created_jobs(&fake) {
        assert_eq!(job.metadata.owner_references, None, "the GC would delete them at once");
        assert_eq!(job.metadata.labels.as_ref().unwrap()["quayctl-controller/run"], "cron-123");
    }
}

fn many_nodes(n: usize) -> Vec<Node> {
    (0..n).map(|i| node(&format!("n{i:02}"), Some("True"), false, &[])).collect()
}

#[tokio::test(start_paused = true)]
async fn quota_denials_are_per_node_and_stop_the_create_storm() {
    let (client, fake) = serve(Behavior {
        nodes: many_nodes(10),
        create_status: Box::new(|job, _| if job.ends_with("n00") || job.ends_with("n01") { 201 } else { 4031 }),
        ..Behavior::default()
    });
    let run = run(client, &[("CREATE_CONCURRENCY", "1")]).await;
    assert_eq!(run.exit_code(), ExitCode::NodesFailed, "per node, not fatal: {}", run.output);
    assert!(outcome_line(&run.output, "n00").contains("succeeded"));
    assert!(outcome_line(&run.output, "n02").contains("exceeded quota"), "{}", run.output);
    assert_eq!(fake.count("POST /apis/batch/v1"), 2 + 3, "three identical denials, then no more creates");
    let last = outcome_line(&run.output, "n09");
    assert!(
        last.contains("not-created") && last.contains("not attempted: the last 3 creates were refused the same way"),
        "{last}"
    );
    assert!(
        run.output.contains("2/10 eligible nodes succeeded") && run.output.contains("8 not created"),
        "{}",
        run.output
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_deleted_between_the_409_and_the_get_is_created_again() {
    let existing: Job =
        serde_json::from_value(json!({"metadata": {"name": "prepull-r1-n1", "namespace": "ops"}})).unwrap();
    let (client, fake) = serve(Behavior { existing: vec![existing], gone_on_get: vec!["n1"], ..Behavior::default() });
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    assert_eq!(fake.count("POST /apis/batch/v1/namespaces/ops/jobs"), 3, "n1 twice (409, then created), n2 once");
}

#[tokio::test(start_paused = true)]
async fn ttl_zero_jobs_that_vanish_after_success_still_succeed() {
    // The fake deletes each Job the moment it is Complete, as the TTL controller does with a TTL of 0,
    // often before the create has answered: the run must take the verdict from the DELETED event's
    // last state (the watch runs before the first create), not call the Job `deleted`.
    let (client, fake) = serve(Behavior { ttl_zero: true, ..Behavior::default() });
    let run = run(client, &[("TTL_SECONDS_AFTER_FINISHED", "0")]).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    assert!(outcome_line(&run.output, "n1").contains("succeeded"), "{}", run.output);
    assert!(outcome_line(&run.output, "n2").contains("succeeded"), "{}", run.output);
    let state = fake.state.lock().unwrap();
    assert!(state.jobs.is_empty(), "the Jobs really are gone");
    let deleted = state.events.iter().filter(|(_, k, e)| *k == "jobs" && e["type"] == "DELETED").count();
    assert_eq!(deleted, 2, "each Job's DELETED event was served");
}

fn pull_error(image: &str, reason: &str, message: &str) -> Value {
    json!({"phase": "Pending", "containerStatuses": [
        {"name": "pull-0-nginx", "image": "nginx:1.27", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "pull-1-missing", "image": image, "imageID": "", "ready": false, "restartCount": 0,
         "state": {"waiting": {"reason": reason, "message": message}}}]})
}

#[tokio::test(start_paused = true)]
async fn pull_errors_fail_fast_per_image_and_the_breaker_stops_a_broken_image() {
    let missing = "registry.local/missing:nope";
    let (client, fake) = serve(Behavior {
        nodes: many_nodes(8),
        condition: Box::new(|_| None),
        pod_status: Box::new(move |_| {
            Some(pull_error(
                missing,
                "ErrImagePull",
                "failed to pull and unpack image: registry.local/missing:nope: not found",
            ))
        }),
        ..Behavior::default()
    });
    let images = format!("nginx:1.27;{missing}");
    let run = run(
        client,
        &[
            ("QUAY_IMAGES", &images),
            ("PULL_ERROR_GRACE_SECONDS", "1"),
            ("MAX_PARALLEL", "2"),
            ("DEADLINE_SECONDS", "300"),
        ],
    )
    .await;
    // Each pair's error counts after its 1 s grace: two pairs, then the breaker; never the 300 s deadline.
    assert_eq!(elapsed(), Duration::from_secs(2), "fails fast, not at the deadline");
    assert_eq!(run.exit_code(), ExitCode::NodesFailed);
    let row = outcome_line(&run.output, "n00");
    assert!(
        row.contains("failed") && row.contains("image 2: ErrImagePull") && row.contains("not found"),
        "{}",
        run.output
    );
    // Two pairs of nodes (MAX_PARALLEL=2) pull it and fail; the third failure trips the breaker.
    assert!(
        run.output
            .contains("image 2: registry.local/missing:nope: pulled on 0, present on 0, failed on 4, not sent to 4"),
        "{}",
        run.output
    );
    let held = outcome_line(&run.output, "n07");
    assert!(held.contains("failed") && held.contains("image 2: not sent to the remaining nodes"), "{held}");
    assert!(run.output.contains("not sent to the remaining nodes: it failed on the first 3 nodes"), "{}", run.output);
    assert!(
        run.output.contains("image 1: docker.io/library/nginx:1.27: pulled on 8"),
        "the other image keeps going: {}",
        run.output
    );
    assert!(
        fake.count("DELETE /apis/batch/v1/namespaces/ops/jobs/") >= 3,
        "concluded Jobs are deleted so the kubelet stops retrying"
    );
    let later: Job = fake
        .state
        .lock()
        .unwrap()
        .jobs
        .values()
        .find(|j| j.metadata.name.as_deref() == Some("prepull-r1-n07"))
        .cloned()
        .expect("n07 was created");
    let containers = later.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 1, "the broken image is not sent any more");
}

#[tokio::test(start_paused = true)]
async fn invalid_image_names_fail_at_once() {
    let (client, _fake) = serve(Behavior {
        condition: Box::new(|_| None),
        pod_status: Box::new(|_| Some(pull_error("x", "InvalidImageName", "couldn't parse image name"))),
        ..Behavior::default()
    });
    let run = run(client, &[("PULL_ERROR_GRACE_SECONDS", "600")]).await;
    assert_eq!(elapsed(), Duration::ZERO, "at once, not after the 600 s grace");
    assert!(outcome_line(&run.output, "n1").contains("InvalidImageName"), "{}", run.output);
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_pulled_everything_decides_the_node_before_the_job_controller() {
    let (client, _fake) = serve(Behavior {
        condition: Box::new(|_| None),
        pod_status: Box::new(|_| Some(json!({"phase": "Succeeded"}))),
        ..Behavior::default()
    });
    let run = run(client, &[]).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
}

#[tokio::test(start_paused = true)]
async fn an_evicted_pod_is_not_a_failure() {
    let (client, _fake) = serve(Behavior {
        condition: Box::new(|job| job.ends_with("n2").then_some(("Complete", ""))),
        pod_status: Box::new(|_| {
            Some(
                json!({"phase": "Failed", "reason": "Evicted", "conditions": [{"type": "DisruptionTarget", "status": "True"}]}),
            )
        }),
        ..Behavior::default()
    });
    let run = run(client, &[("DEADLINE_SECONDS", "1"), ("WAIT_GRACE_SECONDS", "1")]).await;
    assert!(outcome_line(&run.output, "n1").contains("timed-out"), "waits for the retry, not failed: {}", run.output);
    assert!(outcome_line(&run.output, "n2").contains("succeeded"));
}

#[tokio::test(start_paused = true)]
async fn a_closed_signal_channel_is_not_a_signal() {
    let (client, _fake) = serve(Behavior::default());
    let (tx, rx) = watch::channel(None);
    drop(tx);
    let run = run_with(client, &[], rx).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
}

#[tokio::test(start_paused = true)]
async fn a_missing_pull_secret_is_refused_before_any_create() {
    let (client, fake) = serve(Behavior::default());
    let run = run(client, &[("IMAGE_PULL_SECRETS", "regcred")]).await;
    assert_eq!(run.exit_code(), ExitCode::BadConfig);
    let message = run.result.unwrap_err().to_string();
    assert!(
        message.contains("IMAGE_PULL_SECRETS=\"regcred\": no Secret of that name in namespace \"ops\""),
        "{message}"
    );
    assert_eq!(fake.count("POST"), 0);
}

// STARTUP_TAINT: once a node has every image, its startup taint is removed with a JSON patch that
// tests the taint list it read. Someone adds a taint to the node between that read and the patch: the
// test fails (422), the run reads the node again and removes only its taint, the other one stays.
#[tokio::test(start_paused = true)]
async fn the_startup_taint_is_removed_without_clobbering_a_concurrent_taint() {
    let tainted = node("n1", Some("True"), false, &[("images-pending", "NoSchedule"), ("dedicated", "NoSchedule")]);
    let racing = json!({"key": "maintenance", "effect": "NoSchedule"});
    let (client, fake) = serve(Behavior {
        nodes: vec![tainted, node("n2", Some("True"), false, &[])],
        taint_race: Some(("n1", racing)),
        ..Behavior::default()
    });
    let run = run(client, &[("STARTUP_TAINT", "images-pending"), ("TOLERATIONS", "dedicated")]).await;
    assert_eq!(run.exit_code(), ExitCode::Success, "{}", run.output);
    assert!(outcome_line(&run.output, "n1").contains("startup taint removed"), "{}", run.output);
    assert!(!outcome_line(&run.output, "n2").contains("taint"), "n2 never had it: {}", run.output);
    assert!(run.output.contains("startup taint removed from 1, kept on 0"), "{}", run.output);
    assert_eq!(fake.count("PATCH /api/v1/nodes/n1"), 2, "the first patch's test failed; the second went through");
    assert_eq!(fake.count("GET /api/v1/nodes/n1"), 2, "read again after the failed test");
    assert_eq!(fake.count("PATCH /api/v1/nodes/n2"), 0);
    let taints = fake.state.lock().unwrap().nodes["n1"]["spec"]["taints"].clone();
    assert_eq!(
        taints,
        json!([{"key": "dedicated", "effect": "NoSchedule"}, {"key": "maintenance", "effect": "NoSchedule"}]),
        "only the startup taint is gone"
    );
}
