//! quayctl-controller: put container images onto every schedulable node before anyone needs them.
//!
//! One run follows the data path, one module per step:
//!
//! 1. [`config`]   — environment → validated [`config::Config`] (bad input: exit 2, no API call);
//!    [`policy`] derives every number of the run from it once (deadlines, slack, grace, pacing)
//! 2. [`nodes`]    — nodes → eligible nodes (with what each pulls, [`taints`]) + skipped nodes with reasons
//! 3. [`pullers`]  — node → puller spec, and who the run is ([`naming`] keeps names valid, [`grammar`]
//!    holds the Kubernetes grammars)
//! 4. [`cluster`]  — the only module that talks to the API: list, create, watch, delete, events
//!    ([`error`] decides what an API or watch error means)
//! 5. [`tracker`]  — the run as a synchronous state machine of `(time, input) → actions`: every
//!    decision from the first create to the last verdict ([`outcome`] reads Jobs and pods)
//! 6. [`report`]   — one result per node → table, JSON, summary, and the [`exit_code::ExitCode`]
//!
//! [`run`] only connects the steps: after the node list, one event loop feeds the tracker and carries
//! out what it asks. [`signal`] turns SIGTERM/SIGINT into inputs.

pub mod cluster;
pub mod config;
pub mod error;
pub mod exit_code;
pub mod grammar;
pub mod images;
pub mod logging;
pub mod naming;
pub mod nodes;
pub mod outcome;
pub mod policy;
pub mod pullers;
pub mod reference;
pub mod report;
pub mod run;
pub mod scheduling;
pub mod signal;
pub mod taints;
pub mod tracker;
pub mod types;
pub mod workloads;

#[cfg(test)]
mod fixtures;

pub use error::{Error, Result};
pub use exit_code::ExitCode;
