//! The `rule` check's expression: a small, PromQL-like language over the
//! series store, parsed once by the loader.
//!
//! ```text
//! rule      = value cmp bound          (threshold, increase, predict)
//!           | "absent(" selector "," duration ")"
//! value     = selector                 (its latest sample, at most 1h old)
//!           | ("avg"|"min"|"max") "(" selector "," duration ")"
//!           | "increase(" selector "," duration ")"
//!           | "predict(" selector "," duration "," number ")"
//! selector  = name [ "{" label "=" "\"value\"" { "," … } "}" ]
//! cmp       = ">" | ">=" | "<" | "<="
//! bound     = number [ "%" | size unit ]    (a duration after predict)
//! ```
//!
//! `increase(x, 4h) > 70%`: x grew by more than 70 % of its value at
//! the window's start; `predict(x, 6h, 0) < 24h`: the least-squares line
//! through the window's samples reaches 0 in less than 24 hours. Errors
//! carry the byte offset in the expression where they are, so that the
//! loader points at the character.

use std::fmt;

use vigie_core::Duration;

/// The functions a rule may call.
pub const FUNCTIONS: [&str; 6] = ["avg", "min", "max", "increase", "predict", "absent"];

/// A parsed rule: what it reads and what makes it fail.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub selector: Selector,
    pub form: Form,
}

/// A series name and the labels the series must have (each `=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl Selector {
    /// Whether a series of `name` and `labels` is one this selects: same
    /// name, and every label given here with the same value.
    pub fn matches(&self, name: &str, labels: &[(String, String)]) -> bool {
        name == self.name
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.iter().any(|(k2, v2)| k == k2 && v == v2))
    }

    /// Whether the series counts up and resets (Prometheus's `_total`).
    pub fn is_counter(&self) -> bool {
        self.name.ends_with("_total")
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        vigie_core::write_series(f, &self.name, &self.labels)
    }
}

/// What a window of a series is reduced to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// The latest sample.
    Last,
    Avg(Duration),
    Min(Duration),
    Max(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Above,
    AtLeast,
    Below,
    AtMost,
}

impl Cmp {
    /// Whether `value cmp bound` holds: the rule fails when it does.
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Self::Above => value > bound,
            Self::AtLeast => value >= bound,
            Self::Below => value < bound,
            Self::AtMost => value <= bound,
        }
    }

    /// `>`, for messages.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Above => ">",
            Self::AtLeast => ">=",
            Self::Below => "<",
            Self::AtMost => "<=",
        }
    }

    /// "above", for messages.
    pub fn words(self) -> &'static str {
        match self {
            Self::Above => "above",
            Self::AtLeast => "at least",
            Self::Below => "below",
            Self::AtMost => "at most",
        }
    }

    /// Whether a larger value is worse (`>`, `>=`).
    pub fn upward(self) -> bool {
        matches!(self, Self::Above | Self::AtLeast)
    }
}

/// The rule's form: what is computed and the bound that fails it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    /// The latest value, or a mean, minimum or maximum over a window,
    /// against a number.
    Threshold {
        reduce: Reduce,
        cmp: Cmp,
        bound: f64,
    },
    /// How much the series grew over `window`: by an amount, or (with
    /// `percent`) by a percentage of its value at the window's start.
    Increase {
        window: Duration,
        cmp: Cmp,
        bound: f64,
        percent: bool,
    },
    /// Time until the least-squares line through `window` reaches
    /// `target`; fails when it is `cmp` `within`.
    Predict {
        window: Duration,
        target: f64,
        cmp: Cmp,
        within: Duration,
    },
    /// No sample for `for_`.
    Absent { for_: Duration },
}

impl Form {
    /// The window the rule reads (the latest value looks back an hour).
    pub fn window(&self) -> Duration {
        match *self {
            Self::Threshold {
                reduce: Reduce::Last,
                ..
            } => LATEST_LOOKBACK,
            Self::Threshold {
                reduce: Reduce::Avg(w) | Reduce::Min(w) | Reduce::Max(w),
                ..
            }
            | Self::Increase { window: w, .. }
            | Self::Predict { window: w, .. }
            | Self::Absent { for_: w } => w,
        }
    }
}

/// How old the latest sample of a bare selector may be.
pub const LATEST_LOOKBACK: Duration = Duration::from_secs(3600);

/// A rule that does not parse: where (a byte offset in the expression),
/// what, and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub at: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.at + 1, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleError {}

