//! `livemix-operator`: the operator binary.

use std::process::ExitCode;

use anyhow::Context as _;
use livemix_common::{
    signal::shutdown_signal,
    telemetry::{Metrics, init_logging},
};
use livemix_operator::{Operator, config::OperatorArgs, http};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let args: OperatorArgs = livemix_common::config::parse();
    init_logging(&args.log);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let message = describe(&err);
            tracing::error!("{message}");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting livemix-operator");
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster service account, or KUBECONFIG)")?;
    let metrics = Metrics::new("livemix_operator");
    let operator = Operator::new(client, args.settings, &metrics)?;
    let listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding the metrics and health server to {}", args.http_addr))?;
    tracing::info!(addr = %args.http_addr, "serving /metrics and /health");

    let stop = CancellationToken::new();
    let server =
        tokio::spawn(http::serve(listener, http::router(metrics, operator.metrics()), stop.clone().cancelled_owned()));
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            stop.cancel();
        }
    });
    operator.run(stop.cancelled_owned()).await?;
    server.await.context("metrics server task")?.context("metrics server")?;
    Ok(())
}

/// The error and its causes, skipping a cause whose text its parent already quotes (kube's errors do).
fn describe(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}
