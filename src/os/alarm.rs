//! A one-shot alarm on a timerfd, which the reactor watches like a socket.
//!
//! The deadline wheel's ticker ([`crate::deadline`]) sleeps on it rather than on a
//! `smol::Timer`. async-io keeps its timers in an ordered map that it splits at every wake-up of
//! the reactor, one allocation each time while any timer is set: two per request at one
//! connection, since a keep-alive deadline is always pending. A timerfd is one more descriptor
//! for the reactor, and costs a `timerfd_settime` only when the ticker re-arms it.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::time::Timespec;
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
};
use smol::Async;

/// A timerfd on the monotonic clock (the clock of [`Instant`]).
#[derive(Debug)]
pub(crate) struct Alarm {
    fd: Async<OwnedFd>,
}

impl Alarm {
    /// A disarmed alarm.
    pub(crate) fn new() -> io::Result<Self> {
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let fd = timerfd_create(TimerfdClockId::Monotonic, flags)?;
        Ok(Self {
            fd: Async::new_nonblocking(fd)?,
        })
    }

    /// Rings at `at`, or at once if it has passed; replaces the previous setting.
    pub(crate) fn set(&self, at: Instant) -> io::Result<()> {
        // A zero value would disarm it: the earliest is one nanosecond from now.
        let after = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // Past what a timespec holds (centuries): as late as it holds.
        let value = Timespec::try_from(after).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let spec = Itimerspec {
            it_interval: zero,
            it_value: value,
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        Ok(())
    }

    /// Waits until it rings (and takes the ring, so that the next wait waits for the next one).
    pub(crate) async fn rung(&self) -> io::Result<()> {
        let mut expirations = [0u8; 8];
        self.fd
            .read_with(|fd| Ok(rustix::io::read(fd, &mut expirations)?))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_at_its_time_and_once() {
        let alarm = Alarm::new().unwrap();
        let started = Instant::now();
        alarm.set(started + Duration::from_millis(50)).unwrap();
        smol::block_on(alarm.rung()).unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        // Re-armed in the past: rings at once.
        alarm.set(started).unwrap();
        smol::block_on(alarm.rung()).unwrap();
        // Not re-armed: no second ring.
        let again = smol::block_on(smol::future::or(
            async { alarm.rung().await.map(|()| true) },
            async {
                smol::Timer::after(Duration::from_millis(100)).await;
                Ok(false)
            },
        ));
        assert!(!again.unwrap());
    }
}
