//! What makes `corralctl` exit non-zero. Each variant displays as the one line printed on stderr.

use corral_api::ApiError;

use crate::output::api_error_line;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with an error (or no server answered).
    #[error("{}", api_error_line(.0))]
    Api(#[from] ApiError),
    /// The command line asks for something that cannot be done.
    #[error("error: {0}")]
    Usage(String),
    /// Writing to standard output or error failed (a closed pipe, say).
    #[error("error: cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    /// Some objects failed; each failure was printed when it happened.
    #[error("error: {failed} of {total} objects failed")]
    Reported { failed: usize, total: usize },
}

impl CliError {
    /// Whether the message still has to be printed (a `Reported` failure already was).
    pub fn needs_printing(&self) -> bool {
        !matches!(self, CliError::Reported { .. })
    }
}
