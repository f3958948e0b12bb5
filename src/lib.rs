//! quayctl-controller: put container images onto every schedulable node before anyone needs them.
//!
//! One run follows the data path, one module per step:
//!
//! 1. [`config`]   — environment → validated [`config::Config`] (bad input: exit 2, no API call)
//! 2. [`nodes`]    — nodes → eligible names + skipped nodes with reasons
//! 3. [`jobs`]     — node → puller Job spec ([`naming`] keeps names valid)
//! 4. [`cluster`]  — the only module that talks to the API: list, create (409 = adopt), watch
//! 5. [`wait`]     — one watch of the run's Jobs (and their pods) → per-node [`outcome::Outcome`]
//! 6. [`report`]   — final table, summary line, and the [`exit_code::ExitCode`]
//!
//! [`run`] strings the steps together.

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
pub mod report;
pub mod run;
pub mod wait;

#[cfg(test)]
mod fixtures;

pub use error::{Error, Result};
pub use exit_code::ExitCode;
