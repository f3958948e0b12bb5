//! Step 3 of the data path: one puller Job per eligible node, as pure builders.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::config::PullStrategy;
use crate::images::Image;
use crate::naming;

pub const MANAGED_BY: &str = "quayctl-controller";
pub const PULLER_NAME: &str = "quayctl-puller";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_RUN: &str = "quayctl-controller/run";
pub const LABEL_NODE: &str = "quayctl-controller/node";
pub const ANNOTATION_NODE: &str = "quayctl-controller/node-name";
pub const ANNOTATION_RUN: &str = "quayctl-controller/run-id";
pub const ANNOTATION_IMAGES: &str = "quayctl-controller/images";

/// Where the no-op binary lives in the helper image, and where pull containers find it.
pub const NOOP_IN_HELPER: &str = "/quayctl-noop";
const NOOP_DIR: &str = "/.quayctl-noop";
/// Non-root user of distroless images; any non-zero uid works.
const RUN_AS_USER: i64 = 65532;

/// Everything a Job needs besides the node: the same for every Job of a run.
#[derive(Clone, Debug)]
pub struct JobTemplate {
    pub run_id: String,
    pub namespace: String,
    pub strategy: PullStrategy,
    pub images: Vec<Image>,
    /// Image carrying `/quayctl-noop` (kubelet strategy only).
    pub helper_image: Option<String>,
    pub deadline_seconds: i64,
    pub ttl_seconds_after_finished: i32,
    /// The CronJob's Job when the controller runs in a pod it owns.
    pub owner: Option<OwnerReference>,
}

impl JobTemplate {
    /// Label selector matching every Job (and pod) of this run.
    pub fn run_selector(&self) -> String {
        format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_RUN}={}", naming::label_value(&self.run_id))
    }

    pub fn job_name(&self, node: &str) -> String {
        naming::job_name(&self.run_id, node)
    }

    fn labels(&self, node: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            (LABEL_NAME, PULLER_NAME.to_string()),
            (LABEL_MANAGED_BY, MANAGED_BY.to_string()),
            (LABEL_RUN, naming::label_value(&self.run_id)),
            (LABEL_NODE, naming::label_value(node)),
        ])
    }

    /// True when an existing Job carries this run's labels for `node` (safe to adopt after a 409).
    pub fn owns(&self, job: &Job, node: &str) -> bool {
        let Some(labels) = job.metadata.labels.as_ref() else {
            return false;
        };
        self.labels(node).iter().all(|(k, v)| labels.get(*k) == Some(v))
    }

    /// The puller Job for `node`.
    pub fn build(&self, node: &str) -> Job {
        let labels = self.labels(node);
        let images: Vec<&str> = self.images.iter().map(|i| i.normalized.as_str()).collect();
        let mut pod_spec = match &self.strategy {
            PullStrategy::Kubelet => self.kubelet_pod_spec(),
            PullStrategy::Quayctl { image } => self.quayctl_pod_spec(image),
        };
        pod_spec["restartPolicy"] = json!("Never");
        pod_spec["automountServiceAccountToken"] = json!(false);
        pod_spec["enableServiceLinks"] = json!(false);
        pod_spec["terminationGracePeriodSeconds"] = json!(5);
        pod_spec["affinity"] = node_affinity(node);
        let mut job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": self.job_name(node),
                "namespace": self.namespace,
                "labels": labels,
                "annotations": {
                    ANNOTATION_NODE: node,
                    ANNOTATION_RUN: self.run_id,
                    ANNOTATION_IMAGES: images.join(";"),
                },
                "ownerReferences": self.owner.iter().collect::<Vec<_>>(),
            },
            "spec": {
                "activeDeadlineSeconds": self.deadline_seconds,
                "backoffLimit": 0,
                "completions": 1,
                "parallelism": 1,
                "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
                "template": {
                    "metadata": {"labels": labels, "annotations": {ANNOTATION_NODE: node}},
                    "spec": pod_spec,
                },
            },
        });
        if self.owner.is_none() {
            job["metadata"].as_object_mut().map(|m| m.remove("ownerReferences"));
        }
        serde_json::from_value(job).expect("the Job template matches the k8s-openapi types (unit-tested)")
    }

    /// Kubelet strategy: copy a static no-op into an emptyDir, then run it from every image, so the
    /// kubelet pulls each image with the node's own runtime and credentials. Restricted-PSS clean.
    fn kubelet_pod_spec(&self) -> Value {
        let helper = self.helper_image.as_deref().unwrap_or_default();
        let noop = format!("{NOOP_DIR}/quayctl-noop");
        let containers: Vec<Value> = self
            .images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                json!({
                    "name": naming::container_name(i, image.short_name()),
                    "image": image.given,
                    "imagePullPolicy": image.pull_policy(),
                    "command": [noop],
                    "volumeMounts": [{"name": "noop", "mountPath": NOOP_DIR, "readOnly": true}],
                    "securityContext": restricted_container_security(),
                    "resources": tiny_resources(),
                })
            })
            .collect();
        json!({
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [{"name": "noop", "emptyDir": {"sizeLimit": "16Mi"}}],
            "initContainers": [{
                "name": "install-noop",
                "image": helper,
                "imagePullPolicy": "IfNotPresent",
                "command": [NOOP_IN_HELPER, "--install", noop],
                "volumeMounts": [{"name": "noop", "mountPath": NOOP_DIR}],
                "securityContext": restricted_container_security(),
                "resources": tiny_resources(),
            }],
            "containers": containers,
        })
    }

    /// quayctl strategy, as the 2017 original: one `puller` container with the list in `QUAY_IMAGES`,
    /// the node's docker socket, and host networking for the BitTorrent ports.
    fn quayctl_pod_spec(&self, quayctl_image: &str) -> Value {
        let list: Vec<&str> = self.images.iter().map(|i| i.given.as_str()).collect();
        json!({
            "hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "volumes": [{
                "name": "docker-socket",
                "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"},
            }],
            "containers": [{
                "name": "puller",
                "image": quayctl_image,
                "imagePullPolicy": "IfNotPresent",
                "env": [{"name": "QUAY_IMAGES", "value": list.join(";")}],
                "volumeMounts": [{"name": "docker-socket", "mountPath": "/var/run/docker.sock"}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            }],
        })
    }
}

