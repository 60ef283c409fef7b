//! Time zones and UTC offsets as configuration writes them (`"+05:30"`, `"Europe/Berlin"`).

/// Parses a UTC offset `+HH:MM`, `-HH:MM` or `Z`/`UTC` into minutes east of UTC.
pub fn parse_utc_offset(s: &str) -> Option<i32> {
    if s == "Z" || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 60 + m))
}

/// Parses a time zone: an IANA name of the bundled tz database (`Europe/Berlin`, daylight saving
/// time followed) or a fixed UTC offset (see [`parse_utc_offset`]). None: neither.
pub fn parse_time_zone(s: &str) -> Option<jiff::tz::TimeZone> {
    if let Some(minutes) = parse_utc_offset(s) {
        return Some(fixed_time_zone(minutes));
    }
    if s.is_empty() || s.starts_with(['+', '-']) {
        return None;
    }
    jiff::tz::db().get(s).ok()
}

/// The time zone `minutes` east of UTC, all year (UTC when out of range).
pub fn fixed_time_zone(minutes: i32) -> jiff::tz::TimeZone {
    jiff::tz::Offset::from_seconds(minutes.saturating_mul(60))
        .map_or(jiff::tz::TimeZone::UTC, jiff::tz::TimeZone::fixed)
}
