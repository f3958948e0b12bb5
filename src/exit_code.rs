//! Process exit codes and how the outcomes of one run merge into one of them.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | every eligible node pulled every image |
//! | 1    | some node failed, timed out, lost its Job, or no node was eligible |
//! | 2    | bad configuration (nothing was created) |
//! | 3    | a cluster/API error stopped the run (cannot list nodes, forbidden, ...) |
//! | 130  | interrupted by SIGINT (partial report printed) |
//! | 143  | terminated by SIGTERM (partial report printed) |

/// Exit status of one run. Merging keeps the most severe code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExitCode {
    #[default]
    Success = 0,
    NodesFailed = 1,
    BadConfig = 2,
    ClusterError = 3,
    Interrupted = 130,
    Terminated = 143,
}

impl ExitCode {
    /// Higher wins in [`ExitCode::merge`]. A signal outranks node failures and API errors because the
    /// report it comes with is partial; bad configuration outranks everything since nothing ran.
    fn severity(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::NodesFailed => 1,
            ExitCode::ClusterError => 2,
            ExitCode::Interrupted => 3,
            ExitCode::Terminated => 4,
            ExitCode::BadConfig => 5,
        }
    }

    /// The more severe of two codes.
    #[must_use]
    pub fn merge(self, other: ExitCode) -> ExitCode {
        if other.severity() > self.severity() { other } else { self }
    }

    /// Merge any number of codes; an empty input is a success. The tracker merges every node's code,
    /// the ending's and an empty run's into the run's.
    pub fn merge_all(codes: impl IntoIterator<Item = ExitCode>) -> ExitCode {
        codes.into_iter().fold(ExitCode::Success, ExitCode::merge)
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode::*;
    use super::*;

    #[test]
    fn codes_are_the_documented_numbers() {
        assert_eq!(
            [Success, NodesFailed, BadConfig, ClusterError, Interrupted, Terminated].map(ExitCode::code),
            [0, 1, 2, 3, 130, 143]
        );
    }

    #[test]
    fn merge_keeps_the_most_severe() {
        assert_eq!(Success.merge(Success), Success);
        assert_eq!(Success.merge(NodesFailed), NodesFailed);
        assert_eq!(NodesFailed.merge(Success), NodesFailed);
        assert_eq!(NodesFailed.merge(ClusterError), ClusterError);
        assert_eq!(ClusterError.merge(NodesFailed), ClusterError);
        assert_eq!(ClusterError.merge(Interrupted), Interrupted);
        assert_eq!(Interrupted.merge(Terminated), Terminated);
        assert_eq!(Terminated.merge(BadConfig), BadConfig);
    }

    #[test]
    fn merge_is_commutative_and_associative() {
        let all = [Success, NodesFailed, BadConfig, ClusterError, Interrupted, Terminated];
        for a in all {
            for b in all {
                assert_eq!(a.merge(b), b.merge(a), "{a:?} {b:?}");
                for c in all {
                    assert_eq!(a.merge(b).merge(c), a.merge(b.merge(c)));
                }
            }
        }
    }

    #[test]
    fn merge_all_of_nothing_is_success() {
        assert_eq!(ExitCode::merge_all([]), Success);
        assert_eq!(ExitCode::merge_all([Success, NodesFailed, Success]), NodesFailed);
    }
}
