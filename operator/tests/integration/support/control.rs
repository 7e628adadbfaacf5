//! A real control node, in this process, on the real backing services (the shared testkit's), with a management
//! token the operator must present.

use std::time::Duration;

use livemix_operator::ControlClient;

/// The management token every test control node requires; the operator must send it.
pub const MANAGEMENT_TOKEN: &str = "operator-test-token";

pub struct ControlNode {
    /// Root URL of the management API.
    pub management: String,
    node: livemix_testkit::control::ControlNode,
}

impl ControlNode {
    /// Starts a control node requiring [`MANAGEMENT_TOKEN`]; edge commands time out after a second, so a silent
    /// edge is quick to notice.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`Self::start`] with more control-node flags, e.g. `--edge-tokens=...`.
    pub async fn start_with(extra_flags: &[&str]) -> Self {
        let token = format!("--management-token={MANAGEMENT_TOKEN}");
        let mut flags = vec![token.as_str(), "--command-timeout-ms=1000"];
        flags.extend_from_slice(extra_flags);
        let node = livemix_testkit::control::ControlNode::start(&flags).await;
        Self { management: node.management.clone(), node }
    }

    /// The operator's management-API client, with the right token.
    pub fn client(&self) -> ControlClient {
        ControlClient::new(&self.management, Some(MANAGEMENT_TOKEN.into()), Duration::from_secs(15))
            .expect("control client")
    }

    /// Reports status for a source as its edge would, making it reachable and naming `rr_target` as its edge.
    pub async fn edge_report(&self, source_id: uuid::Uuid, rr_target: &str) {
        let response = self.node.edge_report(&source_id.to_string(), rr_target).await;
        assert!(response.status().is_success(), "edge status report: {}", response.status());
    }

    /// Stops the node and waits until it has shut down.
    pub async fn stop(self) {
        self.node.stop().await;
    }
}
