//! quayctl-controller: one pre-pull run, then exit with its status (see README "Exit codes").

use std::process::ExitCode as ProcessExitCode;

use quayctl_controller::ExitCode;
use quayctl_controller::cluster::Cluster;
use quayctl_controller::logging::{self, LogFormat};
use quayctl_controller::run::execute;
use quayctl_controller::wait::Signal;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<ProcessExitCode> {
    let format = match LogFormat::parse(std::env::var("LOG_FORMAT").ok().as_deref()) {
        Ok(format) => format,
        Err(problem) => {
            eprintln!("error: invalid configuration (nothing was created):\n  - {problem}");
            return Ok(ExitCode::BadConfig.into());
        }
    };
    logging::init(format);

    let (signal_tx, signal_rx) = watch::channel(None);
    tokio::spawn(forward_signals(signal_tx));
    let connect = |namespace: Option<String>| async move { Cluster::connect(namespace.as_deref()).await };
    let result = execute(std::env::vars(), connect, signal_rx, &mut std::io::stdout()).await;

    Ok(match result {
        Ok(finished) => finished.exit_code().into(),
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code().into()
        }
    })
}

/// SIGINT/SIGTERM (a CronJob deadline, a drained node) end the run early with a partial report.
async fn forward_signals(tx: watch::Sender<Option<Signal>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let received = tokio::select! {
        _ = term.recv() => Signal::Terminate,
        _ = int.recv() => Signal::Interrupt,
    };
    tracing::warn!(signal = ?received, "signal received: stopping");
    tx.send(Some(received))?;
    Ok(())
}
