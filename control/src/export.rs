//! Exports: a recording or a time range as one file to hand over.
//!
//! - `.ts`: the recorded segments one after the other, exactly as stored (the manifest's offsets and hashes check
//!   it), streamed segment by segment with its length known up front.
//! - `.mp4`: the same segments remuxed without transcoding by an `ffmpeg -c copy` child process into fragmented
//!   MP4 (`empty_moov`: a browser starts playing before the download ends). ffmpeg reads the segments on its
//!   standard input, one at a time, and its output goes to the client as it comes, so neither side holds the
//!   file. Bounded: a number of exports per replica (503 with `Retry-After` past it), a wall-clock limit, and an
//!   address-space limit on the child. Timestamps that jump at encoder restarts are made continuous by ffmpeg's
//!   MPEG-TS discontinuity handling.

use std::{io, pin::Pin, process::Stdio, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use livemix_common::{
    model::Segment,
    store::{SharedStore, StoreError},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    process::{Child, ChildStdin, Command},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::{io::ReaderStream, task::AbortOnDropHandle};

use crate::{config::ArchiveSettings, domain::Error, segments::LoadError};

/// The bytes of an export as they are produced; an `Err` ends the download short.
pub type ExportBody = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Segments read from the store ahead of the one being sent.
const READ_AHEAD: usize = 2;
/// Seconds a refused export is told to wait.
const BUSY_RETRY_SECS: u32 = 5;
/// The tail of ffmpeg's standard error kept for the log.
const STDERR_TAIL: usize = 4096;

#[derive(Clone)]
pub struct Exporter {
    store: SharedStore,
    settings: Arc<ArchiveSettings>,
    slots: Arc<Semaphore>,
}

impl Exporter {
    pub fn new(store: SharedStore, settings: Arc<ArchiveSettings>) -> Self {
        let slots = Arc::new(Semaphore::new(settings.export_concurrency as usize));
        Self { store, settings, slots }
    }

    /// The segments one after the other, and how many bytes that is.
    pub fn ts(&self, segments: Vec<Segment>) -> (u64, ExportBody) {
        let length = segments.iter().map(|s| u64::try_from(s.size).unwrap_or(0)).sum();
        (length, Box::pin(self.read(segments)))
    }

    /// The segments remuxed into fragmented MP4 by ffmpeg. `Busy` when every export slot is taken,
    /// `Unavailable` when ffmpeg cannot be started.
    pub async fn mp4(&self, mut segments: Vec<Segment>) -> Result<ExportBody, Error> {
        let permit = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| Error::Busy {
            message: format!(
                "all {} MP4 export slots of this replica are in use (LIVEMIX_EXPORT_CONCURRENCY); retry shortly",
                self.settings.export_concurrency
            ),
            retry_after_secs: BUSY_RETRY_SECS,
        })?;
        // The first segment says the video codec before ffmpeg starts: H.265 is tagged `hvc1`, the tag Apple's
        // players require (ffmpeg's default, `hev1`, plays elsewhere only).
        let rest = segments.split_off(1.min(segments.len()));
        let first = match segments.first() {
            Some(segment) => Some(self.store.get(&segment.uri).await.map_err(|err| match err {
                StoreError::NotFound { key } => LoadError::Missing(key),
                other => LoadError::Store(Arc::new(other)),
            })?),
            None => None,
        };
        let hevc = first.as_deref().and_then(video_stream_type) == Some(STREAM_TYPE_HEVC);
        let mut child = self.ffmpeg(hevc).spawn().map_err(|err| {
            Error::Unavailable(format!(
                "MP4 export needs ffmpeg ({}), which could not be started: {err}; the .ts export works without it",
                self.settings.ffmpeg.display()
            ))
        })?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::Unavailable("ffmpeg started without its pipes".into()));
        };
        let segments_count = rest.len() + usize::from(first.is_some());
        let input = stream::iter(first.map(Ok)).chain(self.read(rest));
        let feeder = AbortOnDropHandle::new(tokio::spawn(feed(input, stdin)));
        let stderr = AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tail = Vec::new();
            let mut chunk = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&chunk[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL);
                tail.drain(..excess);
            }
            String::from_utf8_lossy(&tail).into_owned()
        }));
        let timeout = Duration::from_secs(u64::try_from(self.settings.export_timeout_secs).unwrap_or(u64::MAX));
        tracing::info!(segments = segments_count, hevc, "MP4 export started");
        let running = Running {
            stdout: ReaderStream::new(stdout),
            child,
            deadline: Instant::now()
                .checked_add(timeout)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
            _permit: permit,
            _feeder: feeder,
            stderr: Some(stderr),
            done: false,
        };
        Ok(Box::pin(stream::unfold(running, Running::next)))
    }

    /// The segments' bytes from the object store, in order, a few read ahead.
    fn read(&self, segments: Vec<Segment>) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let store = self.store.clone();
        stream::iter(segments)
            .map(move |segment| {
                let store = store.clone();
                async move {
                    store.get(&segment.uri).await.map_err(|err| {
                        tracing::warn!(key = %segment.uri, %err, "export: reading a segment failed; the file ends here");
                        io::Error::other(err)
                    })
                }
            })
            .buffered(READ_AHEAD)
    }

    fn ffmpeg(&self, hevc: bool) -> Command {
        let mut command = Command::new(&self.settings.ffmpeg);
        command
            .args(["-hide_banner", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0"])
            // Video and audio when present; data streams (ID3, KLV) have no place in MP4.
            .args(["-map", "0:v?", "-map", "0:a?", "-c", "copy"])
            // ADTS framing (how MPEG-TS carries AAC) becomes the MP4 audio config; ffmpeg 5 does not do it itself.
            .args(["-bsf:a", "aac_adtstoasc"]);
        if hevc {
            command.args(["-tag:v", "hvc1"]);
        }
        command
            // Fragmented: written front to back, playable while it downloads.
            .args(["-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "pipe:1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let memory = u64::try_from(self.settings.export_memory_bytes).unwrap_or(0);
        if memory > 0 {
            // SAFETY: `setrlimit` is async-signal-safe and the closure allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit { rlim_cur: memory as libc::rlim_t, rlim_max: memory as libc::rlim_t };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        command
    }
}

/// MPEG-TS `stream_type` of H.265 video (ISO/IEC 13818-1, table 2-34); H.264 is 0x1B.
const STREAM_TYPE_HEVC: u8 = 0x24;
const TS_PACKET: usize = 188;

/// The `stream_type` of the first video stream the segment's program map lists (0x1B H.264, 0x24 H.265...), read
/// from its PAT and PMT; `None` when the segment has none in the packets it starts with.
fn video_stream_type(data: &[u8]) -> Option<u8> {
    let mut pmt_pid = None;
    for packet in data.chunks_exact(TS_PACKET).take(64) {
        if packet[0] != 0x47 || packet[1] & 0x40 == 0 {
            continue; // not in sync, or no section starts here
        }
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        let payload = match (packet[3] >> 4) & 0x3 {
            1 => packet.get(4..)?,
            3 => packet.get(5 + usize::from(packet[4])..)?,
            _ => continue,
        };
        let section = payload.get(1 + usize::from(*payload.first()?)..)?;
        let length = (usize::from(*section.get(1)? & 0x0f) << 8) | usize::from(*section.get(2)?);
        // The section's body, without its 3-byte header and 4-byte CRC.
        let body = section.get(3..(3 + length).checked_sub(4)?)?;
        match (pid, section[0]) {
            (0, 0x00) => {
                // PAT: the first program's map (program 0 is the network information table).
                pmt_pid = body
                    .get(5..)?
                    .chunks_exact(4)
                    .find(|p| p[0] != 0 || p[1] != 0)
                    .map(|p| (u16::from(p[2] & 0x1f) << 8) | u16::from(p[3]));
            }
            (pid, 0x02) if Some(pid) == pmt_pid => {
                let info_length = (usize::from(*body.get(7)? & 0x0f) << 8) | usize::from(*body.get(8)?);
                let mut streams = body.get(9 + info_length..)?;
                while streams.len() >= 5 {
                    let stream_type = streams[0];
                    if matches!(stream_type, 0x01 | 0x02 | 0x10 | 0x1b | 0x24) {
                        return Some(stream_type);
                    }
                    let es_info = (usize::from(streams[3] & 0x0f) << 8) | usize::from(streams[4]);
                    streams = streams.get(5 + es_info..)?;
                }
                return None;
            }
            _ => {}
        }
    }
    None
}

/// Writes the segments into ffmpeg's standard input; closing it ends the file. A failed read ends it early.
async fn feed(segments: impl Stream<Item = io::Result<Bytes>>, mut stdin: ChildStdin) {
    let mut segments = std::pin::pin!(segments);
    while let Some(Ok(data)) = segments.next().await {
        if let Err(err) = stdin.write_all(&data).await {
            // ffmpeg is gone (it failed, or the download was dropped): its exit status tells why.
            tracing::debug!(%err, "export: ffmpeg stopped reading");
            return;
        }
    }
    drop(stdin);
}

/// One MP4 export in progress: owns the child (killed when dropped), its slot and the feeder.
struct Running {
    stdout: ReaderStream<tokio::process::ChildStdout>,
    child: Child,
    deadline: Instant,
    _permit: OwnedSemaphorePermit,
    _feeder: AbortOnDropHandle<()>,
    stderr: Option<AbortOnDropHandle<String>>,
    done: bool,
}

impl Running {
    async fn next(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        match tokio::time::timeout_at(self.deadline, self.stdout.next()).await {
            Ok(Some(chunk)) => Some((chunk, self)),
            Ok(None) => {
                self.done = true;
                let status = self.child.wait().await;
                let stderr = match self.stderr.take() {
                    Some(task) => task.await.unwrap_or_default(),
                    None => String::new(),
                };
                match status {
                    Ok(status) if status.success() => {
                        tracing::info!("MP4 export finished");
                        None
                    }
                    other => {
                        tracing::error!(status = ?other, stderr = %stderr.trim(), "MP4 export: ffmpeg failed; the file ends short");
                        Some((Err(io::Error::other("ffmpeg failed")), self))
                    }
                }
            }
            Err(_) => {
                self.done = true;
                if let Err(err) = self.child.start_kill() {
                    tracing::warn!(%err, "could not kill an export's ffmpeg");
                }
                tracing::error!("MP4 export took longer than LIVEMIX_EXPORT_TIMEOUT; stopped, the file ends short");
                Some((Err(io::Error::new(io::ErrorKind::TimedOut, "export timed out")), self))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_program_map_names_the_video_codec() {
        let (_, segment) = &livemix_testkit::media::ffmpeg_segments().await[0];
        assert_eq!(video_stream_type(segment), Some(0x1b), "ffmpeg's libx264 test segments");
        // Garbage, truncation and silence never panic and find nothing.
        for bad in [&b""[..], &[0x47; 188][..], &[0u8; 1000][..], &segment[..187], &segment[..200]] {
            let _ = video_stream_type(bad);
        }
        assert_eq!(video_stream_type(&[0u8; 188 * 4]), None);
    }
}
