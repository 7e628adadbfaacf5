//! The edge node's core: ingesting playlists, keeping in step with the control node, and handing segments to
//! the forwarder and the recorder.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use livemix_common::{
    bus::{Delivery, SharedBus},
    hls::{HlsError, parse_media_playlist},
    messages::Message,
    model::Recording,
    rpc::respond,
    segment::SegmentRecord,
    supervise::{Supervisor, TaskStatus},
};
use serde::Serialize;
use tokio::{sync::mpsc::Receiver, task::JoinHandle};
use uuid::Uuid;

use crate::{
    auth::Grant,
    cache::{ByteBudget, CachedSegment, EdgeCache},
    config::EdgeSettings,
    control_client::{ControlClient, ControlError},
    fetch::{FetchError, Fetcher, Scope, SegmentSource, check_segment_uri},
    fetch_allow::{FetchAllow, SourceFetchAllow},
    forwarder::Forwarder,
    identity::{Span, length_ms},
    recorder::Recorder,
    sources::{SourceView, Sources},
    timing,
    uploads::{PUSH_GRACE, Uploads},
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
    ControlUnavailable { name: String, source: Box<ControlError> },
    /// None of the playlist's new segments could be read (422); each one's reason is generic.
    #[error("{0}")]
    NothingRead(String),
    /// The byte budget has no room for another pushed segment (507).
    #[error("{0}")]
    Full(String),
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

/// The sources this edge serves, as `GET /v1/source` shows them.
#[derive(Debug, Serialize)]
pub struct EdgeView {
    pub edge_id: String,
    pub sources: Vec<SourceView>,
}

/// What readiness is made of.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// The last status report reached the control node (or no source needed one yet).
    pub control: bool,
    /// The command subscription is up.
    pub bus: bool,
    /// Every supervised task, running or not.
    pub tasks: Vec<TaskStatus>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.control && self.bus && self.tasks.iter().all(|t| t.up)
    }
}

/// The pieces the edge is built from, for [`Edge::new`].
pub struct Parts {
    pub settings: EdgeSettings,
    pub control: ControlClient,
    pub sources: Arc<Sources>,
    pub fetcher: Fetcher,
    pub forwarder: Arc<Forwarder>,
    pub recorder: Recorder,
    pub bus: SharedBus,
    pub supervisor: Supervisor,
}

pub struct Edge {
    settings: EdgeSettings,
    edge_id: String,
    control: ControlClient,
    cache: EdgeCache,
    sources: Arc<Sources>,
    fetcher: Fetcher,
    /// `--fetch-allow`, for checking `http(s)://` prefixes before anything is fetched.
    fetch_allow: FetchAllow,
    /// `--source-fetch-allow`: the hosts a source's own token may name, on top of `--fetch-allow`.
    source_fetch_allow: SourceFetchAllow,
    uploads: Uploads,
    forwarder: Arc<Forwarder>,
    recorder: Recorder,
    bus: SharedBus,
    supervisor: Supervisor,
    /// The last status report reached the control node.
    control_ok: AtomicBool,
    /// The command subscription is up.
    bus_ok: AtomicBool,
}

impl Edge {
    pub fn new(parts: Parts) -> Arc<Self> {
        let Parts { settings, control, sources, fetcher, forwarder, recorder, bus, supervisor } = parts;
        let budget = Arc::new(ByteBudget::new(settings.cache_bytes));
        Arc::new(Self {
            edge_id: settings.edge_id(),
            cache: EdgeCache::new(Arc::clone(&budget), settings.tracking_window()),
            // `serve` refused bad lists at start-up already.
            fetch_allow: settings.fetch_allow().unwrap_or_default(),
            source_fetch_allow: settings.source_fetch_allow().unwrap_or_default(),
            settings,
            control,
            sources,
            fetcher,
            uploads: Uploads::new(budget),
            forwarder,
            recorder,
            bus,
            supervisor,
            control_ok: AtomicBool::new(false),
            bus_ok: AtomicBool::new(false),
        })
    }

