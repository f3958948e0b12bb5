//! quayctl-controller: put container images onto every schedulable node before anyone needs them.
//!
//! One run follows the data path, one module per step:
//!
//! 1. [`config`]   — environment → validated [`config::Config`] (bad input: exit 2, no API call)
//! 2. [`nodes`]    — nodes → eligible nodes (with what each pulls, [`taints`]) + skipped nodes with reasons
//! 3. [`jobs`]     — node → puller Job spec ([`naming`] keeps names valid)
//! 4. [`cluster`]  — the only module that talks to the API: list, create, watch, delete, events
//! 5. [`tracker`]  — the run as a synchronous state machine: what to create next, per-node verdicts
//!    from create results, watch events ([`outcome`] reads Jobs and pods) and the clock
//! 6. [`report`]   — one result per node → table, JSON, summary, and the [`exit_code::ExitCode`]
//!
//! [`run`] strings the steps together; after the node list, one event loop owns the run.

pub mod cluster;
pub mod config;
pub mod error;
pub mod exit_code;
pub mod images;
pub mod jobs;
pub mod logging;
pub mod naming;
pub mod nodes;
pub mod outcome;
pub mod reference;
pub mod report;
pub mod run;
pub mod taints;
pub mod tracker;

#[cfg(test)]
mod fixtures;

pub use error::{Error, Result};
pub use exit_code::ExitCode;
