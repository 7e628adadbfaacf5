//! HLS playlists (RFC 8216): parsing what encoders push, writing what players read.

use chrono::{DateTime, Datelike, Utc};
use m3u8_rs::{MediaPlaylist, MediaPlaylistType, MediaSegment};

#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    #[error("not an HLS media playlist: {0}")]
    Malformed(String),
    #[error("a master playlist was given; push the media playlist of one rendition")]
    MasterPlaylist,
    /// A tag's value is out of the bounds LiveMix accepts; `field` names the tag (e.g. `#EXTINF`).
    #[error("{field}: {message}")]
    OutOfBounds { field: &'static str, message: String },
}

/// The longest segment accepted, in seconds. Encoders cut segments of a few seconds; anything near this is a
/// broken or hostile playlist, and bounding it here keeps every later time calculation far from overflow.
pub const MAX_SEGMENT_SECS: f64 = 600.0;

/// Program date-times outside these years are refused. The lower bound is the Unix epoch, not "recent": a camera
/// whose clock reset still streams (the edge then dates segments by its own clock); the upper bound keeps date
/// arithmetic far from chrono's limits (year 262142).
pub const PROGRAM_DATE_TIME_YEARS: std::ops::RangeInclusive<i32> = 1970..=2200;

/// The largest media sequence number accepted (for the last listed segment): a century of one-second segments
/// fits, and recorded object keys stay 12 digits wide so they sort in order.
pub const MAX_MEDIA_SEQUENCE: u64 = 999_999_999_999;

/// One segment listed by an encoder's playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    /// The URI as written in the playlist (usually a bare file name).
    pub uri: String,
    /// Finite, > 0 and at most [`MAX_SEGMENT_SECS`].
    pub duration_secs: f64,
    /// A discontinuity precedes this segment (encoder restart, timestamp jump...).
    pub discontinuity: bool,
    /// Within [`PROGRAM_DATE_TIME_YEARS`]; the encoder's clock, so only a hint.
    pub program_date_time: Option<DateTime<Utc>>,
}

/// An encoder's playlist, reduced to what LiveMix uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPlaylist {
    /// The media sequence number of the first listed segment; the last one's is at most [`MAX_MEDIA_SEQUENCE`].
    pub media_sequence: u64,
    pub segments: Vec<ListedSegment>,
    pub ended: bool,
}

impl ListedPlaylist {
    /// The listed segments with their media sequence numbers (RFC 8216 6.3.5: the first one's is
    /// `#EXT-X-MEDIA-SEQUENCE`, each next one's one more).
    pub fn numbered(&self) -> impl DoubleEndedIterator<Item = (u64, &ListedSegment)> + ExactSizeIterator {
        // Parsing bounded media_sequence + len by MAX_MEDIA_SEQUENCE; saturating for hand-built playlists.
        self.segments.iter().enumerate().map(|(i, s)| (self.media_sequence.saturating_add(i as u64), s))
    }

    /// The media sequence number of the last listed segment, if any.
    pub fn last_sequence(&self) -> Option<u64> {
        self.numbered().next_back().map(|(seq, _)| seq)
    }
}

/// Parses a media playlist as ffmpeg and other encoders write it; DISCONTINUITY, PROGRAM-DATE-TIME and ENDLIST
/// are understood, unknown tags ignored. Values out of bounds are refused here, at the door, naming the tag, so
/// nothing later has to wonder whether a duration or a date can overflow.
pub fn parse_media_playlist(data: &[u8]) -> Result<ListedPlaylist, HlsError> {
    let text = std::str::from_utf8(data).map_err(|_| HlsError::Malformed("playlist is not UTF-8".into()))?;
    if !text.trim_start().starts_with("#EXTM3U") {
        return Err(HlsError::Malformed("missing #EXTM3U header".into()));
    }
    check_extinf_numbers(text)?;
    // m3u8-rs tells master from media playlists by their tags (variant streams, renditions, session data).
    let playlist = match m3u8_rs::parse_playlist_res(data) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(playlist)) => playlist,
        Ok(m3u8_rs::Playlist::MasterPlaylist(_)) => return Err(HlsError::MasterPlaylist),
        Err(err) => return Err(HlsError::Malformed(format!("parse error: {err:?}").chars().take(200).collect())),
    };
    let segments = playlist.segments.iter().map(listed_segment).collect::<Result<Vec<_>, _>>()?;
    let last = playlist.media_sequence.checked_add(segments.len().saturating_sub(1) as u64);
    if last.is_none_or(|last| last > MAX_MEDIA_SEQUENCE) {
        return Err(HlsError::OutOfBounds {
            field: "#EXT-X-MEDIA-SEQUENCE",
            message: format!(
                "{} (+{} segments) is over the largest accepted sequence number {MAX_MEDIA_SEQUENCE}",
                playlist.media_sequence,
                segments.len()
            ),
        });
    }
    Ok(ListedPlaylist { media_sequence: playlist.media_sequence, segments, ended: playlist.end_list })
}

