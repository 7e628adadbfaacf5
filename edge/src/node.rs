//! The edge node's core: ingesting playlists, keeping in step with the control node, and handing segments to
//! the forwarder and the recorder.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use chrono::Utc;
use livemix_common::{
    bus::Delivery,
    hls::{HlsError, parse_media_playlist},
    messages::Message,
    model::Recording,
    rpc::respond,
    segment_id::SegmentId,
};
use reqwest::StatusCode;
use serde::Serialize;
use ulid::Ulid;
use uuid::Uuid;

use crate::{
    cache::{EdgeCache, Segment},
    config::EdgeSettings,
    control_client::{ControlClient, ControlError},
    fetch::{FetchError, Fetcher, SegmentSource, check_segment_uri},
    forwarder::Forwarder,
    recorder::Recorder,
    sources::Sources,
};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Playlist(#[from] HlsError),
    #[error("{0}")]
    UnknownSource(String),
    #[error("cannot look up source {name:?}: {source}")]
    ControlUnavailable { name: String, source: ControlError },
}

/// What one playlist brought.
#[derive(Debug, Default, Serialize)]
pub struct IngestReport {
    pub source_id: Option<Uuid>,
    pub new_segments: Vec<String>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub segment: String,
    pub reason: String,
}

/// The run of this edge process: `Sources` numbers a source's segments from 0 in each process and never
/// repeats a number within one, so (source, process run, seq) is unique per segment.
// Interim, until `cache::Segment` carries the `SegmentId` decided at ingest (encoder runs).
static PROCESS_RUN: LazyLock<Ulid> = LazyLock::new(Ulid::new);

fn segment_id(source: Uuid, segment: &Segment) -> SegmentId {
    SegmentId { source, run: *PROCESS_RUN, seq: segment.seq }
}

pub struct Edge {
    pub settings: EdgeSettings,
    pub edge_id: String,
    pub control: ControlClient,
    pub cache: EdgeCache,
    pub sources: Arc<Sources>,
    pub fetcher: Fetcher,
    pub forwarder: Arc<Forwarder>,
    pub recorder: Recorder,
    pub bus: livemix_common::bus::SharedBus,
    /// The last status report reached the control node.
    pub control_ok: AtomicBool,
    /// The command subscription is up.
    pub bus_ok: AtomicBool,
}

impl Edge {
    /// Finds the control node's id for a source name, asking the control node on first sight.
    pub async fn resolve(&self, name: &str) -> Result<Uuid, IngestError> {
        if let Some(id) = self.sources.id_of(name) {
            return Ok(id);
        }
        match self.control.find_source(name).await {
            Ok(source) => {
                self.sources.register(name, source.id, false);
                tracing::info!(source = name, id = %source.id, "now serving source");
                // Learn the wanted state (streaming, recordings) right away rather than at the next report.
                self.report(name, source.id).await;
                Ok(source.id)
            }
            Err(ControlError::Refused { status: StatusCode::NOT_FOUND, message, .. }) => {
                Err(IngestError::UnknownSource(message))
            }
            Err(source) => Err(IngestError::ControlUnavailable { name: name.to_owned(), source }),
        }
    }

    /// Ingests one playlist: every listed segment not seen before is fetched, cached, forwarded while streaming
    /// and recorded while a recording covers it.
    #[tracing::instrument(skip(self, from, body), fields(source = name))]
    pub async fn ingest_playlist(
        &self,
        name: &str,
        from: &SegmentSource,
        body: &[u8],
    ) -> Result<IngestReport, IngestError> {
        let playlist = parse_media_playlist(body)?;
        for listed in &playlist.segments {
            check_segment_uri(&listed.uri)?;
        }
        let source_id = self.resolve(name).await?;
        let restarted = self.sources.observe_media_sequence(name, playlist.media_sequence);
        if restarted {
            tracing::info!(source = name, "encoder restarted (media sequence went back); segment names start over");
        }
        let mut report = IngestReport { source_id: Some(source_id), ..IngestReport::default() };
        // Segments new to this edge end at "now" (the encoder posts a playlist once its newest segment is
        // complete), so walk back from the newest to date them when the encoder gives no PROGRAM-DATE-TIME.
        let now = Utc::now();
        let mut end = now;
        let mut dated = Vec::with_capacity(playlist.segments.len());
        for listed in playlist.segments.iter().rev() {
            let start = listed
                .program_date_time
                .unwrap_or_else(|| end - chrono::Duration::milliseconds((listed.duration_secs * 1000.0) as i64));
            dated.push((listed, start));
            end = start;
        }
        dated.reverse();
        let last = dated.len().saturating_sub(1);
        for (index, (listed, start_ts)) in dated.into_iter().enumerate() {
            let Some(seq) = self.sources.claim(name, &listed.uri) else { continue };
            let data = match self.fetcher.fetch(from, name, &listed.uri, index == last).await {
                Ok(data) => data,
                Err(err) => {
                    self.sources.unclaim(name, &listed.uri);
                    tracing::warn!(segment = %listed.uri, %err, "segment skipped");
                    report.skipped.push(Skipped { segment: listed.uri.clone(), reason: err.to_string() });
                    continue;
                }
            };
            let segment = Arc::new(Segment {
                source_name: name.to_owned(),
                name: listed.uri.clone(),
                seq,
                start_ts,
                duration_secs: listed.duration_secs,
                // The first new segment after an encoder restart does not continue the previous one.
                discontinuity: listed.discontinuity || (restarted && report.new_segments.is_empty()),
                data,
                cached_at: Instant::now(),
            });
            self.cache.insert(Arc::clone(&segment));
            if self.sources.streaming(name) {
                self.forwarder.enqueue(source_id, Arc::clone(&segment));
            }
            self.recorder.record(
                segment_id(source_id, &segment),
                Arc::clone(&segment),
                self.sources.recordings_covering(name, segment.midpoint()),
            );
            tracing::debug!(segment = %segment.name, seq, bytes = segment.data.len(), "segment ingested");
            report.new_segments.push(listed.uri.clone());
        }
        Ok(report)
    }

