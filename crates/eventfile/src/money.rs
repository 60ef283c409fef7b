//! Prices as people write them ("19.99" in major units) and as the wire carries them (minor units).

/// Digits after the decimal point of a currency's minor unit (ISO 4217 exponent): 0 for `JPY`,
/// 3 for `KWD`, 2 for every other code, including unknown ones.
pub fn minor_unit_digits(currency: &str) -> u32 {
    const ZERO: [&str; 17] = [
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV",
        "XAF", "XOF", "XPF",
    ];
    const THREE: [&str; 7] = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    const FOUR: [&str; 2] = ["CLF", "UYW"];
    let code = currency.to_ascii_uppercase();
    let code = code.as_str();
    if ZERO.contains(&code) {
        0
    } else if THREE.contains(&code) {
        3
    } else if FOUR.contains(&code) {
        4
    } else {
        2
    }
}

/// Parses a decimal amount in major units ("19.99", "-0.5", "20") into minor units with `digits`
/// decimals. More decimals than the currency has are accepted only when they are zeros.
pub fn parse_major(text: &str, digits: u32) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a decimal amount like \"19.99\"");
    let s = text.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad());
    }
    let digits_usize = digits as usize;
    let (kept, extra) = if frac.len() > digits_usize { frac.split_at(digits_usize) } else { (frac, "") };
    if extra.bytes().any(|b| b != b'0') {
        return Err(format!("{text:?} has more than {digits} decimal places"));
    }
    let too_large = || format!("{text:?} is too large");
    let mut minor: i64 = 0;
    for b in int.bytes().chain(kept.bytes()) {
        minor =
            minor.checked_mul(10).and_then(|m| m.checked_add(i64::from(b - b'0'))).ok_or_else(too_large)?;
    }
    for _ in kept.len()..digits_usize {
        minor = minor.checked_mul(10).ok_or_else(too_large)?;
    }
    Ok(if negative { -minor } else { minor })
}

/// Formats minor units as a decimal amount in major units: 1999 with 2 digits is "19.99".
pub fn format_major(minor: i64, digits: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(digits);
    format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = digits as usize)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn major_units_become_minor_units() {
        assert_eq!(parse_major("19.99", 2), Ok(1999));
        assert_eq!(parse_major("19.9", 2), Ok(1990));
        assert_eq!(parse_major("20", 2), Ok(2000));
        assert_eq!(parse_major(".5", 2), Ok(50));
        assert_eq!(parse_major("3.", 2), Ok(300));
        assert_eq!(parse_major("19.990", 2), Ok(1999));
        assert_eq!(parse_major("-0.50", 2), Ok(-50));
        assert_eq!(parse_major("500", 0), Ok(500));
        assert_eq!(parse_major("1.234", 3), Ok(1234));
    }

    #[test]
    fn malformed_or_too_precise_amounts_are_errors() {
        for bad in ["", ".", "-", "1,99", "1.2.3", "abc", "1e3", " 1 2", "--1"] {
            assert!(parse_major(bad, 2).is_err(), "{bad:?}");
        }
        assert!(parse_major("19.999", 2).unwrap_err().contains("more than 2 decimal places"));
        assert!(parse_major("1.5", 0).is_err());
        assert!(parse_major("99999999999999999999", 2).unwrap_err().contains("too large"));
    }

    #[test]
    fn formatting_round_trips() {
        for (minor, digits) in [(1999, 2), (5, 2), (0, 2), (-50, 2), (500, 0), (1234, 3), (i64::MIN + 1, 2)] {
            let text = format_major(minor, digits);
            assert_eq!(parse_major(&text, digits), Ok(minor), "{text}");
        }
        assert_eq!(format_major(1999, 2), "19.99");
        assert_eq!(format_major(-5, 2), "-0.05");
        assert_eq!(minor_unit_digits("JPY"), 0);
        assert_eq!(minor_unit_digits("KWD"), 3);
        assert_eq!(minor_unit_digits("EUR"), 2);
    }
}
