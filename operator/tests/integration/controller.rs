//! The in-process entry point refuses to start without the CRDs, saying how to install them.

use livemix_operator::RunError;

use crate::support::{kube_api::MockApi, settings};

#[tokio::test]
async fn run_without_the_crds_stops_with_an_install_hint() {
    let (client, api) = MockApi::start();
    let result = livemix_operator::run(client, settings("http://127.0.0.1:1"), std::future::pending()).await;
    let err = result.expect_err("no CRDs in this API server");
    assert!(matches!(err, RunError::CannotList { kind: "VideoSource", crd_missing: true, .. }), "{err:?}");
    assert!(err.to_string().contains("kubectl apply -f crds/"), "{err}");
    let calls = api.take_calls();
    assert_eq!(calls.len(), 1, "stops at the first list");
    assert!(calls[0].uri.starts_with("/apis/livemix.io/v1alpha1/videosources?"), "{}", calls[0].uri);
}
