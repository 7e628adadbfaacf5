//! Process-wide allocator settings.
//!
//! Both nodes hold segments: blocks of a few hundred KB that live from seconds to a minute. glibc maps blocks
//! that large on their own at first, but each time one is freed it raises its mmap threshold to that block's size
//! (up to 32 MiB), and from then on segments come from the heap arenas, where a small long-lived allocation
//! between freed segments keeps their memory from going back to the OS. In a 10-minute fleet bench the edge's
//! RSS crept from its 512 MiB cache budget to 592 MiB that way. A fixed threshold keeps every segment-sized
//! block in a mapping of its own, unmapped when the segment is dropped.

/// Blocks of at least this many bytes get a mapping of their own (glibc's default before it adapts).
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Applies the settings above; call once, first thing in `main`. A no-op where the allocator is not glibc's.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a parameter of the allocator, under its own lock; no memory is touched.
        let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) };
        if applied != 1 {
            eprintln!("warning: could not set glibc's mmap threshold; segment memory may be returned late");
        }
    }
}
