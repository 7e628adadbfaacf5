//! What the edge knows of each source it serves: the control node's id and wanted state, the recordings to
//! upload for, and its encoder's current run (which listed segments it already has).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use livemix_common::{edge_api::StatusReply, model::Recording};
use parking_lot::Mutex;
use serde::Serialize;
use ulid::Ulid;
use uuid::Uuid;

use crate::identity::{Claim, EncoderRun, RunMarks, Span};

#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    pub id: Uuid,
    pub name: String,
    pub streaming: bool,
    pub recordings: Vec<Recording>,
    pub last_segment: Option<String>,
    pub segments_ingested: u64,
    /// The encoder run new segments belong to.
    pub run: Ulid,
}

#[derive(Debug)]
struct SourceState {
    id: Uuid,
    streaming: bool,
    /// Active recordings, and stopped ones (with `end_ts`) still covering cached segments.
    recordings: HashMap<String, Recording>,
    encoder: EncoderRun,
    ingested: u64,
    last_segment: Option<String>,
}

/// What changed when the control node's wanted state was applied.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub streaming_changed: bool,
    pub started: Vec<Recording>,
    pub stopped: Vec<String>,
}

#[derive(Default)]
pub struct Sources {
    inner: Mutex<HashMap<String, SourceState>>,
    /// Where encoder runs are kept across restarts (none: every process starts new runs).
    marks: Option<RunMarks>,
}

