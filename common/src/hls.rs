//! HLS playlists (RFC 8216): parsing what encoders push, writing what players read.

use chrono::{DateTime, Utc};
use m3u8_rs::{MediaPlaylist, MediaPlaylistType, MediaSegment};

#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    #[error("not an HLS media playlist: {0}")]
    Malformed(String),
    #[error("a master playlist was given; push the media playlist of one rendition")]
    MasterPlaylist,
}

/// One segment listed by an encoder's playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    /// The URI as written in the playlist (usually a bare file name).
    pub uri: String,
    pub duration_secs: f64,
    /// A discontinuity precedes this segment (encoder restart, timestamp jump...).
    pub discontinuity: bool,
    pub program_date_time: Option<DateTime<Utc>>,
}

/// An encoder's playlist, reduced to what LiveMix uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPlaylist {
    pub media_sequence: u64,
    pub segments: Vec<ListedSegment>,
    pub ended: bool,
}

/// Parses a media playlist as ffmpeg and other encoders write it; DISCONTINUITY, PROGRAM-DATE-TIME and ENDLIST
/// are understood, unknown tags ignored.
pub fn parse_media_playlist(data: &[u8]) -> Result<ListedPlaylist, HlsError> {
    let text = std::str::from_utf8(data).map_err(|_| HlsError::Malformed("playlist is not UTF-8".into()))?;
    if !text.trim_start().starts_with("#EXTM3U") {
        return Err(HlsError::Malformed("missing #EXTM3U header".into()));
    }
    if text.contains("#EXT-X-STREAM-INF") {
        return Err(HlsError::MasterPlaylist);
    }
    let playlist = m3u8_rs::parse_media_playlist_res(data)
        .map_err(|err| HlsError::Malformed(format!("parse error: {err:?}").chars().take(200).collect()))?;
    let segments = playlist
        .segments
        .iter()
        .map(|s| ListedSegment {
            uri: s.uri.trim().to_owned(),
            duration_secs: f64::from(s.duration),
            discontinuity: s.discontinuity,
            program_date_time: s.program_date_time.map(|t| t.with_timezone(&Utc)).or_else(|| ffmpeg_date_time(s)),
        })
        .collect::<Vec<_>>();
    if let Some(bad) =
        segments.iter().find(|s| s.uri.is_empty() || !s.duration_secs.is_finite() || s.duration_secs < 0.0)
    {
        return Err(HlsError::Malformed(format!("invalid segment entry {:?}", bad.uri)));
    }
    Ok(ListedPlaylist { media_sequence: playlist.media_sequence, segments, ended: playlist.end_list })
}

/// ffmpeg writes PROGRAM-DATE-TIME with a `+0000` offset, which is not RFC 3339, so m3u8-rs keeps it as an
/// unknown tag; read it from there.
fn ffmpeg_date_time(segment: &MediaSegment) -> Option<DateTime<Utc>> {
    let tag = segment.unknown_tags.iter().find(|t| t.tag == "X-PROGRAM-DATE-TIME")?;
    let value = tag.rest.as_deref()?.trim();
    DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z").ok().map(|t| t.with_timezone(&Utc))
}

/// A segment to list in a playlist LiveMix serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedSegment {
    /// URI relative to the playlist.
    pub uri: String,
    pub duration_secs: f64,
    pub discontinuity: bool,
}

impl ServedSegment {
    pub fn new(uri: impl Into<String>, duration_secs: f64, discontinuity: bool) -> Self {
        Self { uri: uri.into(), duration_secs, discontinuity }
    }

    /// A segment whose length is stored in milliseconds, as the control node's index keeps it.
    pub fn from_millis(uri: impl Into<String>, length_ms: i64, discontinuity: bool) -> Self {
        Self::new(uri, length_ms as f64 / 1000.0, discontinuity)
    }
}

/// `#EXT-X-TARGETDURATION` must be an integer no smaller than any segment's duration (RFC 8216 4.3.3.1).
fn target_duration(segments: &[ServedSegment]) -> u64 {
    segments.iter().map(|s| s.duration_secs.ceil() as u64).max().unwrap_or(1).max(1)
}

