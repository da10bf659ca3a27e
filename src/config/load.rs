//! Reading the file, applying `KBWATCH_<SECTION>__<KEY>` overrides, and validating.
//! (Placeholder: the full loader with every-problem reporting replaces this.)

use std::fmt;
use std::path::Path;

use super::Config;

/// One problem found in the configuration, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `tenant[0].quota.per_minute`; empty for the file as a whole.
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// Loads `path`, applies overrides from the process environment and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, std::env::vars())
}

/// Parses `text`, applies the `KBWATCH_*` pairs of `env` and validates.
pub fn load_str(
    text: &str,
    _env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| {
        ConfigError::Invalid(vec![Problem { path: String::new(), message: e.to_string() }])
    })
}