    /// Reports one source's status and applies the wanted state from the reply.
    pub async fn report(&self, name: &str, id: Uuid) {
        match self.control.report_status(id, &self.edge_id).await {
            Ok(reply) => {
                self.control_ok.store(true, Ordering::Relaxed);
                let changes = self.sources.apply(name, &reply);
                if changes.streaming_changed {
                    tracing::info!(source = name, streaming = reply.source.streaming, "streaming state from control");
                }
                for recording in changes.started {
                    tracing::info!(source = name, recording = %recording.id, "recording learned from status reply");
                    self.backfill(name, id, &recording);
                }
                for recording in changes.stopped {
                    tracing::info!(source = name, %recording, "recording no longer active at control; stopped");
                }
            }
            Err(ControlError::Refused { status: StatusCode::NOT_FOUND, .. }) => {
                tracing::warn!(source = name, "source was deleted at the control node; forgetting it");
                self.sources.forget(name);
            }
            Err(err) => {
                self.control_ok.store(false, Ordering::Relaxed);
                tracing::warn!(source = name, %err, "status report failed");
            }
        }
    }

    /// Uploads the cached segments a newly started recording covers.
    fn backfill(&self, name: &str, id: Uuid, recording: &Recording) {
        let mut count = 0;
        for segment in self.cache.all(name) {
            let midpoint = segment.midpoint();
            if recording.start_ts <= midpoint && recording.end_ts.is_none_or(|end| midpoint < end) {
                self.recorder.record(segment_id(id, &segment), segment, vec![recording.id.clone()]);
                count += 1;
            }
        }
        tracing::info!(source = name, recording = %recording.id, segments = count, "back-filled from the edge cache");
    }

    /// Reports every source, every few seconds; also expires old cache entries and stopped recordings.
    pub async fn report_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.report_interval());
        loop {
            tick.tick().await;
            for (name, id) in self.sources.names_and_ids() {
                self.report(&name, id).await;
            }
            let (purged, remain) = self.cache.purge_expired();
            if purged > 0 {
                tracing::info!(purged, remain, "purged expired segments from the edge cache");
            }
            let window =
                chrono::Duration::from_std(self.settings.tracking_window()).unwrap_or(chrono::Duration::hours(1));
            self.sources.prune_recordings(Utc::now() - window);
        }
    }

    /// Carries out the control node's commands and answers each one.
    pub async fn command_loop(self: Arc<Self>, mut commands: tokio::sync::mpsc::Receiver<Delivery>) {
        self.bus_ok.store(true, Ordering::Relaxed);
        while let Some(delivery) = commands.recv().await {
            let result = self.command(&delivery.envelope.body);
            if let Err(err) = &result {
                tracing::warn!(kind = delivery.envelope.kind(), %err, "command refused");
            }
            if let Err(err) = respond(&self.bus, &delivery.envelope, result).await {
                tracing::warn!(%err, "could not answer a command");
            }
            delivery.ack();
        }
        self.bus_ok.store(false, Ordering::Relaxed);
        tracing::error!("command subscription closed");
    }

    fn command(&self, body: &Message) -> Result<(), String> {
        match body {
            Message::ChangeStreamState { source_id, new_state } => {
                let name = self
                    .sources
                    .set_streaming(*source_id, *new_state)
                    .ok_or_else(|| format!("source {source_id} is not served by this edge"))?;
                tracing::info!(source = %name, streaming = new_state, "streaming state changed by command");
                Ok(())
            }
            Message::StartRecording { recording } => {
                if let Some(name) = self.sources.start_recording(recording) {
                    tracing::info!(source = %name, recording = %recording.id, "recording started by command");
                    self.backfill(&name, recording.source, recording);
                } else if self.sources.name_of(recording.source).is_none() {
                    return Err(format!("source {} is not served by this edge", recording.source));
                }
                Ok(())
            }
            Message::StopRecording { recording_id, end_ts } => {
                if self.sources.stop_recording(recording_id, *end_ts) {
                    tracing::info!(recording = %recording_id, "recording stopped by command");
                }
                Ok(())
            }
            other => Err(format!("{} is not a command for edges", other.kind())),
        }
    }
}
