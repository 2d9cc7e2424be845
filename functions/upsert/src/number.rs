//! NUMBER(p,s) values the way Snowflake casts them, as one canonical text per value.
//!
//! `6`, `6.0`, `6e0`, `"6"` and `"0006"` are one number to Snowflake, so they must be one key to
//! the de-duplication before the MERGE: two source rows that Snowflake casts to the same key make
//! the MERGE nondeterministic (error 100090) or insert the key twice. The text is the integer
//! `round(value × 10^scale)` with the decimal point put back: no exponent, no leading zeros, exactly
//! `scale` fractional digits, no negative zero.
//!
//! Snowflake rounds extra fractional digits half away from zero and refuses a value with more
//! than `p - s` integer digits ("Numeric value '…' is out of range", 100039):
//! <https://docs.snowflake.com/en/sql-reference/data-types-numeric#number>. Rounding a *key* would
//! merge distinct source keys into one row, so keys must be exact instead.

/// How a value that needs rounding to the column's scale is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rounding {
    /// As Snowflake's cast does: half away from zero.
    HalfAwayFromZero,
    /// Refused: for key columns, where rounding would merge distinct keys.
    Exact,
}

/// Why a literal is not a value of a NUMBER(p,s) column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberError {
    NotANumber,
    OutOfRange,
    /// More fractional digits than the scale, where rounding is not allowed.
    Inexact,
}

/// The canonical text of a decimal literal (`[+-]digits[.digits][e[+-]digits]`) as NUMBER(p,s),
/// or why it does not fit.
pub(crate) fn canonical_number(
    literal: &str,
    precision: u8,
    scale: u8,
    rounding: Rounding,
) -> Result<String, NumberError> {
    if is_canonical(literal, precision, scale) {
        return Ok(literal.to_string());
    }
    canonical_number_slow(literal, precision, scale, rounding)
}

/// Whether the literal is already its own canonical text, as almost every number a producer
/// writes for its column is (`42`, `-7`, `12.50` for a scale of 2): then no digit is copied.
fn is_canonical(literal: &str, precision: u8, scale: u8) -> bool {
    let unsigned = literal.strip_prefix('-').unwrap_or(literal);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) if scale > 0 => (int, frac),
        None if scale == 0 => (unsigned, ""),
        _ => return false,
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let zero = int == "0" && frac.bytes().all(|b| b == b'0');
    frac.len() == usize::from(scale)
        && !int.is_empty()
        && int.len() <= usize::from(precision - scale)
        && digits(int)
        && digits(frac)
        && (int == "0" || !int.starts_with('0'))
        // negative zero is written without its sign
        && !(zero && literal.starts_with('-'))
}

/// Every literal the fast path declines: signs, exponents, leading zeros, other scales, and
/// everything that is not a number. Cold: producers almost always write the canonical text.
#[cold]
fn canonical_number_slow(
    literal: &str,
    precision: u8,
    scale: u8,
    rounding: Rounding,
) -> Result<String, NumberError> {
    let (negative, unsigned) = split_sign(literal);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], &unsigned[i + 1..]),
        None => (unsigned, "0"),
    };
    // A zero mantissa is zero whatever its exponent, so the exponent is not read.
    let Some((digits, int_digits)) = significant_digits(mantissa)? else {
        return Ok(format_scaled(false, b"0", scale));
    };
    let point = int_digits.saturating_add(parse_exponent(exponent)?);
    let scaled = round_to_scale(&digits, point, precision, scale, rounding)?;
    if scaled.is_empty() {
        // rounded away entirely: zero, which has no sign
        return Ok(format_scaled(false, b"0", scale));
    }
    Ok(format_scaled(negative, &scaled, scale))
}

