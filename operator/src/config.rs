//! Command-line flags, environment variables and config-file settings of `livemix-operator`.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use livemix_common::{config::ConfigFileArgs, telemetry::LogArgs};

use crate::backoff::Backoff;

/// LiveMix operator: reconciles VideoSource and Recording resources against the control node.
#[derive(Debug, Clone, Parser)]
#[command(name = "livemix-operator", version, about, max_term_width = 110)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub config: ConfigFileArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// Address of the operator's own HTTP server: `/metrics` and `/health`.
    #[arg(long, env = "LIVEMIX_OPERATOR_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub settings: Settings,

    #[command(flatten)]
    pub leader: crate::leader::LeaderArgs,
}

const DEFAULT_RESYNC_SECS: u64 = 30;
const DEFAULT_BACKOFF_BASE_MS: u64 = 1000;
const DEFAULT_BACKOFF_MAX_SECS: u64 = 300;
const DEFAULT_CONTROL_TIMEOUT_MS: u64 = 15_000;
const DEFAULT_CONCURRENCY: u16 = 4;

/// How the reconcilers behave; separate from the process flags so tests and an in-process operator can build
/// it directly.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Root URL of the control node's management API.
    #[arg(long, env = "LIVEMIX_CONTROL_URL", default_value = "http://livemix-control:8080")]
    pub control_url: String,
    /// Bearer token for the management API (the control node's `--management-token`).
    #[arg(long, env = "LIVEMIX_MANAGEMENT_TOKEN", hide_env_values = true)]
    pub management_token: Option<String>,
    /// Public root URL of the control node's VOD API, used to build `liveUrl` and `playlistUrl`, e.g.
    /// `https://video.example.com`. Unset: the status shows no URLs.
    #[arg(long, env = "LIVEMIX_VOD_PUBLIC_URL")]
    pub vod_public_url: Option<String>,
    /// Watch only this namespace; unset: all namespaces.
    #[arg(long, env = "LIVEMIX_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// How often a resource in step is re-read from the control node (reachability, segment counts), in seconds.
    #[arg(long, env = "LIVEMIX_OPERATOR_RESYNC_SECS", default_value_t = DEFAULT_RESYNC_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub resync_secs: u64,
    /// First retry delay after a failed reconcile, in milliseconds; it doubles with each failure.
    #[arg(long, env = "LIVEMIX_OPERATOR_BACKOFF_BASE_MS", default_value_t = DEFAULT_BACKOFF_BASE_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub backoff_base_ms: u64,
    /// Longest retry delay after repeated failures, in seconds.
    #[arg(long, env = "LIVEMIX_OPERATOR_BACKOFF_MAX_SECS", default_value_t = DEFAULT_BACKOFF_MAX_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub backoff_max_secs: u64,
    /// Timeout of one management-API request, in milliseconds; longer than the control node's command timeout,
    /// so an edge that does not confirm is reported as such.
    #[arg(long, env = "LIVEMIX_CONTROL_TIMEOUT_MS", default_value_t = DEFAULT_CONTROL_TIMEOUT_MS)]
    pub control_timeout_ms: u64,
    /// Most reconciles of one kind running at once (each controller has its own bound); 0: no bound.
    #[arg(long, env = "LIVEMIX_OPERATOR_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: u16,
    /// Name of this operator instance in Kubernetes Events (e.g. the pod name); default: the host name.
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
}

impl Settings {
    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_secs.max(1))
    }

    pub fn control_timeout(&self) -> Duration {
        Duration::from_millis(self.control_timeout_ms.max(1))
    }

    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.backoff_base_ms.max(1)),
            Duration::from_secs(self.backoff_max_secs.max(1)),
        )
    }

    /// Settings for talking to the control node at `control_url`, every other value at its default and nothing
    /// read from the environment (for tests and in-process operators).
    pub fn for_control(control_url: &str, management_token: Option<String>) -> Self {
        Self {
            control_url: control_url.to_owned(),
            management_token,
            vod_public_url: None,
            namespace: None,
            resync_secs: DEFAULT_RESYNC_SECS,
            backoff_base_ms: DEFAULT_BACKOFF_BASE_MS,
            backoff_max_secs: DEFAULT_BACKOFF_MAX_SECS,
            control_timeout_ms: DEFAULT_CONTROL_TIMEOUT_MS,
            concurrency: DEFAULT_CONCURRENCY,
            instance: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_flags() {
        let parsed = OperatorArgs::try_parse_from(["livemix-operator"]).unwrap().settings;
        let built = Settings::for_control("http://c:8080", None);
        assert_eq!(
            (
                parsed.resync_secs,
                parsed.backoff_base_ms,
                parsed.backoff_max_secs,
                parsed.control_timeout_ms,
                parsed.concurrency
            ),
            (
                built.resync_secs,
                built.backoff_base_ms,
                built.backoff_max_secs,
                built.control_timeout_ms,
                built.concurrency
            )
        );
    }
}