/// m3u8-rs reads the number at the start of an `#EXTINF` value and drops the rest, so `1e300` would pass as 1 s:
/// the duration must be a plain decimal number (RFC 8216 4.3.2.1: decimal-integer or decimal-floating-point).
fn check_extinf_numbers(text: &str) -> Result<(), HlsError> {
    for line in text.lines() {
        let Some(value) = line.trim().strip_prefix("#EXTINF:") else { continue };
        let duration = value.split(',').next().unwrap_or("").trim();
        let (whole, fraction) = duration.split_once('.').unwrap_or((duration, "0"));
        let digits = |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(fraction) {
            return Err(HlsError::OutOfBounds {
                field: "#EXTINF",
                message: format!(
                    "duration {:?} is not a decimal number of seconds",
                    duration.chars().take(40).collect::<String>()
                ),
            });
        }
    }
    Ok(())
}

fn listed_segment(segment: &MediaSegment) -> Result<ListedSegment, HlsError> {
    let uri = segment.uri.trim().to_owned();
    if uri.is_empty() {
        return Err(HlsError::Malformed("a segment entry has no URI".into()));
    }
    let duration_secs = f64::from(segment.duration);
    if !(duration_secs.is_finite() && duration_secs > 0.0 && duration_secs <= MAX_SEGMENT_SECS) {
        return Err(HlsError::OutOfBounds {
            field: "#EXTINF",
            message: format!(
                "duration {} of {uri:?} must be over 0 and at most {MAX_SEGMENT_SECS} s",
                segment.duration
            ),
        });
    }
    let program_date_time = program_date_time(segment)?;
    if let Some(at) = program_date_time
        && !PROGRAM_DATE_TIME_YEARS.contains(&at.year())
    {
        return Err(HlsError::OutOfBounds {
            field: "#EXT-X-PROGRAM-DATE-TIME",
            message: format!(
                "{} (of {uri:?}) is outside the years {}..={}",
                at.to_rfc3339(),
                PROGRAM_DATE_TIME_YEARS.start(),
                PROGRAM_DATE_TIME_YEARS.end()
            ),
        });
    }
    Ok(ListedSegment { uri, duration_secs, discontinuity: segment.discontinuity, program_date_time })
}

/// The segment's PROGRAM-DATE-TIME. m3u8-rs reads RFC 3339; ffmpeg writes a `+0000` offset, which is not RFC 3339,
/// so m3u8-rs keeps that as an unknown tag: read it from there. A tag that is present but unreadable is refused
/// rather than ignored.
fn program_date_time(segment: &MediaSegment) -> Result<Option<DateTime<Utc>>, HlsError> {
    if let Some(at) = segment.program_date_time {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    let Some(tag) = segment.unknown_tags.iter().find(|t| t.tag == "X-PROGRAM-DATE-TIME") else { return Ok(None) };
    let value = tag.rest.as_deref().unwrap_or_default().trim();
    DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f%z").map(|t| Some(t.with_timezone(&Utc))).map_err(|err| {
        HlsError::OutOfBounds {
            field: "#EXT-X-PROGRAM-DATE-TIME",
            message: format!("{:?} is not a date-time: {err}", value.chars().take(64).collect::<String>()),
        }
    })
}

/// A segment to list in a playlist LiveMix serves.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedSegment {
    /// URI relative to the playlist.
    pub uri: String,
    pub duration_secs: f64,
    pub discontinuity: bool,
    /// `#EXT-X-PROGRAM-DATE-TIME`: when the segment starts, for players that seek by wall-clock time.
    pub program_date_time: Option<DateTime<Utc>>,
}

impl ServedSegment {
    pub fn new(uri: impl Into<String>, duration_secs: f64, discontinuity: bool) -> Self {
        Self { uri: uri.into(), duration_secs, discontinuity, program_date_time: None }
    }

    /// The same segment, tagged with the moment it starts.
    pub fn starting_at(mut self, start: DateTime<Utc>) -> Self {
        self.program_date_time = Some(start);
        self
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
            program_date_time: s.program_date_time.map(|t| t.fixed_offset()),
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

    fn out_of_bounds(text: &str) -> &'static str {
        match parse_media_playlist(text.as_bytes()) {
            Err(HlsError::OutOfBounds { field, .. }) => field,
            other => panic!("expected a bounds error for {text:?}, got {other:?}"),
        }
    }

    fn one_segment(tags: &str) -> String {
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n{tags}\nseg.ts\n")
    }

    #[test]
    fn hostile_durations_are_refused_naming_the_tag() {
        for extinf in [
            "#EXTINF:100000000000000,",
            "#EXTINF:0,",
            "#EXTINF:-1,",
            "#EXTINF:601,",
            "#EXTINF:inf,",
            "#EXTINF:1e300,",
            "#EXTINF:1e30,",
            "#EXTINF:NaN,",
            "#EXTINF:0x10,",
            "#EXTINF:1.,",
            "#EXTINF:,",
        ] {
            let text = one_segment(extinf);
            let field = match parse_media_playlist(text.as_bytes()) {
                Err(HlsError::OutOfBounds { field, .. }) => field,
                // m3u8-rs may not read some of these as numbers at all; still refused.
                Err(HlsError::Malformed(_)) => "#EXTINF",
                other => panic!("{extinf}: {other:?}"),
            };
            assert_eq!(field, "#EXTINF", "{extinf}");
        }
        let err = parse_media_playlist(one_segment("#EXTINF:100000000000000,").as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("#EXTINF: "), "{err}");
        assert!(parse_media_playlist(one_segment("#EXTINF:600,").as_bytes()).is_ok());
    }

