//! The CRDs install from `crds/`, are Established, and kubectl shows the printer columns, short names and the
//! `livemix` category.

use kube::Api;
use livemix_operator::crd::{Recording, VideoSource};

use crate::support::{
    Fixture, RunningOperator, kubectl_ok, kubectl_with_input, ready, unique, wait_recording, wait_source,
};

/// Splits kubectl's table line into cells (columns are separated by at least two spaces; "LAST SEEN" has one).
fn cells(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|cell| !cell.is_empty()).map(str::to_owned).collect()
}

/// kubectl's table as (header, the row of `name`). Cells are cut at the header's column starts, as kubectl aligns
/// them, so an empty cell (a field not set) stays in its column.
fn table(output: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = output.lines();
    let header_line = lines.next().unwrap_or_default();
    let header = cells(header_line);
    let mut starts = Vec::new();
    let mut from = 0;
    for title in &header {
        let at = header_line[from..].find(title.as_str()).map_or(from, |i| from + i);
        starts.push(at);
        from = at + title.len();
    }
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = starts.get(i + 1).copied().unwrap_or(line.len()).min(line.len());
                line.get(start.min(end)..end).unwrap_or_default().trim().to_owned()
            })
            .collect()
    };
    let row = lines
        .map(cut)
        .find(|row| row.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{output}"));
    (header, row)
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let Fixture { ns, node, mut settings, .. } = Fixture::new().await;
    // Reachability comes from the control node, re-read on every resync.
    settings.resync_secs = 1;
    let operator = RunningOperator::start(settings).await;

    let (cam, rec_name) = (unique("cam"), unique("rec"));
    let manifest = format!(
        "apiVersion: livemix.io/v1alpha1\nkind: VideoSource\nmetadata:\n  name: {cam}\nspec:\n  segmentLength: 2\n  \
         streaming: true\n---\napiVersion: livemix.io/v1alpha1\nkind: Recording\nmetadata:\n  name: {rec_name}\n\
         spec:\n  source: {cam}\n"
    );
    let (ok, stdout, stderr) =
        kubectl_with_input(&["apply", "--server-side", "--validate=strict", "-n", &ns.name, "-f", "-"], &manifest)
            .await;
    assert!(ok, "kubectl apply: {stdout}{stderr}");

    let sources: Api<VideoSource> = ns.api();
    let vs = wait_source(&sources, &cam, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await;
    let id = vs.source_id().expect("registered");
    let recordings: Api<Recording> = ns.api();
    wait_recording(&recordings, &rec_name, |rec| {
        let status = rec.status.as_ref().unwrap();
        ready(&status.conditions)?;
        if status.active { Ok(()) } else { Err("not active yet".into()) }
    })
    .await;
    // An edge reports (and never answers commands: everything it needs is in place already).
    node.edge_report(id, "edge-test-topic").await;
    wait_source(&sources, &cam, |vs| {
        let status = vs.status.as_ref().unwrap();
        if status.reachable && status.streaming { Ok(()) } else { Err("not reachable and streaming yet".into()) }
    })
    .await;

    let out = kubectl_ok(&["get", "videosources", "-n", &ns.name]).await;
    let (header, row) = table(&out, &cam);
    assert_eq!(header, ["NAME", "STREAMING", "REACHABLE", "RECORDING", "READY", "LAST SEEN", "AGE"], "{out}");
    assert_eq!(row[..5], [cam.as_str(), "true", "true", "onDemand", "True"], "{out}");

    let out = kubectl_ok(&["get", "vsrc", "-n", &ns.name, "-o", "wide"]).await;
    let (header, row) = table(&out, &cam);
    assert_eq!(
        header,
        [
            "NAME",
            "STREAMING",
            "REACHABLE",
            "RECORDING",
            "READY",
            "LAST SEEN",
            "ID",
            "EDGE",
            "STORED BYTES",
            "LIVE URL",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(row[6], id.to_string(), "{out}");
    assert_eq!(row[7], "", "bound to no edge: {out}");
    assert_eq!(row[8], "0", "{out}");
    assert_eq!(row[9], format!("https://vod.example.com/v1/vod/live/{id}/vid.m3u8"), "{out}");

    let out = kubectl_ok(&["get", "recordings", "-n", &ns.name]).await;
    let (header, row) = table(&out, &rec_name);
    assert_eq!(header, ["NAME", "SOURCE", "ACTIVE", "SEGMENTS", "RECORDED", "HOLD", "READY", "START", "AGE"], "{out}");
    assert_eq!(row[..7], [rec_name.as_str(), cam.as_str(), "true", "0", "0", "false", "True"], "{out}");

    let out = kubectl_ok(&["get", "rec", "-n", &ns.name, "-o", "wide"]).await;
    let (header, _) = table(&out, &rec_name);
    assert_eq!(
        header,
        [
            "NAME",
            "SOURCE",
            "ACTIVE",
            "SEGMENTS",
            "RECORDED",
            "HOLD",
            "READY",
            "START",
            "END",
            "GAPS",
            "VERIFIED",
            "STORED BYTES",
            "EXPIRES",
            "ID",
            "PLAYLIST URL",
            "AGE"
        ],
        "{out}"
    );

    // The category lists both kinds.
    let out = kubectl_ok(&["get", "livemix", "-n", &ns.name, "-o", "name"]).await;
    assert!(out.contains(&format!("videosource.livemix.io/{cam}")), "{out}");
    assert!(out.contains(&format!("recording.livemix.io/{rec_name}")), "{out}");

    // Deleted with kubectl, which waits for the finalizers.
    kubectl_ok(&["delete", "-n", &ns.name, "recording", &rec_name, "--timeout=30s"]).await;
    kubectl_ok(&["delete", "-n", &ns.name, "videosource", &cam, "--timeout=30s"]).await;
    assert!(node.client().get_source(id).await.unwrap_err().is_not_found());

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}
