//! Logs through tracing: readable text by default, JSON with `LOG_FORMAT=json`, filtered by
//! `RUST_LOG` (default `info`), with the HTTP stack quiet unless asked for.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Parse `LOG_FORMAT` (unset or blank = text).
    pub fn parse(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim).unwrap_or("") {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("LOG_FORMAT={other:?}: must be `text` or `json`")),
        }
    }
}

/// Default filter: our crate at info, the HTTP/TLS stack only on warnings.
const DEFAULT_FILTER: &str = "info,hyper=warn,hyper_util=warn,rustls=warn,tower=warn,h2=warn,kube_client=warn";

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_format() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse(Some(" text ")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("yaml")), Err("LOG_FORMAT=\"yaml\": must be `text` or `json`".into()));
    }
}