/// Whether the literal is negative, and the literal without its sign.
fn split_sign(literal: &str) -> (bool, &str) {
    match literal.as_bytes().first() {
        Some(b'-') => (true, &literal[1..]),
        Some(b'+') => (false, &literal[1..]),
        _ => (false, literal),
    }
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// The mantissa `int[.frac]` as 0.DIGITS × 10^int_digits, DIGITS without leading or trailing
/// zeros: `(DIGITS, int_digits)`, or `None` when the mantissa is zero.
fn significant_digits(mantissa: &str) -> Result<Option<(Vec<u8>, i64)>, NumberError> {
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(NumberError::NotANumber);
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let leading = digits.iter().take_while(|&&d| d == b'0').count();
    digits.drain(..leading);
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits.is_empty() {
        return Ok(None);
    }
    Ok(Some((digits, int.len() as i64 - leading as i64)))
}

/// The exponent's value. One beyond i64 is still a number: far below any scale (it rounds to
/// zero) or far above any precision (out of range).
fn parse_exponent(exponent: &str) -> Result<i64, NumberError> {
    match exponent.parse() {
        Ok(e) => Ok(e),
        Err(_) => {
            let magnitude = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
            if magnitude.is_empty() || !all_digits(magnitude) {
                Err(NumberError::NotANumber)
            } else if exponent.starts_with('-') {
                Ok(i64::MIN / 2)
            } else {
                Err(NumberError::OutOfRange)
            }
        }
    }
}

/// The digits of round(0.DIGITS × 10^point × 10^scale) (empty when that is zero), as the
/// rounding allows, within `precision` digits.
fn round_to_scale(
    digits: &[u8],
    point: i64,
    precision: u8,
    scale: u8,
    rounding: Rounding,
) -> Result<Vec<u8>, NumberError> {
    // The first `keep` of DIGITS, then zeros.
    let keep = point.saturating_add(i64::from(scale));
    if keep > i64::from(precision) {
        return Err(NumberError::OutOfRange);
    }
    let mut scaled: Vec<u8> = if keep <= 0 {
        Vec::new()
    } else if keep as usize >= digits.len() {
        let mut d = digits.to_vec();
        d.resize(keep as usize, b'0');
        d
    } else {
        digits[..keep as usize].to_vec()
    };
    if keep < digits.len() as i64 {
        if rounding == Rounding::Exact {
            return Err(NumberError::Inexact);
        }
        let first_dropped = if keep < 0 {
            b'0'
        } else {
            digits[keep as usize]
        };
        if first_dropped >= b'5' {
            increment(&mut scaled);
        }
    }
    if scaled.len() > usize::from(precision) {
        return Err(NumberError::OutOfRange);
    }
    Ok(scaled)
}

/// Adds one to a decimal digit string, growing it on carry.
fn increment(digits: &mut Vec<u8>) {
    for d in digits.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return;
        }
    }
    digits.insert(0, b'1');
}

/// `scaled / 10^scale` as text, from the digits of `scaled` (no leading zeros, or `0`).
fn format_scaled(negative: bool, scaled: &[u8], scale: u8) -> String {
    let scale = usize::from(scale);
    let mut padded = vec![b'0'; (scale + 1).saturating_sub(scaled.len())];
    padded.extend_from_slice(scaled);
    let split = padded.len() - scale;
    let mut out = String::with_capacity(padded.len() + 2);
    if negative && scaled != b"0" {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&padded[..split]).unwrap_or("0"));
    if scale > 0 {
        out.push('.');
        out.push_str(std::str::from_utf8(&padded[split..]).unwrap_or(""));
    }
    out
}