/// Pin to the node by name, as the DaemonSet controller does (the hostname label can differ).
fn node_affinity(node: &str) -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}],
    }]}}})
}

fn restricted_container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
    })
}

fn tiny_resources() -> Value {
    json!({"requests": {"cpu": "1m", "memory": "4Mi"}, "limits": {"cpu": "50m", "memory": "16Mi"}})
}

/// The node a Job was built for (from its annotation).
pub fn node_of(job: &Job) -> Option<&str> {
    job.metadata.annotations.as_ref()?.get(ANNOTATION_NODE).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::parse_image_list;

    pub(crate) fn template(strategy: PullStrategy) -> JobTemplate {
        JobTemplate {
            run_id: "nightly-7".into(),
            namespace: "prepull".into(),
            strategy,
            images: parse_image_list("nginx:1.27;ghcr.io/org/model:v1").unwrap().images,
            helper_image: Some("ghcr.io/x/quayctl-controller:0.1.0".into()),
            deadline_seconds: 300,
            ttl_seconds_after_finished: 3600,
            owner: None,
        }
    }

    fn as_json(job: &Job) -> Value {
        serde_json::to_value(job).unwrap()
    }

    #[test]
    fn common_job_fields() {
        let job = template(PullStrategy::Kubelet).build("node-a.example.com");
        let j = as_json(&job);
        assert_eq!(j["metadata"]["name"], naming::job_name("nightly-7", "node-a.example.com"));
        assert_eq!(j["metadata"]["namespace"], "prepull");
        assert_eq!(j["spec"]["activeDeadlineSeconds"], 300);
        assert_eq!(j["spec"]["backoffLimit"], 0);
        assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 3600);
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let term =
            &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchFields"],
            json!([{"key": "metadata.name", "operator": "In", "values": ["node-a.example.com"]}])
        );
        assert!(term.get("matchExpressions").is_none(), "never pinned by the hostname label");
        for labels in [&j["metadata"]["labels"], &j["spec"]["template"]["metadata"]["labels"]] {
            assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY);
            assert_eq!(labels[LABEL_NAME], PULLER_NAME);
            assert_eq!(labels[LABEL_RUN], "nightly-7");
            assert_eq!(labels[LABEL_NODE], "node-a.example.com");
        }
        assert_eq!(node_of(&job), Some("node-a.example.com"));
        assert!(j["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn long_node_names_are_label_safe_with_the_full_name_annotated() {
        let node = format!("{}.internal", "n".repeat(80));
        let job = template(PullStrategy::Kubelet).build(&node);
        let labels = job.metadata.labels.as_ref().unwrap();
        assert!(labels[LABEL_NODE].len() <= 63);
        assert_eq!(node_of(&job), Some(node.as_str()));
        assert!(job.metadata.name.as_ref().unwrap().len() <= 63);
    }

    #[test]
    fn kubelet_strategy_runs_a_noop_from_every_image_under_restricted_pss() {
        let j = as_json(&template(PullStrategy::Kubelet).build("n1"));
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none());
        assert_eq!(pod["volumes"], json!([{"name": "noop", "emptyDir": {"sizeLimit": "16Mi"}}]));
        let init = &pod["initContainers"][0];
        assert_eq!(init["image"], "ghcr.io/x/quayctl-controller:0.1.0");
        assert_eq!(init["command"], json!(["/quayctl-noop", "--install", "/.quayctl-noop/quayctl-noop"]));
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["name"], "pull-0-nginx");
        assert_eq!(containers[0]["image"], "nginx:1.27");
        assert_eq!(containers[0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(containers[1]["name"], "pull-1-model");
        assert_eq!(containers[1]["image"], "ghcr.io/org/model:v1");
        for c in containers.iter().chain([init]) {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{c}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert!(c["resources"]["limits"]["memory"].is_string());
        }
        for c in containers {
            assert_eq!(c["command"], json!(["/.quayctl-noop/quayctl-noop"]));
            assert_eq!(c["volumeMounts"][0]["readOnly"], true);
        }
    }

    #[test]
    fn quayctl_strategy_is_faithful_to_the_original() {
        let strategy = PullStrategy::Quayctl { image: "quay.io/coreos/quayctl:v0.0.1".into() };
        let j = as_json(&template(strategy).build("n1"));
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
        assert_eq!(pod["volumes"][0]["hostPath"], json!({"path": "/var/run/docker.sock", "type": "Socket"}));
        let c = &pod["containers"][0];
        assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
        assert_eq!(c["name"], "puller");
        assert_eq!(c["image"], "quay.io/coreos/quayctl:v0.0.1");
        assert_eq!(c["env"], json!([{"name": "QUAY_IMAGES", "value": "nginx:1.27;ghcr.io/org/model:v1"}]));
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/run/docker.sock");
        assert!(pod.get("initContainers").is_none());
    }

    #[test]
    fn owner_reference_is_set_when_known() {
        let mut t = template(PullStrategy::Kubelet);
        t.owner = Some(OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "quayctl-controller-29384756".into(),
            uid: "0b7f3f5e-1111-2222-3333-444455556666".into(),
            ..Default::default()
        });
        let j = as_json(&t.build("n1"));
        assert_eq!(j["metadata"]["ownerReferences"][0]["name"], "quayctl-controller-29384756");
        assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "Job");
    }

    #[test]
    fn selector_and_adoption_check() {
        let t = template(PullStrategy::Kubelet);
        assert_eq!(
            t.run_selector(),
            "app.kubernetes.io/managed-by=quayctl-controller,quayctl-controller/run=nightly-7"
        );
        let job = t.build("n1");
        assert!(t.owns(&job, "n1"));
        assert!(!t.owns(&job, "n2"));
        let mut other_run = t.clone();
        other_run.run_id = "nightly-8".into();
        assert!(!other_run.owns(&job, "n1"));
        assert!(!t.owns(&Job::default(), "n1"));
    }
}
