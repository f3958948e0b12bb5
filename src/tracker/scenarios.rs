//! The tracker tested as scenarios, in the style of kube-rs/controller-rs `fixtures.rs`: each one a
//! table of `(seconds, input, expected actions)` with made-up timestamps, then the expected verdicts
//! and how the run ended. No wall clock, no I/O: the time is an input like any other.
//!
//! Every scenario starts with an explicit [`In::Start`] step (the run's nodes, the pullers earlier
//! runs left, the nodes known to be gone) and says how it ends ([`End`]): a scenario that leaves
//! either out fails. Actions are written compactly: `watch jobs`, `create a` (every image),
//! `create a [2]` (only image 2, 1-based), `create a (26s)` (a pod deadline other than the default),
//! `delete a` (node `a`'s puller; an earlier run's by its name), `untaint a` (remove the startup
//! taint), `warn <kind>`; pullers are named `prepull-r-<node>`. The settings are the default
//! configuration's but for two images, `DEADLINE_SECONDS=30` and `WAIT_GRACE_SECONDS=15` (so the
//! node deadline is 60 s), and a scenario's own `vars`; `KEEP_LAST_PULLER` is on (so no TTL: the run
//! deletes the pullers it does not keep).

use std::collections::HashSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::*;
use crate::config::Config;
use crate::nodes::SkipReason;
use crate::pullers::{LeftoverState, RunIdentity};
use crate::workloads::{Catalog, first};

/// One input of a scenario, named by node.
enum In {
    /// The run starts with the scenario's nodes, leftovers and gone nodes.
    Start,
    /// Every watch the run asked for has listed (their `InitDone`).
    Ready,
    /// Only the Job watch has listed.
    JobsListed,
    /// The create of the node's Job answered 201, created at this step's time.
    Created(&'static str),
    /// The create answered 409 and the existing Job is this one.
    Exists(&'static str, Box<Job>),
    /// 409, then 404 on the GET.
    Vanished(&'static str),
    /// The create failed with (status code, message).
    Failed(&'static str, u16, &'static str),
    /// The node's Job as the watch shows it: started at this step's time, with these conditions.
    Job(&'static str, &'static [(&'static str, &'static str)]),
    /// The node's Job deleted (no terminal condition).
    JobDeleted(&'static str),
    /// The puller watch (Jobs, or pods with `PULLER_KIND=pod`) relists: these nodes' pullers are in
    /// the new list.
    Relist(&'static [&'static str]),
    /// The node's pod (created, and for a bare puller pod scheduled, at this step's time) with this
    /// status.
    Pod(&'static str, Value),
    /// `PULLER_KIND=pod`: the node's pod deleted.
    PodDeleted(&'static str),
    /// The node watch shows this node (Ready or not), carrying these `NoSchedule` taints.
    Node(&'static str, bool, &'static [&'static str]),
    /// A delete of this puller (a node's, or an earlier run's by name) answered: `Ok`, or an API
    /// error (status code, message).
    Deleted(&'static str, std::result::Result<(), (u16, &'static str)>),
    /// Every delete and node Event asked for and not answered yet answers `Ok`, in the order asked.
    RequestsDone,
    /// A watch error with (status code, message).
    WatchError(u16, &'static str),
    /// The startup taint's removal from the node answered: removed, already gone, or an error
    /// (status code, message).
    Untainted(&'static str, std::result::Result<TaintRemoval, (u16, &'static str)>),
    Tick,
    Signal(Signal),
}

/// How a scenario's run ends: it must say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum End {
    /// Not said: the scenario fails.
    #[default]
    Unset,
    /// Every node has its verdict.
    Done,
    /// The run has not ended after the last step.
    Running,
    /// A signal ended it.
    Signal(Signal),
    /// An API error ended it; a part of the error.
    Fatal(&'static str),
}

struct Scenario {
    name: &'static str,
    nodes: Vec<EligibleNode>,
    steps: Vec<(i64, In, &'static [&'static str])>,
    /// (node, outcome, a part of its reason).
    verdicts: &'static [(&'static str, Outcome, &'static str)],
    ending: End,
    /// Pullers earlier runs left, and the nodes known to be gone.
    leftovers: Vec<Leftover>,
    gone: &'static [&'static str],
    /// Nodes held by the startup taint that no puller can reach.
    unreachable: Vec<Unreachable>,
    /// (node, what the run did after the verdict, as the report's notes say it).
    after: &'static [(&'static str, &'static str)],
    /// Settings of the run besides the scenarios' defaults (`PULLER_KIND`, `CREATE_CONCURRENCY`, ...).
    vars: &'static [(&'static str, &'static str)],
    /// The run's exit code, when the scenario is about it.
    exit: Option<ExitCode>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "",
            nodes: Vec::new(),
            steps: Vec::new(),
            verdicts: &[],
            ending: End::Unset,
            leftovers: Vec::new(),
            gone: &[],
            unreachable: Vec::new(),
            after: &[],
            vars: &[],
            exit: None,
        }
    }
}

const IMAGES: &str = "nginx:1.27;ghcr.io/org/model:v1";
/// The scenarios' `DEADLINE_SECONDS`: a pod's deadline, unless it says otherwise.
const PULL_DEADLINE: i64 = 30;

/// The configuration of a scenario: two images, a 30 s pull deadline and 15 s of wait grace (a 60 s
/// node deadline), 30 s of pull-error grace, and `extra`.
fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![
        ("QUAY_IMAGES", IMAGES),
        ("HELPER_IMAGE", "h:1"),
        ("DEADLINE_SECONDS", "30"),
        ("WAIT_GRACE_SECONDS", "15"),
    ];
    vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    vars.extend_from_slice(extra);
    Config::from_vars(vars.into_iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
}

fn template_with(extra: &[(&str, &str)]) -> PullerTemplate {
    let run = RunIdentity {
        run_id: "r".into(),
        instance: "default".into(),
        namespace: "ops".into(),
        helper_image: Some("h:1".into()),
        owner: None,
    };
    let config = config(extra);
    let catalog = Catalog::explicit(config.images.clone());
    PullerTemplate::new(&config, run, catalog)
}

fn template() -> PullerTemplate {
    template_with(&[])
}

/// A tracker for a run with these settings (see [`config`]).
fn tracker(extra: &[(&str, &str)]) -> Tracker {
    Tracker::new(Policy::from(&config(extra)), template_with(extra))
}

fn nodes(names: &[&str]) -> Vec<EligibleNode> {
    names
        .iter()
        .map(|n| EligibleNode { name: n.to_string(), set: first(2), images: 0b11, ..Default::default() })
        .collect()
}

/// Nodes carrying the startup taint.
fn tainted(names: &[&str]) -> Vec<EligibleNode> {
    nodes(names).into_iter().map(|n| EligibleNode { startup_tainted: true, ..n }).collect()
}

fn leftover(node: &str, run: &str, state: LeftoverState) -> Leftover {
    let name = format!("prepull-{run}-{node}");
    Leftover {
        kind: PullerKind::Job,
        uid: Some(format!("uid-{name}")),
        name,
        node: node.into(),
        state,
        images: config(&[]).images.iter().map(|i| i.normalized.clone()).collect(),
        created_at: Some(at(-3600)),
        deadline_seconds: Some(45),
    }
}

fn at(t: i64) -> Timestamp {
    "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(t)
}

fn puller_name(node: &str) -> String {
    format!("prepull-r-{node}")
}

fn job(node: &str, t: i64, started: bool, conditions: &[(&str, &str)]) -> Job {
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|(kind, reason)| json!({"type": kind, "status": "True", "reason": reason, "message": ""}))
        .collect();
    let mut status = json!({"conditions": conditions});
    if started {
        status["startTime"] = json!(at(t).to_string());
    }
    serde_json::from_value(json!({
        "metadata": {"name": puller_name(node), "creationTimestamp": at(t).to_string()},
        "status": status,
    }))
    .unwrap()
}

fn pod(node: &str, t: i64, status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{}-xyz", puller_name(node)), "creationTimestamp": at(t).to_string(),
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": puller_name(node), "uid": "u"}]},
        "status": status,
    }))
    .unwrap()
}

/// `PULLER_KIND=pod`: the node's bare puller pod, created and scheduled at `t`.
fn bare_pod(node: &str, t: i64, mut status: Value) -> Pod {
    let scheduled = json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": at(t).to_string()});
    match status["conditions"].as_array_mut() {
        Some(conditions) => conditions.push(scheduled),
        None => status["conditions"] = json!([scheduled]),
    }
    serde_json::from_value(json!({
        "metadata": {"name": puller_name(node), "uid": format!("uid-{node}"), "creationTimestamp": at(t).to_string()},
        "status": status,
    }))
    .unwrap()
}

fn container(name: &str, state: Value) -> Value {
    json!({"name": name, "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": state})
}

fn done() -> Value {
    json!({"terminated": {"exitCode": 0, "reason": "Completed"}})
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": message}})
}

/// A pending puller pod: image 1 (`pull-0-nginx`) and image 2 (`pull-1-model`) in these states.
fn pulling(first: Value, second: Value) -> Value {
    json!({"phase": "Pending", "containerStatuses": [container("pull-0-nginx", first), container("pull-1-model", second)]})
}

/// A puller pod the kubelet evicted.
fn evicted() -> Value {
    json!({"phase": "Failed", "reason": "Evicted",
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}]})
}

fn api_error(code: u16, message: &str) -> Error {
    Error::api(
        "create jobs.batch in namespace \"ops\"",
        kube::Error::Api(kube::core::Status::failure(message, "").with_code(code).boxed()),
    )
}

