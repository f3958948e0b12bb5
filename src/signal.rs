//! SIGTERM and SIGINT as the run sees them: the first ends the run gracefully (no more creates, a
//! partial report), a second one exits at once. `main` installs the handlers and forwards them here.

use futures::StreamExt;
use tokio::sync::watch;
use tracing::warn;

use crate::exit_code::ExitCode;

/// A signal that ends the run early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

impl From<Signal> for ExitCode {
    fn from(signal: Signal) -> ExitCode {
        match signal {
            Signal::Interrupt => ExitCode::Interrupted,
            Signal::Terminate => ExitCode::Terminated,
        }
    }
}

/// The first signal, as the process's handler forwards it (`None` until one arrives).
pub type Shutdown = watch::Receiver<Option<Signal>>;

/// The process's signal policy, fed by `signals` (SIGTERM/SIGINT as they arrive): the first is
/// forwarded to the run (graceful: no more creates, a partial report); a second calls `exit_now`
/// (the process exits at once, like fd and kube-runtime's controllers).
pub async fn forward_signals(
    mut signals: impl futures::Stream<Item = Signal> + Unpin,
    tx: watch::Sender<Option<Signal>>,
    exit_now: impl FnOnce(Signal),
) {
    let Some(first) = signals.next().await else { return };
    warn!(
        signal = first.name(),
        "signal received: no more creates; finishing with a partial report (again to exit at once)"
    );
    let _ = tx.send(Some(first));
    if let Some(second) = signals.next().await {
        exit_now(second);
    }
}

/// Resolves with the first signal. A closed channel is not a signal: then it never resolves.
pub async fn signalled(shutdown: &mut Shutdown) -> Signal {
    loop {
        if let Some(signal) = *shutdown.borrow_and_update() {
            return signal;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `call`, unless a signal comes first.
pub async fn unless_signalled<T>(shutdown: &mut Shutdown, call: impl Future<Output = T>) -> Result<T, Signal> {
    tokio::select! {
        value = call => Ok(value),
        signal = signalled(shutdown) => Err(signal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_signal_is_graceful_the_second_exits_at_once() {
        let (tx, mut rx) = watch::channel(None);
        let mut exited = None;
        let signals = futures::stream::iter([Signal::Terminate, Signal::Interrupt]);
        forward_signals(signals, tx, |s| exited = Some(s)).await;
        assert_eq!(signalled(&mut rx).await, Signal::Terminate, "the run sees the first");
        assert_eq!(exited, Some(Signal::Interrupt), "the second exits");

        let (tx, mut rx) = watch::channel(None);
        let mut exited = None;
        forward_signals(futures::stream::iter([Signal::Interrupt]), tx, |s| exited = Some(s)).await;
        assert_eq!(signalled(&mut rx).await, Signal::Interrupt);
        assert_eq!(exited, None, "one signal is graceful only");
    }

    #[test]
    fn each_signal_has_its_exit_code() {
        assert_eq!(ExitCode::from(Signal::Interrupt).code(), 130);
        assert_eq!(ExitCode::from(Signal::Terminate).code(), 143);
    }
}