const EXAMPLES: &str = "e.g. 'increase(vigie_check_value{check=\"disk-root\",name=\"used_ratio\"}, 4h) > 70%', 'predict(node_filesystem_avail_bytes{mountpoint=\"/\"}, 6h, 0) < 24h', 'avg(node_load1, 10m) > 4', 'absent(vigie_check_value{check=\"backup\"}, 1d)'";

impl std::str::FromStr for Rule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        Parser { s, pos: 0 }.rule()
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

fn err(at: usize, message: impl Into<String>, hint: Option<String>) -> RuleError {
    RuleError {
        at,
        message: message.into(),
        hint,
    }
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(char::is_whitespace) {
            self.pos += self.s[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.s[self.pos..].chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), RuleError> {
        if self.eat(c) {
            return Ok(());
        }
        let found = self
            .peek()
            .map_or("the end".to_owned(), |c| format!("`{c}`"));
        Err(err(
            self.pos,
            format!("expected `{c}` {what}, found {found}"),
            Some(EXAMPLES.into()),
        ))
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`
    fn ident(&mut self) -> Option<(usize, &str)> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.s[start..];
        let len = rest
            .char_indices()
            .take_while(|&(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
            .count();
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some((start, &self.s[start..start + len]))
    }

    fn rule(&mut self) -> Result<Rule, RuleError> {
        let Some((at, word)) = self.ident() else {
            let hint = format!("a rule starts with a series name or a function; {EXAMPLES}");
            return Err(err(self.pos, "expected a series name", Some(hint)));
        };
        let word = word.to_owned();
        let rule = if self.peek() == Some('(') {
            self.pos += 1;
            self.call(at, &word)?
        } else {
            let selector = self.selector_rest(at, word)?;
            let (cmp, bound) = self.comparison("the latest value")?;
            let bound = plain_number(bound.0, &bound.1, "a threshold")?;
            Rule {
                selector,
                form: Form::Threshold {
                    reduce: Reduce::Last,
                    cmp,
                    bound,
                },
            }
        };
        self.skip_ws();
        if self.pos < self.s.len() {
            return Err(err(
                self.pos,
                format!("unexpected `{}` after the rule", &self.s[self.pos..]),
                Some("a rule is one comparison; write one check per rule".into()),
            ));
        }
        Ok(rule)
    }

    fn call(&mut self, at: usize, func: &str) -> Result<Rule, RuleError> {
        if !FUNCTIONS.contains(&func) {
            let hint = match func {
                "rate" | "irate" | "delta" | "deriv" => {
                    "use increase(SERIES, WINDOW) for a growth over a window, or predict(SERIES, WINDOW, TARGET) for a trend".to_owned()
                }
                "predict_linear" => "write predict(SERIES, WINDOW, TARGET) < DURATION: the time until the trend reaches TARGET".to_owned(),
                "avg_over_time" | "min_over_time" | "max_over_time" => format!(
                    "write {}(SERIES, WINDOW)",
                    func.trim_end_matches("_over_time")
                ),
                _ => crate::diag::did_you_mean(func, FUNCTIONS).map_or_else(
                    || format!("the functions are {}", FUNCTIONS.join(", ")),
                    |m| format!("did you mean `{m}`? the functions are {}", FUNCTIONS.join(", ")),
                ),
            };
            return Err(err(at, format!("unknown function `{func}`"), Some(hint)));
        }
        let selector = self.selector()?;
        self.expect(',', &format!("then a window after the series in {func}(…)"))?;
        let window = self.duration(&format!("the window of {func}(…)"))?;
        let target = if func == "predict" {
            self.expect(
                ',',
                "then the target value predict(SERIES, WINDOW, TARGET) reaches",
            )?;
            let (tat, q) = self.quantity("the target of predict(…)")?;
            Some(plain_number(tat, &q, "predict's target")?)
        } else {
            None
        };
        self.expect(')', &format!("to close {func}(…)"))?;
        let form = match func {
            "absent" => {
                self.skip_ws();
                if self.pos < self.s.len() {
                    return Err(err(
                        self.pos,
                        "absent(…) takes no comparison",
                        Some(
                            "absent(SERIES, 10m) fails when the series has no sample for 10m"
                                .into(),
                        ),
                    ));
                }
                Form::Absent { for_: window }
            }
            "increase" => {
                let (cmp, (bat, q)) = self.comparison("increase(…)")?;
                let (bound, percent) = if q.unit == "%" {
                    (q.number, true)
                } else {
                    (plain_number(bat, &q, "increase's bound")?, false)
                };
                Form::Increase {
                    window,
                    cmp,
                    bound,
                    percent,
                }
            }
            "predict" => {
                let (cmp, (bat, q)) = self.comparison("predict(…)")?;
                if cmp.upward() {
                    return Err(err(
                        bat,
                        "predict(…) fails when the time left is short: compare with `<` or `<=`",
                        Some("e.g. predict(node_filesystem_avail_bytes{mountpoint=\"/\"}, 6h, 0) < 24h".into()),
                    ));
                }
                let within = q.text.parse::<Duration>().map_err(|e| {
                    err(
                        bat,
                        format!("predict(…) is compared with a duration: {e}"),
                        Some("e.g. < 24h".into()),
                    )
                })?;
                Form::Predict {
                    window,
                    target: target.unwrap_or(0.0),
                    cmp,
                    within,
                }
            }
            _ => {
                let (cmp, bound) = self.comparison(&format!("{func}(…)"))?;
                let bound = plain_number(bound.0, &bound.1, "a threshold")?;
                let reduce = match func {
                    "avg" => Reduce::Avg(window),
                    "min" => Reduce::Min(window),
                    _ => Reduce::Max(window),
                };
                Form::Threshold { reduce, cmp, bound }
            }
        };
        Ok(Rule { selector, form })
    }

    fn selector(&mut self) -> Result<Selector, RuleError> {
        let Some((at, name)) = self.ident() else {
            return Err(err(
                self.pos,
                "expected a series name",
                Some("e.g. node_load1, or vigie_check_value{check=\"web\",name=\"latency_seconds\"}; `/api/v1/series` lists them".into()),
            ));
        };
        let name = name.to_owned();
        self.selector_rest(at, name)
    }

    fn selector_rest(&mut self, at: usize, name: String) -> Result<Selector, RuleError> {
        if name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            return Err(err(at, "a series name cannot start with a digit", None));
        }
        let mut labels: Vec<(String, String)> = Vec::new();
        if self.eat('{') {
            loop {
                if self.eat('}') {
                    break;
                }
                let Some((lat, label)) = self.ident() else {
                    return Err(err(
                        self.pos,
                        "expected a label name",
                        Some("write labels as {name=\"value\", …}".into()),
                    ));
                };
                let label = label.to_owned();
                if label.contains(':') {
                    return Err(err(lat, format!("`{label}` is not a label name"), None));
                }
                if labels.iter().any(|(k, _)| *k == label) {
                    return Err(err(lat, format!("label `{label}` is given twice"), None));
                }
                self.skip_ws();
                let rest = &self.s[self.pos..];
                if rest.starts_with("!=") || rest.starts_with("=~") || rest.starts_with("!~") {
                    return Err(err(
                        self.pos,
                        format!("only `=` is supported, not `{}`", &rest[..2]),
                        Some("name the label's value exactly; a rule over several series checks each".into()),
                    ));
                }
                self.expect('=', &format!("after the label `{label}`"))?;
                let value = self.string()?;
                labels.push((label, value));
                if !self.eat(',') {
                    self.expect('}', "to close the labels")?;
                    break;
                }
            }
        }
        labels.sort();
        Ok(Selector { name, labels })
    }

    /// A double-quoted label value (`\"` and `\\` escaped).
    fn string(&mut self) -> Result<String, RuleError> {
        self.skip_ws();
        let start = self.pos;
        if !self.s[start..].starts_with('"') {
            return Err(err(
                start,
                "a label value is written in double quotes",
                Some("e.g. {mountpoint=\"/\"}; in TOML, write the rule in single quotes: rule = { expr = '…' }".into()),
            ));
        }
        let mut out = String::new();
        let mut chars = self.s[start + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = start + 1 + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, c @ ('"' | '\\'))) => out.push(c),
                    Some((_, 'n')) => out.push('\n'),
                    _ => {
                        return Err(err(
                            start + 1 + i,
                            "unknown escape in a label value",
                            Some("only \\\" and \\\\ are escapes".into()),
                        ));
                    }
                },
                c => out.push(c),
            }
        }
        Err(err(
            start,
            "unclosed label value",
            Some("close it with `\"`".into()),
        ))
    }

    fn duration(&mut self, what: &str) -> Result<Duration, RuleError> {
        let (at, q) = self.quantity(what)?;
        let d = q
            .text
            .parse::<Duration>()
            .map_err(|e| err(at, format!("bad duration for {what}: {e}"), None))?;
        if d.std().is_zero() {
            return Err(err(at, format!("{what} must be more than 0s"), None));
        }
        Ok(d)
    }

    /// A number with an optional unit glued to it: `70%`, `5GiB`, `24h`.
    fn quantity(&mut self, what: &str) -> Result<(usize, Quantity), RuleError> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.s[start..];
        let num_len = rest
            .char_indices()
            .take_while(|&(i, c)| {
                c.is_ascii_digit()
                    || c == '.'
                    || (i == 0 && (c == '-' || c == '+'))
                    || ((c == 'e' || c == 'E')
                        && rest[i + 1..].starts_with(|d: char| d.is_ascii_digit() || d == '-'))
                    || ((c == '-' || c == '+') && i > 0 && rest[..i].ends_with(['e', 'E']))
            })
            .count();
        let unit_len = rest[num_len..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '%')
            .count();
        let text = &rest[..num_len + unit_len];
        self.pos += text.len();
        let Ok(number) = rest[..num_len].parse::<f64>() else {
            return Err(err(
                start,
                format!(
                    "expected a number for {what}, found {}",
                    if text.is_empty() {
                        rest.chars()
                            .next()
                            .map_or("the end".into(), |c| format!("`{c}`"))
                    } else {
                        format!("`{text}`")
                    }
                ),
                Some(EXAMPLES.into()),
            ));
        };
        if !number.is_finite() {
            return Err(err(start, format!("`{text}` is too large"), None));
        }
        Ok((
            start,
            Quantity {
                text: text.to_owned(),
                number,
                unit: rest[num_len..num_len + unit_len].to_owned(),
            },
        ))
    }

    fn comparison(&mut self, what: &str) -> Result<(Cmp, (usize, Quantity)), RuleError> {
        self.skip_ws();
        let at = self.pos;
        let rest = &self.s[at..];
        let (cmp, len) = if rest.starts_with(">=") {
            (Cmp::AtLeast, 2)
        } else if rest.starts_with("<=") {
            (Cmp::AtMost, 2)
        } else if rest.starts_with('>') {
            (Cmp::Above, 1)
        } else if rest.starts_with('<') {
            (Cmp::Below, 1)
        } else {
            let hint = if rest.starts_with("==") || rest.starts_with("!=") || rest.starts_with('=')
            {
                "compare with >, >=, < or <= (equality is fragile on measured values)".to_owned()
            } else {
                format!("a rule fails when its comparison holds; {EXAMPLES}")
            };
            let found = if rest.is_empty() {
                "the end".to_owned()
            } else {
                format!("`{rest}`")
            };
            return Err(err(
                at,
                format!("expected a comparison (>, >=, <, <=) after {what}, found {found}"),
                Some(hint),
            ));
        };
        self.pos += len;
        let q = self.quantity(&format!("the bound after `{}`", cmp.symbol()))?;
        Ok((cmp, q))
    }
}

