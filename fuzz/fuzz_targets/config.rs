//! The ingester's config file: any UTF-8 text through parsing and validation.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = kinesis_ingester::config::parse(Path::new("fuzz.yaml"), text) {
        // Every error renders.
        let _ = error.to_string();
    }
});
