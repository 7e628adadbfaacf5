//! What CDNs, hls.js and Safari rely on: validators, 304s, HEAD, byte ranges; and replicas that agree.

use bytes::Bytes;
use livemix_common::hls::parse_media_playlist;
use reqwest::{Method, StatusCode, header};

use crate::support::{ControlNode, ffmpeg_segments, forward_segment, http, unique};

async fn streaming_source(node: &ControlNode) -> String {
    let source = node.create_source(&unique("cam"), 1).await;
    let sid = source["id"].as_str().unwrap().to_owned();
    let resp = http().put(node.mgmt(&format!("/v1/source/{sid}/streaming?new_state=true"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    sid
}

#[tokio::test]
async fn segments_and_playlists_carry_validators_ranges_and_head() {
    let node = ControlNode::start(&[]).await;
    let sid = streaming_source(&node).await;
    let (name, data) = &ffmpeg_segments().await[0];
    assert_eq!(forward_segment(&node, &sid, name, 0, data.clone()).await.status(), 200);
    let url = format!("{}/v1/vod/live/{sid}/{name}", node.vod);

    let full = http().get(&url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    let etag = full.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "a strong tag: {etag}");
    let cache_control = full.headers()[header::CACHE_CONTROL].to_str().unwrap().to_owned();
    assert!(cache_control.contains("immutable") && cache_control.contains("max-age="), "{cache_control}");
    assert_eq!(full.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(full.bytes().await.unwrap(), data);

    // The player's copy is current: 304, no body, same tag.
    let again = http().get(&url).header(header::IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    let other = http().get(&url).header(header::IF_NONE_MATCH, "\"something-else\"").send().await.unwrap();
    assert_eq!(other.status(), 200);

    // HEAD: the headers of a GET, no body.
    let head = http().request(Method::HEAD, &url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()[header::CONTENT_LENGTH], data.len().to_string().as_str());
    assert_eq!(head.headers()[header::ETAG], etag.as_str());
    assert_eq!(head.headers()[header::CONTENT_TYPE], "video/mp2t");

    // Byte ranges, as hls.js and Safari ask for them.
    let part = http().get(&url).header(header::RANGE, "bytes=188-375").send().await.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()[header::CONTENT_RANGE], format!("bytes 188-375/{}", data.len()).as_str());
    assert_eq!(part.bytes().await.unwrap(), data.slice(188..376));
    let tail = http().get(&url).header(header::RANGE, "bytes=-188").send().await.unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.unwrap(), data.slice(data.len() - 188..));
    let open = http().get(&url).header(header::RANGE, format!("bytes={}-", data.len() - 1)).send().await.unwrap();
    assert_eq!(open.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(open.bytes().await.unwrap().len(), 1);
    let beyond = http().get(&url).header(header::RANGE, format!("bytes={}-", data.len())).send().await.unwrap();
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.headers()[header::CONTENT_RANGE], format!("bytes */{}", data.len()).as_str());
    let stale = http()
        .get(&url)
        .header(header::RANGE, "bytes=0-9")
        .header(header::IF_RANGE, "\"an-older-version\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200, "If-Range for another version: the whole segment");

    // The playlist: a short max-age, a tag, 304 while nothing changed, a new tag once a segment arrives.
    let playlist_url = format!("{}/v1/vod/live/{sid}/vid.m3u8", node.vod);
    let resp = http().get(&playlist_url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "public, max-age=0", "half a 1-second target duration");
    let tag = resp.headers()[header::ETAG].to_str().unwrap().to_owned();
    let same = http().get(&playlist_url).header(header::IF_NONE_MATCH, &tag).send().await.unwrap();
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
    let head = http().request(Method::HEAD, &playlist_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()[header::ETAG], tag.as_str());
    let (next, next_data) = &ffmpeg_segments().await[1];
    assert_eq!(forward_segment(&node, &sid, next, 1, next_data.clone()).await.status(), 200);
    let changed = http().get(&playlist_url).header(header::IF_NONE_MATCH, &tag).send().await.unwrap();
    assert_eq!(changed.status(), 200, "the replica that took the segment lists it at once");
    assert_ne!(changed.headers()[header::ETAG], tag.as_str());
    let playlist = parse_media_playlist(&changed.bytes().await.unwrap()).unwrap();
    assert_eq!(&playlist.segments.last().unwrap().uri, next);
}

#[tokio::test]
async fn a_segment_posted_to_one_replica_is_listed_and_served_by_another() {
    let (a, b) = (ControlNode::start(&[]).await, ControlNode::start(&[]).await);
    let sid = streaming_source(&a).await;
    let playlist_b = format!("{}/v1/vod/live/{sid}/vid.m3u8", b.vod);
    // B has looked (and remembers "nothing yet" for a moment) before A takes anything.
    assert_eq!(http().get(&playlist_b).send().await.unwrap().status(), 404);

    let segments = ffmpeg_segments().await;
    for (i, (name, data)) in segments.iter().take(4).enumerate() {
        assert_eq!(forward_segment(&a, &sid, name, i as u64, data.clone()).await.status(), 200);
        // B lists it within a fraction of the target duration, and every segment B lists, B serves.
        let listed = crate::support::eventually("replica B to list the new segment", || {
            let url = playlist_b.clone();
            let name = name.clone();
            async move {
                let resp = http().get(&url).send().await.ok()?;
                let text = resp.bytes().await.ok()?;
                let playlist = parse_media_playlist(&text).ok()?;
                (playlist.segments.last()?.uri == name).then_some(playlist)
            }
        })
        .await;
        for segment in &listed.segments {
            let resp = http().get(format!("{}/v1/vod/live/{sid}/{}", b.vod, segment.uri)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "B serves {} that it lists", segment.uri);
            let expected: &Bytes = &segments.iter().find(|(n, _)| *n == segment.uri).unwrap().1;
            assert_eq!(&resp.bytes().await.unwrap(), expected);
        }
    }
    // Both replicas give the same bytes the same tag, so a CDN in front of both revalidates with either.
    let url = |node: &ControlNode| format!("{}/v1/vod/live/{sid}/{}", node.vod, segments[3].0);
    let tag_a = http().get(url(&a)).send().await.unwrap().headers()[header::ETAG].clone();
    let tag_b = http().get(url(&b)).send().await.unwrap().headers()[header::ETAG].clone();
    assert_eq!(tag_a, tag_b);
}