    /// Starts the supervised command and report loops; `commands` is the subscription taken at start-up (later
    /// attempts subscribe again).
    pub fn start(self: &Arc<Self>, commands: Receiver<Delivery>) {
        let edge = Arc::clone(self);
        let mut first = Some(commands);
        self.supervisor.spawn("command_loop", move || {
            let (edge, first) = (Arc::clone(&edge), first.take());
            async move {
                let commands = match first {
                    Some(commands) => commands,
                    None => match edge.bus.subscribe(&edge.edge_id).await {
                        Ok(commands) => commands,
                        Err(err) => {
                            tracing::warn!(%err, subscription = edge.edge_id, "cannot subscribe to commands");
                            return;
                        }
                    },
                };
                edge.command_loop(commands).await;
            }
        });
        let edge = Arc::clone(self);
        self.supervisor.spawn("report_loop", move || Arc::clone(&edge).report_loop());
    }

    /// Where a playlist of `source` is read from, per its `MPEG-TS-URI-Prefix`: when the source's own token
    /// (`grant`) sent it, only from that source's directory and hosts (see [`crate::auth`]).
    pub fn segment_source(&self, prefix: &str, source: &str, grant: Grant) -> Result<SegmentSource, IngestError> {
        let scope = match grant {
            Grant::Open | Grant::Edge => Scope::Edge,
            // The preview token never passes the ingest door; were it to, it would get the narrow rules.
            Grant::Source | Grant::Preview => Scope::Source { name: source, allow: self.source_fetch_allow.of(source) },
        };
        Ok(SegmentSource::from_prefix(prefix, self.settings.file_root.as_deref(), &self.fetch_allow, scope)?)
    }

    pub fn max_playlist_bytes(&self) -> usize {
        self.settings.max_playlist_bytes
    }

    pub fn max_segment_bytes(&self) -> usize {
        self.settings.max_segment_bytes
    }

    /// Keeps a segment ffmpeg uploaded until the playlist that lists it arrives. Segments of sources the control
    /// node does not know are refused now, rather than buffered for a playlist that will fail.
    pub async fn accept_upload(&self, source: &str, file: &str, data: Bytes) -> Result<(), IngestError> {
        self.resolve(source).await?;
        self.uploads.put(source, file, data).map_err(|full| IngestError::Full(full.to_string()))?;
        self.cache.make_room();
        Ok(())
    }

    /// The newest cached segments of a source for the local preview, and the preview's media sequence.
    pub fn preview(&self, source: &str) -> (u64, Vec<Arc<CachedSegment>>) {
        self.cache.newest(source, self.settings.preview_segments.max(1))
    }

    /// A cached segment of a source, by name (the newest, when a restarted encoder reused the name).
    pub fn cached_segment(&self, source: &str, name: &str) -> Option<Arc<CachedSegment>> {
        self.cache.get(source, name)
    }

    pub fn view(&self) -> EdgeView {
        EdgeView { edge_id: self.edge_id.clone(), sources: self.sources.view() }
    }

    pub fn readiness(&self) -> Readiness {
        Readiness {
            control: self.control_ok.load(Ordering::Relaxed) || self.sources.names_and_ids().is_empty(),
            bus: self.bus_ok.load(Ordering::Relaxed),
            tasks: self.supervisor.tasks(),
        }
    }