const NOT_FOUND: &str = "failed to pull and unpack image \"ghcr.io/org/model:v1\": not found";
const RBAC: &str = "jobs.batch is forbidden: User \"system:serviceaccount:ops:q\" cannot create resource \"jobs\" in API group \"batch\"";

/// The admission policy refusing a node patch, in the apiserver's words.
const VAP_DENIAL: &str = "nodes \"a\" is forbidden: ValidatingAdmissionPolicy 'quayctl-controller-node-patch' with binding 'quayctl-controller-node-patch' denied request: only the startup taint may be removed";

/// RBAC refusing the node patch.
const NO_PATCH: &str = "nodes \"a\" is forbidden: User \"system:serviceaccount:ops:q\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope";

/// The Job a run of `template` creates first for `node` (every image).
fn first_job(template: &PullerTemplate, node: &str) -> Box<Job> {
    let tracker = Tracker::new(Policy::from(&config(&[])), template.clone());
    let node = EligibleNode { name: node.into(), set: first(2), images: 0b11, ..Default::default() };
    match tracker.pullers(std::slice::from_ref(&node)).next() {
        Some((_, Puller::Job(job))) => job,
        other => panic!("not a Job: {other:?}"),
    }
}

/// What the run started with, for [`In::Start`].
struct Start<'a> {
    nodes: &'a [EligibleNode],
    leftovers: &'a [Leftover],
    gone: &'a [&'a str],
    unreachable: &'a [Unreachable],
}

/// The deletes and node Events a scenario's run asked for and that were not answered yet.
#[derive(Default)]
struct Pending(Vec<Action>);

impl Pending {
    fn saw(&mut self, actions: &[Action]) {
        self.0.extend(actions.iter().filter(|a| matches!(a, Action::Delete { .. } | Action::Announce { .. })).cloned());
    }

    fn answered(&mut self, name: &str) {
        if let Some(i) = self.0.iter().position(|a| matches!(a, Action::Delete { name: n, .. } if n == name)) {
            self.0.remove(i);
        }
    }
}

fn input(step: In, t: i64, kind: PullerKind, start: &Start, pending: &mut Pending) -> Vec<Input> {
    let bare = kind == PullerKind::Pod;
    match step {
        In::RequestsDone => std::mem::take(&mut pending.0)
            .into_iter()
            .filter_map(|action| match action {
                Action::Delete { name, .. } => Some(Input::Deleted { name, result: Ok(()) }),
                Action::Announce { node, .. } => Some(Input::Announced { node: node.name, result: Ok(()) }),
                _ => None,
            })
            .collect(),
        In::Start => vec![Input::Start(Box::new(Plan {
            eligible: start.nodes.to_vec(),
            leftovers: start.leftovers.to_vec(),
            gone: start.gone.iter().map(|g| g.to_string()).collect::<HashSet<_>>(),
            unreachable: start.unreachable.to_vec(),
        }))],
        In::Ready if bare => vec![Input::Pods(Event::InitDone)],
        In::Ready => vec![Input::Jobs(Event::InitDone), Input::Pods(Event::InitDone)],
        In::JobsListed => vec![Input::Jobs(Event::InitDone)],
        In::Created(node) => {
            let created = if bare {
                let mut pod = bare_pod(node, t, json!({}));
                pod.status = None;
                Puller::Pod(Box::new(pod))
            } else {
                Puller::Job(Box::new(job(node, t, false, &[])))
            };
            vec![Input::Created { name: puller_name(node), result: Ok(Created::New(Box::new(created))) }]
        }
        In::Exists(node, existing) => {
            let existing = Box::new(Puller::Job(existing));
            vec![Input::Created { name: puller_name(node), result: Ok(Created::AlreadyExists(existing)) }]
        }
        In::Vanished(node) => vec![Input::Created { name: puller_name(node), result: Ok(Created::Vanished) }],
        In::Failed(node, code, message) => {
            vec![Input::Created { name: puller_name(node), result: Err(api_error(code, message)) }]
        }
        In::Job(node, conditions) => vec![Input::Jobs(Event::Apply(job(node, t, true, conditions)))],
        In::JobDeleted(node) => vec![Input::Jobs(Event::Delete(job(node, t, true, &[])))],
        In::Relist(present) if bare => {
            let mut events = vec![Input::Pods(Event::Init)];
            let running = || json!({"phase": "Running"});
            events.extend(present.iter().map(|n| Input::Pods(Event::InitApply(bare_pod(n, t, running())))));
            events.push(Input::Pods(Event::InitDone));
            events
        }
        In::Relist(present) => {
            let mut events = vec![Input::Jobs(Event::Init)];
            events.extend(present.iter().map(|n| Input::Jobs(Event::InitApply(job(n, t, true, &[])))));
            events.push(Input::Jobs(Event::InitDone));
            events
        }
        In::Pod(node, status) if bare => vec![Input::Pods(Event::Apply(bare_pod(node, t, status)))],
        In::Pod(node, status) => vec![Input::Pods(Event::Apply(pod(node, t, status)))],
        In::PodDeleted(node) => vec![Input::Pods(Event::Delete(bare_pod(node, t, json!({}))))],
        In::Node(name, ready, taints) => {
            let ready = if ready { "True" } else { "False" };
            let taints: Vec<(&str, &str)> = taints.iter().map(|k| (*k, "NoSchedule")).collect();
            let mut node = crate::nodes::tests::node(name, Some(ready), false, &taints);
            node.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(t)));
            vec![Input::Nodes(Event::Apply(node))]
        }
        In::Deleted(name, result) => {
            let name = if name.starts_with("prepull-") { name.to_string() } else { puller_name(name) };
            pending.answered(&name);
            vec![Input::Deleted { name, result: result.map_err(|(code, m)| api_error(code, m)) }]
        }
        In::WatchError(code, message) => {
            let status = kube::core::Status::failure(message, "").with_code(code).boxed();
            vec![Input::WatchFailed(Error::watch("watch jobs.batch", watcher_error(status)))]
        }
        In::Tick => vec![Input::Tick],
        In::Untainted(node, result) => {
            vec![Input::TaintRemoved { node: node.into(), result: result.map_err(|(code, m)| api_error(code, m)) }]
        }
        In::Signal(signal) => vec![Input::Signal(signal)],
    }
}

fn watcher_error(status: Box<kube::core::Status>) -> kube::runtime::watcher::Error {
    kube::runtime::watcher::Error::WatchError(status)
}

/// The short name of a warning, as scenarios write it.
fn warning(w: &Warning) -> String {
    match w {
        Warning::NoEligibleNode => "no-eligible-node".into(),
        Warning::RunDeadline { .. } => "run-deadline".into(),
        Warning::ImageHeldBack { image, .. } => format!("held-back {}", image + 1),
        Warning::CreatesStopped { .. } => "creates-stopped".into(),
    }
}

/// `watch jobs`, `create a`, `create a [2]` (only image 2), `create a (26s)` (a replacement pod's
/// deadline), `delete a`, `delete a (uid)`, `untaint a`, `warn <kind>`.
fn compact(action: &Action) -> String {
    match action {
        Action::Watch(Watched::Jobs) => "watch jobs".into(),
        Action::Watch(Watched::Pods) => "watch pods".into(),
        Action::Watch(Watched::Nodes) => "watch nodes".into(),
        Action::Create(puller) => {
            let node = puller.name().trim_start_matches("prepull-r-").to_string();
            let spec = match puller {
                Puller::Job(job) => job.spec.as_ref().unwrap().template.spec.as_ref().unwrap(),
                Puller::Pod(pod) => pod.spec.as_ref().unwrap(),
            };
            // The run's images its containers pull (`pull-<i>-...`), numbered from 1.
            let images: Vec<String> = spec
                .containers
                .iter()
                .filter_map(|c| c.name.strip_prefix("pull-")?.split('-').next()?.parse::<usize>().ok())
                .map(|i| (i + 1).to_string())
                .collect();
            let mut line = format!("create {node}");
            if images != ["1", "2"] {
                line.push_str(&format!(" [{}]", images.join(",")));
            }
            if let Some(deadline) = spec.active_deadline_seconds.filter(|d| *d != PULL_DEADLINE) {
                line.push_str(&format!(" ({deadline}s)"));
            }
            line
        }
        Action::Delete { name, uid, .. } => {
            let name = name.trim_start_matches("prepull-r-");
            uid.as_ref().map_or_else(|| format!("delete {name}"), |uid| format!("delete {name} ({uid})"))
        }
        Action::RemoveTaint { node, .. } => format!("untaint {node}"),
        Action::Announce { node, event } => format!("event {} {}", node.name, event.reason),
        Action::Warn(w) => format!("warn {}", warning(w)),
    }
}

/// What the run did on a node after its verdict, as the report's notes say it.
fn after(v: &Verdict) -> String {
    let mut notes = v.notes();
    notes.extend(v.replaced.iter().map(|r| format!("deleted {r}")));
    notes.join("; ")
}

