//! Logging setup: structured logs on stderr (stdout belongs to the stdout sink), as text or JSON.

use tracing_subscriber::{EnvFilter, fmt};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The filter used when `RUST_LOG` is not set: `info` for our own crates, errors only for the
/// AWS SDK's credential chain, whose warnings repeat the raw SDK error of every failed provider
/// (the ingester logs one human line per failure category instead; `RUST_LOG=debug` shows both).
pub const DEFAULT_FILTER: &str = "info,aws_config=error,aws_smithy_runtime=error";

/// Installs the global subscriber; `RUST_LOG` overrides [`DEFAULT_FILTER`].
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(terminal, std::env::var_os("NO_COLOR").is_some()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Colour only for a person at a terminal: never into a file, a pipe or a log collector, and
/// never with `NO_COLOR` set (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, false));
        assert!(
            !colour(false, false),
            "a pipe or a file gets no escape codes"
        );
        assert!(!colour(true, true), "NO_COLOR");
    }
}
