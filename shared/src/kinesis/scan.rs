//! Finding the first byte of a small set, for the loops that look at every byte of a batch:
//! JSON strings (quote, backslash, control characters) and CSV fields (what forces quotes).
//!
//! Sixteen bytes at a time with SSE2 on x86-64 and NEON on aarch64 (Graviton), both part of
//! their architecture's baseline; eight at a time in a `u64` elsewhere and for tails, then a
//! byte loop. The sets are constants at every call site, so each inlined copy compares against
//! exactly its own bytes.

/// The index of the first byte at or after `from` that is in `set`, or is below 0x20, or the
/// length of `bytes`.
#[inline(always)]
pub(crate) fn find_byte_or_control(bytes: &[u8], from: usize, set: &[u8]) -> usize {
    find(bytes, from, set, true, false)
}

/// The index of the first byte at or after `from` that is in `set`, or the length of `bytes`.
#[inline(always)]
pub(crate) fn find_byte(bytes: &[u8], from: usize, set: &[u8]) -> usize {
    find(bytes, from, set, false, false)
}

/// `bytes` as text if they are UTF-8. Checked 16 bytes at a time up to the first byte that is
/// not ASCII, and by the standard library from there: payloads are mostly or entirely ASCII,
/// where the standard check costs several times more.
#[inline]
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    let ascii = find(bytes, 0, &[], false, true);
    std::str::from_utf8(&bytes[ascii..])?;
    // SAFETY: the bytes before `ascii` are ASCII and the rest was just checked to be UTF-8;
    // an ASCII byte never continues a character, so the whole is UTF-8.
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// Whether `bytes` continues with `prefix` at `from`. Texts up to 32 bytes (most of the text
/// between values of a record template) are compared inline, where a call to `memcmp` costs
/// more than the comparison; longer ones by `memcmp`, which uses the widest vectors the CPU has.
#[inline(always)]
pub(crate) fn starts_with_at(bytes: &[u8], from: usize, prefix: &[u8]) -> bool {
    let Some(bytes) = bytes.get(from..from + prefix.len()) else {
        return false;
    };
    let n = prefix.len();
    let wide =
        |s: &[u8], at: usize| u128::from_le_bytes(s[at..at + 16].try_into().unwrap_or([0; 16]));
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    // Each width compares its first and last chunk, which overlap rather than fall back to
    // bytes.
    match n {
        33.. => bytes == prefix,
        16.. => wide(bytes, 0) == wide(prefix, 0) && wide(bytes, n - 16) == wide(prefix, n - 16),
        8.. => word(bytes, 0) == word(prefix, 0) && word(bytes, n - 8) == word(prefix, n - 8),
        4.. => half(bytes, 0) == half(prefix, 0) && half(bytes, n - 4) == half(prefix, n - 4),
        _ => bytes == prefix,
    }
}

/// Whether `a` and `b` are the same text: by address first (strings shared between records),
/// then compared as [`starts_with_at`] does.
#[inline(always)]
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a, b) || starts_with_at(a.as_bytes(), 0, b.as_bytes()))
}

