//! Errors from reading a machine config.
//!
//! Every message starts with the source (a file path or URL), so a line on
//! the console says where to look: `node-1.toml:7:1: node.rol: unknown field
//! ...` for a document that cannot be read, and one `node-1.toml: KEY:
//! REASON` line per problem for a document that reads fine but is not a
//! usable config.

use std::fmt;
use std::path::PathBuf;

/// One problem in a machine config: the dotted key path it is about and
/// what is wrong, phrased so that the fix is clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `node.addresses[0]` or
    /// `kernel.sysctls."net.ipv4.ip_forward"`.
    pub key: String,
    /// What is wrong and, where it helps, what to write instead.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// Why a machine config could not be read, parsed or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read machine config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not TOML, or has an unknown key, a value of the wrong type
    /// (a string where a list belongs, ...) or a misplaced table. Only the
    /// first such error is known: the document cannot be read past it.
    #[error("{}", describe_parse(.source_name, *.line, *.column, .key, .message))]
    Parse {
        /// Where the text came from: a file path or URL.
        source_name: String,
        /// 1-based line of the offending key or value, if known.
        line: Option<usize>,
        /// 1-based column, counted in characters, if known.
        column: Option<usize>,
        /// Dotted key path, if the error is about a key.
        key: Option<String>,
        /// What was found and what was expected.
        message: String,
    },
    /// The document was read, but values are invalid or do not fit
    /// together. Lists every problem found.
    #[error("{}", describe_problems(.source_name, .problems))]
    Invalid {
        /// Where the text came from: a file path or URL.
        source_name: String,
        /// Every problem, in document order of the sections.
        problems: Vec<Problem>,
    },
    /// The config could not be rendered as TOML.
    #[error("cannot render the machine config as TOML: {0}")]
    Render(#[source] toml::ser::Error),
}

impl ConfigError {
    /// The individual problems of an [`ConfigError::Invalid`] config; empty
    /// for other errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn describe_parse(
    source_name: &str,
    line: Option<usize>,
    column: Option<usize>,
    key: &Option<String>,
    message: &str,
) -> String {
    let mut text = source_name.to_owned();
    if let Some(line) = line {
        text.push_str(&format!(":{line}"));
        if let Some(column) = column {
            text.push_str(&format!(":{column}"));
        }
    }
    if let Some(key) = key {
        text.push_str(&format!(": {key}"));
    }
    text.push_str(&format!(": {message}"));
    text
}

fn describe_problems(source_name: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("{source_name}: {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Turns a toml error, wrapped with the key path serde was at, into
/// [`ConfigError::Parse`].
pub(super) fn parse_error(
    source_name: &str,
    text: &str,
    error: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    // For an unknown key the path ends with that key, so it names what to
    // delete or fix; for a syntax error there is no path.
    let path = error.path().to_string();
    let key = (!path.is_empty() && path != ".").then_some(path);
    let inner = error.into_inner();
    let (line, column) = match inner.span() {
        Some(span) => {
            let (line, column) = cairn_images::profile::line_column(text, span.start);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    ConfigError::Parse {
        source_name: source_name.to_owned(),
        line,
        column,
        key,
        // toml spreads some messages over several lines; keep one line per
        // error so consoles and logs show it whole.
        message: inner
            .message()
            .trim()
            .lines()
            .collect::<Vec<_>>()
            .join("; "),
    }
}
