//! Real video: MPEG-TS segments made by ffmpeg, and ffprobe as the player that judges what LiveMix serves.

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::unique;

/// Real MPEG-TS segments made by ffmpeg once per test process: about 1 s each, from the lavfi test source.
pub async fn ffmpeg_segments() -> &'static [(String, Bytes)] {
    static SEGMENTS: OnceCell<Vec<(String, Bytes)>> = OnceCell::const_new();
    SEGMENTS
        .get_or_init(|| async {
            let dir = std::env::temp_dir().join(unique("livemix-ffmpeg"));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let status = tokio::process::Command::new("ffmpeg")
                .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi"])
                .args(["-i", "testsrc=size=320x180:rate=30", "-t", "8", "-c:v", "libx264", "-preset", "veryfast"])
                .args(["-g", "30", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-f", "hls", "-hls_time", "1"])
                .args(["-hls_list_size", "0", "-hls_segment_filename"])
                .arg(dir.join("seg%d.ts"))
                .arg(dir.join("index.m3u8"))
                .status()
                .await
                .expect("ffmpeg must be installed (scripts/services.sh up installs it)");
            assert!(status.success(), "ffmpeg failed");
            let mut segments = Vec::new();
            for i in 0.. {
                let path: PathBuf = dir.join(format!("seg{i}.ts"));
                let Ok(data) = std::fs::read(&path) else { break };
                segments.push((format!("seg{i}.ts"), Bytes::from(data)));
            }
            assert!(segments.len() >= 6, "ffmpeg made {} segments", segments.len());
            segments
        })
        .await
}

/// ffprobe over a whole VOD URL: (decoded video frames, duration in seconds).
pub async fn ffprobe(url: &str) -> (u64, f64) {
    ffprobe_with(url, &[]).await
}

/// ffprobe over the first seconds of a live URL (a live playlist never ends).
pub async fn ffprobe_live(url: &str) -> (u64, f64) {
    ffprobe_with(url, &["-read_intervals", "%+3"]).await
}

async fn ffprobe_with(url: &str, extra: &[&str]) -> (u64, f64) {
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-rw_timeout", "15000000", "-count_frames", "-select_streams", "v:0"])
        .args(extra)
        .args(["-show_entries", "stream=nb_read_frames:format=duration", "-of", "json", url])
        .output()
        .await
        .expect("ffprobe must be installed (scripts/services.sh up installs it)");
    assert!(out.status.success(), "ffprobe {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let frames = json["streams"][0]["nb_read_frames"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let duration = json["format"]["duration"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    (frames, duration)
}
