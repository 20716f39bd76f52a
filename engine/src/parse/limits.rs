//! How big and how deep a pipeline file may be, checked on the text before
//! the YAML parser sees it: saphyr descends recursively, so a 40 KB file of
//! `- - - - ...` overflowed the stack and aborted the whole server (every
//! run with it). Pipeline files are written by whoever opens a pull request.

/// The largest pipeline file read.
pub const MAX_BYTES: usize = 256 * 1024;

/// The deepest nesting of mappings and lists a pipeline may have; real
/// ones stay under ten.
pub const MAX_DEPTH: usize = 100;

/// Where and why a file is refused: `(line, col, message, hint)`.
pub(super) type Refusal = (usize, usize, String, Option<String>);

/// The first limit `source` breaks, if any. Depth is over-estimated, never
/// under: indentation levels, compact `- ` / `? ` / `: ` entries, and open `[` `{`
/// outside quotes (quotes are assumed closed at each line's end, so a stray
/// apostrophe cannot hide the brackets after it).
pub(super) fn check(source: &str) -> Option<Refusal> {
    if source.len() > MAX_BYTES {
        return Some((
            1,
            1,
            format!(
                "the pipeline file is {} bytes; at most {MAX_BYTES} are read",
                source.len()
            ),
            Some("split it, or move long scripts into files the steps run".into()),
        ));
    }
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in source.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        while indents.last().is_some_and(|&top| top > indent) {
            indents.pop();
        }
        if indents.last().is_none_or(|&top| top < indent) {
            indents.push(indent);
        }
        let mut compact = 0;
        let mut rest = body;
        // `: ` too: an explicit key's value (`? a` then `: - - - x`) nests
        // compact lists as deep as `- - - x` does.
        while let Some(r) = ["- ", "-\t", "? ", ": "]
            .iter()
            .find_map(|indicator| rest.strip_prefix(indicator))
        {
            compact += 1;
            rest = r.trim_start();
        }
        let (mut single, mut double) = (false, false);
        let mut deepest_flow = flow;
        for c in body.chars() {
            match c {
                '\'' if !double => single = !single,
                '"' if !single => double = !double,
                '[' | '{' if !single && !double => {
                    flow += 1;
                    deepest_flow = deepest_flow.max(flow);
                }
                ']' | '}' if !single && !double => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
        let depth = indents.len() + compact + deepest_flow;
        if depth > MAX_DEPTH {
            return Some((
                n + 1,
                indent + 1,
                format!("the pipeline nests deeper than {MAX_DEPTH} levels here"),
                Some("a pipeline needs a few levels: steps, a step, its keys and lists".into()),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    /// Issue 14: the first of these aborted `slipway serve` and `slipway validate`
    /// with a stack overflow; now it is one located diagnostic.
    #[test]
    fn files_nested_too_deep_are_refused_with_a_line() {
        for source in [
            format!("{}x", "- ".repeat(20_000)),
            format!("steps: {}{}", "[".repeat(20_000), "]".repeat(20_000)),
            format!(
                "steps:\n{}",
                (0..500)
                    .map(|i| format!("{}a{i}:\n", " ".repeat(i)))
                    .collect::<String>()
            ),
        ] {
            let parsed = parse("p.yml", &source);
            assert!(parsed.pipeline.is_none());
            let d = &parsed.diagnostics[0];
            assert!(d.message.contains("nests deeper than 100 levels"), "{d}");
            assert!(d.to_string().starts_with("p.yml:"), "{d}");
        }
    }

    /// Issue 14: an explicit key's `: ` value was not counted, so each of
    /// these got past the check and overflowed the stack in saphyr.
    #[test]
    fn compact_lists_under_explicit_keys_and_values_are_counted() {
        for source in [
            format!("? a\n: {}x", "- ".repeat(20_000)),
            format!("? {}x", "? : ".repeat(20_000)),
            format!("- {}x", "? - : ".repeat(20_000)),
        ] {
            let parsed = parse("p.yml", &source);
            let d = &parsed.diagnostics[0];
            assert!(d.message.contains("nests deeper than 100 levels"), "{d}");
        }
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused() {
        let source = format!(
            "steps:\n  a:\n    image: x\n    commands: [\"{}\"]\n",
            "y".repeat(MAX_BYTES)
        );
        let parsed = parse("p.yml", &source);
        assert!(
            parsed.diagnostics[0]
                .message
                .contains("at most 262144 are read")
        );
    }

    #[test]
    fn ordinary_pipelines_are_far_from_the_limits() {
        let source = "steps:\n  build:\n    image: x\n    commands:\n      - echo \"it's [fine\"\n      - if [ -f a ]; then echo {x}; fi\n    cache:\n      - key: k\n        paths: [a, b]\n";
        assert_eq!(check(source), None);
    }
}
