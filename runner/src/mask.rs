//! Secret masking and line splitting of container output.

use std::borrow::Cow;

/// Replaces secret values in log lines.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    needles: Vec<String>,
}

pub const MASK: &str = "********";

/// Secrets shorter than this are refused where they enter (config, API,
/// `slipway run --secret`): masking every such string would make logs
/// unreadable, and not masking them would show them.
pub const MIN_SECRET_LEN: usize = 4;

/// Why `value` cannot be a secret, if it cannot.
pub fn check_secret_value(value: &str) -> Result<(), String> {
    let n = value.chars().count();
    if n < MIN_SECRET_LEN {
        return Err(format!(
            "is {n} character(s) long: secrets shorter than {MIN_SECRET_LEN} characters cannot be masked in logs, so they are refused"
        ));
    }
    Ok(())
}

/// The shortest part of a longer base64 text that is masked as a value's
/// encoding. The unpadded base64 of a value of `MIN_SECRET_LEN` bytes is
/// already this long and masked, so the floor adds no new kind of chance
/// match; a higher one (8) would let `base64("user:" + value)` show 36 of
/// the 40 bits of a 5-byte value.
const MIN_CORE_LEN: usize = 6;

/// How tools commonly print a value other than as itself: base64
/// (standard and URL-safe, with and without padding) and hex. Inside a
/// longer base64 text (`base64("user:" + value)`, a Docker auth) the value
/// starts at one of three alignments, and its encoding differs only at
/// the edges, so the part every alignment determines is masked too.
fn encodings(value: &[u8]) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out = vec![
        STANDARD.encode(value),
        STANDARD_NO_PAD.encode(value),
        URL_SAFE.encode(value),
        URL_SAFE_NO_PAD.encode(value),
        value.iter().map(|b| format!("{b:02x}")).collect(),
        value.iter().map(|b| format!("{b:02X}")).collect(),
    ];
    for k in 0..3usize {
        let mut shifted = vec![0u8; k];
        shifted.extend_from_slice(value);
        let encoded = STANDARD_NO_PAD.encode(&shifted);
        // Characters whose 6 bits all come from the value: not the first
        // ones (they hold filler bits), not a last partial one.
        let start = (8 * k).div_ceil(6);
        let end = (8 * shifted.len()) / 6;
        if end > start && end - start >= MIN_CORE_LEN {
            let core = &encoded[start..end];
            out.push(core.to_string());
            out.push(core.replace('+', "-").replace('/', "_"));
        }
    }
    out
}

impl Masker {
    /// Each line of a multi-line secret is masked on its own, since output is
    /// matched line by line. Very short values are not masked: masking every
    /// `a` or `1` in a log would make it unreadable and protects nothing.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut needles: Vec<String> = Vec::new();
        for value in values {
            if value.trim().chars().count() < MIN_SECRET_LEN {
                continue;
            }
            needles.extend(
                value
                    .lines()
                    .map(str::trim)
                    .filter(|v| v.chars().count() >= MIN_SECRET_LEN)
                    .map(String::from),
            );
            needles.extend(encodings(value.as_bytes()));
        }
        // Longest first; equal needles (a URL-safe form with no `+` or `/`
        // is the standard one) sort next to each other so dedup drops them.
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Masker { needles }
    }

    /// Bytes a line cut must keep beyond its cut point so that no secret
    /// straddles it unmasked: the longest secret, less one.
    pub fn overlap(&self) -> usize {
        self.needles
            .first()
            .map_or(0, |n| n.len().saturating_sub(1))
    }

    pub fn mask<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(line);
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = Cow::Owned(out.replace(n.as_str(), MASK));
            }
        }
        out
    }
}

/// Splits a byte stream into lines; output arrives in arbitrary chunks.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// Masks a runaway line before it is cut, so a secret that straddles
    /// the cut is still masked whole.
    masker: Masker,
}

