//! `Retry-After` of a refused request (a 429 or 503 from OpenSearch or an HTTP endpoint): read from the response and honoured, within a bound, by the pipeline's retry delay.

use std::time::Duration;

use super::SinkError;

/// The longest wait a `Retry-After` may impose; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The wait a `Retry-After` value asks for at `now` (RFC 9110: delay-seconds or an HTTP date);
/// `None` when it is neither. A date already past asks for no wait.
pub fn parse(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = now.duration_until(at);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// The `Retry-After` of a response's headers, if there is a readable one.
pub fn from_headers(
    headers: &reqwest::header::HeaderMap,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse(value, now)
}

/// The wait before retrying after `error`: `backoff`, or what the destination asked for with
/// `Retry-After` when that is longer (at most [`MAX_RETRY_AFTER`]).
pub fn retry_delay(error: &SinkError, backoff: Duration) -> Duration {
    match error.retry_after() {
        Some(asked) => backoff.max(asked.min(MAX_RETRY_AFTER)),
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::{FutureExt, future::BoxFuture};
    use kinesis_ingester_api::sequence::Position;
    use tokio::{sync::mpsc, time::Instant};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{
        record::Chunk,
        sink::{
            Batch, BatchLimits, Destination, Encoding, SinkPipeline, SinkStats,
            ndjson::tests::record,
        },
    };

    #[test]
    fn seconds_and_http_dates_are_read_and_garbage_is_not() {
        let now: jiff::Timestamp = "2015-10-21T07:27:00Z".parse().expect("time");
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date past is no wait"
        );
        for bad in ["", "-5", "1.5", "soon"] {
            assert_eq!(parse(bad, now), None, "{bad:?}");
        }
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(from_headers(&headers, now), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("value"));
        assert_eq!(from_headers(&headers, now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn the_delay_is_the_longer_of_the_backoff_and_the_bounded_retry_after() {
        let status = |retry_after| SinkError::Status {
            status: 429,
            body: String::new(),
            retry_after,
        };
        let ms = Duration::from_millis;
        assert_eq!(retry_delay(&status(None), ms(40)), ms(40));
        assert_eq!(retry_delay(&status(Some(ms(3000))), ms(40)), ms(3000));
        assert_eq!(retry_delay(&status(Some(ms(10))), ms(40)), ms(40));
        assert_eq!(
            retry_delay(&status(Some(Duration::from_secs(86_400))), ms(40)),
            MAX_RETRY_AFTER
        );
        assert_eq!(retry_delay(&SinkError::Config("x".into()), ms(40)), ms(40));
    }

    /// Answers 429 with `Retry-After: 1` once, then accepts; notes when each attempt came.
    struct Throttling(Arc<Mutex<Vec<Instant>>>);

    impl Destination for Throttling {
        fn send<'a>(&'a mut self, _batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
            let mut attempts = self.0.lock().expect("attempts");
            attempts.push(Instant::now());
            let result = if attempts.len() == 1 {
                Err(SinkError::Status {
                    status: 429,
                    body: "slow down".into(),
                    retry_after: Some(Duration::from_secs(1)),
                })
            } else {
                Ok(())
            };
            async move { result }.boxed()
        }
    }

    #[tokio::test]
    async fn a_429_is_retried_no_sooner_than_its_retry_after() {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let limits = BatchLimits {
            max_records: 10,
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let pipeline = SinkPipeline::new(
            Box::new(Throttling(attempts.clone())),
            limits,
            Encoding::Ndjson,
            Arc::new(|_: &str, _: &Position| {}),
            CancellationToken::new(),
            Arc::new(SinkStats::default()),
        )
        // Without Retry-After the retry would come within 5 ms.
        .with_backoff(kinesis_client::backoff::Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(5),
        ));
        let (tx, rx) = mpsc::channel(1);
        tx.send(Chunk {
            records: vec![record("a", 1, b"x")],
            shard_id: "a".into(),
            generation: 0,
            checkpoint: Position::whole("1".parse().expect("seq")),
        })
        .await
        .expect("send");
        drop(tx);
        pipeline.run(rx).await.expect("delivered");
        let attempts = attempts.lock().expect("attempts").clone();
        assert_eq!(attempts.len(), 2);
        let waited = attempts[1] - attempts[0];
        assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    }
}
