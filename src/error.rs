//! The library's typed error, and the one place that decides what an API error means for a run:
//! fatal for the run, a verdict for one node, worth trying again, or a conflict/absence the caller
//! handles. Requests ([`Error::api`]) and watches ([`Error::watch`]) alike; every kind keeps its
//! source and maps to an exit code.

use kube::runtime::watcher;

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

    /// A request that is not a watch got no answer in time (a hung connection, an overloaded apiserver).
    #[error("Kubernetes API request timed out after {seconds}s: {action}")]
    Timeout { action: String, seconds: u64 },

    /// A watch failed in a way its own backoff retries (a broken connection, an expired resource
    /// version): worth waiting for.
    #[error("cannot {action} for now: {source}")]
    Watch {
        action: String,
        #[source]
        source: watcher::Error,
    },

    /// kube-runtime watchers retry forever; this only happens if that ever changes.
    #[error("cannot {0}: the watch stream ended")]
    WatchEnded(String),

    /// The watches did not list within their bound, so nothing was created.
    #[error("cannot {action} within {seconds}s before creating any puller")]
    WatchNotReady { action: String, seconds: u64 },

    #[error("cannot connect to Kubernetes: {0}")]
    Connect(#[source] kube::Error),

    /// The controller's own pod did not give what it needed (owner, image).
    #[error("cannot inspect the controller's own pod: {0}")]
    SelfInspection(String),

    #[error("cannot write the report: {0}")]
    Output(String),
}

/// What an API error means for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Stops the run as a whole: cannot connect, unauthorized, RBAC forbids the verb.
    Fatal,
    /// An admission decision about this one object (quota, LimitRange, webhook, validation): the
    /// node gets `not-created` with the apiserver's message.
    PerNode,
    /// Overload or a broken connection that kube's own retry layer (429/503/504 with Retry-After)
    /// did not get through, or a timeout: worth another attempt later.
    Transient,
    /// 409: the object exists, or it changed under the write; and the 422 of a JSON patch whose
    /// `test` no longer holds (the object changed since it was read): read again, try again.
    Conflict,
    /// 404: the object (or its namespace) does not exist.
    NotFound,
}

fn list(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n")
}

/// RBAC's denial reads `<resource> is forbidden: User "<u>" cannot <verb> resource ...`; admission
/// denials (quota, LimitRange, PodSecurity, webhooks) are 403s too, but about the object.
fn is_rbac_denial(message: &str) -> bool {
    message.contains(" cannot ") && message.contains("resource")
}

/// The apiserver's words for a JSON patch it could not apply (`handlers/patch.go` answers 422 with
/// this generic message and the patch library's error, e.g. a failed `test`, in its causes). Our
/// patches are well-formed, so for them it means the object changed since it was read. An admission
/// policy's or a validation's 422 says what it refused instead.
const PATCH_NOT_APPLIED: &str = "the server rejected our request due to an error in our request";

