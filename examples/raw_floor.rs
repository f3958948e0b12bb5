//! The raw floor for `make bench`: create the same N puller Job objects the controller would, with
//! a minimal parallel client (no watch, no tracking, no pacing), and print how long it took. The
//! Jobs are created suspended, so that the Job controller stays quiet for the next measurement.
//!
//! `raw_floor NODE_PREFIX COUNT NAMESPACE CONCURRENCY` (KUBECONFIG as usual). Nodes are
//! `NODE_PREFIX-00001` … as `hack/bench.sh` names them.

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::{Api, Client};
use quayctl_controller::config::Config;
use quayctl_controller::images::all_images;
use quayctl_controller::nodes::EligibleNode;
use quayctl_controller::policy::Policy;
use quayctl_controller::pullers::{Puller, PullerTemplate, RunIdentity};
use quayctl_controller::tracker::Tracker;
use quayctl_controller::types::SelfInfo;
use quayctl_controller::workloads::{Catalog, first};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, prefix, count, namespace, concurrency] = args.as_slice() else {
        anyhow::bail!("usage: raw_floor NODE_PREFIX COUNT NAMESPACE CONCURRENCY");
    };
    let (count, concurrency): (usize, usize) = (count.parse()?, concurrency.parse()?);
    // The controller's own configuration and builder, so the objects are the same.
    let vars = [
        ("QUAY_IMAGES", "nginx:1.27;redis:7"),
        ("HELPER_IMAGE", "quayctl-controller:bench"),
        ("DEADLINE_SECONDS", "600"),
    ];
    let config =
        Config::from_vars(vars.map(|(k, v)| (k.to_string(), v.to_string()))).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut run = RunIdentity::decide(&config, &SelfInfo::default(), namespace, Default::default())?;
    run.run_id = "raw".into();
    // The pullers the tracker would create first, deadlines included.
    let catalog = Catalog::explicit(config.images.clone());
    let tracker = Tracker::new(Policy::from(&config), PullerTemplate::new(&config, run, catalog));
    let (set, images) = (first(config.images.len()), all_images(config.images.len()));
    let nodes: Vec<EligibleNode> = (1..=count)
        .map(|i| EligibleNode { name: format!("{prefix}-{i:05}"), set: set.clone(), images, ..Default::default() })
        .collect();
    let jobs: Vec<Job> = tracker
        .pullers(&nodes)
        .filter_map(|(_, puller)| match puller {
            Puller::Job(job) => Some(*job),
            Puller::Pod(_) => None,
        })
        .collect();
    let api: Api<Job> = Api::namespaced(Client::try_default().await?, namespace);
    let started = Instant::now();
    let failures = futures::stream::iter(jobs)
        .map(|mut job| {
            // Suspended: the apiserver does the same work to create it, but the Job controller
            // does not start N more pods under the next measurement (bench runs several in a row).
            if let Some(spec) = job.spec.as_mut() {
                spec.suspend = Some(true);
            }
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
