//! Five-field cron expressions (`minute hour day-of-month month
//! day-of-week`), as crontab(5) writes them: `*`, lists, ranges and steps.
//! Used for recurring maintenance windows.

use std::fmt;
use std::str::FromStr;

/// A parsed cron expression: the set of allowed values of each field.
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// crontab(5): when both day fields are restricted, either may match.
    days_restricted: bool,
    weekdays_restricted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a cron expression: write five fields, minute hour day-of-month month day-of-week, e.g. \"0 3 * * 0\" (Sundays at 03:00)"
)]
pub struct CronError(String);

fn field(text: &str, min: u32, max: u32) -> Option<u64> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().ok()?, b.parse().ok()?)
        } else {
            let v: u32 = range.parse().ok()?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return None;
        }
        let mut v = lo;
        while v <= hi {
            set |= 1 << v;
            v += step;
        }
    }
    Some(set)
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CronError(s.to_owned());
        let f: Vec<&str> = s.split_whitespace().collect();
        let [mi, h, dom, mon, dow] = f[..] else {
            return Err(err());
        };
        let mut weekdays = field(dow, 0, 7).ok_or_else(err)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Self {
            source: s.to_owned(),
            minutes: field(mi, 0, 59).ok_or_else(err)?,
            hours: field(h, 0, 23).ok_or_else(err)? as u32,
            days: field(dom, 1, 31).ok_or_else(err)? as u32,
            months: field(mon, 1, 12).ok_or_else(err)? as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_restricted: dom != "*",
            weekdays_restricted: dow != "*",
        })
    }
}

impl Cron {
    /// Whether the expression fires at this local time. `weekday` is 0 for
    /// Sunday.
    pub fn matches(&self, minute: u32, hour: u32, day: u32, month: u32, weekday: u32) -> bool {
        self.minute_matches(minute)
            && self.hour_matches(hour)
            && self.day_matches(day, month, weekday)
    }

    /// Whether the expression fires on this day (`weekday` 0 for Sunday).
    pub fn day_matches(&self, day: u32, month: u32, weekday: u32) -> bool {
        let day_ok = bit(u64::from(self.days), day);
        let weekday_ok = bit(u64::from(self.weekdays), weekday);
        let day_match = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day_ok || weekday_ok,
            _ => day_ok && weekday_ok,
        };
        bit(u64::from(self.months), month) && day_match
    }

    /// Whether the expression fires in this hour of a day it fires on.
    pub fn hour_matches(&self, hour: u32) -> bool {
        bit(u64::from(self.hours), hour)
    }

    /// Whether the expression fires at this minute of an hour it fires in.
    pub fn minute_matches(&self, minute: u32) -> bool {
        bit(self.minutes, minute)
    }
}

fn bit(set: u64, v: u32) -> bool {
    v < 64 && set & (1 << v) != 0
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.source)
    }
}

serde_as_text!(Cron);

#[cfg(test)]
mod tests {
    use super::Cron;

    #[test]
    fn fields_lists_ranges_steps() {
        let c: Cron = "0 3 * * 0".parse().unwrap();
        assert!(c.matches(0, 3, 23, 11, 0));
        assert!(!c.matches(0, 3, 23, 11, 1));
        assert!(!c.matches(1, 3, 23, 11, 0));
        let c: Cron = "*/15 8-18 * * 1-5".parse().unwrap();
        assert!(c.matches(45, 18, 1, 1, 5));
        assert!(!c.matches(50, 18, 1, 1, 5));
        assert!(!c.matches(0, 8, 1, 1, 6));
        let c: Cron = "30 2 1,15 * 7".parse().unwrap();
        assert!(c.matches(30, 2, 15, 6, 3), "day of month matches");
        assert!(c.matches(30, 2, 2, 6, 0), "Sunday (7) matches");
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad}");
        }
    }
}
