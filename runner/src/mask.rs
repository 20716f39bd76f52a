//! Secret masking and line splitting of container output.

use std::borrow::Cow;

/// Replaces secret values in log lines.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    needles: Vec<String>,
}

pub const MASK: &str = "********";

impl Masker {
    /// Each line of a multi-line secret is masked on its own, since output is
    /// matched line by line. Very short values are not masked: masking every
    /// `a` or `1` in a log would make it unreadable and protects nothing.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut needles: Vec<String> = values
            .into_iter()
            .flat_map(|v| v.lines())
            .map(str::trim)
            .filter(|v| v.len() >= 3)
            .map(String::from)
            .collect();
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
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
        let m = Masker::new(["hunter2", "hunter2-extended", "line-one\nline-two", "ab"]);
        assert_eq!(
            m.mask("pw=hunter2-extended and hunter2"),
            "pw=******** and ********"
        );
        assert_eq!(m.mask("line-two"), "********");
        assert_eq!(m.mask("ab stays"), "ab stays");
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
            pieces.iter().all(|p| p.len() <= MAX_LINE),
            "pieces stay bounded"
        );
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
