//! Live playback: an edge forwards real ffmpeg segments, players read the live playlist.

use livemix_common::hls::parse_media_playlist;

use crate::support::{ControlNode, FakeEdge, ffmpeg_segments, ffprobe, forward_segment, http};

#[tokio::test]
async fn live_playlist_lists_the_newest_segments_and_ffprobe_decodes_it() {
    let node = ControlNode::start(&["--live-segments=3"]).await;
    let (sid, _edge) = FakeEdge::streaming_source(&node).await;
    let sid = sid.as_str();

    let playlist_url = format!("{}/v1/vod/live/{sid}/vid.m3u8", node.vod);
    let resp = http().get(&playlist_url).send().await.unwrap();
    assert_eq!(resp.status(), 404, "no segments yet");
    let unknown = format!("{}/v1/vod/live/{}/vid.m3u8", node.vod, uuid::Uuid::new_v4());
    assert_eq!(http().get(&unknown).send().await.unwrap().status(), 404);
    let bad = format!("{}/v1/vod/live/not-a-uuid/vid.m3u8", node.vod);
    assert_eq!(http().get(&bad).send().await.unwrap().status(), 400);

    let segments = ffmpeg_segments().await;
    let mut sequences = Vec::new();
    for (i, (name, data)) in segments.iter().take(6).enumerate() {
        let resp = forward_segment(&node, sid, name, i as u64, data.clone()).await;
        assert_eq!(resp.status(), 200, "segment {name}");
        // A retry of the same segment is harmless.
        assert_eq!(forward_segment(&node, sid, name, i as u64, data.clone()).await.status(), 200);

        let resp = http().get(&playlist_url).send().await.unwrap();
        assert_eq!(resp.headers()["content-type"], "application/vnd.apple.mpegurl");
        let playlist = parse_media_playlist(&resp.bytes().await.unwrap()).unwrap();
        sequences.push(playlist.media_sequence);
        assert!(!playlist.ended);
        assert_eq!(playlist.segments.len(), (i + 1).min(3));
        assert_eq!(&playlist.segments.last().unwrap().uri, name, "newest segment last");
    }
    assert_eq!(sequences, vec![0, 0, 0, 1, 2, 3], "media sequence grows once the window slides");

    let text = http().get(&playlist_url).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("#EXT-X-VERSION:3"));
    assert!(text.contains("#EXT-X-TARGETDURATION:1\n") || text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
    let listed: Vec<&str> = text.lines().filter(|l| l.ends_with(".ts")).collect();
    assert_eq!(listed, vec!["seg3.ts", "seg4.ts", "seg5.ts"]);

    // Segments come back byte for byte, with the MPEG-TS type and CORS for browser players.
    let resp = http()
        .get(format!("{}/v1/vod/live/{sid}/seg5.ts", node.vod))
        .header("Origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "video/mp2t");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.bytes().await.unwrap(), segments[5].1);
    let resp = http().get(format!("{}/v1/vod/live/{sid}/..", node.vod)).send().await.unwrap();
    assert!(resp.status().is_client_error());

    // A real player reads it.
    let (frames, _) = ffprobe(&playlist_url).await;
    assert!(frames >= 60, "ffprobe decoded {frames} frames from the live playlist");
}
