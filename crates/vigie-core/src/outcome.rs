//! What a check produces, and how bad it is when it fails.

use std::fmt;
use std::sync::Arc;

use crate::Timestamp;

/// How bad an incident is: Zabbix's six levels, lowest first (so that
/// `>=` filters work): not_classified, information, warning, average (a
/// check's default), high, disaster.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    NotClassified,
    Information,
    Warning,
    #[default]
    Average,
    High,
    Disaster,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::NotClassified,
        Severity::Information,
        Severity::Warning,
        Severity::Average,
        Severity::High,
        Severity::Disaster,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::NotClassified => "not_classified",
            Severity::Information => "information",
            Severity::Warning => "warning",
            Severity::Average => "average",
            Severity::High => "high",
            Severity::Disaster => "disaster",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One number a check measured, named with its unit
/// (`latency_seconds`, `used_ratio`, `cert_days_left`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
}

/// The result of one run of one probe: ok or failing with a message, plus
/// the numbers it measured on the way.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// The severity of the incident this failure opens, when the probe
    /// knows better than the check's (a converge run: the highest among
    /// the resources that differ). `None`: the check's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

impl Outcome {
    pub fn ok(message: impl Into<String>) -> Self {
        Self {
            ok: true,
            message: message.into(),
            metrics: Vec::new(),
            severity: None,
        }
    }

    pub fn fail(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            message: message.into(),
            metrics: Vec::new(),
            severity: None,
        }
    }

    #[must_use]
    pub fn with_metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.push(Metric {
            name: name.into(),
            value,
        });
        self
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// An outcome with its timing, as the engine records it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    pub check: Arc<str>,
    /// When the probe actually started.
    pub started_at: Timestamp,
    /// How late the start was against the schedule.
    pub lag: std::time::Duration,
    pub duration: std::time::Duration,
    pub outcome: Outcome,
}
