//! Decoding of Kinesis records: KPL de-aggregation, gzip, CloudWatch Logs envelopes, raw bytes.