impl Sources {
    /// Sources whose encoder runs outlive the process.
    pub fn with_marks(marks: RunMarks) -> Self {
        Self { inner: Mutex::default(), marks: Some(marks) }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<String, SourceState>> {
        self.inner.lock()
    }

    pub fn id_of(&self, name: &str) -> Option<Uuid> {
        self.lock().get(name).map(|s| s.id)
    }

    pub fn name_of(&self, id: Uuid) -> Option<String> {
        self.lock().iter().find(|(_, s)| s.id == id).map(|(n, _)| n.clone())
    }

    /// Starts tracking a source the control node knows under `id`; keeps existing state.
    pub fn register(&self, name: &str, id: Uuid, streaming: bool) {
        self.lock().entry(name.to_owned()).or_insert_with(|| SourceState {
            id,
            streaming,
            recordings: HashMap::new(),
            encoder: match self.marks.as_ref().and_then(|marks| marks.load(id)) {
                Some(mark) => {
                    tracing::info!(source = name, run = %mark.run, newest = ?mark.newest, "going on with the encoder run");
                    EncoderRun::resume(id, mark)
                }
                None => EncoderRun::new(id),
            },
            ingested: 0,
            last_segment: None,
        });
    }

    fn save_mark(&self, state: &SourceState) {
        if let Some(marks) = &self.marks {
            marks.save(state.id, &state.encoder.mark());
        }
    }

    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    pub fn names_and_ids(&self) -> Vec<(String, Uuid)> {
        self.lock().iter().map(|(n, s)| (n.clone(), s.id)).collect()
    }

    pub fn streaming(&self, name: &str) -> bool {
        self.lock().get(name).is_some_and(|s| s.streaming)
    }

    /// Notes an encoder playlist (see [`EncoderRun::observe`]); true when the encoder started over, and a new
    /// run with it.
    pub fn observe_playlist(&self, name: &str, media_sequence: u64, last_sequence: Option<u64>) -> bool {
        let mut sources = self.lock();
        let Some(state) = sources.get_mut(name) else { return false };
        let restarted = state.encoder.observe(media_sequence, last_sequence);
        self.save_mark(state);
        restarted
    }

    /// Claims the segment `uri` listed at media sequence `seq`, playing over `span`: its identity and
    /// discontinuity (see [`EncoderRun::claim`]), or `None` when it was claimed already (or the source is unknown).
    pub fn claim(&self, name: &str, seq: u64, uri: &str, listed_discontinuity: bool, span: Span) -> Option<Claim> {
        let mut sources = self.lock();
        let state = sources.get_mut(name)?;
        let claim = state.encoder.claim(seq, listed_discontinuity, span)?;
        self.save_mark(state);
        state.ingested += 1;
        state.last_segment = Some(uri.to_owned());
        Some(claim)
    }

    /// Gives a claim back (its fetch failed) so the next playlist retries it.
    pub fn unclaim(&self, name: &str, claim: &Claim) {
        if let Some(state) = self.lock().get_mut(name) {
            state.encoder.unclaim(claim);
            self.save_mark(state);
            state.ingested = state.ingested.saturating_sub(1);
        }
    }

    /// The ids of the recordings a segment at `midpoint` belongs to.
    pub fn recordings_covering(&self, name: &str, midpoint: DateTime<Utc>) -> Vec<String> {
        let sources = self.lock();
        let Some(state) = sources.get(name) else { return Vec::new() };
        let mut ids: Vec<String> = state
            .recordings
            .values()
            .filter(|r| r.start_ts <= midpoint && r.end_ts.is_none_or(|end| midpoint < end))
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        ids
    }

    pub fn set_streaming(&self, id: Uuid, streaming: bool) -> Option<String> {
        let mut sources = self.lock();
        let (name, state) = sources.iter_mut().find(|(_, s)| s.id == id)?;
        state.streaming = streaming;
        Some(name.clone())
    }

    /// Adds a recording; returns its source's name when it is new to this edge.
    pub fn start_recording(&self, recording: &Recording) -> Option<String> {
        let mut sources = self.lock();
        let (name, state) = sources.iter_mut().find(|(_, s)| s.id == recording.source)?;
        if state.recordings.contains_key(&recording.id) {
            return None;
        }
        state.recordings.insert(recording.id.clone(), recording.clone());
        Some(name.clone())
    }

    /// Ends a recording at `end_ts`; it keeps covering segments before that time.
    pub fn stop_recording(&self, recording_id: &str, end_ts: DateTime<Utc>) -> bool {
        let mut sources = self.lock();
        for state in sources.values_mut() {
            if let Some(r) = state.recordings.get_mut(recording_id) {
                r.end_ts.get_or_insert(end_ts);
                r.active = false;
                return true;
            }
        }
        false
    }

    /// Applies the wanted state in a status reply: the streaming flag, and exactly the listed recordings active.
    pub fn apply(&self, name: &str, reply: &StatusReply) -> Changes {
        let mut sources = self.lock();
        let Some(state) = sources.get_mut(name) else { return Changes::default() };
        let mut changes =
            Changes { streaming_changed: state.streaming != reply.source.streaming, ..Changes::default() };
        state.streaming = reply.source.streaming;
        let now = Utc::now();
        // A recording the edge already knows keeps its state: a stop is final, even if a reply that was
        // generated before it still lists the recording.
        for recording in &reply.recordings {
            if !state.recordings.contains_key(&recording.id) {
                state.recordings.insert(recording.id.clone(), recording.clone());
                changes.started.push(recording.clone());
            }
        }
        let listed: HashSet<&str> = reply.recordings.iter().map(|r| r.id.as_str()).collect();
        for recording in state.recordings.values_mut() {
            if recording.end_ts.is_none() && !listed.contains(recording.id.as_str()) {
                recording.end_ts = Some(now);
                recording.active = false;
                changes.stopped.push(recording.id.clone());
            }
        }
        changes
    }

    /// Forgets stopped recordings that ended before `before` (no cached segment can belong to them).
    pub fn prune_recordings(&self, before: DateTime<Utc>) {
        for state in self.lock().values_mut() {
            state.recordings.retain(|_, r| r.end_ts.is_none_or(|end| end > before));
        }
    }

    pub fn view(&self) -> Vec<SourceView> {
        let mut views: Vec<SourceView> = self
            .lock()
            .iter()
            .map(|(name, s)| SourceView {
                id: s.id,
                name: name.clone(),
                streaming: s.streaming,
                recordings: s.recordings.values().filter(|r| r.end_ts.is_none()).cloned().collect(),
                last_segment: s.last_segment.clone(),
                segments_ingested: s.ingested,
                run: s.encoder.run(),
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The span of a 2 s segment that continues the one before it, at media sequence `seq`.
    fn at(seq: u64) -> Span {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Span { start_ts: start + chrono::TimeDelta::seconds(2 * seq as i64), length_ms: 2000 }
    }
    use livemix_common::model::Source;

    fn recording(id: &str, source: Uuid, start: DateTime<Utc>) -> Recording {
        Recording {
            id: id.into(),
            alias: None,
            description: None,
            source,
            start_ts: start,
            end_ts: None,
            active: true,
            hold: false,
            source_name: None,
            continuous: false,
            verification: None,
            created_at: start,
            updated_at: start,
        }
    }

    fn reply(id: Uuid, streaming: bool, recordings: Vec<Recording>) -> StatusReply {
        let now = Utc::now();
        StatusReply {
            source: Source {
                id,
                name: "cam".into(),
                segment_length: 2,
                description: String::new(),
                streaming,
                rr_target: None,
                local_time: None,
                last_seen: None,
                reachable: true,
                owner: None,
                edge: None,
                retention: Default::default(),
                recording: Default::default(),
                created_at: now,
                updated_at: now,
            },
            recordings,
        }
    }

    #[test]
    fn claims_are_once_per_sequence_number_and_counted() {
        let sources = Sources::default();
        let id = Uuid::new_v4();
        sources.register("cam", id, false);
        let a = sources.claim("cam", 0, "a.ts", false, at(0)).unwrap();
        assert_eq!(a.id.source, id);
        assert_eq!(sources.claim("cam", 0, "a.ts", false, at(0)), None);
        let b = sources.claim("cam", 1, "b.ts", false, at(1)).unwrap();
        sources.unclaim("cam", &b);
        assert_eq!(sources.claim("cam", 1, "b.ts", false, at(1)), Some(b), "retried with the same identity");
        assert_eq!(sources.claim("other", 0, "a.ts", false, at(0)), None, "unknown source");
        let view = &sources.view()[0];
        assert_eq!((view.segments_ingested, view.last_segment.as_deref(), view.run), (2, Some("b.ts"), a.id.run));
    }

    #[test]
    fn an_encoder_restart_lets_names_be_reused() {
        let sources = Sources::default();
        sources.register("cam", Uuid::new_v4(), false);
        assert!(!sources.observe_playlist("cam", 0, Some(0)));
        let old = sources.claim("cam", 0, "index0.ts", false, at(0)).unwrap();
        assert!(!sources.observe_playlist("cam", 7, Some(9)));
        assert_eq!(sources.claim("cam", 0, "index0.ts", false, at(0)), None, "same run: already seen");
        assert!(sources.observe_playlist("cam", 0, Some(0)), "went backwards: restart");
        let new = sources.claim("cam", 0, "index0.ts", false, at(0)).expect("a new segment with an old name");
        assert_ne!(new.id, old.id);
        assert!(new.discontinuity);
    }

    #[test]
    fn status_replies_start_and_stop_recordings_and_set_streaming() {
        let sources = Sources::default();
        let id = Uuid::new_v4();
        sources.register("cam", id, false);
        let start = Utc::now() - chrono::Duration::seconds(10);
        let rec = recording("r1", id, start);

        let changes = sources.apply("cam", &reply(id, true, vec![rec.clone()]));
        assert!(changes.streaming_changed);
        assert_eq!(changes.started, vec![rec.clone()]);
        assert!(sources.streaming("cam"));
        assert_eq!(sources.recordings_covering("cam", Utc::now()), vec!["r1".to_string()]);
        assert!(sources.recordings_covering("cam", start - chrono::Duration::seconds(1)).is_empty());

        // The same reply again changes nothing.
        assert_eq!(sources.apply("cam", &reply(id, true, vec![rec])), Changes::default());

        // Missing from the reply: stopped now, still covering what came before.
        let changes = sources.apply("cam", &reply(id, true, vec![]));
        assert_eq!(changes.stopped, vec!["r1".to_string()]);
        assert!(sources.recordings_covering("cam", Utc::now() + chrono::Duration::seconds(1)).is_empty());
        assert_eq!(sources.recordings_covering("cam", start + chrono::Duration::seconds(1)), vec!["r1".to_string()]);
    }

    #[test]
    fn a_stop_command_keeps_its_end_time() {
        let sources = Sources::default();
        let id = Uuid::new_v4();
        sources.register("cam", id, true);
        let start = Utc::now() - chrono::Duration::seconds(10);
        assert_eq!(sources.start_recording(&recording("r1", id, start)), Some("cam".into()));
        let end = start + chrono::Duration::seconds(5);
        assert!(sources.stop_recording("r1", end));
        assert!(sources.recordings_covering("cam", end + chrono::Duration::milliseconds(1)).is_empty());
        assert_eq!(sources.recordings_covering("cam", end - chrono::Duration::seconds(1)).len(), 1);
        assert!(!sources.stop_recording("nope", end));
    }
}
