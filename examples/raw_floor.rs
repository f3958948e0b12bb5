//! The raw floor for `make bench`: create the same N puller Job objects the controller would, with
//! a minimal parallel client (no watch, no tracking, no pacing), and print how long it took.
//!
//! `raw_floor NODE_PREFIX COUNT NAMESPACE CONCURRENCY` (KUBECONFIG as usual). Nodes are
//! `NODE_PREFIX-00001` … as `hack/bench.sh` names them.

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::{Api, Client};
use quayctl_controller::config::{PullStrategy, PullerResources};
use quayctl_controller::images::{PullPolicy, parse_image_list};
use quayctl_controller::jobs::JobTemplate;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, prefix, count, namespace, concurrency] = args.as_slice() else {
        anyhow::bail!("usage: raw_floor NODE_PREFIX COUNT NAMESPACE CONCURRENCY");
    };
    let (count, concurrency): (usize, usize) = (count.parse()?, concurrency.parse()?);
    let template = JobTemplate {
        run_id: "raw".into(),
        namespace: namespace.clone(),
        strategy: PullStrategy::Kubelet,
        images: parse_image_list("nginx:1.27;redis:7").map_err(anyhow::Error::msg)?.images,
        helper_image: Some("quayctl-controller:bench".into()),
        deadline_seconds: 600,
        job_deadline_seconds: 660,
        ttl_seconds_after_finished: 3600,
        owner: None,
        pull_policy: PullPolicy::Auto,
        tolerations: Vec::new(),
        image_pull_secrets: Vec::new(),
        priority_class_name: None,
        resources: PullerResources::default(),
    };
    let api: Api<Job> = Api::namespaced(Client::try_default().await?, namespace);
    let started = Instant::now();
    let failures = futures::stream::iter(1..=count)
        .map(|i| {
            let job = template.build_for(&format!("{prefix}-{i:05}"));
            let api = api.clone();
            async move { api.create(&PostParams::default(), &job).await.is_err() }
        })
        .buffer_unordered(concurrency)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    println!(
        "{{\"created\": {}, \"failed\": {failures}, \"seconds\": {:.3}}}",
        count - failures,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
