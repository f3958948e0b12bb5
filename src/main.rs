//! quayctl-controller: one pre-pull run, then exit with its status (see README "Exit codes").
//!
//! Signals are handled from the first instruction: the first SIGTERM/SIGINT stops the run
//! gracefully (no more creates, a partial report), a second one exits at once.

use std::process::ExitCode as ProcessExitCode;

use quayctl_controller::ExitCode;
use quayctl_controller::cluster::Cluster;
use quayctl_controller::logging::{self, LogFormat};
use quayctl_controller::run::{Clock, execute};
use quayctl_controller::signal::{Signal, forward_signals};
use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};
use tokio::sync::watch;

fn main() -> ProcessExitCode {
    tune_malloc();
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
    tokio::spawn(forward_signals(signal_stream(term, int), signal_tx, |second| {
        eprintln!("{} received again: exiting at once", second.name());
        std::process::exit(ExitCode::from(second).code().into());
    }));

    let format = match LogFormat::parse(std::env::var("LOG_FORMAT").ok().as_deref()) {
        Ok(format) => format,
        Err(problem) => {
            eprintln!("error: invalid configuration (nothing was created):\n  - {problem}");
            return ExitCode::BadConfig;
        }
    };
    logging::init(format);

    let connect = |namespace: Option<String>| async move { Cluster::connect(namespace.as_deref()).await };
    match execute(std::env::vars(), connect, signal_rx, &mut std::io::stdout(), Clock::system()).await {
        Ok(finished) => finished.exit_code(),
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

/// SIGTERM and SIGINT, as one stream of [`Signal`]s in arrival order.
fn signal_stream(term: UnixSignal, int: UnixSignal) -> impl futures::Stream<Item = Signal> + Unpin {
    Box::pin(futures::stream::unfold((term, int), |(mut term, mut int)| async move {
        let signal = tokio::select! {
            _ = term.recv() => Signal::Terminate,
            _ = int.recv() => Signal::Interrupt,
        };
        Some((signal, (term, int)))
    }))
}

/// glibc's malloc, set for a process whose big allocations are transient: response bodies of list
/// pages and watch events of 64-image pullers (tens to hundreds of KiB each). Left dynamic, the mmap
/// threshold rises to the largest of them once one is freed, and from then on they are carved
/// from the heap, where what is freed between live allocations stays resident. Fixed at 64 KiB,
/// they are mapped and unmapped whole (`make heap`: 0.8 MiB less peak RSS at 2,000 nodes and 10,000
/// workloads); one arena, as the blocking pool's threads would otherwise each get their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets malloc's parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
