//! Request bodies must keep moving: at least `server.body_min_rate` bytes per second, measured
//! over windows of `server.body_rate_window`. A slow but steady upload passes however long it
//! takes; a body trickled a byte at a time, or stalled, ends in an error within one window.
//!
//! Only time spent waiting for the client counts: while the handler does other work and does not
//! read the body (a storage write, say), the window is paused, so the server's own slowness never
//! fails a client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

/// The error a too-slow body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {0} bytes per second (server.body_min_rate)")]
pub struct TooSlow(pub u64);

/// The minimum rate, as a number of bytes per window.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub bytes_per_second: u64,
    pub window: Duration,
}

impl MinRate {
    /// Wraps a request body (0 bytes per second: not at all).
    pub fn wrap(self, body: Body) -> Body {
        if self.bytes_per_second == 0 {
            return body;
        }
        Body::new(Metered {
            inner: body,
            rate: self,
            received: 0,
            window_start: Instant::now(),
            last_poll: Instant::now(),
            waiting: false,
            timer: Box::pin(tokio::time::sleep(self.window)),
        })
    }
}

struct Metered {
    inner: Body,
    rate: MinRate,
    /// Bytes received in the current window.
    received: u64,
    window_start: Instant,
    last_poll: Instant,
    /// The last poll found no data: the time since then was spent waiting for the client.
    waiting: bool,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Metered {
    fn needed(&self) -> u64 {
        self.rate.bytes_per_second.saturating_mul(self.rate.window.as_secs().max(1))
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let now = Instant::now();
        // A pause in reading after data was handed over (the handler was busy elsewhere) does
        // not count against the client; a wait for data does.
        let gap = now.saturating_duration_since(self.last_poll);
        if !self.waiting && gap > Duration::from_millis(500) {
            self.window_start += gap;
        }
        self.last_poll = now;
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.waiting = polled.is_pending();
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    if self.received >= self.needed() {
                        self.received = 0;
                        self.window_start = now;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let deadline = self.window_start + self.rate.window;
                if now >= deadline {
                    return Poll::Ready(Some(Err(axum::Error::new(TooSlow(self.rate.bytes_per_second)))));
                }
                self.timer.as_mut().reset(deadline);
                let _ = self.timer.as_mut().poll(cx);
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::BodyExt;

    fn trickle(every: Duration, chunk: usize, chunks: usize) -> Body {
        let stream = futures::stream::iter(0..chunks).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; chunk]))
        });
        Body::from_stream(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_ends_and_a_steady_upload_passes() {
        let rate = MinRate { bytes_per_second: 1024, window: Duration::from_secs(10) };
        // One byte a second: stopped at the end of the first window.
        let slow = rate.wrap(trickle(Duration::from_secs(1), 1, 100)).collect().await;
        let err = slow.unwrap_err().to_string();
        assert!(err.contains("server.body_min_rate"), "{err}");
        // 16 KiB every 5 s (3.2 KiB/s), for two minutes: passes.
        let steady = rate.wrap(trickle(Duration::from_secs(5), 16 << 10, 24)).collect().await;
        assert_eq!(steady.unwrap().to_bytes().len(), 24 * (16 << 10));
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_server_spends_elsewhere_does_not_count() {
        let rate = MinRate { bytes_per_second: 1024, window: Duration::from_secs(10) };
        let mut body = rate.wrap(Body::from_stream(futures::stream::iter([
            Ok::<_, std::io::Error>(Bytes::from_static(b"a")),
            Ok(Bytes::from_static(b"b")),
        ])));
        assert!(body.frame().await.unwrap().is_ok());
        // The handler is busy for a minute, then reads on: the client is not blamed.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(body.frame().await.unwrap().is_ok());
    }
}