/// Orders two canonical texts of the same NUMBER(p,s) column numerically.
pub(crate) fn cmp_canonical(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a_neg, a) = a.strip_prefix('-').map_or((false, a), |r| (true, r));
    let (b_neg, b) = b.strip_prefix('-').map_or((false, b), |r| (true, r));
    // Same scale, no leading zeros: longer is larger, then digit by digit.
    let magnitude = a.len().cmp(&b.len()).then_with(|| a.cmp(b));
    match (a_neg, b_neg) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    fn n(lit: &str, p: u8, s: u8) -> Result<String, NumberError> {
        canonical_number(lit, p, s, Rounding::HalfAwayFromZero)
    }

    #[test]
    fn spellings_of_one_number_are_one_text() {
        for lit in [
            "6", "6.0", "6e0", "0006", "+6", "60e-1", "0.6E1", "6.000000",
        ] {
            assert_eq!(n(lit, 38, 0).unwrap(), "6", "{lit}");
            assert_eq!(n(lit, 10, 2).unwrap(), "6.00", "{lit}");
        }
        for lit in ["0", "-0", "0.000", "0e99999999999", "-0.0e-5"] {
            assert_eq!(n(lit, 38, 0).unwrap(), "0", "{lit}");
        }
        assert_eq!(n("-12.5", 10, 3).unwrap(), "-12.500");
        assert_eq!(n(".5", 10, 1).unwrap(), "0.5");
        assert_eq!(n("5.", 10, 1).unwrap(), "5.0");
        assert_eq!(n("1e37", 38, 0).unwrap(), format!("1{}", "0".repeat(37)));
    }

    #[test]
    fn rounds_half_away_from_zero_like_snowflake() {
        assert_eq!(n("1.005", 10, 2).unwrap(), "1.01");
        assert_eq!(n("1.004999", 10, 2).unwrap(), "1.00");
        assert_eq!(n("-1.005", 10, 2).unwrap(), "-1.01");
        assert_eq!(n("9.995", 10, 2).unwrap(), "10.00");
        assert_eq!(n("0.004", 10, 2).unwrap(), "0.00");
        assert_eq!(n("-0.004", 10, 2).unwrap(), "0.00");
        assert_eq!(n("0.005", 10, 2).unwrap(), "0.01");
        assert_eq!(n("6.5", 38, 0).unwrap(), "7");
        assert_eq!(n("1e-50", 38, 0).unwrap(), "0");
    }

    #[test]
    fn out_of_range_is_refused() {
        assert!(n("123.45", 4, 2).unwrap_err() == NumberError::OutOfRange);
        assert!(n("99.995", 4, 2).unwrap_err() == NumberError::OutOfRange);
        assert_eq!(n("99.994", 4, 2).unwrap(), "99.99");
        assert!(n(&"9".repeat(39), 38, 0).unwrap_err() == NumberError::OutOfRange);
        assert_eq!(n(&"9".repeat(38), 38, 0).unwrap(), "9".repeat(38));
        assert!(n("1e38", 38, 0).unwrap_err() == NumberError::OutOfRange);
        assert!(n("1e99999999999999999999", 38, 0).unwrap_err() == NumberError::OutOfRange);
        assert!(n("abc", 38, 0).unwrap_err() == NumberError::NotANumber);
        assert!(n("1e", 38, 0).unwrap_err() == NumberError::NotANumber);
        assert_eq!(n("1e-99999999999999999999", 38, 0).unwrap(), "0");
        assert!(n("1e-", 38, 0).unwrap_err() == NumberError::NotANumber);
        assert!(n("1e--5", 38, 0).unwrap_err() == NumberError::NotANumber);
        assert!(n(".", 38, 0).unwrap_err() == NumberError::NotANumber);
    }

    #[test]
    fn the_fast_path_takes_only_canonical_texts() {
        for (lit, p, s) in [
            ("42", 38, 0),
            ("-7", 38, 0),
            ("0", 38, 0),
            ("12.50", 10, 2),
            ("0.05", 4, 2),
        ] {
            assert!(is_canonical(lit, p, s), "{lit}");
            assert_eq!(n(lit, p, s).unwrap(), lit);
        }
        for (lit, p, s) in [
            ("042", 38, 0),
            ("-0", 38, 0),
            ("12.5", 10, 2),
            ("12.500", 10, 2),
            ("1e2", 38, 0),
            ("+4", 38, 0),
            ("-0.00", 10, 2),
            ("123", 4, 2),
            ("4.", 38, 0),
            (".5", 10, 1),
            ("", 38, 0),
        ] {
            assert!(!is_canonical(lit, p, s), "{lit}");
        }
    }

    #[test]
    fn keys_are_exact() {
        let exact = |lit| canonical_number(lit, 38, 0, Rounding::Exact);
        assert_eq!(exact("6.0").unwrap(), "6");
        assert_eq!(exact("6.5").unwrap_err(), NumberError::Inexact);
    }

    /// Against a reference: exact rational arithmetic on i128 for values that fit.
    #[test]
    fn agrees_with_integer_arithmetic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mantissa = (next() % 2_000_000) as i128 - 1_000_000;
            let exp = (next() % 13) as i32 - 6;
            let scale = (next() % 5) as u8;
            let literal = format!("{mantissa}e{exp}");
            // reference: round(mantissa × 10^(exp+scale)) half away from zero
            let shift = exp + i32::from(scale);
            let reference = if shift >= 0 {
                mantissa * 10i128.pow(shift as u32)
            } else {
                let div = 10i128.pow((-shift) as u32);
                let (q, r) = (mantissa / div, mantissa % div);
                if r.abs() * 2 >= div {
                    q + mantissa.signum()
                } else {
                    q
                }
            };
            let expected = format_scaled(
                reference < 0,
                reference.unsigned_abs().to_string().as_bytes(),
                scale,
            );
            assert_eq!(
                n(&literal, 38, scale).unwrap(),
                expected,
                "{literal} s={scale}"
            );
            // the canonical text is its own canonical text (the fast path), and only it is
            assert!(is_canonical(&expected, 38, scale), "{expected}");
            assert_eq!(
                canonical_number_slow(&expected, 38, scale, Rounding::Exact).unwrap(),
                expected
            );
            assert_eq!(
                is_canonical(&literal, 38, scale),
                literal == expected,
                "{literal}"
            );
        }
    }

    #[test]
    fn canonical_texts_order_numerically() {
        let sorted = ["-10.50", "-2.00", "-0.01", "0.00", "0.01", "2.00", "10.50"];
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                assert_eq!(cmp_canonical(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(cmp_canonical("7", "7"), Ordering::Equal);
    }
}
