//! Recordings: starting and stopping them with the edge's confirmation, holds, deletes, and what players get of
//! them (playlists rendered once per moment per replica, segments from memory, the cache or the object store).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use livemix_common::{
    api::reason,
    management_api::{Coverage, Deletion, NewRecording, Usage},
    messages::Message,
    model::{Recording, RecordingMode, Segment, Source, validate_source_name},
};
use uuid::Uuid;

use super::{
    Error, Events, Result, check_text,
    ranges::{self, TimeRange},
};
use crate::{
    db::{
        Db,
        lifecycle::{DeletionReason, hold_refusal},
    },
    edge_link::EdgeLink,
    lifecycle::Lifecycle,
    playlist,
    recording_playlists::{RecordingPlaylists, RenderedRecording},
    segments::{SegmentBytes, SegmentLoader},
};

#[derive(Clone)]
pub struct Recordings {
    db: Db,
    edges: EdgeLink,
    lifecycle: Lifecycle,
    events: Events,
    loader: Arc<SegmentLoader>,
    playlists: RecordingPlaylists,
    limits: ReadLimits,
}

/// How much of a recording one request reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Segments loaded ahead of a player.
    pub prime: usize,
    /// Most segments one playlist, export, manifest or listing of a recording holds (a continuous recording grows
    /// without end; time ranges read the rest).
    pub max_segments: i64,
}

impl Recordings {
    pub fn new(
        db: Db,
        edges: EdgeLink,
        lifecycle: Lifecycle,
        events: Events,
        loader: Arc<SegmentLoader>,
        playlists: RecordingPlaylists,
        limits: ReadLimits,
    ) -> Self {
        Self { db, edges, lifecycle, events, loader, playlists, limits }
    }

    /// Starts a recording of `source`. A reachable edge must confirm (else nothing is kept and the call can be
    /// retried); an unreachable edge starts it when it next reports.
    #[tracing::instrument(skip(self, new))]
    pub async fn start(&self, source: Uuid, new: NewRecording) -> Result<Recording> {
        let start = start_time(new.start_time_epoch)?;
        if let Some(alias) = &new.alias {
            validate_source_name(alias).map_err(|_| {
                Error::Invalid(format!("invalid alias {alias:?}: use letters, digits, '-', '_' or '.'"))
            })?;
        }
        if let Some(description) = &new.description {
            check_text("description", description)?;
        }
        let source = self.db.get_source(source).await?;
        let recording =
            self.db.create_recording(source.id, new.alias.as_deref(), new.description.as_deref(), start).await?;
        match self.edges.start_recording(&source, &recording).await {
            Ok(delivery) => {
                tracing::info!(recording = %recording.id, ?delivery, "recording started");
                self.events.publish(Message::RecordingStarted { recording: recording.clone() });
                Ok(recording)
            }
            Err(err) => {
                // Nothing half-started is kept: the caller retries the whole start.
                if let Err(cleanup) = self.db.delete_recording(&recording.id, DeletionReason::User).await {
                    tracing::error!(%cleanup, recording = %recording.id, "could not remove an unconfirmed recording");
                }
                Err(Error::Command { source: err, then: "the recording was not started; try again" })
            }
        }
    }

    pub async fn list(&self, source: Option<Uuid>, only_active: bool) -> Result<Vec<Recording>> {
        if let Some(source) = source {
            self.db.get_source(source).await?;
        }
        Ok(self.db.list_recordings(source, only_active).await?)
    }

    pub async fn get(&self, id: &str) -> Result<Recording> {
        Ok(self.db.get_recording(check_id(id)?).await?)
    }

    pub async fn segments(&self, id: &str) -> Result<Vec<Segment>> {
        let recording = self.get(id).await?;
        bounded_segments(&self.db, &recording, self.limits.max_segments).await
    }

    /// Stops a recording. The stop is saved first and is final; an edge that misses the command stops when its
    /// next status reply no longer lists the recording. A source's continuous recording stops only with its mode.
    #[tracing::instrument(skip(self))]
    pub async fn stop(&self, id: &str) -> Result<Recording> {
        refuse_continuous(&self.get(id).await?, "stop")?;
        let recording = self.db.stop_recording(check_id(id)?).await?;
        self.tell_stopped(&recording).await;
        Ok(recording)
    }