fn write(playlist: &MediaPlaylist) -> String {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = playlist.write_to(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn media_segments(segments: &[ServedSegment]) -> Vec<MediaSegment> {
    segments
        .iter()
        .map(|s| MediaSegment {
            uri: s.uri.clone(),
            duration: s.duration_secs as f32,
            discontinuity: s.discontinuity,
            ..Default::default()
        })
        .collect()
}

/// A live playlist: the given window of newest segments, no ENDLIST. `media_sequence` is the sequence number
/// of the first segment and `discontinuity_sequence` the number of discontinuities before it, both of which must
/// only grow for a source.
pub fn live_playlist(segments: &[ServedSegment], media_sequence: u64, discontinuity_sequence: u64) -> String {
    write(&MediaPlaylist {
        version: Some(3),
        target_duration: target_duration(segments),
        media_sequence,
        discontinuity_sequence,
        segments: media_segments(segments),
        ..Default::default()
    })
}

/// A complete recording: PLAYLIST-TYPE:VOD and ENDLIST.
pub fn vod_playlist(segments: &[ServedSegment]) -> String {
    write(&MediaPlaylist {
        version: Some(3),
        target_duration: target_duration(segments),
        playlist_type: Some(MediaPlaylistType::Vod),
        end_list: true,
        segments: media_segments(segments),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n\
        #EXT-X-PROGRAM-DATE-TIME:2024-01-07T03:51:43.000+0000\n#EXTINF:4.000000,\ncam-7.ts\n\
        #EXT-X-DISCONTINUITY\n#EXTINF:3.966667,\ncam-8.ts\n#EXT-X-ENDLIST\n";

    #[test]
    fn parses_ffmpeg_playlists_with_discontinuities_and_dates() {
        let p = parse_media_playlist(FFMPEG.as_bytes()).unwrap();
        assert_eq!(p.media_sequence, 7);
        assert!(p.ended);
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[0].uri, "cam-7.ts");
        let pdt = p.segments[0].program_date_time.expect("ffmpeg's +0000 offset is understood");
        assert_eq!(pdt.to_rfc3339(), "2024-01-07T03:51:43+00:00");
        assert_eq!(p.segments[1].program_date_time, None);
        assert!(!p.segments[0].discontinuity);
        assert!(p.segments[1].discontinuity);
        assert!((p.segments[1].duration_secs - 3.966667).abs() < 1e-4);
    }

    #[test]
    fn refuses_garbage_and_master_playlists() {
        assert!(matches!(parse_media_playlist(b"hello"), Err(HlsError::Malformed(_))));
        assert!(matches!(parse_media_playlist(&[0xff, 0xfe]), Err(HlsError::Malformed(_))));
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow.m3u8\n";
        assert!(matches!(parse_media_playlist(master.as_bytes()), Err(HlsError::MasterPlaylist)));
    }

    fn seg(uri: &str, d: f64, disc: bool) -> ServedSegment {
        ServedSegment::new(uri, d, disc)
    }

    #[test]
    fn live_playlists_have_integer_target_duration_and_no_endlist() {
        let text = live_playlist(&[seg("a.ts", 4.0, false), seg("b.ts", 4.2, true)], 12, 1);
        assert!(text.contains("#EXT-X-VERSION:3\n"));
        assert!(text.contains("#EXT-X-TARGETDURATION:5\n"), "{text}");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:12\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"));
        assert!(!text.contains("ENDLIST"));
        assert!(!text.contains("PLAYLIST-TYPE"));
        // What we write, we can read back.
        let back = parse_media_playlist(text.as_bytes()).unwrap();
        assert_eq!(back.segments.len(), 2);
        assert_eq!(back.media_sequence, 12);
    }

    #[test]
    fn vod_playlists_end() {
        let text = vod_playlist(&[seg("a.ts", 2.5, false)]);
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"));
        assert!(text.contains("#EXT-X-TARGETDURATION:3\n"));
        assert!(vod_playlist(&[]).contains("#EXT-X-TARGETDURATION:1\n"));
    }
}
