//! Setup: K sources registered through the management API, streaming on, one simulated camera each.

use anyhow::Context;
use serde_json::json;

use crate::{
    camera::Camera,
    cli::RunArgs,
    http::json_ok,
    stats::{Latencies, Summary},
};

/// How long the management API took during setup.
pub struct Setup {
    pub register: Summary,
    pub streaming: Summary,
}

/// Registers `--sources` cameras and turns streaming on for each. Every source id goes into `registered` as soon
/// as it exists, so that the caller deletes it even when a later step fails.
pub async fn register_cameras(
    args: &RunArgs,
    admin: &reqwest::Client,
    registered: &mut Vec<String>,
) -> anyhow::Result<(Setup, Vec<Camera>)> {
    let mgmt = args.management();
    eprintln!("[bench] registering {} sources", args.sources);
    let (register, streaming) = (Latencies::default(), Latencies::default());
    let mut cameras = Vec::with_capacity(args.sources);
    for i in 0..args.sources {
        let name = format!("{}-cam-{i}", args.name_prefix);
        let (reply, elapsed) = json_ok(
            admin
                .post(format!("{mgmt}/v1/source"))
                .json(&json!({"name": name, "segment_len": args.segment_duration.ceil() as u64, "description": "livemix-bench camera"})),
            "registering a source",
        )
        .await?;
        register.record(elapsed);
        let id = reply["source"]["id"].as_str().context("source id in reply")?.to_owned();
        registered.push(id.clone());
        cameras.push(Camera::new(i, name, id));
    }
    for cam in &cameras {
        let (_, elapsed) =
            json_ok(admin.put(format!("{mgmt}/v1/source/{}/streaming?new_state=true", cam.id)), "turning streaming on")
                .await?;
        streaming.record(elapsed);
    }
    Ok((Setup { register: register.summary(), streaming: streaming.summary() }, cameras))
}