    /// Switches a source between continuous and on-demand recording, and its recordings with it.
    #[tracing::instrument(skip(self))]
    pub async fn set_mode(&self, source: Uuid, mode: RecordingMode) -> Result<Source> {
        let source = self.db.set_recording_mode(source, mode).await?;
        self.follow_mode(&source).await?;
        Ok(source)
    }

    /// What the recording holds of the time it covers (to now while active): spans and gaps.
    pub async fn coverage(&self, id: &str) -> Result<Coverage> {
        let recording = self.get(id).await?;
        let segments = bounded_segments(&self.db, &recording, self.limits.max_segments).await?;
        Ok(ranges::coverage(TimeRange::of_recording(&recording), &segments))
    }

    /// The recording's segments in playback order, for an export; 404 when it has none.
    pub async fn export_segments(&self, id: &str) -> Result<(Recording, Vec<Segment>)> {
        let recording = self.get(id).await?;
        let segments = bounded_segments(&self.db, &recording, self.limits.max_segments).await?;
        if segments.is_empty() {
            return Err(Error::NotFound(format!("recording {} has no segments yet: nothing to export", recording.id)));
        }
        Ok((recording, segments))
    }

    /// Makes the source's recordings follow its recording mode: a continuous source gets its continuous
    /// recording (kept if it has one), an on-demand source's is stopped. The edge is told at once when it can be;
    /// otherwise its next status reply carries the change.
    #[tracing::instrument(skip(self, source), fields(source = %source.id, mode = %source.recording))]
    pub async fn follow_mode(&self, source: &Source) -> Result<Option<Recording>> {
        match source.recording {
            RecordingMode::Continuous => {
                let recording = self.db.continuous_recording(source.id).await?;
                match self.edges.start_recording(source, &recording).await {
                    Ok(delivery) => tracing::info!(recording = %recording.id, ?delivery, "continuous recording on"),
                    Err(err) => tracing::warn!(%err, recording = %recording.id, "edge did not confirm the \
                        continuous recording; it starts recording at its next report"),
                }
                self.events.publish(Message::RecordingStarted { recording: recording.clone() });
                Ok(Some(recording))
            }
            RecordingMode::OnDemand => {
                if let Some(stopped) = self.db.stop_continuous_recording(source.id).await? {
                    self.tell_stopped(&stopped).await;
                }
                Ok(None)
            }
        }
    }

    async fn tell_stopped(&self, recording: &Recording) {
        match self.db.get_source(recording.source).await {
            Ok(source) => match self.edges.stop_recording(&source, recording).await {
                Ok(delivery) => tracing::info!(recording = %recording.id, ?delivery, "recording stopped"),
                Err(err) => {
                    tracing::warn!(%err, recording = %recording.id, "edge did not confirm the stop; it stops at its next report")
                }
            },
            Err(err) => tracing::warn!(%err, recording = %recording.id, "source of a stopped recording not found"),
        }
        self.events.publish(Message::RecordingStopped { recording: recording.clone() });
    }

    /// Deletes a recording (stopping it first if active) and, once no other recording needs them, its objects.
    /// A recording on hold is refused.
    #[tracing::instrument(skip(self))]
    pub async fn delete(&self, id: &str) -> Result<Deletion> {
        let recording = self.get(id).await?;
        if recording.hold {
            return Err(Error::Conflict { reason: reason::ON_HOLD, message: hold_refusal(&recording.id) });
        }
        refuse_continuous(&recording, "delete")?;
        if recording.active {
            let stopped = self.db.stop_recording(&recording.id).await?;
            self.tell_stopped(&stopped).await;
        }
        let deleted = self.lifecycle.delete_recording(&recording.id).await?;
        self.playlists.invalidate(&recording.id).await;
        Ok(deleted)
    }

    /// Puts a recording on hold (no automatic deletion, deletes refused) or lifts the hold.
    #[tracing::instrument(skip(self))]
    pub async fn set_hold(&self, id: &str, hold: bool) -> Result<Recording> {
        let recording = self.db.set_hold(check_id(id)?, hold).await?;
        tracing::info!(recording = %recording.id, hold, "hold set");
        Ok(recording)
    }

    /// What the recording stores and when retention deletes it.
    pub async fn storage(&self, id: &str) -> Result<Usage> {
        let recording = self.get(id).await?;
        Ok(self.lifecycle.recording_usage(&recording).await?)
    }

