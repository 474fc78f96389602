//! A Firehose transform's answer: any bytes as the body answering a request of 1 to 8 records.
#![no_main]

use kinesis_ingester::transform::firehose::{Answer, judge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, body)) = data.split_first() else {
        return;
    };
    let total = usize::from(n % 8) + 1;
    match judge(total, body) {
        // Accepted: exactly one answer per record, and Ok data no larger than the body.
        Ok(answers) => {
            assert_eq!(answers.len(), total);
            for a in &answers {
                if let Answer::Ok(d) = a {
                    assert!(d.len() <= body.len());
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
