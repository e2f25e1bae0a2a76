//! Deadlines for futures: the one primitive behind "never hangs".
//!
//! Every wait in the program (a client's request head, a write to a slow reader, a whole probe)
//! goes through [`at`], so each has a point in time after which it is abandoned.

use std::future::Future;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures_lite::future;

/// Runs `fut` until `deadline`; `None` when the deadline came first (and `fut` is dropped).
pub async fn at<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::at(deadline).await;
        None
    })
    .await
}

/// `now + after`; `now` itself if that overflows (no accepted setting comes near).
pub fn after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after).unwrap_or(now)
}
