//! The resources, each one concern: what it declares, how it reads the
//! host (`drift`, which never writes), and how it repairs (`fix`, which
//! needs the enforce-only [`Writer`]). [`check_apply`] is the one path
//! every resource goes through, in both modes.

pub mod account;
pub mod command;
pub mod download;
pub mod file;
pub mod git;
pub mod package;
pub mod service;
pub mod sysctl;

use crate::write::Writer;

/// How the host differs from a resource: nothing when compliant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// One short phrase per difference ("mode 0600, declared 0644").
    pub changes: Vec<String>,
    /// A unified diff of a file's content, bounded and redacted.
    pub diff: Option<String>,
}

impl Drift {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_none(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn one(change: impl Into<String>) -> Self {
        Self {
            changes: vec![change.into()],
            diff: None,
        }
    }

    pub fn add(&mut self, change: impl Into<String>) {
        self.changes.push(change.into());
    }
}

pub type Res<T> = Result<T, String>;

/// What each resource kind implements.
pub trait State {
    /// Read the host and say how it differs. Never writes.
    fn drift(&self) -> Res<Drift>;
    /// Make the host as declared; `drift` is what [`State::drift`] just
    /// found.
    fn fix(&self, w: &Writer, drift: &Drift) -> Res<()>;
    /// Whether a second `drift` after `fix` must find nothing (a command
    /// without guards has no way to tell).
    fn recheck(&self) -> bool {
        true
    }
}

/// The result of one resource.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Compliant,
    NonCompliant,
    Repaired,
    /// Not checked: a resource it requires failed.
    Skipped,
    Error,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Compliant => "compliant",
            Status::NonCompliant => "non-compliant",
            Status::Repaired => "repaired",
            Status::Skipped => "skipped",
            Status::Error => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub status: Status,
    pub drift: Drift,
    pub message: Option<String>,
}

/// Check a resource and, given a writer (enforce mode), repair it and
/// check again. Without one (audit mode) nothing can be written.
pub fn check_apply(state: &dyn State, w: Option<&Writer>) -> Checked {
    let error = |drift: Drift, message: String| Checked {
        status: Status::Error,
        drift,
        message: Some(crate::diff::redact(&message)),
    };
    let drift = match state.drift() {
        Ok(d) => d,
        Err(e) => return error(Drift::none(), e),
    };
    if drift.is_none() {
        return Checked {
            status: Status::Compliant,
            drift,
            message: None,
        };
    }
    let Some(w) = w else {
        return Checked {
            status: Status::NonCompliant,
            drift,
            message: None,
        };
    };
    if let Err(e) = state.fix(w, &drift) {
        return error(drift, e);
    }
    if state.recheck() {
        match state.drift() {
            Ok(after) if after.is_none() => {}
            Ok(after) => {
                let still = after.changes.join("; ");
                return error(drift, format!("still differs after the repair: {still}"));
            }
            Err(e) => return error(drift, format!("after the repair: {e}")),
        }
    }
    Checked {
        status: Status::Repaired,
        drift,
        message: None,
    }
}

/// `0644`, as people write modes.
pub fn octal(mode: u32) -> String {
    format!("{mode:04o}")
}