impl Scenario {
    fn check(self) {
        let name = self.name;
        assert_ne!(self.ending, End::Unset, "{name}: a scenario says how the run ends");
        assert!(
            matches!(self.steps.first(), Some((_, In::Start, _))),
            "{name}: the start of the run is an explicit step (In::Start first)"
        );
        let mut tracker = tracker(self.vars);
        let kind = config(self.vars).puller.kind;
        let start =
            Start { nodes: &self.nodes, leftovers: &self.leftovers, gone: self.gone, unreachable: &self.unreachable };
        let mut pending = Pending::default();
        for (index, (t, step, expected)) in self.steps.iter().enumerate() {
            let (t, expected) = (*t, *expected);
            let mut actions = Vec::new();
            for i in input(clone_in(step), t, kind, &start, &mut pending) {
                actions.extend(tracker.step(at(t), i));
            }
            pending.saw(&actions);
            let got: Vec<String> = actions.iter().map(compact).collect();
            assert_eq!(got, expected, "{name}: step {} (t={t}s)", index + 1);
        }
        let ending = match tracker.ending() {
            None => End::Running,
            Some(Ending::Done) => End::Done,
            Some(Ending::Interrupted(signal)) => End::Signal(*signal),
            Some(Ending::Fatal(e)) => match self.ending {
                End::Fatal(part) if e.to_string().contains(part) => End::Fatal(part),
                _ => panic!("{name}: ended with {e}, expected {:?}", self.ending),
            },
        };
        assert_eq!(ending, self.ending, "{name}: how the run ended");
        let result = tracker.finish(at(1000));
        let verdict =
            |node: &str| result.verdicts.iter().find(|v| v.node == node).unwrap_or_else(|| panic!("{name}: no {node}"));
        for (node, outcome, reason) in self.verdicts {
            let v = verdict(node);
            assert_eq!(v.outcome, *outcome, "{name}: {node}: {v:?}");
            assert!(v.reason.contains(reason), "{name}: {node}: reason `{}` lacks `{reason}`", v.reason);
        }
        for (node, expected) in self.after {
            assert_eq!(after(verdict(node)), *expected, "{name}: what happened on {node} after its verdict");
        }
        if let Some(exit) = self.exit {
            assert_eq!(result.exit_code, exit, "{name}: the exit code");
        }
    }
}

/// A copy of a step's input (jobs and pods are rebuilt from the same description).
fn clone_in(step: &In) -> In {
    match step {
        In::Start => In::Start,
        In::Ready => In::Ready,
        In::JobsListed => In::JobsListed,
        In::Created(n) => In::Created(n),
        In::Exists(n, job) => In::Exists(n, job.clone()),
        In::Vanished(n) => In::Vanished(n),
        In::Failed(n, code, m) => In::Failed(n, *code, m),
        In::Job(n, c) => In::Job(n, c),
        In::JobDeleted(n) => In::JobDeleted(n),
        In::Relist(n) => In::Relist(n),
        In::Pod(n, status) => In::Pod(n, status.clone()),
        In::PodDeleted(n) => In::PodDeleted(n),
        In::Node(n, ready, taints) => In::Node(n, *ready, taints),
        In::Deleted(n, result) => In::Deleted(n, *result),
        In::RequestsDone => In::RequestsDone,
        In::WatchError(code, m) => In::WatchError(*code, m),
        In::Untainted(n, result) => In::Untainted(n, *result),
        In::Tick => In::Tick,
        In::Signal(signal) => In::Signal(*signal),
    }
}

#[test]
fn creates_wait_for_both_watches_and_the_watches_have_a_bound() {
    Scenario {
        name: "nothing is created before both watches have listed",
        vars: TAINT,
        nodes: nodes(&["a", "b"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Tick, &[]),
            (0, In::JobsListed, &[]),
            (1, In::Tick, &[]),
            (1, In::Ready, &["create a", "create b"]),
        ],
        verdicts: &[],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "watches that never list stop the run before anything is created",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::JobsListed, &[]),
            (59, In::Tick, &[]),
            (60, In::Tick, &[]),
        ],
        verdicts: &[("a", Outcome::NotStarted, "before its Job was created")],
        ending: End::Fatal("cannot list this run's Jobs and pods within 60s before creating any puller"),
        ..Scenario::default()
    }
    .check();
}

