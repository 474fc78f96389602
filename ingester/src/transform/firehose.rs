//! Amazon Data Firehose's transform contract, as pure functions: the request a transform Lambda
//! is invoked with, and the checks Firehose makes of its answer.
//!
//! Request: `{invocationId, records: [{recordId, approximateArrivalTimestamp,
//! data (base64), kinesisRecordMetadata: {shardId, partitionKey, sequenceNumber,
//! subsequenceNumber, approximateArrivalTimestamp}}]}`.
//!
//! Answer: `{records: [{recordId, result, data}]}`. Every record id of the request must be
//! answered exactly once, and no other; otherwise the whole answer is refused
//! ([`ContractError`]) and the batch is tried again. Per record, `result` is `Ok` (then `data`
//! must be base64), `Dropped` or `ProcessingFailed`; anything else fails that record only.

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Most bytes of a request or an answer: a Lambda's synchronous payload limit (6 MB).
pub const MAX_PAYLOAD_BYTES: usize = 6 << 20;

/// A batch closes before its base64 data passes this (Firehose buffers 1 MiB for a Lambda by
/// default); a single larger record still goes alone.
pub const BATCH_DATA_BYTES: usize = 1 << 20;

/// Bytes of a record's request entry besides its data (ids, metadata, JSON framing).
const ENTRY_OVERHEAD: usize = 512;

/// What the transform made of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `Ok`: deliver this payload instead.
    Ok(Bytes),
    /// `Dropped`: deliver nothing (counts as delivered).
    Dropped,
    /// `ProcessingFailed`, or an entry that breaks the contract: dead-letter it with this reason.
    Failed(String),
}

