//! Durations written with their unit (`"250ms"`, `"5s"`, `"1h30m"`), never
//! bare numbers, so that nobody has to guess whether `timeout = 2` is
//! seconds or milliseconds.

use std::fmt;
use std::str::FromStr;

/// A duration read from configuration; displays back in the same syntax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: write a number and a unit, e.g. \"30s\"")]
    Empty,
    #[error("`{0}` has no unit: write e.g. \"{0}s\" (units: ms, s, m, h, d, w)")]
    MissingUnit(String),
    #[error("unknown unit `{unit}` in `{input}`: use ms, s, m, h, d or w")]
    UnknownUnit { input: String, unit: String },
    #[error("`{0}` is not a duration: write a number and a unit, e.g. \"5s\", \"2m\", \"1h30m\"")]
    Invalid(String),
    #[error("`{0}` is too large")]
    Overflow(String),
}

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn std(self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let mut total_ms: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(DurationError::Invalid(input.to_owned()));
            }
            let (num, tail) = rest.split_at(digits);
            let letters = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
            if letters == 0 {
                if tail.is_empty() {
                    return Err(DurationError::MissingUnit(input.to_owned()));
                }
                return Err(DurationError::Invalid(input.to_owned()));
            }
            let (unit, tail) = tail.split_at(letters);
            let n: u128 = num
                .parse()
                .map_err(|_| DurationError::Overflow(input.to_owned()))?;
            let factor: u128 = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 604_800_000,
                _ => {
                    return Err(DurationError::UnknownUnit {
                        input: input.to_owned(),
                        unit: unit.to_owned(),
                    });
                }
            };
            total_ms = n
                .checked_mul(factor)
                .and_then(|v| v.checked_add(total_ms))
                .ok_or_else(|| DurationError::Overflow(input.to_owned()))?;
            rest = tail.trim_start();
        }
        let ms = u64::try_from(total_ms).map_err(|_| DurationError::Overflow(input.to_owned()))?;
        Ok(Self(std::time::Duration::from_millis(ms)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("w", 604_800_000u128),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with its unit, e.g. \"5s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(DurationError::MissingUnit(v.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(DurationError::MissingUnit(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(DurationError::MissingUnit(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units() {
        assert_eq!(
            "250ms".parse::<Duration>().unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!("5s".parse::<Duration>().unwrap(), Duration::from_secs(5));
        assert_eq!("2m".parse::<Duration>().unwrap(), Duration::from_secs(120));
        assert_eq!(
            "1h30m".parse::<Duration>().unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            "7d".parse::<Duration>().unwrap(),
            Duration::from_secs(604_800)
        );
        assert_eq!(
            "1w".parse::<Duration>().unwrap(),
            Duration::from_secs(604_800)
        );
    }

    #[test]
    fn rejects_with_reason() {
        assert_eq!(
            "5".parse::<Duration>(),
            Err(DurationError::MissingUnit("5".into()))
        );
        assert!(matches!(
            "5x".parse::<Duration>(),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            "s".parse::<Duration>(),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!("".parse::<Duration>(), Err(DurationError::Empty)));
        assert!(matches!(
            "99999999999999999999999w".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
        let msg = "5".parse::<Duration>().unwrap_err().to_string();
        assert!(msg.contains("\"5s\""), "{msg}");
    }

    proptest! {
        #[test]
        fn display_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }

        #[test]
        fn never_panics(s in ".{0,20}") {
            let _ = s.parse::<Duration>();
        }
    }
}
