//! HAMMER2 timestamps (microseconds since the Unix epoch) as UTC text.

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-20T22:00:47.123456Z`.
pub fn iso8601(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z", s / 3600, s / 60 % 60, s % 60, us % 1_000_000)
}

/// `2026-11-20 22:00` (as `ls -l` shows times).
pub fn short(us: u64) -> String {
    let iso = iso8601(us);
    format!("{} {}", &iso[..10], &iso[11..16])
}

/// Microseconds since the epoch of a (seconds, nanoseconds) host time.
/// HAMMER2 stores times unsigned, so a time before 1970 becomes the epoch
/// itself (its nanoseconds too: -1 year + 5 us must not read as 5 us past
/// 1970). DragonFly's `hammer2_timespec_to_time` instead multiplies the
/// negative seconds as unsigned, which wraps to a time some 584,000 years
/// ahead that no tool reads back as the original.
pub fn micros(secs: i64, nsecs: i64) -> u64 {
    if secs < 0 {
        return 0;
    }
    (secs as u64).saturating_mul(1_000_000).saturating_add((nsecs.max(0) as u64) / 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(super::iso8601(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        // The fixtures' newfs time.
        assert_eq!(super::iso8601(1_795_211_313_000_000), "2026-11-20T21:48:33.000000Z");
        assert_eq!(super::short(1_795_211_313_000_000), "2026-11-20 21:48");
    }
}
