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

/// The day number of a `YYYY-MM-DD` name.
pub fn parse_day(s: &str) -> Option<i64> {
    if s.len() != 10 {
        return None;
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let midnight = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some(day_of(midnight))
}

/// Parse an instant as the design allows it, always UTC:
/// `2013-07-12T15:03:00`, `2013-07-12T15:03:00Z`, `2013-07-12T15:03:00.250Z`,
/// `20130712.150300`.
pub fn parse_instant(s: &str) -> Option<Millis> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let formats = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y%m%d.%H%M%S",
        "%Y%m%d.%H%M%S%.f",
    ];
    // chrono's %.f also accepts no fraction; reject a trailing dot or junk
    // by requiring the whole string to parse.
    formats.iter().find_map(|f| {
        NaiveDateTime::parse_from_str(s, f)
            .ok()
            .map(|dt| dt.and_utc().timestamp_millis())
    })
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
    }

    #[test]
    fn days_round_trip() {
        let d = parse_day("2013-07-12").unwrap();
        assert_eq!(day_name(d), "2013-07-12");
        assert_eq!(day_of(1373641380000), d);
        assert_eq!(PointInTime::end_of_day(d).millis(), 1373673599999);
        assert_eq!(parse_day("2013-7-12"), None);
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
