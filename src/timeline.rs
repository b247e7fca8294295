//! Time resolution: which state is valid at an instant, and the names of
//! instants (day directories, `@INSTANT` directories, xattr values).
//!
//! A state is valid at `t` when `start <= t < effective_end` and it is not a
//! deletion. The effective end is the explicit end, or the next state's start
//! when that comes first (the catalogue stores it precomputed).

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::model::{ItemState, Millis};

pub const DAY_MS: Millis = 86_400_000;

/// The instant a view shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PointInTime {
    /// The newest state in the backup.
    Latest,
    /// One instant, in milliseconds.
    At(Millis),
}

impl PointInTime {
    /// The instant as a number, `Latest` being after every recorded state.
    pub fn millis(self) -> Millis {
        match self {
            PointInTime::Latest => Millis::MAX,
            PointInTime::At(t) => t,
        }
    }

    /// The end of a UTC day: 23:59:59.999.
    pub fn end_of_day(day: i64) -> PointInTime {
        PointInTime::At(day * DAY_MS + DAY_MS - 1)
    }
}

/// Effective end of each state, given states sorted by start: the explicit
/// end, or the next state's start when that comes first. Two states with the
/// same start leave the first one an empty interval (the later one wins).
pub fn effective_ends(states: &[ItemState]) -> Vec<Option<Millis>> {
    (0..states.len())
        .map(|i| {
            let next = states.get(i + 1).map(|n| n.start);
            match (states[i].end, next) {
                (Some(e), Some(n)) => Some(e.min(n)),
                (e, n) => e.or(n),
            }
        })
        .collect()
}

/// Whether a state with this start and effective end is valid at `t`.
pub fn valid_at(start: Millis, eff_end: Option<Millis>, deleted: bool, t: Millis) -> bool {
    !deleted && start <= t && eff_end.is_none_or(|e| t < e)
}

/// The UTC day number (days since 1970-01-01) of an instant.
pub fn day_of(t: Millis) -> i64 {
    t.div_euclid(DAY_MS)
}

/// `YYYY-MM-DD` of a day number.
pub fn day_name(day: i64) -> String {
    match Utc.timestamp_millis_opt(day * DAY_MS).single() {
        Some(dt) => dt.format("%Y-%m-%d").to_string(),
        None => format!("day{day}"),
    }
}

/// The day number of a `YYYY-MM-DD` name (every field its full width).
pub fn parse_day(s: &str) -> Option<i64> {
    if s.len() != 10 || s.as_bytes()[4] != b'-' || s.as_bytes()[7] != b'-' {
        return None;
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let midnight = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some(day_of(midnight))
}

/// Parse an instant as the design allows it, always UTC:
/// `2013-07-12T15:03:00`, `2013-07-12T15:03:00Z`, `2013-07-12T15:03:00.250Z`
/// (1 to 3 fraction digits, `Z` optional), `20130712.150300`. Every field
/// has its full width; leap seconds and offsets are refused.
pub fn parse_instant(s: &str) -> Option<Millis> {
    let b = s.as_bytes();
    if !b.iter().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    if b.len() == 15 && b[8] == b'.' {
        return fixed(s, "%Y%m%d.%H%M%S", 0);
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    if s.len() < 19 || s.as_bytes()[10] != b'T' {
        return None;
    }
    let (main, frac) = s.split_at(19);
    let ms = match frac {
        "" => 0,
        f => {
            let digits = f.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            digits.parse::<i64>().ok()? * 10_i64.pow(3 - digits.len() as u32)
        }
    };
    fixed(main, "%Y-%m-%dT%H:%M:%S", ms)
}

/// Parse a fixed-width form strictly (every field its full width).
fn fixed(s: &str, fmt: &str, ms: Millis) -> Option<Millis> {
    let dt = NaiveDateTime::parse_from_str(s, fmt).ok()?;
    if dt.and_utc().timestamp_subsec_nanos() >= 1_000_000_000 {
        return None; // a leap second (:60)
    }
    // chrono accepts short fields ("2013-7-1..."): insist on the exact form.
    if dt.format(fmt).to_string() != s {
        return None;
    }
    Some(dt.and_utc().timestamp_millis() + ms)
}

/// RFC 3339 UTC with milliseconds, as xattrs show instants.
pub fn format_instant(t: Millis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(t) {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => t.to_string(),
    }
}

/// Compact form used in `history/` file names: `20130712T150300.000Z`.
pub fn format_compact(t: Millis) -> String {
    match DateTime::<Utc>::from_timestamp_millis(t) {
        Some(dt) => dt.format("%Y%m%dT%H%M%S%.3fZ").to_string(),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(start: Millis, end: Option<Millis>) -> ItemState {
        ItemState {
            start,
            end,
            ..Default::default()
        }
    }

    #[test]
    fn instants_in_every_accepted_form() {
        let t = 1373641380000; // 2013-07-12T15:03:00Z
        assert_eq!(parse_instant("2013-07-12T15:03:00"), Some(t));
        assert_eq!(parse_instant("2013-07-12T15:03:00Z"), Some(t));
        assert_eq!(parse_instant("2013-07-12T15:03:00.250Z"), Some(t + 250));
        assert_eq!(parse_instant("20130712.150300"), Some(t));
        assert_eq!(parse_instant("2013-07-12"), None);
        assert_eq!(parse_instant("yesterday"), None);
        assert_eq!(parse_instant("2013-07-12T25:03:00"), None);
        assert_eq!(parse_instant("2013-07-12T15:03:00.25Z"), Some(t + 250));
        assert_eq!(parse_instant("2013-07-12T15:03:00.2"), Some(t + 200));
        for bad in [
            "",
            "2013-07-12 15:03:00",
            "2013-07-12T15:03",
            "2013-7-12T15:03:00",
            "2013-07-12T15:03:00.",
            "2013-07-12T15:03:00.2500Z",
            "2013-07-12T15:03:00+01:00",
            "2013-02-30T00:00:00",
            "2013-07-12T24:00:00",
            "2013-07-12T15:03:60",
            "20130712150300",
            "20130712.1503",
            "2013-07-12T15:03:00ZZ",
            "2013-07-12T15:03:00.x5Z",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_round_trip() {
        let d = parse_day("2013-07-12").unwrap();
        assert_eq!(day_name(d), "2013-07-12");
        assert_eq!(day_of(1373641380000), d);
        assert_eq!(PointInTime::end_of_day(d).millis(), 1373673599999);
        for bad in [
            "2013-7-12",
            "2013-07-32",
            "2013/07/12",
            "20130712",
            "2013-07-12T00:00:00",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn effective_ends_follow_the_rules() {
        // open state followed by another; explicit end overlapping the next;
        // explicit end with no later state; equal starts.
        let s = vec![st(10, None), st(20, Some(40)), st(30, None)];
        assert_eq!(effective_ends(&s), vec![Some(20), Some(30), None]);
        let s = vec![st(10, None), st(10, None), st(50, Some(60))];
        assert_eq!(effective_ends(&s), vec![Some(10), Some(50), Some(60)]);
        assert!(!valid_at(10, Some(10), false, 10));
        assert!(valid_at(50, Some(60), false, 50));
        assert!(!valid_at(50, Some(60), false, 60));
        assert!(!valid_at(50, None, true, 70));
    }

    #[test]
    fn formats() {
        assert_eq!(format_instant(1373641380250), "2013-07-12T15:03:00.250Z");
        assert_eq!(format_compact(1373641380250), "20130712T150300.250Z");
    }
}