/// A line longer than this is cut, so one runaway line cannot exhaust memory.
const MAX_LINE: usize = 64 * 1024;

impl LineSplitter {
    /// A splitter that cuts long lines only where `masker` has masked them.
    pub fn masking(masker: Masker) -> LineSplitter {
        LineSplitter {
            partial: Vec::new(),
            masker,
        }
    }

    pub fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(String)) {
        for &b in chunk {
            if b == b'\n' {
                emit(self.take());
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE + self.masker.overlap() {
                    emit(self.cut());
                }
            }
        }
    }

    /// The first `MAX_LINE` bytes of a runaway line, masked while the bytes
    /// after the cut are still there to complete any secret crossing it;
    /// the rest (masked too) stays for the next piece.
    fn cut(&mut self) -> String {
        let bytes = std::mem::take(&mut self.partial);
        let text = String::from_utf8_lossy(&bytes);
        let masked = self.masker.mask(&text);
        let mut at = MAX_LINE.min(masked.len());
        while !masked.is_char_boundary(at) {
            at -= 1;
        }
        let (head, rest) = masked.split_at(at);
        self.partial = rest.as_bytes().to_vec();
        head.to_string()
    }

    /// The last line, when output did not end with a newline.
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let bytes = std::mem::take(&mut self.partial);
        let line = String::from_utf8_lossy(&bytes);
        line.strip_suffix('\r').unwrap_or(&line).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_each_line_of_multiline_secrets() {
        let m = Masker::new(["hunter2", "hunter2-extended", "line-one\nline-two", "abc"]);
        assert_eq!(
            m.mask("pw=hunter2-extended and hunter2"),
            "pw=******** and ********"
        );
        assert_eq!(m.mask("line-two"), "********");
        assert_eq!(m.mask("abc stays"), "abc stays");
    }

    /// Issue 14: a secret split by the 64 KiB cut of a runaway line was
    /// masked in neither half.
    #[test]
    fn a_secret_across_the_cut_of_a_long_line_is_masked() {
        let secret = "s3cr3t-value-0123456789";
        let masker = Masker::new([secret]);
        let mut s = LineSplitter::masking(masker.clone());
        let mut line = "x".repeat(MAX_LINE - 5).into_bytes();
        line.extend_from_slice(secret.as_bytes());
        line.extend_from_slice(b" and more\n");
        let mut pieces = Vec::new();
        for chunk in line.chunks(1000) {
            s.push(chunk, |l| pieces.push(masker.mask(&l).into_owned()));
        }
        let all = pieces.concat();
        assert!(!all.contains("s3cr3t"), "{}", &all[all.len() - 40..]);
        assert!(!all.contains("0123456789"), "no half of it either");
        assert!(
            all.ends_with("******** and more"),
            "{}",
            &all[all.len() - 40..]
        );
        assert!(
            pieces.iter().all(|p| p.len() < MAX_LINE + masker.overlap()),
            "pieces stay bounded"
        );
    }

    /// The characters of `encoded` (the base64 of `prefix_len` bytes, the
    /// value's `value_len` bytes, then anything) whose bits all come from
    /// the value: worked out from the prefix, not from the masker's filler.
    fn value_only(encoded: &str, prefix_len: usize, value_len: usize) -> &str {
        &encoded[(8 * prefix_len).div_ceil(6)..(8 * (prefix_len + value_len)) / 6]
    }

    /// Whether any `width` characters in a row of `span` show in `text`.
    fn shows_part_of(text: &str, span: &str, width: usize) -> bool {
        span.as_bytes()
            .windows(width)
            .filter_map(|w| std::str::from_utf8(w).ok())
            .any(|w| text.contains(w))
    }

    /// A value printed as base64 alone, or inside a longer base64 text at
    /// any of the three byte alignments (as in `base64("user:" + value)`),
    /// standard or URL-safe, padded or not, or hex, is masked: nothing a
    /// reader could decode the value from is left, only the edge
    /// characters that mix the value's bits with its neighbours'.
    #[test]
    fn encodings_of_a_value_are_masked_at_every_alignment() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
        // `?`, `>` and `~` give `/` and `+` in base64 at two of the three
        // alignments, so the URL-safe alphabet differs there.
        let value = "p4ss?w0rd>>value~42";
        let m = Masker::new([value]);
        let mut checked = std::collections::HashSet::new();
        for prefix in ["", "x", "x:", "u:", "xy:", "ci:", "bot:", "user:"] {
            checked.insert(prefix.len() % 3);
            for suffix in ["", "\n", "--tail"] {
                let raw = format!("{prefix}{value}{suffix}");
                for encoded in [
                    STANDARD.encode(&raw),
                    STANDARD_NO_PAD.encode(&raw),
                    URL_SAFE.encode(&raw),
                ] {
                    let line = format!("auth: {encoded} end");
                    let masked = m.mask(&line);
                    let span = value_only(&encoded, prefix.len(), value.len());
                    assert!(masked.contains(MASK), "{line} -> {masked}");
                    assert!(!shows_part_of(&masked, span, 6), "{line} -> {masked}");
                }
            }
        }
        assert_eq!(checked.len(), 3, "every alignment");
        let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(m.mask(&format!("x={hex};")), "x=********;");
        assert_eq!(m.mask(&format!("x={};", hex.to_uppercase())), "x=********;");
    }

    /// The shortest values still have their whole base64 masked, and from
    /// 5 bytes on their part inside a longer base64 text at every alignment.
    #[test]
    fn short_values_encodings_are_masked() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        let m = Masker::new(["k3y!", "t0k3n"]);
        assert_eq!(m.mask(&STANDARD.encode("k3y!")), MASK);
        assert_eq!(m.mask(&STANDARD_NO_PAD.encode("k3y!")), MASK);
        for prefix in ["", "a", "ab"] {
            let encoded = STANDARD.encode(format!("{prefix}t0k3n and more"));
            let masked = m.mask(&encoded);
            let span = value_only(&encoded, prefix.len(), 5);
            assert!(!masked.contains(span), "{prefix}: {encoded} -> {masked}");
        }
    }

    #[test]
    fn values_too_short_to_mask_are_refused_with_the_reason() {
        let e = check_secret_value("abc").unwrap_err();
        assert!(
            e.contains("3 character(s)") && e.contains("cannot be masked"),
            "{e}"
        );
        assert!(check_secret_value("abcd").is_ok());
        assert!(check_secret_value("äöü").is_err(), "characters, not bytes");
        let m = Masker::new(["abc"]);
        assert_eq!(m.mask("abc abc"), "abc abc", "and never masked either");
    }

    /// The base64 of a secret straddling the 64 KiB cut is still masked.
    #[test]
    fn an_encoded_secret_across_the_cut_is_masked() {
        use base64::Engine;
        let secret = "s3cr3t-value-0123456789-abcdef";
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        let masker = Masker::new([secret]);
        let mut s = LineSplitter::masking(masker.clone());
        let mut line = "x".repeat(MAX_LINE - 10).into_bytes();
        line.extend_from_slice(encoded.as_bytes());
        line.extend_from_slice(b" done\n");
        let mut pieces = Vec::new();
        for chunk in line.chunks(777) {
            s.push(chunk, |l| pieces.push(masker.mask(&l).into_owned()));
        }
        let all = pieces.concat();
        assert!(!all.contains(&encoded[4..20]), "{}", &all[all.len() - 60..]);
        assert!(all.ends_with("******** done"), "{}", &all[all.len() - 60..]);
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        s.push(b"hel", |l| lines.push(l));
        s.push(b"lo\r\nwor", |l| lines.push(l));
        s.push(b"ld\n\ntail", |l| lines.push(l));
        assert_eq!(lines, ["hello", "world", ""]);
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }
}
