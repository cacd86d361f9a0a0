//! Errors from loading a profile.
//!
//! Every error names the file it is about. Parse errors also carry the line
//! and column (1-based, columns counted in characters) and the key path
//! (`kernel.cmdline[1]`), computed from the byte span toml reports, so an
//! editor can jump straight to the problem.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Anything that can go wrong loading, merging or rendering a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The profile file (or one it extends) could not be read.
    #[error("cannot read profile {}{}: {source}", path.display(), describe_extended_by(.extended_by))]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The profile whose `extends` named it, if any.
        extended_by: Option<PathBuf>,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not valid TOML, has an unknown key, a value of the wrong
    /// type or a value a newtype refused.
    #[error("{}: {}: {message}", Location { path, line: *line, column: *column }, key)]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value, if known.
        line: Option<usize>,
        /// 1-based column (in characters), if known.
        column: Option<usize>,
        /// Dotted key path, e.g. `kernel.cmdline[1]`; `(top level)` for the
        /// document itself.
        key: String,
        /// What was found and what was expected.
        message: String,
    },
    /// The profile parsed, but its contents do not fit together (a required
    /// key is missing, a removal names nothing, two entries collide, …).
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The file the problem was found in (for checks on the merged
        /// profile: the profile that was loaded).
        path: PathBuf,
        /// Dotted key path.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// `extends` leads back to a profile already being loaded.
    #[error("profile `extends` cycle: {}", chain.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" -> "))]
    ExtendsCycle {
        /// The profiles in the cycle, ending with the repeated one.
        chain: Vec<PathBuf>,
    },
    /// The resolved profile could not be rendered as TOML.
    #[error("cannot render profile {} as TOML: {source}", path.display())]
    Render {
        /// The loaded profile.
        path: PathBuf,
        /// The serializer's error.
        source: toml::ser::Error,
    },
}

fn describe_extended_by(by: &Option<PathBuf>) -> String {
    match by {
        Some(path) => format!(" (extended by {})", path.display()),
        None => String::new(),
    }
}

struct Location<'a> {
    path: &'a Path,
    line: Option<usize>,
    column: Option<usize>,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// Turns a toml error wrapped with its key path into [`ProfileError::Parse`].
pub(crate) fn parse_error(
    path: &Path,
    text: &str,
    error: serde_path_to_error::Error<toml::de::Error>,
) -> ProfileError {
    // The path includes an unknown key itself, so it points at what to
    // delete or fix.
    let mut key = error.path().to_string();
    let inner = error.into_inner();
    let message = inner.message().trim().to_owned();
    if key == "." || key.is_empty() {
        key = "(top level)".to_owned();
    }
    let (line, column) = match inner.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    ProfileError::Parse {
        path: path.to_owned(),
        line,
        column,
        key,
        message,
    }
}

/// 1-based line and character column of a byte offset (for TOML error
/// spans; shared with the machine config parser).
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // `=` after "bé " : byte 10, character column 4.
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 1000), (3, 1));
    }
}