    /// The recording's playlist, from this replica's memory while fresh; its first segments are loaded ahead.
    pub async fn playlist(&self, id: &str) -> Result<Arc<RenderedRecording>> {
        let id = check_id(id)?;
        // Every request that waited on one render gets its answer.
        let rendered = self.playlists.get(id, self.render(id)).await.map_err(Error::Shared)?;
        self.loader.prime(rendered.first_uris.clone());
        Ok(rendered)
    }

    async fn render(&self, id: &str) -> Result<Arc<RenderedRecording>> {
        let recording = self.db.get_recording(id).await?;
        let segments = bounded_segments(&self.db, &recording, self.limits.max_segments).await?;
        let first_uris = segments.iter().take(self.limits.prime).map(|s| s.uri.clone()).collect();
        Ok(Arc::new(RenderedRecording::new(playlist::recording(&segments), first_uris, recording.active)))
    }

    /// A segment of the recording by the name its playlist gives it, with whether that name is unique for good
    /// (a segment id) or was an old edge's reusable name. The next ones are loaded ahead of the player.
    pub async fn segment(&self, id: &str, name: &str) -> Result<(SegmentBytes, bool)> {
        let id = check_id(id)?;
        let wanted = playlist::parse_served_name(name);
        let following = i64::try_from(self.limits.prime).unwrap_or(i64::MAX);
        let window = self.db.recording_segment_and_next(id, wanted, following).await?;
        let Some((segment, next)) = window.split_first().filter(|(first, _)| playlist::served_name(first) == name)
        else {
            // Say which of the two is missing.
            let recording = self.db.get_recording(id).await?;
            return Err(Error::NotFound(format!("recording {} has no segment {name}", recording.id)));
        };
        let body = self.loader.get(&segment.uri).await?;
        self.loader.prime(next.iter().map(|s| s.uri.clone()).collect());
        Ok((body, segment.run.is_some()))
    }
}

/// The recording's segments in playback order, refused past `max` with the way to the rest: time ranges.
pub(super) async fn bounded_segments(db: &Db, recording: &Recording, max: i64) -> Result<Vec<Segment>> {
    let segments = db.recording_segments_upto(&recording.id, max.saturating_add(1)).await?;
    if i64::try_from(segments.len()).unwrap_or(i64::MAX) > max {
        return Err(Error::Invalid(format!(
            "recording {} holds more than {max} segments (LIVEMIX_MAX_RANGE_SEGMENTS): play, export and check it \
             by time range (GET /v1/vod/source/{}/vid.m3u8?start=&end=, /v1/source/{}/coverage?start=&end=)",
            recording.id, recording.source, recording.source
        )));
    }
    Ok(segments)
}

/// A source's active continuous recording goes with its mode, not by itself.
fn refuse_continuous(recording: &Recording, what: &str) -> Result<()> {
    if recording.continuous && recording.active {
        return Err(Error::Conflict {
            reason: reason::CONTINUOUS,
            message: format!(
                "recording {} is source {}'s continuous recording: to {what} it, switch the source to on-demand \
                 recording first (PUT /v1/source/{}/recording-mode {{\"recording\": \"on_demand\"}})",
                recording.id, recording.source, recording.source
            ),
        });
    }
    Ok(())
}

/// A recording id is a ULID.
pub(super) fn check_id(id: &str) -> Result<&str> {
    ulid::Ulid::from_string(id).map_err(|_| Error::Invalid(format!("{id:?} is not a recording id (a ULID)")))?;
    Ok(id)
}

/// When a recording starts: now, or a given time no later than tomorrow.
fn start_time(epoch: Option<i64>) -> Result<DateTime<Utc>> {
    let now = Utc::now();
    let Some(epoch) = epoch else { return Ok(now) };
    Utc.timestamp_opt(epoch, 0)
        .single()
        .filter(|ts| epoch > 0 && now.checked_add_signed(TimeDelta::days(1)).is_some_and(|tomorrow| *ts <= tomorrow))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "start_time_epoch {epoch} is not a time between 1970 and tomorrow, in seconds since the Unix epoch"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_defaults_to_now_and_refuses_nonsense() {
        let now = Utc::now();
        assert!((start_time(None).unwrap() - now).num_seconds().abs() < 2);
        assert_eq!(start_time(Some(1_704_596_000)).unwrap().timestamp(), 1_704_596_000);
        assert!(start_time(Some(0)).is_err());
        assert!(start_time(Some(-5)).is_err());
        assert!(start_time(Some(now.timestamp() + 3 * 86_400)).is_err());
        assert!(start_time(Some(i64::MAX)).is_err());
    }
}
