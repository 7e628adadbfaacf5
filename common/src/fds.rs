//! File descriptors: the process's limit, raised at start, and each listener's share of it.
//!
//! Every client connection is a descriptor. With the usual soft limit of 1,024 and listeners that each take
//! thousands of connections, about a thousand idle sockets on one port make `accept` fail on every listener of
//! the process, and connections to the database, S3 or Pub/Sub fail too. So binaries raise the soft limit to
//! the hard one at start ([`raise_limit`]), and [`crate::server`] keeps each listener within
//! [`listener_share`]: what the limit leaves after a reserve for everything else, split between the listeners.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors kept for what is not a client connection (outbound connections, files, the runtime), at least.
const MIN_RESERVE: u64 = 256;

/// Listeners serving in this process now (see [`crate::server::serve_with`]).
static LISTENERS: AtomicUsize = AtomicUsize::new(0);

/// The process's descriptor limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimits {
    pub soft: u64,
    pub hard: u64,
}

/// The current limits (`RLIMIT_NOFILE`); `None` if the system does not say.
pub fn limits() -> Option<FdLimits> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some(FdLimits { soft: limit.rlim_cur, hard: limit.rlim_max })
}

/// Raises the soft descriptor limit to the hard one (to `/proc/sys/fs/nr_open` when the hard one is unlimited)
/// and logs both. Call it first thing in `main`; failing to raise it is logged, not fatal.
pub fn raise_limit() -> Option<FdLimits> {
    let before = limits()?;
    let target = if before.hard == libc::RLIM_INFINITY { nr_open().unwrap_or(1 << 20) } else { before.hard };
    if before.soft < target {
        let limit = libc::rlimit { rlim_cur: target, rlim_max: before.hard };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            let err = std::io::Error::last_os_error();
            tracing::warn!(soft = before.soft, hard = before.hard, %err, "could not raise the file descriptor limit");
        }
    }
    let after = limits()?;
    tracing::info!(
        soft = after.soft,
        hard = after.hard,
        was = before.soft,
        per_listener = listener_share_of(after.soft, 1),
        "file descriptor limit"
    );
    Some(after)
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

/// Connections one listener may hold out of a soft limit of `soft` descriptors shared by `listeners`.
pub fn listener_share_of(soft: u64, listeners: usize) -> usize {
    let reserve = MIN_RESERVE.max(soft / 8);
    let share = soft.saturating_sub(reserve) / listeners.max(1) as u64;
    usize::try_from(share).unwrap_or(usize::MAX).max(1)
}

/// Connections one listener may hold now, given the current limit and the listeners serving.
pub fn listener_share() -> usize {
    let soft = limits().map_or(1024, |l| l.soft);
    listener_share_of(soft, LISTENERS.load(Ordering::Relaxed))
}

/// Counts a listener as serving until dropped.
pub(crate) struct ListenerSlot(());

impl ListenerSlot {
    pub(crate) fn take() -> Self {
        LISTENERS.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        LISTENERS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_leave_a_reserve_and_split_between_listeners() {
        assert_eq!(listener_share_of(1024, 1), 768);
        assert_eq!(listener_share_of(1024, 4), 192);
        assert_eq!(listener_share_of(1 << 20, 1), (1 << 20) - (1 << 17));
        assert_eq!(listener_share_of(100, 1), 1, "never zero");
        assert_eq!(listener_share_of(1024, 0), 768);
    }

    #[test]
    fn the_limit_is_readable() {
        let now = limits().expect("RLIMIT_NOFILE");
        assert!(now.soft <= now.hard);
    }
}
