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
}

/// A line longer than this is cut, so one runaway line cannot exhaust memory.
const MAX_LINE: usize = 64 * 1024;

impl LineSplitter {
    pub fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(String)) {
        for &b in chunk {
            if b == b'\n' {
                emit(self.take());
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE {
                    emit(self.take());
                }
            }
        }
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