    /// Finds the control node's id for a source name, asking the control node on first sight.
    async fn resolve(&self, name: &str) -> Result<Uuid, IngestError> {
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
            Err(err) if err.is_not_found() => Err(IngestError::UnknownSource(err.message())),
            Err(source) => Err(IngestError::ControlUnavailable { name: name.to_owned(), source: Box::new(source) }),
        }
    }

    /// Ingests one playlist: every listed segment not seen before gets its identity, is read, cached, forwarded
    /// while streaming and recorded while a recording covers it. Only the newest `--max-playlist-entries` are
    /// considered, and reading them stops at `--ingest-deadline-secs` (the rest wait for the next playlist), so
    /// a long playlist or a host that never answers cannot hold the request.
    #[tracing::instrument(skip(self, from, body), fields(source = name))]
    pub async fn ingest_playlist(
        &self,
        name: &str,
        from: &SegmentSource,
        body: &[u8],
    ) -> Result<IngestReport, IngestError> {
        let received_at = Utc::now();
        let playlist = parse_media_playlist(body)?;
        for listed in &playlist.segments {
            check_segment_uri(&listed.uri)?;
        }
        let source_id = self.resolve(name).await?;
        if self.sources.observe_playlist(name, playlist.media_sequence, playlist.last_sequence()) {
            tracing::info!(source = name, "encoder restarted (its playlist went back); a new run starts");
        }
        let mut report = IngestReport { source_id: Some(source_id), ..IngestReport::default() };
        let newest = playlist.segments.len().saturating_sub(1);
        let considered = playlist.segments.len().saturating_sub(self.settings.max_playlist_entries.max(1));
        let starts = timing::start_times(&playlist, received_at);
        let mut spooling = Vec::new();
        let deadline = tokio::time::Instant::now() + self.settings.ingest_deadline();
        for (index, ((seq, listed), start_ts)) in playlist.numbered().zip(starts).enumerate().skip(considered) {
            let span = Span { start_ts, length_ms: length_ms(listed.duration_secs) };
            let Some(claim) = self.sources.claim(name, seq, &listed.uri, listed.discontinuity, span) else { continue };
            let read = tokio::time::timeout_at(deadline, self.read_segment(from, name, &listed.uri, index == newest));
            let read = read.await.unwrap_or_else(|_| {
                Err(FetchError::Unavailable("the ingest deadline passed before it was read".into()))
            });
            let data = match read {
                Ok(data) => data,
                Err(err) => {
                    self.sources.unclaim(name, &claim);
                    tracing::warn!(segment = %listed.uri, %err, "segment skipped");
                    report.skipped.push(Skipped { segment: listed.uri.clone(), reason: err.to_string() });
                    continue;
                }
            };
            let record = SegmentRecord {
                id: claim.id,
                name: listed.uri.clone(),
                start_ts,
                length_ms: span.length_ms,
                discontinuity: claim.discontinuity,
            };
            let segment = CachedSegment::new(record, name, listed.duration_secs, data);
            spooling.extend(self.accept(segment));
            report.new_segments.push(listed.uri.clone());
        }
        // Accepted means recorded: the encoder hears "accepted" only once the recorded segments are on disk, so a
        // crash right after cannot lose them.
        for spooled in spooling {
            if let Err(err) = spooled.await {
                tracing::error!(%err, "spooling a recorded segment failed");
            }
        }
        if report.new_segments.is_empty() && !report.skipped.is_empty() {
            let reasons: Vec<String> = report.skipped.iter().map(|s| format!("{}: {}", s.segment, s.reason)).collect();
            return Err(IngestError::NothingRead(format!(
                "none of the playlist's new segments could be read ({})",
                reasons.join("; ")
            )));
        }
        Ok(report)
    }

    /// Reads a listed segment's bytes. `newest` marks the playlist's last segment: a pushed one may still be
    /// arriving (see [`PUSH_GRACE`]).
    async fn read_segment(
        &self,
        from: &SegmentSource,
        source: &str,
        name: &str,
        newest: bool,
    ) -> Result<Bytes, FetchError> {
        match from {
            SegmentSource::Dir(dir) => self.fetcher.read_file(dir, name).await,
            SegmentSource::Http(base) => self.fetcher.get(base, name).await,
            SegmentSource::Pushed => {
                let grace = if newest { PUSH_GRACE } else { std::time::Duration::ZERO };
                self.uploads
                    .take_within(source, name, grace)
                    .await
                    .ok_or_else(|| FetchError::Unavailable(format!("segment {name} was listed but not uploaded (yet)")))
            }
        }
    }

    /// Takes an accepted segment in: cache, forward while streaming, record while a recording covers it. Returns
    /// the recorder's handle for the spool write, if the segment is recorded.
    fn accept(&self, segment: Arc<CachedSegment>) -> Option<JoinHandle<()>> {
        self.cache.insert(Arc::clone(&segment));
        if self.sources.streaming(&segment.source_name) {
            self.forwarder.enqueue(Arc::clone(&segment));
        }
        let recordings = self.sources.recordings_covering(&segment.source_name, segment.midpoint());
        tracing::debug!(segment = %segment.record.id, name = %segment.record.name, bytes = segment.data.len(), "segment accepted");
        self.record(segment, recordings)
    }

    /// The one place segments go to the recorder; everything it needs is derived from the segment's id.
    fn record(&self, segment: Arc<CachedSegment>, recording_ids: Vec<String>) -> Option<JoinHandle<()>> {
        self.recorder.record(segment, recording_ids)
    }

    /// Reports one source's status and applies the wanted state from the reply.
    async fn report(&self, name: &str, id: Uuid) {
        match self.control.report_status(id, &self.edge_id).await {
            Ok(reply) => {
                self.control_ok.store(true, Ordering::Relaxed);
                let changes = self.sources.apply(name, &reply);
                if changes.streaming_changed {
                    tracing::info!(source = name, streaming = reply.source.streaming, "streaming state from control");
                }
                for recording in changes.started {
                    tracing::info!(source = name, recording = %recording.id, "recording learned from status reply");
                    self.backfill(name, &recording);
                }
                for recording in changes.stopped {
                    tracing::info!(source = name, %recording, "recording no longer active at control; stopped");
                }
            }
            Err(err) if err.is_not_found() => {
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
    fn backfill(&self, name: &str, recording: &Recording) {
        let mut count = 0;
        for segment in self.cache.all(name) {
            let midpoint = segment.midpoint();
            if recording.start_ts <= midpoint && recording.end_ts.is_none_or(|end| midpoint < end) {
                // Back-fill: nobody waits for these; the spool still takes them in order.
                drop(self.record(segment, vec![recording.id.clone()]));
                count += 1;
            }
        }
        tracing::info!(source = name, recording = %recording.id, segments = count, "back-filled from the edge cache");
    }

    /// Reports every source, every few seconds; also expires old cache entries and stopped recordings.
    async fn report_loop(self: Arc<Self>) {
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
            let window = TimeDelta::from_std(self.settings.tracking_window()).unwrap_or(TimeDelta::hours(1));
            if let Some(before) = Utc::now().checked_sub_signed(window) {
                self.sources.prune_recordings(before);
            }
        }
    }

    /// Carries out the control node's commands and answers each one, until the subscription closes.
    async fn command_loop(self: Arc<Self>, mut commands: Receiver<Delivery>) {
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
                    self.backfill(&name, recording);
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

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use chrono::DateTime;
    use clap::Parser;
    use livemix_common::{
        ApiError,
        bus::{MessageBus, memory::MemoryBus},
        model::SegmentInfo,
        store::local::LocalStore,
        supervise::Policy,
        telemetry::Metrics,
    };
    use tokio::sync::mpsc;

    use super::*;
    use crate::{
        config::EdgeArgs,
        forwarder::ForwardMetrics,
        recorder::{RecordMetrics, RecorderConfig},
    };

    struct Harness {
        edge: Arc<Edge>,
        dir: PathBuf,
        reports: mpsc::Receiver<Delivery>,
        source: Uuid,
    }

    impl Harness {
        /// An edge on the in-process bus and a local store, serving `cam` (as if the control node had said so).
        async fn start() -> Self {
            let dir = std::env::temp_dir().join(format!("livemix-node-{}", Uuid::new_v4()));
            std::fs::create_dir_all(dir.join("ingest/cam")).unwrap();
            let root = format!("--file-root={}", dir.join("ingest").display());
            let settings = EdgeArgs::parse_from(["livemix-edge", "--edge-id=edge-test", root.as_str()]).settings;
            let bus = MemoryBus::default();
            bus.ensure_topic("ctl").await.unwrap();
            bus.ensure_subscription("ctl", "ctl").await.unwrap();
            let reports = bus.subscribe("ctl").await.unwrap();
            let bus: SharedBus = Arc::new(bus);
            let metrics = Metrics::new("t");
            let supervisor = Supervisor::new(&metrics, Policy::default());
            let sources = Arc::new(Sources::default());
            // Nothing listens there: nothing in these tests may need the control node.
            let control = ControlClient::new("http://127.0.0.1:9", None).unwrap();
            let store = Arc::new(LocalStore::new(dir.join("store")));
            let edge = Edge::new(Parts {
                fetcher: Fetcher::new(Duration::from_secs(1), 1_000_000, Arc::default()).unwrap(),
                forwarder: Arc::new(Forwarder::new(
                    control.clone(),
                    Arc::clone(&sources),
                    4,
                    ForwardMetrics { forwarded: Default::default(), dropped: Default::default() },
                    supervisor.clone(),
                )),
                recorder: Recorder::start(
                    RecorderConfig {
                        spool_dir: dir.join("spool"),
                        spool_bytes: 1 << 30,
                        object_prefix: "rec".into(),
                        control_topic: "ctl".into(),
                    },
                    store,
                    Arc::clone(&bus),
                    RecordMetrics::default(),
                )
                .await
                .unwrap(),
                control,
                sources,
                bus,
                supervisor,
                settings,
            });
            let source = Uuid::new_v4();
            edge.sources.register("cam", source, false);
            Self { edge, dir, reports, source }
        }

        fn write(&self, name: &str, data: &str) {
            std::fs::write(self.dir.join("ingest/cam").join(name), data).unwrap();
        }

        async fn ingest(&self, playlist: &str) -> Result<IngestReport, IngestError> {
            let prefix = format!("file://{}/", self.dir.join("ingest/cam").display());
            let from = self.edge.segment_source(&prefix, "cam", Grant::Edge)?;
            self.edge.ingest_playlist("cam", &from, playlist.as_bytes()).await
        }

        fn start_recording(&self, start_ts: DateTime<Utc>) -> String {
            let id = ulid::Ulid::new().to_string();
            let recording = Recording {
                id: id.clone(),
                alias: None,
                description: None,
                source: self.source,
                start_ts,
                end_ts: None,
                active: true,
                hold: false,
                source_name: None,
                continuous: false,
                verification: None,
                created_at: start_ts,
                updated_at: start_ts,
            };
            self.edge.command(&Message::StartRecording { recording }).unwrap();
            id
        }

        async fn next_recorded(&mut self) -> (Vec<String>, SegmentInfo) {
            let delivery = tokio::time::timeout(Duration::from_secs(10), self.reports.recv())
                .await
                .expect("a recorded segment reported")
                .expect("bus open");
            let body = delivery.envelope.body.clone();
            delivery.ack();
            match body {
                Message::NewVideoRecordingSegment { recording_ids, segment } => (recording_ids, segment),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn playlist(media_sequence: u64, names: &[&str]) -> String {
        let mut text =
            format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:{media_sequence}\n");
        for name in names {
            text.push_str(&format!("#EXTINF:1.000000,\n{name}\n"));
        }
        text
    }

    #[tokio::test]
    async fn a_restarted_encoder_gets_a_new_run_without_touching_the_old_one() {
        let h = Harness::start().await;
        for i in 0..3 {
            h.write(&format!("index{i}.ts"), &format!("first run {i}"));
        }
        let report = h.ingest(&playlist(0, &["index0.ts", "index1.ts", "index2.ts"])).await.unwrap();
        assert_eq!(report.new_segments.len(), 3);
        // ffmpeg restarts and counts from index0.ts again, with new bytes.
        h.write("index0.ts", "second run 0");
        let report = h.ingest(&playlist(0, &["index0.ts"])).await.unwrap();
        assert_eq!(report.new_segments, vec!["index0.ts".to_string()], "not mistaken for the old index0");

        let all = h.edge.cache.all("cam");
        assert_eq!(all.len(), 4);
        let (old, new) = (&all[..3], &all[3]);
        assert!(old.iter().all(|s| s.record.id.run == old[0].record.id.run && s.record.id.source == h.source));
        assert_eq!(old.iter().map(|s| s.record.id.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(new.record.id.run > old[0].record.id.run, "a new, later run");
        assert_eq!(new.record.id.seq, 0);
        assert!(new.record.discontinuity, "the new run's first segment follows a discontinuity");
        assert!(!old[1].record.discontinuity && !old[2].record.discontinuity);
        assert_eq!(&old[0].data[..], b"first run 0", "the old run's bytes are untouched");
        assert_eq!(&new.data[..], b"second run 0");
        assert!(!old.iter().any(|s| s.record.id == new.record.id), "no collision");
    }

    #[tokio::test]
    async fn an_encoder_that_paused_leaves_a_gap_the_edge_flags() {
        let h = Harness::start().await;
        for i in 0..4 {
            h.write(&format!("index{i}.ts"), &format!("ts {i}"));
        }
        h.ingest(&playlist(0, &["index0.ts", "index1.ts"])).await.unwrap();
        h.ingest(&playlist(1, &["index1.ts", "index2.ts"])).await.unwrap();
        // The encoder paused for half a minute: its clock (trusted when near the edge's) says so.
        let resumed = (Utc::now() + TimeDelta::seconds(30)).format("%Y-%m-%dT%H:%M:%S%.3f+0000");
        let text = format!(
            "{}#EXT-X-PROGRAM-DATE-TIME:{resumed}\n#EXTINF:1.000000,\nindex3.ts\n",
            playlist(2, &["index2.ts"])
        );
        assert_eq!(h.ingest(&text).await.unwrap().new_segments, vec!["index3.ts".to_string()]);
        let flags: Vec<(u64, bool)> =
            h.edge.cache.all("cam").iter().map(|s| (s.record.id.seq, s.record.discontinuity)).collect();
        assert_eq!(flags, [(0, true), (1, false), (2, false), (3, true)], "one run; the pause is a discontinuity");
    }

    #[tokio::test]
    async fn hostile_playlists_are_refused_with_400_naming_the_field() {
        let h = Harness::start().await;
        h.write("seg.ts", "ts");
        for (tags, field) in [
            ("#EXTINF:100000000000000,", "#EXTINF"),
            ("#EXT-X-PROGRAM-DATE-TIME:262142-01-01T00:00:00.000+0000\n#EXTINF:1.0,", "#EXT-X-PROGRAM-DATE-TIME"),
            ("#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n#EXTINF:1.0,", "#EXT-X-MEDIA-SEQUENCE"),
        ] {
            let err = h.ingest(&format!("#EXTM3U\n#EXT-X-TARGETDURATION:1\n{tags}\nseg.ts\n")).await.unwrap_err();
            let api = ApiError::from(err);
            assert_eq!(api.status, reqwest::StatusCode::BAD_REQUEST, "{tags}");
            assert!(api.message.starts_with(field), "{tags}: {}", api.message);
        }
        assert!(h.edge.cache.all("cam").is_empty(), "nothing accepted");
    }

    #[tokio::test]
    async fn a_camera_whose_clock_reset_to_1970_still_records() {
        let mut h = Harness::start().await;
        let recording = h.start_recording(Utc::now() - TimeDelta::seconds(30));
        h.write("index0.ts", "ts");
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:07.000+0000\n\
                    #EXTINF:1.0,\nindex0.ts\n";
        let before = Utc::now();
        assert_eq!(h.ingest(text).await.unwrap().new_segments.len(), 1);
        let (recordings, segment) = h.next_recorded().await;
        assert_eq!(recordings, vec![recording]);
        assert!(segment.start_ts >= before - TimeDelta::seconds(2), "dated by the edge's clock: {}", segment.start_ts);
        assert!(segment.discontinuity);
    }

    #[tokio::test]
    async fn readiness_turns_red_while_a_supervised_task_is_down() {
        let h = Harness::start().await;
        h.edge.bus_ok.store(true, Ordering::Relaxed);
        h.edge.control_ok.store(true, Ordering::Relaxed);
        assert!(h.edge.readiness().ready());
        h.edge.supervisor.spawn("broken", || async {});
        for _ in 0..100 {
            if h.edge.supervisor.down() == ["broken"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let readiness = h.edge.readiness();
        assert!(!readiness.ready(), "{readiness:?}");
        assert!(readiness.tasks.iter().any(|t| t.name == "broken" && !t.up));
    }
}