/// A number, or a size (`5GiB`: bytes); not a percentage.
fn plain_number(at: usize, q: &Quantity, what: &str) -> Result<f64, RuleError> {
    match q.unit.as_str() {
        "" => Ok(q.number),
        "%" => Err(err(
            at,
            format!("a percentage is only for increase(…); {what} is a number"),
            Some("for a series that is a percentage, write the number: > 90".into()),
        )),
        _ => match q.text.parse::<vigie_core::ByteSize>() {
            Ok(b) if q.number >= 0.0 => Ok(b.0 as f64),
            _ => Err(err(
                at,
                format!("`{}`: unknown unit `{}` for {what}", q.text, q.unit),
                Some("write a number, or a size (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB); durations only after predict(…)".into()),
            )),
        },
    }
}

struct Quantity {
    text: String,
    number: f64,
    unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Rule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn e(s: &str) -> RuleError {
        s.parse::<Rule>().expect_err(s)
    }

    #[test]
    fn the_four_forms_parse() {
        let r = p(r#"increase(node_filesystem_used_bytes{mountpoint="/"}, 4h) > 70%"#);
        assert_eq!(r.selector.name, "node_filesystem_used_bytes");
        assert_eq!(r.selector.labels, [("mountpoint".into(), "/".into())]);
        assert_eq!(
            r.form,
            Form::Increase {
                window: Duration::from_secs(4 * 3600),
                cmp: Cmp::Above,
                bound: 70.0,
                percent: true
            }
        );
        let r = p("increase(x_total, 10m) >= 5GiB");
        assert!(
            matches!(r.form, Form::Increase { bound, percent: false, .. } if (bound - 5.0 * 1024.0 * 1024.0 * 1024.0).abs() < 0.5)
        );
        let r =
            p(r#"predict(node_filesystem_avail_bytes{mountpoint="/",device="sda1"}, 6h, 0) < 24h"#);
        assert_eq!(r.selector.labels.len(), 2);
        assert_eq!(r.selector.labels[0].0, "device", "sorted");
        assert_eq!(
            r.form,
            Form::Predict {
                window: Duration::from_secs(6 * 3600),
                target: 0.0,
                cmp: Cmp::Below,
                within: Duration::from_secs(24 * 3600)
            }
        );
        assert_eq!(
            p("absent( vigie_check_up{check=\"web\"} , 10m )").form,
            Form::Absent {
                for_: Duration::from_secs(600)
            }
        );
        assert_eq!(
            p("node_load1>2.5").form,
            Form::Threshold {
                reduce: Reduce::Last,
                cmp: Cmp::Above,
                bound: 2.5
            }
        );
        assert_eq!(
            p("min(x, 1d) <= -1e3").form,
            Form::Threshold {
                reduce: Reduce::Min(Duration::from_secs(86400)),
                cmp: Cmp::AtMost,
                bound: -1000.0
            }
        );
        assert!(matches!(
            p("avg(x,5m) > 1").form,
            Form::Threshold {
                reduce: Reduce::Avg(_),
                ..
            }
        ));
        assert!(matches!(
            p("max(x,5m) > 1").form,
            Form::Threshold {
                reduce: Reduce::Max(_),
                ..
            }
        ));
    }

    #[test]
    fn errors_say_where_and_what_to_write() {
        let x = e("rate(x_total, 5m) > 1");
        assert_eq!(x.at, 0);
        assert!(x.message.contains("unknown function `rate`"), "{x}");
        assert!(x.hint.unwrap().contains("increase("));
        let x = e("increse(x, 5m) > 1");
        assert!(x.hint.unwrap().contains("did you mean `increase`"));
        let x = e("increase(x, 4hours) > 1");
        assert_eq!(x.at, 12);
        assert!(x.message.contains("bad duration"), "{x}");
        let x = e("increase(x, 4h) == 1");
        assert_eq!(x.at, 16);
        assert!(x.message.contains("expected a comparison"), "{x}");
        let x = e("node_load1 > 90%");
        assert!(x.message.contains("only for increase"), "{x}");
        let x = e("predict(x, 1h, 0) > 24h");
        assert!(x.message.contains("`<`"), "{x}");
        let x = e("predict(x, 1h, 0) < 24");
        assert!(x.message.contains("duration"), "{x}");
        let x = e("increase(x{a=~\"b\"}, 1h) > 1");
        assert_eq!(x.at, 12, "at the operator");
        let x = e("increase(x{a='b'}, 1h) > 1");
        assert!(x.message.contains("double quotes"), "{x}");
        let x = e("absent(x, 1h) > 1");
        assert!(x.message.contains("no comparison"), "{x}");
        let x = e("avg(x, 0s) > 1");
        assert!(x.message.contains("more than 0s"), "{x}");
        let x = e("x > 1 and y > 2");
        assert_eq!(x.at, 6);
        let x = e("node_load1 > 5 parsecs");
        assert!(x.message.contains("unexpected"), "{x}");
        let x = e("avg(x) > 1");
        assert!(x.message.contains("expected `,`"), "{x}");
        assert!(e("").message.contains("series name"));
        assert!(e("x > 3 apples").message.contains("unexpected"));
        assert!(e("x > 3apples").message.contains("unknown unit"));
    }

    #[test]
    fn no_input_panics() {
        let rules = [
            r#"increase(node_filesystem_used_bytes{mountpoint="/"}, 4h) > 70%"#,
            r#"predict(x{a="é\"b",c="d"}, 6h, -1.5e3) <= 1h30m"#,
            "absent(x, 10m)",
            "avg(x, 1w) >= 5GiB",
            "x < -3",
        ];
        for r in rules {
            let chars: Vec<(usize, char)> = r.char_indices().collect();
            for &(i, _) in &chars {
                // Every prefix, and the rule without one character.
                let _ = r[..i].parse::<Rule>();
                let mut cut = r.to_owned();
                cut.remove(i);
                let _ = cut.parse::<Rule>();
                for junk in ["é", "\\", "\"", "(", "}", "1e", "-", " ", "\u{3000}"] {
                    let mut bad = r.to_owned();
                    bad.insert_str(i, junk);
                    if let Err(e) = bad.parse::<Rule>() {
                        assert!(e.at <= bad.len(), "{bad}: {e}");
                    }
                }
            }
        }
    }
}
