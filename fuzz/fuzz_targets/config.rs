//! The config parser: any text, as `check-config`, `run` and SIGHUP read it.
//! It must return a config or errors that say where (line, column) and what,
//! never panic or hang.
#![no_main]

use std::path::Path;

use upscaled::config::Config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Config::load reads the file as UTF-8 and refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A folder that does not exist: relative paths resolve against nothing,
    // and no run touches the real filesystem beyond a failed lookup.
    let file = Path::new("/nonexistent-upscaled-fuzz/upscaled.yaml");
    match Config::parse(file, text) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty(), "a config error with no text");
            assert!(!e.issues.is_empty(), "a config error with no issues: {shown}");
            // file:line:column points into the text.
            let lines = text.lines().count().max(1);
            for issue in &e.issues {
                if let Some(line) = issue.line {
                    assert!(
                        (1..=lines + 1).contains(&line),
                        "issue at line {line} of a {lines}-line file: {shown}"
                    );
                }
            }
        }
    }
});
