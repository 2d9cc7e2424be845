//! Kinesis sequence numbers as a type: ordered as numbers, in Rust and in SQL, in one place.
//!
//! They are decimal strings of up to 129 digits (pattern `0|([1-9]\d{0,128})` in the Kinesis API
//! reference; 56 digits in AWS, small counters in moto), so neither string order nor `u64` works.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

/// A Kinesis sequence number, borrowed from the event where it can be.
#[derive(Debug, Clone, Default, Hash)]
pub struct SequenceNumber<'a>(Cow<'a, str>);

impl<'a> SequenceNumber<'a> {
    /// The longest sequence number Kinesis allows, in digits: what SQL pads to before comparing.
    pub(crate) const MAX_DIGITS: usize = 129;

    /// The number as its decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An owned copy that outlives the event it was read from.
    pub fn into_owned(self) -> SequenceNumber<'static> {
        SequenceNumber(Cow::Owned(self.0.into_owned()))
    }

    /// A SQL expression that orders the VARCHAR sequence numbers in `column` as numbers:
    /// left-padded to [`Self::MAX_DIGITS`], since `LPAD` truncates longer text.
    pub fn sql_order(column: &str) -> String {
        format!("LPAD({column}, {}, '0')", Self::MAX_DIGITS)
    }
}

impl<'a> From<Cow<'a, str>> for SequenceNumber<'a> {
    fn from(text: Cow<'a, str>) -> Self {
        Self(text)
    }
}

impl<'a> From<&'a str> for SequenceNumber<'a> {
    fn from(text: &'a str) -> Self {
        Self(Cow::Borrowed(text))
    }
}

impl From<String> for SequenceNumber<'static> {
    fn from(text: String) -> Self {
        Self(Cow::Owned(text))
    }
}

impl std::ops::Deref for SequenceNumber<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SequenceNumber<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SequenceNumber<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for SequenceNumber<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_sequence_numbers(&self.0, &other.0)
    }
}

impl PartialOrd for SequenceNumber<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equal as numbers, consistent with [`Ord`].
impl PartialEq for SequenceNumber<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for SequenceNumber<'_> {}

impl PartialEq<str> for SequenceNumber<'_> {
    fn eq(&self, other: &str) -> bool {
        cmp_sequence_numbers(&self.0, other).is_eq()
    }
}

impl PartialEq<&str> for SequenceNumber<'_> {
    fn eq(&self, other: &&str) -> bool {
        cmp_sequence_numbers(&self.0, other).is_eq()
    }
}

/// Orders sequence numbers given as text numerically.
pub fn cmp_sequence_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (significant_digits(a), significant_digits(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn significant_digits(s: &str) -> &str {
    // Real sequence numbers have no leading zeros: only trim when there is one.
    if s.as_bytes().first() == Some(&b'0') {
        s.trim_start_matches('0')
    } else {
        s
    }
}

/// The smallest and largest sequence numbers of an iterator, numerically; `None` when empty.
pub(crate) fn sequence_bounds<'s>(
    seqs: impl IntoIterator<Item = &'s str>,
) -> Option<(&'s str, &'s str)> {
    // Records of a shard arrive in order, so the newest is usually the new maximum and the
    // comparison with the minimum is skipped.
    seqs.into_iter().fold(None, |bounds, s| match bounds {
        None => Some((s, s)),
        Some((lo, hi)) if cmp_sequence_numbers(s, hi).is_gt() => Some((lo, s)),
        Some((lo, hi)) if cmp_sequence_numbers(s, lo).is_lt() => Some((s, hi)),
        bounds => bounds,
    })
}

/// The smallest sequence number of an iterator, numerically.
pub fn min_sequence_number<'s>(seqs: impl IntoIterator<Item = &'s str>) -> Option<&'s str> {
    seqs.into_iter().min_by(|a, b| cmp_sequence_numbers(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn orders_as_numbers_not_text() {
        let seq = |s: &'static str| SequenceNumber::from(s);
        assert!(seq("9") < seq("10"));
        assert!(seq("49590338271490256608559692538361571095921575989136588898") > seq("7"));
        assert_eq!(seq("007"), seq("7"));
        assert_eq!(seq("42"), "42");
        let mut v = [seq("100"), seq("20"), seq("3")];
        v.sort();
        assert_eq!(
            v.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["3", "20", "100"]
        );
    }

    #[test]
    fn sql_order_pads_to_the_longest_kinesis_allows() {
        assert_eq!(
            SequenceNumber::sql_order("t.\"KINESIS_SEQUENCE_NUMBER\""),
            "LPAD(t.\"KINESIS_SEQUENCE_NUMBER\", 129, '0')"
        );
    }

    #[test]
    fn bounds_and_minimum() {
        assert_eq!(sequence_bounds(["30", "4", "200"]), Some(("4", "200")));
        assert_eq!(min_sequence_number(["30", "4", "200"]), Some("4"));
        assert_eq!(sequence_bounds([]), None);
    }

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert_eq!(cmp_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(
            cmp_sequence_numbers(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert_eq!(cmp_sequence_numbers("007", "7"), Ordering::Equal);
        assert_eq!(min_sequence_number(["12", "3", "100"]), Some("3"));
        assert_eq!(
            sequence_bounds(["12", "3", "100", "99"]),
            Some(("3", "100"))
        );
        assert_eq!(sequence_bounds([]), None);
    }
}
