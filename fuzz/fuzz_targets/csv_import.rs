//! Fuzz target for the CSV reader of the device import
//! (`crates/api/src/csv.rs`, compiled here as a module of its own so that
//! the fuzzer does not build the HTTP stack): arbitrary text must parse or
//! fail with an error naming a line of the input, never panic. Accepted
//! records start on ascending lines within the input, and writing them
//! back with every field quoted reads back the same fields.

#![no_main]

#[allow(dead_code)]
#[path = "../../crates/api/src/csv.rs"]
mod csv;

use libfuzzer_sys::fuzz_target;

fn write_quoted(records: &[csv::Record]) -> String {
    let mut out = String::new();
    for r in records {
        let fields: Vec<String> = r
            .fields
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    match csv::parse(text) {
        Ok(records) => {
            let mut last = 0;
            for r in &records {
                assert!(r.line > last && r.line <= lines, "line {} of {lines}", r.line);
                assert!(!r.fields.is_empty());
                last = r.line;
            }
            let again = csv::parse(&write_quoted(&records)).expect("quoted output parses");
            let a: Vec<&Vec<String>> = records.iter().map(|r| &r.fields).collect();
            let b: Vec<&Vec<String>> = again.iter().map(|r| &r.fields).collect();
            assert_eq!(a, b);
        }
        Err((line, reason)) => {
            assert!(line >= 1 && line <= lines, "error line {line} of {lines}");
            assert!(!reason.is_empty());
        }
    }
});
