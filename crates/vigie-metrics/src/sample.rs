//! One measurement as collectors return it: what the text exposition
//! writes, and what the store will keep.

use crate::{Exposition, Kind};

/// One value of one series: its family's name, help and type, its labels
/// sorted by name (as Prometheus's clients print them), and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Sorted by label name, each name once.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Sample {
    /// A sample without labels.
    pub fn new(name: &'static str, kind: Kind, help: &'static str, value: f64) -> Self {
        Self {
            name,
            help,
            kind,
            labels: Vec::new(),
            value,
        }
    }

    /// A sample with `labels`, which are sorted here.
    pub fn labelled(
        name: &'static str,
        kind: Kind,
        help: &'static str,
        mut labels: Vec<(&'static str, String)>,
        value: f64,
    ) -> Self {
        labels.sort_unstable_by_key(|(k, _)| *k);
        Self {
            name,
            help,
            kind,
            labels,
            value,
        }
    }

    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One sample as a remote write sends it: the name as the text page
/// writes it, owned labels sorted by name, the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    /// Sorted by label name.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Exposition {
    /// Write `samples`, each family's `# HELP` and `# TYPE` once, before
    /// its first sample, whatever order the samples come in (families keep
    /// the order of their first sample, samples their order within it).
    pub fn samples(&mut self, samples: &[Sample]) {
        let mut order: Vec<usize> = (0..samples.len()).collect();
        // Stable: a family's samples keep their order. Families are ranked
        // by the index of their first sample.
        let mut first: Vec<(&'static str, usize)> = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            if !first.iter().any(|(n, _)| *n == s.name) {
                first.push((s.name, i));
            }
        }
        let rank = |name: &str| {
            first
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(usize::MAX, |(_, i)| *i)
        };
        order.sort_by_key(|&i| rank(samples[i].name));
        let mut current: Option<&str> = None;
        for i in order {
            let s = &samples[i];
            if current != Some(s.name) {
                self.family(s.name, s.kind, s.help);
                current = Some(s.name);
            }
            self.sample_iter(
                s.name,
                s.labels.iter().map(|(k, v)| (*k, v.as_str())),
                s.value,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_families_written_once() {
        let samples = vec![
            Sample::labelled(
                "a_total",
                Kind::Counter,
                "A.",
                vec![("mode", "x".into()), ("cpu", "0".into())],
                1.0,
            ),
            Sample::new("b", Kind::Gauge, "B.", 2.0),
            Sample::labelled(
                "a_total",
                Kind::Counter,
                "A.",
                vec![("mode", "y".into()), ("cpu", "0".into())],
                3.0,
            ),
        ];
        assert_eq!(samples[0].labels[0].0, "cpu");
        assert_eq!(samples[0].label("mode"), Some("x"));
        let mut e = Exposition::new();
        e.samples(&samples);
        assert_eq!(
            e.finish(),
            "# HELP a_total A.\n# TYPE a_total counter\n\
             a_total{cpu=\"0\",mode=\"x\"} 1\na_total{cpu=\"0\",mode=\"y\"} 3\n\
             # HELP b B.\n# TYPE b gauge\nb 2\n"
        );
    }
}