/// Classify a client error by status code (and, for 403 and 422, by who refused it).
pub fn classify(e: &kube::Error) -> ErrorClass {
    match e {
        kube::Error::Api(status) => match status.code {
            401 => ErrorClass::Fatal,
            403 if is_rbac_denial(&status.message) => ErrorClass::Fatal,
            422 if status.message.contains(PATCH_NOT_APPLIED) => ErrorClass::Conflict,
            403 | 400 | 422 => ErrorClass::PerNode,
            404 => ErrorClass::NotFound,
            409 => ErrorClass::Conflict,
            429 => ErrorClass::Transient,
            code if code >= 500 => ErrorClass::Transient,
            _ => ErrorClass::PerNode,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

impl Error {
    /// Wrap a client error for `action` ("list nodes", "create jobs.batch in namespace x", ...).
    pub fn api(action: impl Into<String>, source: kube::Error) -> Error {
        let action = action.into();
        match &source {
            kube::Error::Api(status) if status.code == 403 && is_rbac_denial(&status.message) => {
                Error::Forbidden { action, message: status.message.clone() }
            }
            _ => Error::Api { action, source },
        }
    }

    /// Wrap a watcher error for `action` ("watch jobs.batch in namespace x"): an apiserver status is
    /// judged like any request's (401 and RBAC's 403 stop the run); anything else the watcher's own
    /// backoff retries.
    pub fn watch(action: impl Into<String>, e: watcher::Error) -> Error {
        match e {
            watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            | watcher::Error::WatchFailed(kube::Error::Api(status))
            | watcher::Error::WatchError(status) => Error::api(action, kube::Error::Api(status)),
            source => Error::Watch { action: action.into(), source },
        }
    }

    /// Writing the report or the dry-run YAML failed (a closed stdout, a serializer error).
    pub fn output(e: impl std::fmt::Display) -> Error {
        Error::Output(e.to_string())
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Api { source, .. } => classify(source),
            Error::Timeout { .. } | Error::Watch { .. } => ErrorClass::Transient,
            _ => ErrorClass::Fatal,
        }
    }

    /// The apiserver's own words for an API error, else the whole error.
    pub fn message(&self) -> String {
        match self {
            Error::Api { source: kube::Error::Api(status), .. } => status.message.clone(),
            Error::Forbidden { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::BadConfig,
            _ => ExitCode::ClusterError,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure(message, "").with_code(code).boxed())
    }

    #[test]
    fn classification() {
        let cases = [
            (401, "Unauthorized", ErrorClass::Fatal),
            (
                403,
                r#"jobs.batch is forbidden: User "system:serviceaccount:q:q" cannot create resource "jobs" in API group "batch" in the namespace "q""#,
                ErrorClass::Fatal,
            ),
            (
                403,
                r#"jobs.batch "prepull-r-n1" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, used: count/jobs.batch=5, limited: count/jobs.batch=5"#,
                ErrorClass::PerNode,
            ),
            (400, r#"admission webhook "deny.example.com" denied the request: no"#, ErrorClass::PerNode),
            (
                422,
                r#"Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value"#,
                ErrorClass::PerNode,
            ),
            (404, r#"namespaces "nope" not found"#, ErrorClass::NotFound),
            (422, PATCH_NOT_APPLIED, ErrorClass::Conflict),
            (
                422,
                r#"nodes "n1" is forbidden: ValidatingAdmissionPolicy 'quayctl-controller-node-patch' with binding 'quayctl-controller-node-patch' denied request: only the startup taint may be removed"#,
                ErrorClass::PerNode,
            ),
            (409, "already exists", ErrorClass::Conflict),
            (429, "too many requests", ErrorClass::Transient),
            (500, "etcdserver: request timed out", ErrorClass::Transient),
            (503, "unavailable", ErrorClass::Transient),
        ];
        for (code, message, class) in cases {
            assert_eq!(classify(&api(code, message)), class, "{code} {message}");
            let wrapped = Error::api("create jobs.batch", api(code, message));
            assert_eq!(wrapped.class(), class, "{code}");
            assert!(wrapped.to_string().contains("create jobs.batch"), "the action is kept: {wrapped}");
        }
        assert!(matches!(
            Error::api("x", api(403, "User \"u\" cannot list resource \"nodes\"")),
            Error::Forbidden { .. }
        ));
        assert_eq!(Error::Timeout { action: "list nodes".into(), seconds: 30 }.class(), ErrorClass::Transient);
        assert_eq!(Error::Timeout { action: "list nodes".into(), seconds: 30 }.exit_code(), ExitCode::ClusterError);
    }

    #[test]
    fn watch_errors_are_judged_like_requests() {
        let rbac = r#"jobs.batch is forbidden: User "x" cannot watch resource "jobs" in API group "batch""#;
        let forbidden = Error::watch("watch jobs.batch", watcher::Error::InitialListFailed(api(403, rbac)));
        assert!(matches!(forbidden, Error::Forbidden { .. }) && forbidden.class() == ErrorClass::Fatal);
        assert!(forbidden.to_string().starts_with("forbidden: cannot watch jobs.batch"), "{forbidden}");
        let gone = kube::core::Status::failure("too old resource version", "Expired").with_code(410).boxed();
        let expired = Error::watch("watch pods", watcher::Error::WatchError(gone));
        assert_ne!(expired.class(), ErrorClass::Fatal, "an expired resource version is relisted, not fatal");
        let unavailable = Error::watch("watch pods", watcher::Error::WatchFailed(api(503, "unavailable")));
        assert_eq!(unavailable.class(), ErrorClass::Transient);
        let other = Error::watch("watch pods", watcher::Error::NoResourceVersion);
        assert_eq!(other.class(), ErrorClass::Transient, "the watcher's backoff retries it");
        assert_eq!(Error::WatchEnded("watch pods".into()).class(), ErrorClass::Fatal);
        assert_eq!(
            Error::WatchNotReady { action: "list this run's Jobs and pods".into(), seconds: 60 }.to_string(),
            "cannot list this run's Jobs and pods within 60s before creating any puller"
        );
    }
}