/// Why an answer as a whole was refused (the batch is tried again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The body is not the answer's JSON.
    #[error("the answer is not {{\"records\": [...]}} JSON: {0}")]
    NotJson(String),
    /// A record id of the request is not answered.
    #[error("{missing} of {total} records not answered (first: recordId {first:?})")]
    Missing {
        /// How many.
        missing: usize,
        /// Records in the request.
        total: usize,
        /// The first one.
        first: String,
    },
    /// A record id is answered twice.
    #[error("recordId {0:?} answered more than once")]
    Duplicate(String),
    /// An answered id was not in the request.
    #[error("recordId {0:?} was not in the request")]
    Unknown(String),
    /// The answer is over [`MAX_PAYLOAD_BYTES`].
    #[error("the answer is over the {MAX_PAYLOAD_BYTES}-byte limit of a Lambda response")]
    TooLarge,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    invocation_id: &'a str,
    records: Vec<RequestRecord<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestRecord<'a> {
    record_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_arrival_timestamp: Option<i64>,
    data: String,
    kinesis_record_metadata: Metadata<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    shard_id: &'a str,
    partition_key: &'a str,
    sequence_number: &'a str,
    /// A string, as Firehose sends it: empty for a whole record.
    subsequence_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_arrival_timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct Response {
    records: Vec<ResponseRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseRecord {
    record_id: String,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

/// The base64 size of a record's entry in a request.
pub fn entry_size(record: &Record) -> usize {
    record.data.len().div_ceil(3) * 4 + ENTRY_OVERHEAD
}

/// The request body for `records`: record ids are their indexes, `"0"`, `"1"`, ….
pub fn request(invocation_id: &str, records: &[Record]) -> Vec<u8> {
    let request = Request {
        invocation_id,
        records: records
            .iter()
            .enumerate()
            .map(|(i, r)| RequestRecord {
                record_id: i.to_string(),
                approximate_arrival_timestamp: r.approximate_arrival_ms,
                data: STANDARD.encode(&r.data),
                kinesis_record_metadata: Metadata {
                    shard_id: &r.shard.shard_id,
                    partition_key: &r.partition_key,
                    sequence_number: r.position.sequence.as_str(),
                    subsequence_number: r
                        .position
                        .sub_sequence
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    approximate_arrival_timestamp: r.approximate_arrival_ms,
                },
            })
            .collect(),
    };
    // Serializing strings and integers cannot fail.
    serde_json::to_vec(&request).unwrap_or_default()
}

/// Judges the answer to a request of `total` records as Firehose does: the answers in request
/// order, or why the whole answer is refused.
pub fn judge(total: usize, body: &[u8]) -> Result<Vec<Answer>, ContractError> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(ContractError::TooLarge);
    }
    let response: Response =
        serde_json::from_slice(body).map_err(|e| ContractError::NotJson(e.to_string()))?;
    let mut answers: Vec<Option<Answer>> = vec![None; total];
    for r in response.records {
        let index = r
            .record_id
            .parse::<usize>()
            .ok()
            .filter(|&i| i < total && i.to_string() == r.record_id)
            .ok_or_else(|| ContractError::Unknown(r.record_id.clone()))?;
        if answers[index].is_some() {
            return Err(ContractError::Duplicate(r.record_id));
        }
        answers[index] = Some(match r.result.as_deref() {
            Some("Ok") => match r.data.as_deref().map(|d| STANDARD.decode(d)) {
                Some(Ok(data)) => Answer::Ok(Bytes::from(data)),
                Some(Err(e)) => {
                    Answer::Failed(format!("result Ok with data that is not base64: {e}"))
                }
                None => Answer::Failed("result Ok without data".to_owned()),
            },
            Some("Dropped") => Answer::Dropped,
            Some("ProcessingFailed") => {
                Answer::Failed("the transform answered ProcessingFailed".to_owned())
            }
            Some(other) => Answer::Failed(format!(
                "result {other:?} is not Ok, Dropped or ProcessingFailed"
            )),
            None => Answer::Failed("no result".to_owned()),
        });
    }
    let missing = answers.iter().filter(|a| a.is_none()).count();
    if let Some(first) = answers.iter().position(Option::is_none) {
        return Err(ContractError::Missing {
            missing,
            total,
            first: first.to_string(),
        });
    }
    Ok(answers.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: serde_json::Value) -> Result<Vec<Answer>, ContractError> {
        judge(3, body.to_string().as_bytes())
    }

    #[test]
    fn every_record_answered_once_is_judged_per_record() {
        let got = answer(serde_json::json!({"records": [
            {"recordId": "2", "result": "ProcessingFailed"},
            {"recordId": "0", "result": "Ok", "data": STANDARD.encode("new")},
            {"recordId": "1", "result": "Dropped"},
        ]}))
        .expect("valid");
        assert_eq!(
            got,
            [
                Answer::Ok(Bytes::from_static(b"new")),
                Answer::Dropped,
                Answer::Failed("the transform answered ProcessingFailed".into())
            ]
        );
    }

    #[test]
    fn a_bad_entry_fails_only_its_record() {
        let got = answer(serde_json::json!({"records": [
            {"recordId": "0", "result": "Ok", "data": "not base64!"},
            {"recordId": "1", "result": "Ok"},
            {"recordId": "2", "result": "Maybe", "data": ""},
        ]}))
        .expect("valid as a whole");
        assert!(matches!(&got[0], Answer::Failed(m) if m.contains("not base64")));
        assert!(matches!(&got[1], Answer::Failed(m) if m.contains("without data")));
        assert!(matches!(&got[2], Answer::Failed(m) if m.contains("\"Maybe\"")));
    }

    #[test]
    fn missing_duplicate_or_unknown_ids_refuse_the_whole_answer() {
        let ok = |id: &str| serde_json::json!({"recordId": id, "result": "Dropped"});
        assert_eq!(
            answer(serde_json::json!({"records": [ok("0"), ok("2")]})),
            Err(ContractError::Missing {
                missing: 1,
                total: 3,
                first: "1".into()
            })
        );
        assert_eq!(
            answer(serde_json::json!({"records": [ok("0"), ok("1"), ok("1"), ok("2")]})),
            Err(ContractError::Duplicate("1".into()))
        );
        for unknown in ["3", "01", "x", "-1"] {
            assert_eq!(
                answer(serde_json::json!({"records": [ok("0"), ok("1"), ok("2"), ok(unknown)]})),
                Err(ContractError::Unknown(unknown.into()))
            );
        }
        assert!(matches!(
            judge(1, b"<html>"),
            Err(ContractError::NotJson(_))
        ));
        assert!(matches!(
            judge(1, br#"{"recs": []}"#),
            Err(ContractError::NotJson(_))
        ));
        let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(judge(1, &huge), Err(ContractError::TooLarge));
    }
}
