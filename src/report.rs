//! Step 6 of the data path: the final table, the summary line and the exit code.

use std::fmt::Write as _;
use std::time::Duration;

use crate::exit_code::ExitCode;
use crate::nodes::Skipped;
use crate::outcome::Outcome;
use crate::wait::{Signal, Tracked};

/// Above this many rows, succeeded nodes are counted instead of listed.
pub const MAX_LISTED_ROWS: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub node: String,
    pub outcome: String,
    pub reason: String,
    pub duration: Option<Duration>,
}

/// Everything the run found out, ready to print.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub run_id: String,
    pub total_nodes: usize,
    pub results: Vec<(String, Outcome, Option<Duration>)>,
    pub skipped: Vec<Skipped>,
    pub interrupted: Option<Signal>,
    pub elapsed: Duration,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub deleted: usize,
    pub not_created: usize,
    pub unfinished: usize,
}

impl Report {
    pub fn new(run_id: &str, total_nodes: usize, skipped: Vec<Skipped>) -> Report {
        Report { run_id: run_id.to_string(), total_nodes, skipped, ..Default::default() }
    }

    pub fn add_tracked<'a>(&mut self, entries: impl Iterator<Item = &'a Tracked>) {
        for e in entries {
            let outcome = e.outcome.clone().unwrap_or(Outcome::Unfinished);
            self.results.push((e.node.clone(), outcome, e.duration()));
        }
        self.results.sort_by(|a, b| a.0.cmp(&b.0));
    }

    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for (_, outcome, _) in &self.results {
            match outcome {
                Outcome::Succeeded => c.succeeded += 1,
                Outcome::Failed { .. } => c.failed += 1,
                Outcome::TimedOut { .. } => c.timed_out += 1,
                Outcome::Deleted => c.deleted += 1,
                Outcome::NotCreated { .. } => c.not_created += 1,
                Outcome::Unfinished => c.unfinished += 1,
            }
        }
        c
    }

    /// 0 only if every eligible node succeeded (and there was at least one); a signal wins.
    pub fn exit_code(&self) -> ExitCode {
        let nodes = if self.results.is_empty() {
            ExitCode::NodesFailed
        } else {
            ExitCode::merge_all(
                self.results.iter().map(
                    |(_, o, _)| {
                        if o.is_success() { ExitCode::Success } else { ExitCode::NodesFailed }
                    },
                ),
            )
        };
        let signal = match self.interrupted {
            Some(Signal::Interrupt) => ExitCode::Interrupted,
            Some(Signal::Terminate) => ExitCode::Terminated,
            None => ExitCode::Success,
        };
        nodes.merge(signal)
    }

    /// Rows in print order: problems first (by node), then skipped nodes, then successes.
    pub fn rows(&self) -> Vec<Row> {
        let mut problems = Vec::new();
        let mut successes = Vec::new();
        for (node, outcome, duration) in &self.results {
            let row = Row {
                node: node.clone(),
                outcome: outcome.label().into(),
                reason: outcome.reason().into(),
                duration: *duration,
            };
            if outcome.is_success() { successes.push(row) } else { problems.push(row) }
        }
        let skipped = self.skipped.iter().map(|s| Row {
            node: s.node.clone(),
            outcome: "skipped".into(),
            reason: s.reason.to_string(),
            duration: None,
        });
        problems.into_iter().chain(skipped).chain(successes).collect()
    }

    /// The human table; succeeded nodes are only counted when the table would be huge.
    pub fn table(&self) -> String {
        let mut rows = self.rows();
        let hidden = if rows.len() > MAX_LISTED_ROWS {
            let before = rows.len();
            rows.retain(|r| r.outcome != "succeeded");
            before - rows.len()
        } else {
            0
        };
        let header = Row { node: "NODE".into(), outcome: "OUTCOME".into(), reason: "REASON".into(), duration: None };
        let width = rows.iter().chain([&header]).map(|r| r.node.len()).max().unwrap_or(4);
        let mut out = String::new();
        let _ = writeln!(out, "{:<width$}  {:<11}  {:>8}  REASON", "NODE", "OUTCOME", "DURATION");
        for r in &rows {
            let duration = r.duration.map(|d| format!("{:.1}s", d.as_secs_f64())).unwrap_or_else(|| "-".into());
            let line = format!("{:<width$}  {:<11}  {:>8}  {}", r.node, r.outcome, duration, r.reason);
            let _ = writeln!(out, "{}", line.trim_end());
        }
        if hidden > 0 {
            let _ = writeln!(out, "({hidden} succeeded nodes not listed)");
        }
        out
    }

    pub fn summary(&self) -> String {
        let c = self.counts();
        let eligible = self.results.len();
        let mut line = format!(
            "run {}: {}/{} eligible nodes succeeded, {} failed, {} timed out, {} deleted, {} not created",
            self.run_id, c.succeeded, eligible, c.failed, c.timed_out, c.deleted, c.not_created
        );
        if c.unfinished > 0 {
            let _ = write!(line, ", {} unfinished", c.unfinished);
        }
        let _ = write!(line, "; {} skipped of {} nodes", self.skipped.len(), self.total_nodes);
        if eligible == 0 {
            line.push_str("; no eligible node");
        }
        if let Some(signal) = self.interrupted {
            let _ = write!(line, "; interrupted by {}", if signal == Signal::Interrupt { "SIGINT" } else { "SIGTERM" });
        }
        let _ = write!(line, "; {:.1}s; exit {}", self.elapsed.as_secs_f64(), self.exit_code().code());
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::SkipReason;

    fn report(outcomes: &[(&str, Outcome)], skipped: &[&str]) -> Report {
        let skipped = skipped.iter().map(|n| Skipped { node: n.to_string(), reason: SkipReason::Cordoned }).collect();
        let mut r = Report::new("r1", outcomes.len() + 1, skipped);
        r.results =
            outcomes.iter().map(|(n, o)| (n.to_string(), o.clone(), Some(Duration::from_millis(1500)))).collect();
        r
    }

    #[test]
    fn exit_codes() {
        assert_eq!(report(&[("a", Outcome::Succeeded)], &["s"]).exit_code(), ExitCode::Success);
        assert_eq!(report(&[], &["s"]).exit_code(), ExitCode::NodesFailed, "no eligible node");
        for bad in [
            Outcome::Failed { reason: "x".into() },
            Outcome::TimedOut { reason: "x".into() },
            Outcome::Deleted,
            Outcome::NotCreated { reason: "x".into() },
            Outcome::Unfinished,
        ] {
            assert_eq!(report(&[("a", Outcome::Succeeded), ("b", bad)], &[]).exit_code(), ExitCode::NodesFailed);
        }
        let mut r = report(&[("a", Outcome::Succeeded)], &[]);
        r.interrupted = Some(Signal::Terminate);
        assert_eq!(r.exit_code(), ExitCode::Terminated);
        r.interrupted = Some(Signal::Interrupt);
        assert_eq!(r.exit_code(), ExitCode::Interrupted);
    }

    #[test]
    fn table_lists_problems_first_and_names_reasons() {
        let r =
            report(&[("a", Outcome::Succeeded), ("b", Outcome::Failed { reason: "puller exited 1".into() })], &["c"]);
        let table = r.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NODE"));
        assert!(
            lines[1].starts_with("b ") && lines[1].contains("failed") && lines[1].ends_with("puller exited 1"),
            "{table}"
        );
        assert!(lines[2].starts_with("c ") && lines[2].contains("skipped") && lines[2].contains("cordoned"));
        assert!(lines[3].starts_with("a ") && lines[3].contains("succeeded") && lines[3].contains("1.5s"));
        assert_eq!(
            r.summary(),
            "run r1: 1/2 eligible nodes succeeded, 1 failed, 0 timed out, 0 deleted, 0 not created; 1 skipped of 3 nodes; 0.0s; exit 1"
        );
    }

    #[test]
    fn huge_tables_count_successes() {
        let outcomes: Vec<(String, Outcome)> = (0..300).map(|i| (format!("n{i:03}"), Outcome::Succeeded)).collect();
        let refs: Vec<(&str, Outcome)> = outcomes.iter().map(|(n, o)| (n.as_str(), o.clone())).collect();
        let mut with_failure = refs.clone();
        with_failure.push(("zz", Outcome::Deleted));
        let table = report(&with_failure, &[]).table();
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.contains("(300 succeeded nodes not listed)"));
    }
}