#[test]
fn pods_decide_nodes_per_image() {
    Scenario {
        name: "every container terminated with 0: succeeded without waiting for the Job controller",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", pulling(done(), json!({"running": {}}))), &[]),
            (3, In::Pod("a", pulling(done(), done())), &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a pull error within its grace is only noted; the pull that follows succeeds",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", pulling(done(), waiting("ErrImagePull", "i/o timeout"))), &[]),
            (31, In::Tick, &[]),
            (31, In::Pod("a", pulling(done(), done())), &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a pull error past its grace fails that image and deletes the Job",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", pulling(done(), waiting("ErrImagePull", NOT_FOUND))), &[]),
            (12, In::Pod("a", pulling(done(), waiting("ImagePullBackOff", "Back-off pulling image"))), &[]),
            (31, In::Tick, &[]),
            (32, In::Tick, &["delete a"]),
            (32, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Failed, "image 2: ErrImagePull: failed to pull and unpack image")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "an invalid image name fails at once",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", pulling(done(), waiting("InvalidImageName", "couldn't parse"))), &["delete a"]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Failed, "image 2: InvalidImageName: couldn't parse")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    let helper = json!({"phase": "Pending", "initContainerStatuses": [
        container("install-noop", waiting("ImagePullBackOff", "Back-off pulling image \"h:1\""))]});
    Scenario {
        name: "a helper image that does not pull fails the node after the grace",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", helper), &[]),
            (31, In::Tick, &[]),
            (32, In::Tick, &["delete a"]),
            (32, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Failed, "the helper image cannot be pulled (HELPER_IMAGE): ImagePullBackOff")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    let evicted = json!({"phase": "Failed", "reason": "Evicted",
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]});
    Scenario {
        name: "a disrupted pod is not a failure: its pull errors are forgotten, the next pod decides",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", pulling(done(), waiting("ErrImagePull", NOT_FOUND))), &[]),
            (3, In::Pod("a", evicted), &[]),
            (40, In::Tick, &[]),
            (41, In::Pod("a", pulling(done(), done())), &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    let gone = json!({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists"}]});
    Scenario {
        name: "a node deleted mid-pull is concluded from its pod at once, and its Job deleted",
        nodes: nodes(&["a", "b"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::Pod("a", gone), &["delete a"]),
            (3, In::Job("b", &[("Complete", "")]), &[]),
            (3, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("a", Outcome::Deleted, "the node was deleted (PodGC: node no longer exists)"),
            ("b", Outcome::Succeeded, ""),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
}

#[test]
fn jobs_and_the_clock_decide_what_pods_do_not() {
    Scenario {
        name: "the Job controller's conditions: success, failure with the pod's problem, its deadline",
        nodes: nodes(&["a", "b", "c"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (2, In::Job("a", &[("SuccessCriteriaMet", "CompletionsReached")]), &[]),
            (
                2,
                In::Pod(
                    "b",
                    json!({"phase": "Failed", "containerStatuses": [container("pull-0-nginx",
                json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "boom"}}))]}),
                ),
                &["delete b"],
            ),
            (3, In::Job("c", &[("FailureTarget", "DeadlineExceeded")]), &["delete c"]),
            (3, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("a", Outcome::Succeeded, ""),
            ("b", Outcome::Failed, "pull-0-nginx (x) exited 1 (Error): boom"),
            ("c", Outcome::TimedOut, "DeadlineExceeded"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "no verdict by the node deadline: timed out from the Job's start (or creation), Job deleted",
        nodes: nodes(&["a", "b"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (5, In::Job("b", &[]), &[]),
            (60, In::Tick, &[]),
            (61, In::Tick, &["delete a"]),
            (64, In::Tick, &[]),
            (65, In::Tick, &["delete b"]),
            (65, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("a", Outcome::TimedOut, "no verdict 60s after the Job was created"),
            ("b", Outcome::TimedOut, "no verdict 60s after the Job started"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a Job deleted before it finished, and one missing from a relist, are deleted",
        nodes: nodes(&["a", "b", "c"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::JobDeleted("a"), &[]),
            (3, In::Relist(&["c"]), &[]),
            (4, In::Created("c"), &[]),
        ],
        verdicts: &[
            ("a", Outcome::Deleted, "Job deleted before it finished"),
            ("b", Outcome::Deleted, "Job deleted before it finished"),
            ("c", Outcome::Unfinished, "run interrupted before the Job finished"),
        ],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
}

#[test]
fn the_breaker_holds_a_broken_image_back_from_the_remaining_nodes() {
    let broken = || pulling(done(), waiting("ErrImagePull", NOT_FOUND));
    Scenario {
        name: "three permanent failures and no success: image 2 is not sent to the queued nodes",
        vars: &[("MAX_PARALLEL", "3")],
        nodes: nodes(&["a", "b", "c", "d", "e"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (2, In::Pod("a", broken()), &[]),
            (2, In::Pod("b", broken()), &[]),
            (2, In::Pod("c", broken()), &[]),
            (32, In::Tick, &["delete a", "delete b", "warn held-back 2", "delete c", "create d [1]", "create e [1]"]),
            (33, In::Created("d"), &[]),
            (33, In::Created("e"), &[]),
            (33, In::RequestsDone, &[]),
            (34, In::Pod("d", json!({"phase": "Succeeded"})), &[]),
            (34, In::Pod("e", json!({"phase": "Succeeded"})), &[]),
        ],
        verdicts: &[
            ("a", Outcome::Failed, "image 2: ErrImagePull"),
            ("c", Outcome::Failed, "not found"),
            ("d", Outcome::Failed, "image 2: not sent to the remaining nodes: it failed on the first 3 nodes"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a node left with nothing to pull fails without a Job (nothing to keep)",
        vars: &[("MAX_PARALLEL", "3"), ("KEEP_LAST_PULLER", "false")],
        nodes: {
            let mut n = nodes(&["a", "b", "c", "d"]);
            n[3].images = 0b10;
            n
        },
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (2, In::Pod("a", broken()), &[]),
            (2, In::Pod("b", broken()), &[]),
            (2, In::Pod("c", broken()), &[]),
            (32, In::Tick, &["delete a", "delete b", "warn held-back 2", "delete c"]),
            (33, In::RequestsDone, &[]),
        ],
        verdicts: &[("d", Outcome::Failed, "image 2: not sent to the remaining nodes")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
}

#[test]
fn seeds_and_max_parallel_bound_the_creates() {
    Scenario {
        name: "CREATE_CONCURRENCY=2 and MAX_PARALLEL=3: the next node goes when one concludes",
        vars: &[("CREATE_CONCURRENCY", "2"), ("MAX_PARALLEL", "3")],
        nodes: nodes(&["a", "b", "c", "d", "e"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &["create c"]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["create d"]),
            (3, In::Job("b", &[("Complete", "")]), &["create e"]),
        ],
        verdicts: &[("a", Outcome::Succeeded, ""), ("e", Outcome::Unfinished, "create request was in flight")],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "the seed wave gates the fan-out; one seed succeeding opens it",
        vars: &[("SEED_NODES", "2")],
        nodes: nodes(&["a", "b", "c", "d"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &[]),
            (3, In::Job("b", &[("Failed", "BackoffLimitExceeded")]), &["delete b", "create c", "create d"]),
        ],
        verdicts: &[("b", Outcome::Failed, "BackoffLimitExceeded")],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a seed wave where no seed succeeds stops the run",
        vars: &[("SEED_NODES", "2")],
        nodes: nodes(&["a", "b", "c", "d"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Failed("b", 403, "jobs.batch \"x\" is forbidden: exceeded quota: q"), &[]),
            (2, In::Job("a", &[("Failed", "BackoffLimitExceeded")]), &["delete a", "warn creates-stopped"]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("b", Outcome::NotCreated, "exceeded quota"),
            ("c", Outcome::NotStarted, "seed wave failed: none of the 2 seed nodes succeeded"),
            ("d", Outcome::NotStarted, "seed wave failed"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
}

#[test]
fn create_results_mean_created_adopted_refused_denied_retried_or_fatal() {
    let ours = first_job(&template(), "a");
    let mut foreign = template();
    foreign.run_id = "other".into();
    let mut squatter = first_job(&foreign, "b");
    squatter.metadata.name = Some(puller_name("b"));
    Scenario {
        name: "a 409 is adopted only for this run's Job with the same spec; a vanished one is created again",
        nodes: nodes(&["a", "b", "c"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Exists("a", ours), &[]),
            (1, In::Exists("b", squatter), &[]),
            (1, In::Vanished("c"), &["create c"]),
            (2, In::Created("c"), &[]),
            (3, In::Job("a", &[("Complete", "")]), &[]),
            (3, In::Job("c", &[("Complete", "")]), &[]),
        ],
        verdicts: &[
            ("a", Outcome::Succeeded, ""),
            ("b", Outcome::NotCreated, "does not belong to run r on this node"),
            ("c", Outcome::Succeeded, ""),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "three identical denials stop the creates; the rest are not created with the reason",
        vars: &[("CREATE_CONCURRENCY", "1")],
        nodes: nodes(&["a", "b", "c", "d"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (
                1,
                In::Failed("a", 403, "jobs.batch \"prepull-r-a\" is forbidden: exceeded quota: q, used: 1"),
                &["create b"],
            ),
            (
                2,
                In::Failed("b", 403, "jobs.batch \"prepull-r-b\" is forbidden: exceeded quota: q, used: 2"),
                &["create c"],
            ),
            (
                3,
                In::Failed("c", 422, "jobs.batch \"prepull-r-c\" is forbidden: exceeded quota: q, used: 3"),
                &["warn creates-stopped"],
            ),
        ],
        verdicts: &[
            ("a", Outcome::NotCreated, "exceeded quota"),
            ("d", Outcome::NotCreated, "not attempted: the last 3 creates were refused the same way"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "transient errors are retried, three attempts per node",
        vars: &[("CREATE_CONCURRENCY", "1")],
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Failed("a", 503, "unavailable"), &["create a"]),
            (2, In::Failed("a", 500, "etcdserver: request timed out"), &["create a"]),
            (3, In::Failed("a", 503, "unavailable"), &[]),
        ],
        verdicts: &[("a", Outcome::NotCreated, "gave up after 3 attempts")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "RBAC forbidding the create stops the run; the node in flight is unfinished",
        vars: &[("CREATE_CONCURRENCY", "1")],
        nodes: nodes(&["a", "b"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Failed("a", 403, RBAC), &[]),
        ],
        verdicts: &[
            ("a", Outcome::Unfinished, "while its create request was in flight"),
            ("b", Outcome::NotStarted, "before its Job was created"),
        ],
        ending: End::Fatal("forbidden: cannot create jobs.batch"),
        ..Scenario::default()
    }
    .check();
}

#[test]
fn the_watches_report_what_they_see_even_before_a_create_returns() {
    Scenario {
        name: "a Job seen before its create returns is judged after (it could be another run's)",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Job("a", &[("Complete", "")]), &[]),
            (2, In::Created("a"), &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a Job created and deleted before its create returns stays deleted",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Job("a", &[]), &[]),
            (1, In::JobDeleted("a"), &[]),
            (2, In::Created("a"), &[]),
        ],
        verdicts: &[("a", Outcome::Deleted, "Job deleted before it finished")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a forbidden watch stops the run; a transient watch error is only logged",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::WatchError(503, "unavailable"), &[]),
            (0, In::Ready, &["create a"]),
            (1, In::WatchError(403, "jobs.batch is forbidden: User \"x\" cannot watch resource \"jobs\""), &[]),
        ],
        verdicts: &[("a", Outcome::Unfinished, "")],
        ending: End::Fatal("forbidden: cannot watch jobs.batch"),
        ..Scenario::default()
    }
    .check();
}

#[test]
fn a_signal_drains_the_creates_in_flight_then_ends_the_run() {
    Scenario {
        name: "SIGTERM with creates in flight: they may answer within the drain time, nothing new goes",
        vars: &[("CREATE_CONCURRENCY", "2")],
        nodes: nodes(&["a", "b", "c"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Signal(Signal::Terminate), &[]),
            (2, In::Created("a"), &[]),
            (5, In::Tick, &[]),
            (6, In::Tick, &[]),
        ],
        verdicts: &[
            ("a", Outcome::Unfinished, "run interrupted before the Job finished"),
            ("b", Outcome::Unfinished, "run interrupted while its create request was in flight"),
            ("c", Outcome::NotStarted, "run interrupted before its Job was created"),
        ],
        ending: End::Signal(Signal::Terminate),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "SIGINT with nothing in flight ends the run at once",
        nodes: nodes(&["a", "b"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &[]),
            (3, In::Signal(Signal::Interrupt), &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, ""), ("b", Outcome::Unfinished, "before the Job finished")],
        ending: End::Signal(Signal::Interrupt),
        ..Scenario::default()
    }
    .check();
}

/// Feed one step of a Job-kind run on `nodes` to `t` at `time`; the actions, compact.
fn feed(t: &mut Tracker, nodes: &[EligibleNode], time: i64, step: In) -> Vec<String> {
    let start = Start { nodes, leftovers: &[], gone: &[], unreachable: &[] };
    let inputs = input(step, time, PullerKind::Job, &start, &mut Pending::default());
    inputs.into_iter().flat_map(|i| t.step(at(time), i)).map(|a| compact(&a)).collect()
}

#[test]
fn start_lag_is_measured_and_paces_the_creates() {
    // Before any start, twice the create concurrency may wait for the Job controller. Once Jobs
    // start, the window follows their start rate × 5 s (Little's law), never below the concurrency.
    let t = &mut tracker(&[("CREATE_CONCURRENCY", "2")]);
    let n = &nodes(&["a", "b", "c", "d", "e", "f", "g"]);
    let feed = |t: &mut Tracker, time, step| feed(t, n, time, step);
    assert_eq!(feed(t, 0, In::Start), ["watch jobs", "watch pods"]);
    assert_eq!(feed(t, 0, In::Ready), ["create a", "create b"]);
    assert_eq!(feed(t, 1, In::Created("a")), ["create c"]);
    assert_eq!(feed(t, 1, In::Created("b")), ["create d"]);
    assert!(feed(t, 1, In::Created("c")).is_empty(), "4 created and unstarted: wait for the Job controller");
    assert!(feed(t, 1, In::Created("d")).is_empty());
    let running = pulling(json!({"running": {}}), json!({"running": {}}));
    assert_eq!(feed(t, 3, In::Pod("a", running)), ["create e", "create f"], "1 start/s: 5 may wait");
    assert!(feed(t, 4, In::Job("b", &[])).is_empty(), "2 starts/s: 10 may wait, 2 creates in flight already");
    assert_eq!(feed(t, 4, In::Created("e")), ["create g"]);
    let lag = t.lag();
    assert_eq!((lag.samples, lag.max_ms), (2, 3000), "creation → start: 2 s (pod) and 3 s (Job startTime)");
    assert_eq!(t.pace_limit(at(4)), 10);
    assert_eq!(t.pace_limit(at(10)), 2, "an old start rate: never below the create concurrency");
}

#[test]
fn nodes_that_already_hold_every_image_get_no_job() {
    Scenario {
        name: "SKIP_PRESENT without KEEP_LAST_PULLER: a node with nothing left to pull is already-present, at once",
        vars: &[("KEEP_LAST_PULLER", "false")],
        nodes: {
            let mut n = nodes(&["p", "q"]);
            n[0].images = 0;
            n
        },
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create q"]),
            (1, In::Created("q"), &[]),
            (2, In::Job("q", &[("Complete", "")]), &[]),
        ],
        verdicts: &[
            ("p", Outcome::AlreadyPresent, "every image is already on the node"),
            ("q", Outcome::Succeeded, ""),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "no eligible node: nothing to wait for, and the run fails",
        steps: vec![(0, In::Start, &["watch jobs", "watch pods", "warn no-eligible-node"])],
        ending: End::Done,
        exit: Some(ExitCode::NodesFailed),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "STARTUP_TAINT_ONLY and no node with the startup taint: the usual case, a success",
        vars: &[("STARTUP_TAINT", "images-pending"), ("STARTUP_TAINT_ONLY", "true")],
        steps: vec![(0, In::Start, &["watch jobs", "watch pods"])],
        ending: End::Done,
        exit: Some(ExitCode::Success),
        ..Scenario::default()
    }
    .check();
}

#[test]
fn seeds_spread_across_zones() {
    let zones: Vec<Option<String>> =
        ["a", "a", "a", "b", "b", "c"].iter().map(|z| Some(z.to_string())).chain([None]).collect();
    let nodes: Vec<u32> = (0..7).collect();
    assert_eq!(plan_seeds(&nodes, &zones, 3), [6, 0, 3], "one per zone (no zone is a group of its own) first");
    assert_eq!(plan_seeds(&nodes, &zones, 5), [6, 0, 3, 5, 1], "nodes without a zone are one group");
    assert_eq!(plan_seeds(&nodes, &zones, 0), Vec::<u32>::new());
    assert_eq!(plan_seeds(&nodes, &zones, 99).len(), 7);
}

#[test]
fn the_startup_taint_goes_once_every_image_is_on_the_node() {
    Scenario {
        name: "a tainted node loses the startup taint as soon as it succeeds; the run waits for the answer",
        vars: TAINT,
        nodes: tainted(&["a", "b", "c"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (2, In::Pod("a", pulling(done(), done())), &["untaint a"]),
            (3, In::Pod("b", pulling(done(), waiting("InvalidImageName", "bad"))), &["delete b"]),
            (4, In::Job("c", &[("Complete", "")]), &["untaint c"]),
            (5, In::Untainted("a", Ok(TaintRemoval::Removed)), &["event a StartupTaintRemoved"]),
        ],
        verdicts: &[("a", Outcome::Succeeded, ""), ("b", Outcome::Failed, "InvalidImageName")],
        after: &[
            ("a", "startup taint removed; puller kept"),
            ("b", "taint kept: the node did not succeed (failed)"),
            ("c", "taint kept: the run stopped before removing it; puller kept"),
        ],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a removal that fails is no success: the node is held, with the API's words; one already gone is fine",
        vars: TAINT,
        nodes: tainted(&["a", "b"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["untaint a"]),
            (2, In::Job("b", &[("Complete", "")]), &["untaint b"]),
            (3, In::Untainted("a", Err((422, VAP_DENIAL))), &[]),
            (3, In::Untainted("b", Ok(TaintRemoval::AlreadyGone)), &[]),
        ],
        after: &[
            ("a", "taint kept: its removal failed: nodes \"a\" is forbidden: ValidatingAdmissionPolicy 'quayctl-controller-node-patch' with binding 'quayctl-controller-node-patch' denied request: only the startup taint may be removed; puller kept"),
            ("b", "startup taint already gone; puller kept"),
        ],
        verdicts: &[
            (
                "a",
                Outcome::Held,
                "every image is on the node, but it still carries the startup taint images-pending: its removal failed: nodes \"a\" is forbidden: ValidatingAdmissionPolicy",
            ),
            ("b", Outcome::Succeeded, ""),
        ],
        ending: End::Done,
        exit: Some(ExitCode::NodesFailed),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a removal RBAC forbids: held, and the run exits 3 (the API refused it its rights)",
        vars: TAINT,
        nodes: tainted(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["untaint a"]),
            (3, In::Untainted("a", Err((403, NO_PATCH))), &[]),
        ],
        verdicts: &[("a", Outcome::Held, "its removal failed: nodes \"a\" is forbidden: User")],
        ending: End::Done,
        exit: Some(ExitCode::ClusterError),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a tainted node that already holds every image loses the taint before anything else",
        vars: TAINT,
        nodes: {
            let mut n = tainted(&["p", "q"]);
            n[0].images = 0;
            n[1].startup_tainted = false;
            n
        },
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods", "untaint p"]),
            // KEEP_LAST_PULLER: p's images need a puller to hold them, which pulls nothing; its
            // taint does not wait for it.
            (0, In::Ready, &["create p", "create q"]),
            (1, In::Untainted("p", Ok(TaintRemoval::Removed)), &["event p StartupTaintRemoved"]),
            (1, In::Created("p"), &[]),
            (1, In::Created("q"), &[]),
            (2, In::Job("p", &[("Complete", "")]), &[]),
            (2, In::Job("q", &[("Complete", "")]), &[]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[("p", Outcome::Succeeded, "")],
        after: &[("p", "startup taint removed; puller kept"), ("q", "puller kept")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "SIGTERM while a removal is in flight: the run waits for it within the drain time",
        vars: TAINT,
        nodes: tainted(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["untaint a"]),
            (3, In::Signal(Signal::Terminate), &[]),
            (4, In::Untainted("a", Ok(TaintRemoval::Removed)), &["event a StartupTaintRemoved"]),
            (4, In::RequestsDone, &[]),
        ],
        after: &[("a", "startup taint removed; puller kept")],
        ending: End::Signal(Signal::Terminate),
        ..Scenario::default()
    }
    .check();
}

#[test]
fn earlier_runs_pullers_are_kept_until_this_run_succeeds_on_their_node() {
    Scenario {
        name: "leftovers: failed ones and those of gone nodes go now, successes go when this run succeeds there",
        nodes: nodes(&["a", "b", "c", "d"]),
        leftovers: vec![
            leftover("a", "r0", LeftoverState::Succeeded),
            leftover("b", "r0", LeftoverState::Succeeded),
            leftover("c", "r0", LeftoverState::Failed),
            leftover("d", "r0", LeftoverState::Running),
            leftover("gone", "r0", LeftoverState::Succeeded),
            leftover("elsewhere", "r0", LeftoverState::Succeeded),
        ],
        gone: &["gone"],
        steps: vec![
            (
                0,
                In::Start,
                &[
                    "watch jobs",
                    "watch pods",
                    "delete prepull-r0-c (uid-prepull-r0-c)",
                    "delete prepull-r0-gone (uid-prepull-r0-gone)",
                ],
            ),
            (0, In::Ready, &["create a", "create b", "create c", "create d"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (1, In::Created("d"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["delete prepull-r0-a (uid-prepull-r0-a)"]),
            (2, In::Job("b", &[("Failed", "BackoffLimitExceeded")]), &["delete b"]),
            (2, In::Job("c", &[("Complete", "")]), &[]),
            (2, In::Job("d", &[("Complete", "")]), &[]),
            (2, In::RequestsDone, &[]),
        ],
        after: &[
            ("a", "puller kept; replaced 1 older puller(s); deleted prepull-r0-a"),
            ("b", ""),
            ("c", "puller kept"),
            ("d", "puller kept"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
}

const POD: &[(&str, &str)] = &[("PULLER_KIND", "pod")];
/// `STARTUP_TAINT` set: nodes of [`tainted`] lose it.
const TAINT: &[(&str, &str)] = &[("STARTUP_TAINT", "images-pending")];

#[test]
fn pod_kind_pullers_are_decided_from_their_pod_and_cleaned_up_by_the_run() {
    Scenario {
        name: "PULLER_KIND=pod: only the pod watch must list; success kept, a failure deleted at once",
        vars: POD,
        nodes: nodes(&["a", "b", "c"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (2, In::Pod("a", pulling(done(), done())), &[]),
            (2, In::Pod("b", pulling(done(), waiting("InvalidImageName", "bad"))), &["delete b (uid-b)"]),
            (3, In::Pod("c", json!({"phase": "Failed", "reason": "DeadlineExceeded", "message": "Pod was active on the node longer than the specified deadline"})), &["delete c (uid-c)"]),
            (3, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("a", Outcome::Succeeded, ""),
            ("b", Outcome::Failed, "InvalidImageName"),
            ("c", Outcome::TimedOut, "DeadlineExceeded"),
        ],
        after: &[("a", "puller kept"), ("b", ""), ("c", "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "PULLER_KIND=pod without KEEP_LAST_PULLER: a pod has no TTL, so the run deletes it as it concludes",
        vars: &[("PULLER_KIND", "pod"), ("KEEP_LAST_PULLER", "false")],
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", json!({"phase": "Succeeded"})), &["delete a (uid-a)"]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        after: &[("a", "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "PULLER_KIND=pod: a pod deleted by someone, or missing from a relist, is deleted",
        vars: POD,
        nodes: nodes(&["a", "b", "c"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (2, In::PodDeleted("a"), &[]),
            (3, In::Pod("c", json!({"phase": "Running"})), &[]),
            // The watch relists (it was down): b is not in the new list, c is.
            (4, In::Relist(&["c"]), &[]),
        ],
        verdicts: &[
            ("a", Outcome::Deleted, "pod deleted before it finished"),
            ("b", Outcome::Deleted, "pod deleted before it finished"),
            ("c", Outcome::Unfinished, "run interrupted before the pod finished"),
        ],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "PULLER_KIND=pod: no Job controller to pace to, only CREATE_CONCURRENCY bounds the creates",
        vars: &[("PULLER_KIND", "pod"), ("CREATE_CONCURRENCY", "2")],
        nodes: nodes(&["a", "b", "c", "d", "e", "f"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &["create c"]),
            (1, In::Created("b"), &["create d"]),
            (1, In::Created("c"), &["create e"]),
            (1, In::Created("d"), &["create f"]),
        ],
        verdicts: &[],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "PULLER_KIND=pod: no verdict by the node deadline, counted from the pod's creation",
        vars: POD,
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (61, In::Tick, &["delete a (uid-a)"]),
            (61, In::RequestsDone, &[]),
        ],
        verdicts: &[(
            "a",
            Outcome::TimedOut,
            "no verdict 60s after the pod was created (DEADLINE_SECONDS + WAIT_GRACE_SECONDS and slack)",
        )],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
}

#[test]
fn an_evicted_puller_pod_is_replaced_within_the_same_deadline() {
    Scenario {
        name: "the run deletes the evicted pod, then makes a new one with the deadline that is left",
        vars: POD,
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", pulling(done(), waiting("ErrImagePull", NOT_FOUND))), &[]),
            (6, In::Pod("a", evicted()), &["delete a (uid-a)"]),
            // The name rests a second: a late delete of the old pod by name cannot reach the new one.
            (7, In::PodDeleted("a"), &[]),
            (7, In::Tick, &[]),
            (8, In::Tick, &["create a (24s)"]),
            (9, In::Created("a"), &[]),
            (40, In::Tick, &[]),
            (41, In::Pod("a", pulling(done(), done())), &[]),
            (41, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        after: &[("a", "puller kept")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "evicted with no time left to pull again: timed out",
        vars: &[("PULLER_KIND", "pod"), ("DEADLINE_SECONDS", "10")],
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a (10s)"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", json!({"phase": "Running"})), &[]),
            (12, In::Pod("a", evicted()), &["delete a (uid-a)"]),
            (13, In::PodDeleted("a"), &[]),
            (13, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::TimedOut, "evicted or preempted, with no time left to pull again")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "evicted and gone while the watch was down: the relist shows it missing, it is replaced",
        vars: POD,
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", json!({"phase": "Running"})), &[]),
            (6, In::Pod("a", evicted()), &["delete a (uid-a)"]),
            (7, In::Relist(&[]), &[]),
            (8, In::Tick, &["create a (24s)"]),
            (9, In::Created("a"), &[]),
            (10, In::Pod("a", pulling(done(), done())), &[]),
            (10, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    let quota = |node: &str| -> &'static str {
        Box::leak(format!("pods \"prepull-r-{node}\" is forbidden: exceeded quota: q, used: 1").into_boxed_str())
    };
    Scenario {
        name: "evicted after the creates stopped: no new pod, the node gets the verdict of the stop",
        vars: &[("PULLER_KIND", "pod"), ("CREATE_CONCURRENCY", "1")],
        nodes: nodes(&["a", "b", "c", "d", "e"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &["create b"]),
            (2, In::Failed("b", 403, quota("b")), &["create c"]),
            (3, In::Failed("c", 403, quota("c")), &["create d"]),
            (4, In::Failed("d", 403, quota("d")), &["warn creates-stopped"]),
            (5, In::Pod("a", json!({"phase": "Running"})), &[]),
            (6, In::Pod("a", evicted()), &["delete a (uid-a)"]),
            (7, In::PodDeleted("a"), &[]),
            (7, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("e", Outcome::NotCreated, "not attempted: the last 3 creates were refused the same way"),
            ("a", Outcome::NotCreated, "evicted or preempted and not replaced: not attempted: the last 3 creates"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "evicted, then the run is interrupted: no new pod, the node is unfinished and says why",
        vars: POD,
        nodes: nodes(&["a", "b"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", json!({"phase": "Running"})), &[]),
            (3, In::Pod("a", evicted()), &["delete a (uid-a)"]),
            (4, In::Signal(Signal::Terminate), &[]),
            (5, In::PodDeleted("a"), &[]),
            (6, In::Created("b"), &[]),
            (6, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("a", Outcome::Unfinished, "evicted or preempted; the run was interrupted before it made a new one"),
            ("b", Outcome::Unfinished, "run interrupted before the pod finished"),
        ],
        ending: End::Signal(Signal::Terminate),
        ..Scenario::default()
    }
    .check();
}

#[test]
fn a_run_that_will_not_fit_its_own_jobs_deadline_says_so_once() {
    let names: Vec<String> = (0..200).map(|i| format!("n{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let n = &nodes(&refs);
    let with_deadline = |ends: Timestamp, job: &str| {
        let config = config(&[("CREATE_CONCURRENCY", "1")]);
        let policy = Policy { run_deadline: Some((ends, job.into())), ..Policy::from(&config) };
        Tracker::new(policy, template())
    };
    let t = &mut with_deadline(at(60), "cron-1");
    feed(t, n, 0, In::Start);
    feed(t, n, 0, In::Ready);
    // One create at a time, each started a second later: 1 start/s for 200 nodes, 60 s left.
    for (i, name) in names.iter().take(6).enumerate() {
        let node: &'static str = Box::leak(name.clone().into_boxed_str());
        let created = feed(t, n, i as i64 + 1, In::Created(node));
        assert!(!created.iter().any(|a| a.starts_with("warn")), "no tick yet: {created:?}");
        feed(t, n, i as i64 + 1, In::Job(node, &[]));
    }
    assert_eq!(feed(t, n, 7, In::Tick), ["warn run-deadline"], "194 nodes at about 1/s do not fit the 53 s left");
    assert_eq!(feed(t, n, 8, In::Tick), Vec::<String>::new(), "said once");
    let t = &mut with_deadline(at(100_000), "cron-2");
    feed(t, n, 0, In::Start);
    feed(t, n, 0, In::Ready);
    for name in names.iter().take(6) {
        let node: &'static str = Box::leak(name.clone().into_boxed_str());
        feed(t, n, 1, In::Created(node));
        feed(t, n, 1, In::Job(node, &[]));
    }
    assert_eq!(feed(t, n, 2, In::Tick), Vec::<String>::new(), "plenty of time");
}

#[test]
fn the_answers_to_deletes_are_inputs() {
    Scenario {
        name: "an evicted pod whose delete keeps failing: tried again while transient, then the node fails at once",
        vars: POD,
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", json!({"phase": "Running"})), &[]),
            (3, In::Pod("a", evicted()), &["delete a (uid-a)"]),
            (4, In::Deleted("a", Err((503, "unavailable"))), &["delete a (uid-a)"]),
            (5, In::Deleted("a", Err((500, "etcdserver: request timed out"))), &["delete a (uid-a)"]),
            (6, In::Deleted("a", Err((503, "unavailable"))), &["delete a (uid-a)"]),
            (7, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Failed, "evicted or preempted and could not be deleted to make way for a new one")],
        ending: End::Done,
        exit: Some(ExitCode::NodesFailed),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "an evicted pod already gone (404) or replaced (409 on its UID): the pod watch decides",
        vars: POD,
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", json!({"phase": "Running"})), &[]),
            (3, In::Pod("a", evicted()), &["delete a (uid-a)"]),
            (3, In::Deleted("a", Err((404, "pods \"prepull-r-a\" not found"))), &[]),
            (3, In::PodDeleted("a"), &[]),
            (4, In::Tick, &["create a (28s)"]),
            (5, In::Created("a"), &[]),
            (6, In::Pod("a", pulling(done(), done())), &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "an older puller whose delete is refused stays, and its node says so; a leftover's failure is logged",
        nodes: nodes(&["a"]),
        leftovers: vec![leftover("a", "r0", LeftoverState::Succeeded), leftover("b", "r0", LeftoverState::Failed)],
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods", "delete prepull-r0-b (uid-prepull-r0-b)"]),
            (0, In::Deleted("prepull-r0-b", Err((403, "denied by webhook"))), &[]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["delete prepull-r0-a (uid-prepull-r0-a)"]),
            (3, In::Deleted("prepull-r0-a", Err((403, "denied by webhook"))), &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        after: &[("a", "puller kept; could not delete older puller prepull-r0-a: denied by webhook")],
        ending: End::Done,
        exit: Some(ExitCode::Success),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "every verdict is in, the run waits for the deletes in flight at most 5 s",
        nodes: nodes(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Job("a", &[("Failed", "BackoffLimitExceeded")]), &["delete a"]),
            (6, In::Tick, &[]),
            (7, In::Tick, &[]),
        ],
        verdicts: &[("a", Outcome::Failed, "BackoffLimitExceeded")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
}

#[test]
fn a_taint_removal_that_meets_a_concurrent_change_is_tried_again_a_bounded_number_of_times() {
    const STALE: (u16, &str) = (422, "the server rejected our request due to an error in our request");
    Scenario {
        name: "the patch's test fails while the node changes: read again, 5 attempts, then the taint stays",
        vars: TAINT,
        nodes: tainted(&["a", "b"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["untaint a"]),
            (2, In::Job("b", &[("Complete", "")]), &["untaint b"]),
            (3, In::Untainted("a", Err(STALE)), &["untaint a"]),
            (3, In::Untainted("b", Err((409, "the object has been modified"))), &["untaint b"]),
            (4, In::Untainted("b", Ok(TaintRemoval::Removed)), &["event b StartupTaintRemoved"]),
            (4, In::Untainted("a", Err((503, "unavailable"))), &["untaint a"]),
            (5, In::Untainted("a", Err(STALE)), &["untaint a"]),
            (6, In::Untainted("a", Err(STALE)), &["untaint a"]),
            (7, In::Untainted("a", Err(STALE)), &[]),
            (7, In::RequestsDone, &[]),
        ],
        after: &[
            ("a", "taint kept: its removal failed: the server rejected our request due to an error in our request; puller kept"),
            ("b", "startup taint removed; puller kept"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
}

/// Nodes carrying the startup taint since `t` (seconds from the scenarios' epoch).
fn tainted_since(names: &[&str], t: i64) -> Vec<EligibleNode> {
    tainted(names).into_iter().map(|n| EligibleNode { held_since: Some(at(t)), ..n }).collect()
}

/// A node held by the startup taint since `t` that no puller can reach, for `reason`.
fn unreachable(name: &str, t: i64, reason: SkipReason) -> Unreachable {
    let node = EligibleNode {
        name: name.into(),
        set: first(2),
        startup_tainted: true,
        held_since: Some(at(t)),
        ..Default::default()
    };
    Unreachable { node, reason }
}

#[test]
fn no_node_is_held_silently() {
    Scenario {
        name: "held nodes no puller can reach are not skipped: each is held, with why, and the run fails",
        vars: &[("STARTUP_TAINT", "images-pending"), ("STARTUP_TAINT_ONLY", "true")],
        unreachable: vec![
            unreachable("cordoned", -10, SkipReason::Cordoned),
            unreachable(
                "booting",
                -10,
                SkipReason::NotReady { status: "False".into(), reason: Some("KubeletNotReady".into()) },
            ),
        ],
        steps: vec![(0, In::Start, &["watch jobs", "watch pods"])],
        verdicts: &[
            ("cordoned", Outcome::Held, "held by the startup taint and unreachable: cordoned (spec.unschedulable)"),
            ("booting", Outcome::Held, "unreachable: not Ready (Ready=False, KubeletNotReady)"),
        ],
        after: &[(
            "booting",
            "taint kept: held by the startup taint and unreachable: not Ready (Ready=False, KubeletNotReady)",
        )],
        ending: End::Done,
        exit: Some(ExitCode::NodesFailed),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a node whose pull fails keeps its taint until the maximum hold, then is released, and says so",
        vars: &[("STARTUP_TAINT", "images-pending"), ("STARTUP_TAINT_MAX_HOLD_SECONDS", "600")],
        nodes: tainted_since(&["a", "b"], -590),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::Pod("a", pulling(done(), waiting("InvalidImageName", "bad"))), &["delete a"]),
            (3, In::RequestsDone, &[]),
            (9, In::Tick, &[]),
            // b is still pulling: the run goes on, and a has been held 600 s.
            (10, In::Tick, &["untaint a", "untaint b"]),
            (11, In::Untainted("a", Ok(TaintRemoval::Removed)), &["event a StartupTaintReleased"]),
            (11, In::Untainted("b", Ok(TaintRemoval::Removed)), &["event b StartupTaintReleased"]),
            (12, In::Pod("b", pulling(done(), done())), &[]),
            (12, In::RequestsDone, &[]),
        ],
        verdicts: &[(
            "a",
            Outcome::Released,
            "held 601s, past STARTUP_TAINT_MAX_HOLD_SECONDS (600s), without every image: the startup taint images-pending was removed anyway; failed: image 2: InvalidImageName",
        ), ("b", Outcome::Released, "held 601s")],
        after: &[("a", "startup taint released after 601s"), ("b", "startup taint released after 601s; puller kept")],
        ending: End::Done,
        exit: Some(ExitCode::NodesFailed),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "held past the maximum when the run starts: released at once, and its pull still goes on",
        vars: TAINT,
        nodes: tainted_since(&["a"], -3600),
        unreachable: vec![unreachable("gone-bad", -3600, SkipReason::NotLinux { os: "windows".into() })],
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods", "untaint a", "untaint gone-bad"]),
            (0, In::Ready, &["create a"]),
            (0, In::Untainted("a", Ok(TaintRemoval::Removed)), &["event a StartupTaintReleased"]),
            (0, In::Untainted("gone-bad", Err((422, VAP_DENIAL))), &[]),
            (1, In::Created("a"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &[]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("a", Outcome::Released, "held 3600s, past STARTUP_TAINT_MAX_HOLD_SECONDS (600s)"),
            ("gone-bad", Outcome::Held, "unreachable: not a Linux node"),
        ],
        after: &[("a", "startup taint released after 3600s; puller kept")],
        ending: End::Done,
        exit: Some(ExitCode::NodesFailed),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "STARTUP_TAINT_MAX_HOLD_SECONDS=0: never released, however long it is held (fail closed)",
        vars: &[("STARTUP_TAINT", "images-pending"), ("STARTUP_TAINT_MAX_HOLD_SECONDS", "0")],
        nodes: tainted_since(&["a"], -86_400),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Job("a", &[("Failed", "BackoffLimitExceeded")]), &["delete a"]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Failed, "BackoffLimitExceeded")],
        after: &[("a", "taint kept: the node did not succeed (failed)")],
        ending: End::Done,
        exit: Some(ExitCode::NodesFailed),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "the run stops before the removal answers: held, not succeeded",
        vars: TAINT,
        nodes: tainted(&["a"]),
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["untaint a"]),
            (3, In::Signal(Signal::Terminate), &[]),
            (9, In::Tick, &[]),
        ],
        verdicts: &[(
            "a",
            Outcome::Held,
            "still carries the startup taint images-pending: the run stopped before removing it",
        )],
        ending: End::Signal(Signal::Terminate),
        exit: Some(ExitCode::Terminated),
        ..Scenario::default()
    }
    .check();
}

/// A kept puller an earlier run (`run`) left on `node`, holding these images (1-based) of the run.
fn kept(node: &str, run: &str, images: &[usize], created: i64) -> Leftover {
    let all: Vec<String> = config(&[]).images.iter().map(|i| i.normalized.clone()).collect();
    Leftover {
        images: images.iter().map(|i| all[i - 1].clone()).collect(),
        created_at: Some(at(created)),
        ..leftover(node, run, LeftoverState::Succeeded)
    }
}

#[test]
fn no_image_is_left_unprotected() {
    Scenario {
        name: "SKIP_PRESENT: the new puller also holds what is already there, so the older one may go",
        vars: &[("SKIP_PRESENT", "true")],
        // Image 1 is on the node (held by r0's puller); image 2 is new to the list.
        nodes: {
            let mut n = nodes(&["a"]);
            n[0].images = 0b10;
            n
        },
        leftovers: vec![kept("a", "r0", &[1], -600)],
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Job("a", &[("Complete", "")]), &["delete prepull-r0-a (uid-prepull-r0-a)"]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Succeeded, "")],
        after: &[("a", "puller kept; replaced 1 older puller(s); deleted prepull-r0-a")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "every image present and one older puller holds them all: nothing to create, nothing to delete",
        vars: &[("SKIP_PRESENT", "true")],
        nodes: {
            let mut n = nodes(&["a", "b"]);
            n[0].images = 0;
            n[1].images = 0;
            n
        },
        leftovers: vec![kept("a", "r0", &[1, 2], -600), kept("b", "r0", &[1], -600)],
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            // b's older puller holds image 1 only: b gets one that holds both.
            (0, In::Ready, &["create b"]),
            (1, In::Created("b"), &[]),
            (2, In::Job("b", &[("Complete", "")]), &["delete prepull-r0-b (uid-prepull-r0-b)"]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::AlreadyPresent, ""), ("b", Outcome::Succeeded, "")],
        after: &[("a", ""), ("b", "puller kept; replaced 1 older puller(s); deleted prepull-r0-b")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "the breaker holds image 2 back, but not from a node whose kept puller holds it: one puller per node",
        vars: &[("MAX_PARALLEL", "3")],
        nodes: nodes(&["a", "b", "c", "d", "e"]),
        leftovers: vec![kept("d", "r0", &[1, 2], -600)],
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b", "create c"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (1, In::Created("c"), &[]),
            (2, In::Pod("a", pulling(done(), waiting("ErrImagePull", NOT_FOUND))), &[]),
            (2, In::Pod("b", pulling(done(), waiting("ErrImagePull", NOT_FOUND))), &[]),
            (2, In::Pod("c", pulling(done(), waiting("ErrImagePull", NOT_FOUND))), &[]),
            (32, In::Tick, &["delete a", "delete b", "warn held-back 2", "delete c", "create d", "create e [1]"]),
            (33, In::Created("d"), &[]),
            (33, In::Created("e"), &[]),
            // d has image 2 on disk: the kubelet finds it there.
            (34, In::Job("d", &[("Complete", "")]), &["delete prepull-r0-d (uid-prepull-r0-d)"]),
            (34, In::Job("e", &[("Complete", "")]), &[]),
            (34, In::RequestsDone, &[]),
        ],
        verdicts: &[("d", Outcome::Succeeded, ""), ("e", Outcome::Failed, "image 2: not sent to the remaining nodes")],
        after: &[
            ("d", "puller kept; replaced 1 older puller(s); deleted prepull-r0-d"),
            // e's puller holds image 1, and no older one holds anything there.
            ("e", "puller kept"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a puller that did not get everything is not kept, and the older one holding more stays",
        nodes: nodes(&["a"]),
        leftovers: vec![kept("a", "r0", &[1, 2], -600)],
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a"]),
            (1, In::Created("a"), &[]),
            (2, In::Pod("a", pulling(done(), waiting("InvalidImageName", "bad"))), &["delete a"]),
            (2, In::RequestsDone, &[]),
        ],
        verdicts: &[("a", Outcome::Failed, "InvalidImageName")],
        after: &[("a", "")],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "two older pullers on a node: the one a newer holds entirely goes at the start; at most one stays",
        nodes: nodes(&["a", "b"]),
        leftovers: vec![
            kept("a", "r0", &[1], -900),
            kept("a", "r1", &[1, 2], -600),
            kept("b", "r0", &[1, 2], -900),
            kept("b", "r1", &[1], -600),
        ],
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods", "delete prepull-r0-a (uid-prepull-r0-a)"]),
            (0, In::Ready, &["create a", "create b"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::Job("a", &[("Failed", "BackoffLimitExceeded")]), &["delete a"]),
            (
                2,
                In::Job("b", &[("Complete", "")]),
                &["delete prepull-r0-b (uid-prepull-r0-b)", "delete prepull-r1-b (uid-prepull-r1-b)"],
            ),
            (2, In::RequestsDone, &[]),
        ],
        after: &[
            ("a", "replaced 1 older puller(s); deleted prepull-r0-a"),
            ("b", "puller kept; replaced 2 older puller(s); deleted prepull-r0-b; deleted prepull-r1-b"),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a pod that never started outlives no run: removed once its run would have given up, not before",
        vars: POD,
        nodes: nodes(&["a"]),
        leftovers: vec![
            Leftover {
                kind: PullerKind::Pod,
                created_at: Some(at(-61)),
                deadline_seconds: Some(30),
                ..leftover("old", "r0", LeftoverState::Unstarted)
            },
            Leftover {
                kind: PullerKind::Pod,
                created_at: Some(at(-59)),
                deadline_seconds: Some(30),
                ..leftover("young", "r0", LeftoverState::Unstarted)
            },
        ],
        steps: vec![
            // 30 s of pull deadline, 15 s of wait grace and 15 s of slack: 60 s after its creation.
            (0, In::Start, &["watch pods", "delete prepull-r0-old (uid-prepull-r0-old)"]),
            (0, In::RequestsDone, &[]),
        ],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
}

/// A run for joining nodes that watches for them for 60 s.
const JOINING: &[(&str, &str)] = &[
    ("STARTUP_TAINT", "images-pending"),
    ("STARTUP_TAINT_ONLY", "true"),
    ("STARTUP_TAINT_WATCH_SECONDS", "60"),
    ("PULLER_KIND", "pod"),
];

#[test]
fn nodes_that_join_during_the_window_are_pulled_on_and_released_within_seconds() {
    Scenario {
        name: "a node that joins with the startup taint is pulled on at once; the run ends with the window",
        vars: JOINING,
        steps: vec![
            (0, In::Start, &["watch pods", "watch nodes"]),
            (0, In::Ready, &[]),
            (5, In::Node("j1", true, &["images-pending"]), &["create j1"]),
            (5, In::Node("plain", true, &[]), &[]),
            (6, In::Created("j1"), &[]),
            (8, In::Pod("j1", pulling(done(), done())), &["untaint j1"]),
            (8, In::Untainted("j1", Ok(TaintRemoval::Removed)), &["event j1 StartupTaintRemoved"]),
            (8, In::RequestsDone, &[]),
            // Seen again (its taint is gone now): nothing more to do.
            (9, In::Node("j1", true, &[]), &[]),
            (59, In::Tick, &[]),
            (60, In::Tick, &[]),
        ],
        verdicts: &[("j1", Outcome::Succeeded, "")],
        after: &[("j1", "startup taint removed; puller kept")],
        ending: End::Done,
        exit: Some(ExitCode::Success),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a joining node not Ready yet waits for the window; one that never gets Ready is held at its end",
        vars: JOINING,
        unreachable: vec![unreachable(
            "listed-booting",
            -5,
            SkipReason::NotReady { status: "False".into(), reason: None },
        )],
        steps: vec![
            (0, In::Start, &["watch pods", "watch nodes"]),
            (0, In::Ready, &[]),
            (5, In::Node("booting", false, &["images-pending"]), &[]),
            (6, In::Node("stuck", false, &["images-pending", "nvidia.com/gpu"]), &[]),
            // Ready now: reached with exactly its taints, whatever TOLERATIONS says.
            (9, In::Node("booting", true, &["images-pending"]), &["create booting"]),
            (10, In::Node("listed-booting", true, &["images-pending"]), &["create listed-booting"]),
            (11, In::Created("booting"), &[]),
            (11, In::Created("listed-booting"), &[]),
            (12, In::Pod("booting", pulling(done(), done())), &["untaint booting"]),
            (12, In::Pod("listed-booting", pulling(done(), done())), &["untaint listed-booting"]),
            (13, In::Untainted("booting", Ok(TaintRemoval::Removed)), &["event booting StartupTaintRemoved"]),
            (
                13,
                In::Untainted("listed-booting", Ok(TaintRemoval::Removed)),
                &["event listed-booting StartupTaintRemoved"],
            ),
            (13, In::RequestsDone, &[]),
            (60, In::Tick, &[]),
        ],
        verdicts: &[
            ("booting", Outcome::Succeeded, ""),
            ("listed-booting", Outcome::Succeeded, ""),
            (
                "stuck",
                Outcome::Held,
                "held by the startup taint and unreachable: not Ready (Ready=False, KubeletReady)",
            ),
        ],
        ending: End::Done,
        exit: Some(ExitCode::NodesFailed),
        ..Scenario::default()
    }
    .check();
    Scenario {
        name: "a signal closes the window: nothing new is taken, what waits is held",
        vars: JOINING,
        steps: vec![
            (0, In::Start, &["watch pods", "watch nodes"]),
            (0, In::Ready, &[]),
            (5, In::Node("booting", false, &["images-pending"]), &[]),
            (6, In::Signal(Signal::Terminate), &[]),
            (7, In::Node("late", true, &["images-pending"]), &[]),
        ],
        verdicts: &[("booting", Outcome::Held, "not Ready")],
        ending: End::Signal(Signal::Terminate),
        ..Scenario::default()
    }
    .check();
}

#[test]
fn each_node_pulls_its_own_set_and_failures_keep_the_runs_numbers() {
    // IMAGES_FROM gives nodes different sets of the run's images: a holds images 1 and 2, b images
    // 1 and 3. Containers are named by the run's numbers; masks are per node.
    let set = |ids: &[u32]| -> crate::workloads::ImageSet { ids.iter().copied().collect() };
    let redis = |state: Value| json!({"phase": "Pending", "containerStatuses": [container("pull-0-nginx", done()), container("pull-2-redis", state)]});
    Scenario {
        name: "b fails on image 3, named as the run numbers it; c pulls image 3 alone",
        vars: &[("QUAY_IMAGES", "nginx:1.27;ghcr.io/org/model:v1;redis:7"), ("MAX_PARALLEL", "2")],
        nodes: vec![
            EligibleNode { name: "a".into(), set: set(&[0, 1]), images: 0b11, ..Default::default() },
            EligibleNode { name: "b".into(), set: set(&[0, 2]), images: 0b11, ..Default::default() },
            EligibleNode { name: "c".into(), set: set(&[2]), images: 0b1, ..Default::default() },
        ],
        steps: vec![
            (0, In::Start, &["watch jobs", "watch pods"]),
            (0, In::Ready, &["create a", "create b [1,3]"]),
            (1, In::Created("a"), &[]),
            (1, In::Created("b"), &[]),
            (2, In::Pod("a", pulling(done(), done())), &["create c [3]"]),
            (2, In::Pod("b", redis(waiting("ErrImagePull", NOT_FOUND))), &[]),
            (4, In::Created("c"), &[]),
            (
                5,
                In::Pod("c", json!({"phase": "Pending", "containerStatuses": [container("pull-2-redis", done())]})),
                &[],
            ),
            (6, In::Pod("c", json!({"phase": "Succeeded"})), &[]),
            (32, In::Tick, &["delete b"]),
            (32, In::RequestsDone, &[]),
        ],
        verdicts: &[
            ("a", Outcome::Succeeded, ""),
            ("b", Outcome::Failed, "image 3: ErrImagePull"),
            ("c", Outcome::Succeeded, ""),
        ],
        ending: End::Done,
        ..Scenario::default()
    }
    .check();
}

#[test]
fn creates_in_flight_are_bounded_by_their_containers() {
    // 64 images per puller (IMAGES_FROM's most): 4 creates in flight (256 containers), not 16.
    let images: Vec<String> = (0..64).map(|i| format!("registry.example.com/app-{i}:1")).collect();
    let quay = Box::leak(images.join(";").into_boxed_str());
    let all = Box::leak((1..=64).map(|i| i.to_string()).collect::<Vec<_>>().join(",").into_boxed_str());
    let create = |node: &str| -> &'static str { Box::leak(format!("create {node} [{all}]").into_boxed_str()) };
    let four: &'static [&'static str] =
        Box::leak(vec![create("a"), create("b"), create("c"), create("d")].into_boxed_slice());
    let next: &'static [&'static str] = Box::leak(vec![create("e")].into_boxed_slice());
    let vars: &'static [(&'static str, &'static str)] =
        Box::leak(vec![("QUAY_IMAGES", &*quay), ("PULLER_KIND", "pod")].into_boxed_slice());
    Scenario {
        name: "64-image pullers: four creates in flight, the next when one answers",
        vars,
        nodes: ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| EligibleNode { name: n.to_string(), set: first(64), images: u64::MAX, ..Default::default() })
            .collect(),
        steps: vec![(0, In::Start, &["watch pods"]), (0, In::Ready, four), (1, In::Created("a"), next)],
        ending: End::Running,
        ..Scenario::default()
    }
    .check();
}
