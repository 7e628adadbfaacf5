//! When a segment played, by the edge's clock.
//!
//! Recording membership must not depend on the encoder's clock: a camera whose clock reset to 1970 still
//! records. An encoder posts its playlist once the newest segment is complete, so the newest segment ends at the
//! edge's receive time and each listed segment starts its duration before the next one. The encoder's
//! `#EXT-X-PROGRAM-DATE-TIME` only refines that estimate when it is close to it ([`PROGRAM_DATE_TIME_TRUSTED`]).

use chrono::{DateTime, TimeDelta, Utc};
use livemix_common::hls::ListedPlaylist;

/// How far the encoder's date may be from the edge's estimate and still be believed.
pub const PROGRAM_DATE_TIME_TRUSTED: TimeDelta = TimeDelta::minutes(10);

/// The start of every listed segment, in listing order, for a playlist received at `received_at`. All arithmetic
/// is checked: a value that cannot be computed falls back to the edge's own estimate, never panics.
pub fn start_times(playlist: &ListedPlaylist, received_at: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut end = received_at;
    let mut starts: Vec<DateTime<Utc>> = playlist
        .segments
        .iter()
        .rev()
        .map(|listed| {
            let estimate = TimeDelta::try_milliseconds((listed.duration_secs * 1000.0).round() as i64)
                .and_then(|duration| end.checked_sub_signed(duration))
                .unwrap_or(end);
            let start = listed.program_date_time.filter(|pdt| sane(*pdt, estimate)).unwrap_or(estimate);
            end = start;
            start
        })
        .collect();
    starts.reverse();
    starts
}

fn sane(program_date_time: DateTime<Utc>, estimate: DateTime<Utc>) -> bool {
    program_date_time.signed_duration_since(estimate).abs() <= PROGRAM_DATE_TIME_TRUSTED
}

#[cfg(test)]
mod tests {
    use livemix_common::hls::parse_media_playlist;

    use super::*;

    fn playlist(pdt: &str) -> ListedPlaylist {
        let text = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:{pdt}\n#EXTINF:2.0,\na.ts\n#EXTINF:1.5,\nb.ts\n"
        );
        parse_media_playlist(text.as_bytes()).unwrap()
    }

    #[test]
    fn segments_end_at_the_receive_time() {
        let now = Utc::now();
        let starts = start_times(&playlist("1970-01-01T00:00:05.000+0000"), now);
        assert_eq!(starts, vec![now - TimeDelta::milliseconds(3500), now - TimeDelta::milliseconds(1500)]);
    }

    #[test]
    fn a_sane_program_date_time_refines_the_estimate() {
        let now = Utc::now();
        let pdt = now - TimeDelta::seconds(8);
        let starts = start_times(&playlist(&pdt.to_rfc3339()), now);
        assert_eq!(starts[0], pdt, "the encoder's date, 4.5 s off the estimate, is believed");
        assert_eq!(starts[1], now - TimeDelta::milliseconds(1500));
    }

    #[test]
    fn extremes_do_not_panic() {
        let min = DateTime::<Utc>::MIN_UTC;
        let starts = start_times(&playlist("2200-12-31T23:59:59Z"), min);
        assert_eq!(starts, vec![min, min]);
    }
}
