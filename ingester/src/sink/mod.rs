//! Sinks: batching, delivery with retries, acknowledgement, and the dead-letter file.
