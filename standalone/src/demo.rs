//! `--demo`: everything a newcomer would do by hand, through the same public APIs — register a camera, push
//! ffmpeg's test pattern into the edge, turn streaming on, record a few seconds — then print what to play.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// The demo camera's name.
pub const CAMERA: &str = "demo-camera";
/// How long the demo's recording runs.
const RECORD_FOR: Duration = Duration::from_secs(8);

/// Where this process's APIs answer.
#[derive(Debug, Clone)]
pub struct Urls {
    pub management: String,
    pub vod: String,
    pub ingest: String,
}

/// Runs the demo until `stop`; a failure is reported and leaves LiveMix running.
pub async fn run(urls: Urls, stop: CancellationToken) {
    match demo(&urls).await {
        Ok(_ffmpeg) => stop.cancelled().await,
        Err(err) => {
            tracing::error!("demo failed: {err:#}");
            eprintln!("demo: {err:#}");
        }
    }
}

/// Returns the ffmpeg process, which runs (and is killed) with the returned handle.
async fn demo(urls: &Urls) -> anyhow::Result<Option<Child>> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    wait_until("the control node to be ready", || async {
        let ready = http.get(format!("{}/liveness/ready", urls.management)).send().await.ok()?;
        ready.status().is_success().then_some(())
    })
    .await?;
    let id = camera(&http, &urls.management).await?;
    let Some(ffmpeg_path) = find_on_path("ffmpeg") else {
        println!(
            "\nThe demo camera {CAMERA} ({id}) is registered, but ffmpeg is not on PATH, so nothing feeds it.\n\
             Install ffmpeg (apt install ffmpeg, brew install ffmpeg) and run `livemix --demo` again, or push any \
             HLS encoder to {}/v1/ingest/{CAMERA}/index.m3u8.\n",
            urls.ingest
        );
        return Ok(None);
    };
    let ffmpeg = test_pattern(ffmpeg_path, &format!("{}/v1/ingest/{CAMERA}/index.m3u8", urls.ingest))?;
    println!("demo: ffmpeg pushes a test pattern to {CAMERA}; waiting for the edge to report it");
    // The edge reports the camera once segments arrive; then it takes commands for it.
    let streaming = format!("{}/v1/source/{id}/streaming?new_state=true", urls.management);
    wait_until("the edge to take the camera (is ffmpeg running?)", || async {
        http.put(&streaming).send().await.ok()?.status().is_success().then_some(())
    })
    .await?;
    let summary = format!("{}/v1/source/{id}/live", urls.management);
    wait_until("the first live segments", || async {
        let body: Value = http.get(&summary).send().await.ok()?.json().await.ok()?;
        (body["live"]["segments"].as_i64()? > 0).then_some(())
    })
    .await?;
    let live = format!("{}/v1/vod/live/{id}/vid.m3u8", urls.vod);
    let recording: Value = http
        .post(format!("{}/v1/source/{id}/recording", urls.management))
        .json(&json!({"description": "livemix --demo"}))
        .send()
        .await?
        .error_for_status()
        .context("starting the recording")?
        .json()
        .await?;
    let recording_id = recording["recording"]["id"].as_str().context("recording id in the reply")?.to_owned();
    println!(
        "\nLiveMix demo is running.\n  \
           Live:    ffplay {live}\n  \
           Replay:  ffplay {}/v1/vod/recording/{recording_id}/vid.m3u8   (records {} s, then stops)\n  \
           Sources: curl -s {}/v1/source\n\
         Ctrl-C stops it; state stays in the data directory.\n",
        urls.vod,
        RECORD_FOR.as_secs(),
        urls.management,
    );
    tokio::time::sleep(RECORD_FOR).await;
    http.post(format!("{}/v1/recording/{recording_id}/stop", urls.management))
        .send()
        .await?
        .error_for_status()
        .context("stopping the recording")?;
    println!("demo: recording {recording_id} stopped");
    Ok(Some(ffmpeg))
}

/// The demo camera's id, registering it unless an earlier run did.
async fn camera(http: &reqwest::Client, management: &str) -> anyhow::Result<String> {
    let found: Value = http
        .get(format!("{management}/v1/source?source_name={CAMERA}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if let Some(id) = found["sources"][0]["id"].as_str() {
        return Ok(id.to_owned());
    }
    let created: Value = http
        .post(format!("{management}/v1/source"))
        .json(&json!({"name": CAMERA, "segment_len": 2, "description": "livemix --demo test pattern"}))
        .send()
        .await?
        .error_for_status()
        .context("registering the demo camera")?
        .json()
        .await?;
    Ok(created["source"]["id"].as_str().context("source id in the reply")?.to_owned())
}

/// ffmpeg's test pattern as 2-second HLS segments, uploaded to `url`; killed when the handle drops.
fn test_pattern(ffmpeg: PathBuf, url: &str) -> anyhow::Result<Child> {
    let args = [
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=30",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "60",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_list_size",
        "5",
        "-hls_flags",
        "delete_segments",
        "-method",
        "PUT",
        url,
    ];
    Command::new(ffmpeg).args(args).stdin(Stdio::null()).kill_on_drop(true).spawn().context("starting ffmpeg")
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|path| path.is_file())
}

/// Polls `check` twice a second for up to a minute.
async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    for _ in 0..120 {
        if check().await.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("timed out waiting for {what}")
}
