//! Configuration errors: every problem says which file, line, column and key
//! it is about, and what is wrong.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration. Holds every
    /// problem found (syntax errors stop the schema check; all semantic
    /// problems are collected).
    #[error("{}", render_problems(problems))]
    Invalid { problems: Vec<Problem> },
}

impl ConfigError {
    /// The individual problems (empty for I/O errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { problems } => problems,
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&p.to_string());
    }
    if problems.len() > 1 {
        out.push_str(&format!(
            "\n{} problems in the configuration",
            problems.len()
        ));
    }
    out
}

/// A point in the configuration file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// Location of byte `offset` in `text`.
    pub(crate) fn at(file: &str, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        // Snap to a char boundary so slicing never panics.
        let mut o = offset;
        while o > 0 && !text.is_char_boundary(o) {
            o -= 1;
        }
        let before = &text[..o];
        let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: file.to_string(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    /// Key path, e.g. `vni[1].flood` (empty for file-level syntax errors).
    pub key: String,
    pub kind: ProblemKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not valid TOML.
    Syntax(String),
    /// Unknown key or wrong value type (reported by the schema decoder).
    Schema(String),
    /// A required key is absent.
    Missing,
    /// The value is not acceptable; the text says why and what is allowed.
    Invalid(String),
    /// The same value is used twice where it must be unique.
    Duplicate {
        what: String,
        first_key: String,
        first_line: usize,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Syntax(m) => write!(f, "TOML syntax error: {m}"),
            ProblemKind::Schema(m) => write!(f, "{m}"),
            ProblemKind::Missing => write!(f, "required key is missing"),
            ProblemKind::Invalid(m) => write!(f, "{m}"),
            ProblemKind::Duplicate {
                what,
                first_key,
                first_line,
            } => write!(
                f,
                "{what} is already used by `{first_key}` (line {first_line})"
            ),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.location, self.kind)
        } else {
            write!(f, "{}: `{}`: {}", self.location, self.key, self.kind)
        }
    }
}

/// Collects problems while validating.
pub(crate) struct Sink<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub problems: Vec<Problem>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Sink {
            file,
            text,
            problems: Vec::new(),
        }
    }

    pub fn line_of(&self, span: &Range<usize>) -> usize {
        Location::at(self.file, self.text, span.start).line
    }

    pub fn push(&mut self, span: Range<usize>, key: impl Into<String>, kind: ProblemKind) {
        self.problems.push(Problem {
            location: Location::at(self.file, self.text, span.start),
            key: key.into(),
            kind,
        });
    }

    pub fn invalid(&mut self, span: Range<usize>, key: impl Into<String>, msg: impl Into<String>) {
        self.push(span, key, ProblemKind::Invalid(msg.into()));
    }
}
