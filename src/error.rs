//! The library's typed error; each kind maps to an exit code.

use crate::config::ConfigError;
use crate::exit_code::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration (nothing was created):\n{}", list(.0))]
    Config(Vec<ConfigError>),

    /// The apiserver refused a verb: RBAC is missing something.
    #[error(
        "forbidden: cannot {action}: {message} (check the controller's RBAC in k8s/deploy/quayctl-controller-cronjob.yaml)"
    )]
    Forbidden { action: String, message: String },

    #[error("Kubernetes API error: cannot {action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },

    /// kube-runtime watchers retry forever; this only happens if that ever changes.
    #[error("cannot {0}: the watch stream ended")]
    WatchEnded(String),

    #[error("cannot connect to Kubernetes: {0}")]
    Connect(#[source] kube::Error),

    /// The controller's own pod did not give what it needed (owner, image).
    #[error("cannot inspect the controller's own pod: {0}")]
    SelfInspection(String),

    #[error("cannot write the dry-run output: {0}")]
    Output(String),
}

fn list(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n")
}

impl Error {
    /// Classify a client error for `action` ("list nodes", "create jobs.batch in namespace x", ...).
    pub fn api(action: impl Into<String>, source: kube::Error) -> Error {
        let action = action.into();
        match &source {
            kube::Error::Api(status) if status.code == 403 => {
                Error::Forbidden { action, message: status.message.clone() }
            }
            _ => Error::Api { action, source },
        }
    }

    /// Writing the report or the dry-run YAML failed (a closed stdout, a serializer error).
    pub fn output(e: impl std::fmt::Display) -> Error {
        Error::Output(e.to_string())
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::BadConfig,
            _ => ExitCode::ClusterError,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
