//! Byte sizes with their unit (`"500MB"`, `"1GiB"`).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a size: write a number and a unit, e.g. \"500MB\" or \"1GiB\" (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
)]
pub struct ByteSizeError(String);

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| ByteSizeError(input.to_owned()))?;
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| ByteSizeError(input.to_owned()))?;
        let factor: f64 = match unit.trim() {
            "B" => 1.0,
            "kB" | "KB" | "k" => 1e3,
            "MB" | "M" => 1e6,
            "GB" | "G" => 1e9,
            "TB" | "T" => 1e12,
            "KiB" => 1024.0,
            "MiB" => 1_048_576.0,
            "GiB" => 1_073_741_824.0,
            "TiB" => 1_099_511_627_776.0,
            _ => return Err(ByteSizeError(input.to_owned())),
        };
        let v = n * factor;
        if !v.is_finite() || v > u64::MAX as f64 {
            return Err(ByteSizeError(input.to_owned()));
        }
        Ok(Self(v.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl ByteSize {
    /// This size rounded for people ([`HumanBytes`]); `Display` stays exact,
    /// for configuration values.
    pub fn human(self) -> HumanBytes {
        HumanBytes(self.0 as f64)
    }
}

/// A byte count rounded for people: decimal (SI) units, one decimal, a
/// space (`512 B`, `3.0 MB`, `13.2 GB`), as disks and links are sold and
/// as `vigie sync`'s bar shows its rate. The one such formatter: probes'
/// messages and progress bars both use it. A rate is a count too
/// (`{}/s`), hence `f64`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct HumanBytes(pub f64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
        let mut v = self.0;
        let mut u = 0;
        while v >= 999.95 && u < UNITS.len() - 1 {
            v /= 1000.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{v:.0} B")
        } else {
            write!(f, "{v:.1} {}", UNITS[u])
        }
    }
}

serde_as_text!(ByteSize);

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn parses() {
        assert_eq!("1GiB".parse::<ByteSize>().unwrap(), ByteSize(1 << 30));
        assert_eq!("500MB".parse::<ByteSize>().unwrap(), ByteSize(500_000_000));
        assert_eq!("1.5kB".parse::<ByteSize>().unwrap(), ByteSize(1500));
        assert!("12".parse::<ByteSize>().is_err());
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize(1500).to_string(), "1500B");
    }

    #[test]
    fn human() {
        use super::HumanBytes;
        assert_eq!(HumanBytes(0.0).to_string(), "0 B");
        assert_eq!(HumanBytes(999.0).to_string(), "999 B");
        assert_eq!(HumanBytes(1500.0).to_string(), "1.5 kB");
        assert_eq!(ByteSize(3_000_000).human().to_string(), "3.0 MB");
        assert_eq!(ByteSize(1 << 30).human().to_string(), "1.1 GB");
        // Never "1000.0 kB": the rounding carries into the next unit.
        assert_eq!(HumanBytes(999_999.0).to_string(), "1.0 MB");
        assert_eq!(HumanBytes(12.3e6).to_string(), "12.3 MB");
    }
}