    #[test]
    fn hostile_program_date_times_are_refused_but_a_reset_clock_is_not() {
        for pdt in ["262142-01-01T00:00:00.000+0000", "+262142-01-01T00:00:00Z", "2201-01-01T00:00:00Z", "yesterday"] {
            let text = one_segment(&format!("#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:2,"));
            assert_eq!(out_of_bounds(&text), "#EXT-X-PROGRAM-DATE-TIME", "{pdt}");
        }
        for pdt in ["1970-01-01T00:00:05.000+0000", "1970-01-01T00:00:05Z", "2200-12-31T23:59:59Z"] {
            let text = one_segment(&format!("#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:2,"));
            let p = parse_media_playlist(text.as_bytes()).unwrap_or_else(|e| panic!("{pdt}: {e}"));
            assert!(p.segments[0].program_date_time.is_some(), "{pdt}");
        }
    }

    #[test]
    fn absurd_media_sequences_are_refused() {
        let text = |seq: &str| format!("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:{seq}\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n");
        assert_eq!(out_of_bounds(&text("999999999999")), "#EXT-X-MEDIA-SEQUENCE", "the second one is over");
        assert_eq!(out_of_bounds(&text(&u64::MAX.to_string())), "#EXT-X-MEDIA-SEQUENCE");
        let p = parse_media_playlist(text("999999999998").as_bytes()).unwrap();
        assert_eq!(
            p.numbered().map(|(seq, s)| (seq, s.uri.as_str())).collect::<Vec<_>>(),
            [(999_999_999_998, "a.ts"), (999_999_999_999, "b.ts")]
        );
        assert_eq!(p.last_sequence(), Some(999_999_999_999));
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

    /// Found by the edge's hostile battery: m3u8-rs read `#EXTINF:1e300,` as 1 s.
    #[test]
    fn exponent_durations_are_not_read_as_their_mantissa() {
        let err = parse_media_playlist(one_segment("#EXTINF:1e300,").as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("#EXTINF: "), "{err}");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// Lines an encoder (or an attacker) might write, to build playlist-shaped inputs from.
        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("#EXTM3U".to_owned()),
                Just("#EXT-X-DISCONTINUITY".to_owned()),
                Just("#EXT-X-ENDLIST".to_owned()),
                any::<u64>().prop_map(|n| format!("#EXT-X-MEDIA-SEQUENCE:{n}")),
                any::<u32>().prop_map(|n| format!("#EXT-X-TARGETDURATION:{n}")),
                "[-+0-9.eEnaif]{0,12}".prop_map(|d| format!("#EXTINF:{d},")),
                any::<f64>().prop_map(|d| format!("#EXTINF:{d},")),
                "[0-9+:TZ.-]{0,30}".prop_map(|t| format!("#EXT-X-PROGRAM-DATE-TIME:{t}")),
                "[a-z0-9./%_-]{1,20}",
                "\\PC{0,20}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_media_playlist(&data);
            }

            #[test]
            fn playlist_shaped_input_never_panics_and_stays_in_bounds(
                lines in proptest::collection::vec(line(), 0..40)
            ) {
                let text = format!("#EXTM3U\n{}\n", lines.join("\n"));
                if let Ok(playlist) = parse_media_playlist(text.as_bytes()) {
                    for segment in &playlist.segments {
                        prop_assert!(segment.duration_secs > 0.0 && segment.duration_secs <= MAX_SEGMENT_SECS);
                        prop_assert!(!segment.uri.is_empty());
                    }
                    if let Some(last) = playlist.last_sequence() {
                        prop_assert!(last <= MAX_MEDIA_SEQUENCE);
                    }
                }
            }

            #[test]
            fn well_formed_playlists_read_back_exactly(
                sequence in 0u64..1_000_000,
                durations in proptest::collection::vec(1u32..600_000, 1..20)
            ) {
                let mut text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:600\n#EXT-X-MEDIA-SEQUENCE:{sequence}\n");
                for (i, ms) in durations.iter().enumerate() {
                    text.push_str(&format!("#EXTINF:{}.{:03},\nseg{i}.ts\n", ms / 1000, ms % 1000));
                }
                let playlist = parse_media_playlist(text.as_bytes()).unwrap();
                prop_assert_eq!(playlist.media_sequence, sequence);
                prop_assert_eq!(playlist.segments.len(), durations.len());
                for (segment, ms) in playlist.segments.iter().zip(&durations) {
                    prop_assert!((segment.duration_secs - f64::from(*ms) / 1000.0).abs() < 1e-3);
                }
            }
        }
    }
}
