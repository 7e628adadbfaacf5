//! `livemix-operator`: the operator binary.

use std::process::ExitCode;

use anyhow::Context as _;
use livemix_common::{
    signal::shutdown_signal,
    telemetry::{Metrics, init_logging},
};
use livemix_operator::{Operator, config::OperatorArgs, http, leader, readiness::Role};
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
    args.leader.validate().map_err(anyhow::Error::msg)?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster service account, or KUBECONFIG)")?;
    let metrics = Metrics::new("livemix_operator");
    let instance = args.settings.instance.clone().unwrap_or_else(|| livemix_common::config::host_scoped_id("operator"));
    let watched = args.settings.namespace.clone();
    let operator = Operator::new(client.clone(), args.settings, &metrics)?;
    let readiness = operator.readiness();
    let listener = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding the metrics and health server to {}", args.http_addr))?;
    tracing::info!(addr = %args.http_addr, "serving /metrics and /health");

    let stop = CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listener,
        http::router(metrics, operator.metrics(), readiness.clone()),
        stop.clone().cancelled_owned(),
    ));
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            stop.cancel();
        }
    });
    if args.leader.leader_elect {
        let namespace = args.leader.namespace(watched.as_deref()).context(
            "leader election needs the Lease's namespace: set POD_NAMESPACE (the chart does) or --lease-namespace",
        )?;
        let lease = loop {
            match args.leader.lease_manager(client.clone(), &namespace, &instance).await {
                Ok(lease) => break lease,
                Err(err) if !stop.is_cancelled() => {
                    tracing::warn!(%err, "cannot set up the Lease {namespace}/{}; retrying", args.leader.lease_name);
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                    }
                }
                Err(_) => return Ok(()),
            }
        };
        tracing::info!(lease = %format!("{namespace}/{}", args.leader.lease_name), "leader election on");
        let elected = leader::run_elected(&lease, &readiness, stop.clone(), args.leader.stop_timeout(), |term| {
            operator.run_controllers(term.cancelled_owned())
        })
        .await;
        // A deposed leader exits (non-zero) so Kubernetes restarts it as a follower with fresh state.
        stop.cancel();
        elected.context("leader election")?;
    } else {
        readiness.set_role(Role::Standalone);
        operator.run(stop.cancelled_owned()).await?;
    }
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