/// The index of the first byte at or after `from` that is not an ASCII digit, or the length.
/// Eight bytes at a time: numbers in JSON are short and of varying length, where a byte loop's
/// exit is a mispredicted branch more often than not.
#[inline]
pub(crate) fn skip_digits(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // A byte above '9' sets its high bit when 0x46 is added (or, from 0xba up, when 0x30
        // is subtracted); one below '0' when 0x30 is subtracted. Digits neither carry nor
        // borrow, so the lowest flag is exact.
        let flags =
            (word.wrapping_add(ONES * 0x46) | word.wrapping_sub(ONES * 0x30)) & (ONES * 0x80);
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

#[inline(always)]
fn find(bytes: &[u8], from: usize, set: &[u8], control: bool, non_ascii: bool) -> usize {
    #[cfg(target_arch = "x86_64")]
    let from = match find_sse2(bytes, from, set, control, non_ascii) {
        Ok(found) => return found,
        Err(tail) => tail,
    };
    #[cfg(target_arch = "aarch64")]
    let from = match find_neon(bytes, from, set, control, non_ascii) {
        Ok(found) => return found,
        Err(tail) => tail,
    };
    find_swar(bytes, from, set, control, non_ascii)
}

/// `Ok(index)` of the first match, or `Err(index)` of the tail shorter than 16 bytes.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn find_neon(
    bytes: &[u8],
    mut i: usize,
    set: &[u8],
    control: bool,
    non_ascii: bool,
) -> Result<usize, usize> {
    use std::arch::aarch64::{
        vceqq_u8, vcgeq_u8, vcltq_u8, vdupq_n_u8, vget_lane_u64, vld1q_u8, vorrq_u8,
        vreinterpret_u64_u8, vreinterpretq_u16_u8, vshrn_n_u16,
    };
    while let Some(chunk) = bytes.get(i..i + 16) {
        // SAFETY: NEON is in the aarch64 baseline, and the load reads exactly the 16 bytes of
        // `chunk`.
        let nibbles = unsafe {
            let v = vld1q_u8(chunk.as_ptr());
            let mut hits = vdupq_n_u8(0);
            for &b in set {
                hits = vorrq_u8(hits, vceqq_u8(v, vdupq_n_u8(b)));
            }
            if control {
                hits = vorrq_u8(hits, vcltq_u8(v, vdupq_n_u8(0x20)));
            }
            if non_ascii {
                hits = vorrq_u8(hits, vcgeq_u8(v, vdupq_n_u8(0x80)));
            }
            // NEON has no byte movemask: shifting each 16-bit lane right by 4 and narrowing
            // keeps one nibble per byte, so byte k of the chunk is nibble k of a u64.
            vget_lane_u64::<0>(vreinterpret_u64_u8(vshrn_n_u16::<4>(vreinterpretq_u16_u8(
                hits,
            ))))
        };
        if nibbles != 0 {
            return Ok(i + (nibbles.trailing_zeros() / 4) as usize);
        }
        i += 16;
    }
    Err(i)
}

/// `Ok(index)` of the first match, or `Err(index)` of the tail shorter than 16 bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn find_sse2(
    bytes: &[u8],
    mut i: usize,
    set: &[u8],
    control: bool,
    non_ascii: bool,
) -> Result<usize, usize> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };
    while let Some(chunk) = bytes.get(i..i + 16) {
        // SAFETY: SSE2 is in the x86-64 baseline, and the load reads exactly the 16 bytes of
        // `chunk` (unaligned loads are allowed).
        let mask = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            let mut hits = _mm_setzero_si128();
            for &b in set {
                hits = _mm_or_si128(hits, _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)));
            }
            if control {
                // Unsigned v <= 0x1f: max(v, 0x1f) == 0x1f.
                let limit = _mm_set1_epi8(0x1f);
                hits = _mm_or_si128(hits, _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit));
            }
            if non_ascii {
                // The mask is each byte's high bit, which is what marks a non-ASCII byte.
                hits = _mm_or_si128(hits, v);
            }
            _mm_movemask_epi8(hits)
        };
        if mask != 0 {
            return Ok(i + mask.trailing_zeros() as usize);
        }
        i += 16;
    }
    Err(i)
}

