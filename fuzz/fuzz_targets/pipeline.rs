//! Any text as a pipeline file: what `slipway validate`, `slipway graph`
//! and the server's executor do with a file a pull request wrote. Nothing
//! may panic, overflow the stack or hang, whatever the text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway_engine::{GraphFormat, Plan, parse};

/// The server parses on a tokio worker, whose stack is 2 MiB; libFuzzer's
/// main thread has 8 MiB, which would hide a recursion that only the
/// server's threads are too small for.
const SERVER_STACK: usize = 2 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    // Both callers read the file as UTF-8 first and refuse anything else.
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let source = source.to_owned();
    std::thread::Builder::new()
        .stack_size(SERVER_STACK)
        .spawn(move || check(&source))
        .expect("a thread")
        .join()
        .expect("the check panicked");
});

fn check(source: &str) {
    let parsed = parse("fuzz.yml", source);
    for d in &parsed.diagnostics {
        // Rendered as the CLI prints them and the server stores them.
        let text = d.to_string();
        assert!(text.starts_with("fuzz.yml:"), "{text}");
        assert!(d.line >= 1 && d.col >= 1, "positions are 1-based: {text}");
    }
    // `slipway validate` expects a pipeline whenever there is no error.
    assert_eq!(
        parsed.pipeline.is_some(),
        !parsed.has_errors(),
        "{:?}",
        parsed.diagnostics
    );
    if let Some(pipeline) = &parsed.pipeline {
        // The parser already refused cycles and unknown `needs`, so a valid
        // pipeline always plans (`slipway graph`, the scheduler).
        let plan = Plan::new(pipeline).expect("a valid pipeline plans");
        for format in [GraphFormat::Text, GraphFormat::Dot, GraphFormat::Mermaid] {
            let _ = plan.render(format);
        }
    }
}
