//! quayctl-controller: one pre-pull run, then exit with its status (see README "Exit codes").
//!
//! Signals are handled from the first instruction: the first SIGTERM/SIGINT stops the run
//! gracefully (no more creates, a partial report), a second one exits at once.

use std::process::ExitCode as ProcessExitCode;

use quayctl_controller::ExitCode;
use quayctl_controller::cluster::Cluster;
use quayctl_controller::logging::{self, LogFormat};
use quayctl_controller::run::{Signal, execute};
use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};
use tokio::sync::watch;

fn main() -> ProcessExitCode {
    // One thread is plenty for a controller that waits on the network, and keeps one malloc arena.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::ClusterError.into();
        }
    };
    runtime.block_on(run()).into()
}

async fn run() -> ExitCode {
    let handlers = signal(SignalKind::terminate()).and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
    let (term, int) = match handlers {
        Ok(handlers) => handlers,
        Err(e) => {
            eprintln!("error: cannot install the SIGTERM/SIGINT handlers: {e}");
            return ExitCode::ClusterError;
        }
    };
    let (signal_tx, signal_rx) = watch::channel(None);
    tokio::spawn(forward_signals(term, int, signal_tx));

    let format = match LogFormat::parse(std::env::var("LOG_FORMAT").ok().as_deref()) {
        Ok(format) => format,
        Err(problem) => {
            eprintln!("error: invalid configuration (nothing was created):\n  - {problem}");
            return ExitCode::BadConfig;
        }
    };
    logging::init(format);

    let connect = |namespace: Option<String>| async move { Cluster::connect(namespace.as_deref()).await };
    match execute(std::env::vars(), connect, signal_rx, &mut std::io::stdout()).await {
        Ok(finished) => finished.exit_code(),
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

/// First signal: tell the run (graceful stop, partial report). Second: exit at once.
async fn forward_signals(mut term: UnixSignal, mut int: UnixSignal, tx: watch::Sender<Option<Signal>>) {
    let next = async |term: &mut UnixSignal, int: &mut UnixSignal| {
        tokio::select! {
            _ = term.recv() => Signal::Terminate,
            _ = int.recv() => Signal::Interrupt,
        }
    };
    let first = next(&mut term, &mut int).await;
    tracing::warn!(
        signal = first.name(),
        "signal received: no more creates; finishing with a partial report (again to exit at once)"
    );
    let _ = tx.send(Some(first));
    let second = next(&mut term, &mut int).await;
    eprintln!("{} received again: exiting at once", second.name());
    std::process::exit(second.exit_code().code().into());
}