#[inline(always)]
fn find_swar(bytes: &[u8], mut i: usize, set: &[u8], control: bool, non_ascii: bool) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // Each term flags a byte that is zero (or below 0x20) exactly at the first such byte;
        // borrows can only add flags above it, so the lowest flag is exact.
        let mut found = 0;
        for &b in set {
            let x = word ^ (ONES * u64::from(b));
            found |= x.wrapping_sub(ONES) & !x;
        }
        if control {
            found |= word.wrapping_sub(ONES * 0x20) & !word;
        }
        if non_ascii {
            found |= word;
        }
        found &= HIGH;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        // Not `contains`: for bytes that is a call to memchr, where the inlined set is one or
        // two comparisons.
        #[allow(clippy::manual_contains)]
        let in_set = set.iter().any(|s| *s == b);
        if in_set || (control && b < 0x20) || (non_ascii && b >= 0x80) {
            return i;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_at_agrees_with_slices() {
        let text: Vec<u8> = (0..80u8).map(|i| b'a' + i % 7).collect();
        for from in 0..text.len() + 2 {
            for len in 0..40usize {
                for flip in [None, Some(0), Some(len / 2), Some(len.saturating_sub(1))] {
                    let mut prefix: Vec<u8> = text.iter().skip(from).take(len).copied().collect();
                    prefix.resize(len, b'a');
                    if let Some(i) = flip.filter(|i| *i < len) {
                        prefix[i] ^= 0x20;
                    }
                    let expected = text.get(from..).is_some_and(|t| t.starts_with(&prefix));
                    assert_eq!(
                        starts_with_at(&text, from, &prefix),
                        expected,
                        "{from} {len} {flip:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_scanner_finds_the_first_byte_of_the_set() {
        const JSON: &[u8] = b"\"\\";
        const CSV: &[u8] = b",\"\n\r\\";
        let filler = [b'a', b' ', 0x7f, 0x80, 0xff, b'0'];
        for len in 0..40 {
            for at in 0..=len {
                for (set, control, special) in [
                    (JSON, true, b'"'),
                    (JSON, true, b'\\'),
                    (JSON, true, 0),
                    (JSON, true, 0x1f),
                    (CSV, false, b','),
                    (CSV, false, b'\r'),
                    (CSV, false, b'\\'),
                ] {
                    let mut bytes: Vec<u8> = (0..len).map(|k| filler[k % filler.len()]).collect();
                    if at < len {
                        bytes[at] = special;
                    }
                    for from in 0..=at {
                        let expected = at;
                        assert_eq!(
                            find(&bytes, from, set, control, false),
                            expected,
                            "{bytes:?} from {from}"
                        );
                        assert_eq!(
                            find_swar(&bytes, from, set, control, false),
                            expected,
                            "{bytes:?} from {from}"
                        );
                    }
                }
            }
        }
        assert_eq!(
            find_byte(b"ab\x01", 0, CSV),
            3,
            "control characters only when asked"
        );
        assert_eq!(find_byte_or_control(b"ab\x01", 0, JSON), 2);
    }

    #[test]
    fn non_ascii_bytes_are_found_and_utf8_is_checked_as_std_does() {
        let tails: [&[u8]; 9] = [
            b"",
            "é".as_bytes(),
            "温度 ✓".as_bytes(),
            b"\x80",
            b"\xc3",
            b"\xe6\xb8",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xc3\xa9\xff",
        ];
        for len in 0..40 {
            for tail in tails {
                for after in [&b""[..], b"abc", "ü".as_bytes()] {
                    let bytes: Vec<u8> = (0..len)
                        .map(|k| b"az09 ,\"\x7f"[k % 8])
                        .chain(tail.iter().copied())
                        .chain(after.iter().copied())
                        .collect();
                    let first = bytes.iter().position(|b| *b >= 0x80).unwrap_or(bytes.len());
                    assert_eq!(find(&bytes, 0, &[], false, true), first, "{bytes:?}");
                    assert_eq!(find_swar(&bytes, 0, &[], false, true), first, "{bytes:?}");
                    assert_eq!(
                        utf8(&bytes).ok(),
                        std::str::from_utf8(&bytes).ok(),
                        "{bytes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn digits_are_skipped_as_a_byte_loop_would() {
        for len in 0..20 {
            for at in 0..=len {
                for stop in 0..=255u8 {
                    let mut bytes: Vec<u8> = (0..len).map(|k| b'0' + (k % 10) as u8).collect();
                    if at < len {
                        bytes[at] = stop;
                        // Whatever follows the first non-digit must not matter.
                        for (k, b) in bytes.iter_mut().enumerate().skip(at + 1) {
                            *b = [0xff, 0x00, 0xba, b'5', b'/', 0x7f][k % 6];
                        }
                    }
                    let expected = bytes
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .unwrap_or(len);
                    assert_eq!(skip_digits(&bytes, 0), expected, "{bytes:?}");
                }
            }
        }
    }
}
