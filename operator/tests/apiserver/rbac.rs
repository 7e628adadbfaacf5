//! The operator works with nothing but the permissions the Helm chart grants it (its namespaced Role), checked
//! by the API server's real RBAC authorizer: a missing verb would fail a reconcile or lose an Event.

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use livemix_operator::crd::{Recording, VideoSource};
use serde_json::json;

use crate::support::{
    RunningOperator, TestNamespace, USER, client, client_as, control_and_settings, events_about, eventually,
    install_crds, ready, unique, wait_event, wait_gone, wait_recording, wait_source,
};

const CHART_RBAC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/livemix/templates/operator-rbac.yaml");

/// The `rules:` of the chart's operator (Cluster)Role: plain YAML inside the template.
fn chart_rules() -> Vec<PolicyRule> {
    let template = std::fs::read_to_string(CHART_RBAC).unwrap_or_else(|err| panic!("{CHART_RBAC}: {err}"));
    let start = template.find("\nrules:\n").unwrap_or_else(|| panic!("no `rules:` block in {CHART_RBAC}"));
    let block = &template[start + "\nrules:\n".len()..];
    let end = block.find("\n---").unwrap_or(block.len());
    let rules: Vec<PolicyRule> = serde_yaml::from_str(&block[..end])
        .unwrap_or_else(|err| panic!("the rules of {CHART_RBAC} are no longer plain YAML ({err}); update this test"));
    assert!(!rules.is_empty(), "no rules in {CHART_RBAC}");
    rules
}

#[tokio::test]
async fn the_operator_needs_only_the_charts_permissions() {
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client).await;
    let account = "livemix-operator";
    let role = Role {
        metadata: ObjectMeta { name: Some(account.into()), ..ObjectMeta::default() },
        rules: Some(chart_rules()),
    };
    ns.api::<Role>().create(&PostParams::default(), &role).await.expect("Role");
    let binding = RoleBinding {
        metadata: ObjectMeta { name: Some(account.into()), ..ObjectMeta::default() },
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: account.into() },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.into(),
            namespace: Some(ns.name.clone()),
            ..Subject::default()
        }]),
    };
    ns.api::<RoleBinding>().create(&PostParams::default(), &binding).await.expect("RoleBinding");

    // The service account cannot do more than the Role says (the check works at all).
    let restricted = client_as(Some((&ns.name, account))).await;
    let err = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(restricted.clone(), &ns.name)
        .list(&Default::default())
        .await
        .expect_err("no access to Secrets");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 403), "{err}");

    let (node, settings) = control_and_settings(&ns.name).await;
    let operator = RunningOperator::start_with(restricted, settings);
    let sources: Api<VideoSource> = ns.api();
    let recordings: Api<Recording> = ns.api();
    let user = PatchParams::apply(USER);
    let (cam, show) = (unique("cam"), unique("show"));

    // A Recording waiting for its source: its repeated Warning becomes one Event with a series (create, patch).
    let rec = json!({"apiVersion": "livemix.io/v1alpha1", "kind": "Recording", "metadata": {"name": show},
                     "spec": {"source": cam}});
    recordings.patch(&show, &user, &Patch::Apply(rec)).await.unwrap();
    eventually("a repeated SourceNotFound Event", || async {
        let events = events_about(&client, &ns.name, "Recording", &show).await;
        let count = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SourceNotFound"))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .max();
        if count.unwrap_or(0) >= 2 { Ok(()) } else { Err(format!("count {count:?}")) }
    })
    .await;

    let vs = json!({"apiVersion": "livemix.io/v1alpha1", "kind": "VideoSource", "metadata": {"name": cam},
                    "spec": {"segmentLength": 2}});
    sources.patch(&cam, &user, &Patch::Apply(vs)).await.unwrap();
    wait_source(&sources, &cam, |vs| ready(&vs.status.as_ref().unwrap().conditions)).await;
    wait_recording(&recordings, &show, |rec| {
        if rec.status.as_ref().unwrap().active { Ok(()) } else { Err("not active".into()) }
    })
    .await;
    wait_event(&client, &ns.name, "VideoSource", &cam, "Created").await;
    wait_event(&client, &ns.name, "Recording", &show, "Started").await;

    recordings.delete(&show, &DeleteParams::default()).await.unwrap();
    sources.delete(&cam, &DeleteParams::default()).await.unwrap();
    wait_gone(&recordings, &show).await;
    wait_gone(&sources, &cam).await;

    operator.stop().await;
    ns.delete().await;
    node.stop().await;
}
