//! Several instances on one database: each shows the others and the
//! mapping set each runs, and a mapping set live on one instance only is
//! flagged (`GET /admin/instances`, `/metrics`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    on_both_backends,
    support::helpers::{Backend, MANIFEST_DIR, TestApp, TestDb, json},
};

/// A copy of the repository's mappings with one mapping's version moved on
/// (as after an edit and hot reload on one instance).
fn edited_mappings() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &std::path::Path::new(MANIFEST_DIR).join("mappings"),
        dir.path(),
    );
    let file = dir.path().join("activelives.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("version: \"1.0.0\""));
    std::fs::write(
        &file,
        text.replace("version: \"1.0.0\"", "version: \"1.0.1\""),
    )
    .unwrap();
    dir
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `GET /admin/instances` until it lists `count` instances.
async fn instances(app: &TestApp, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.get("/admin/instances").await;
        assert_eq!(response.status(), 200);
        let listed = json(response).await;
        if listed["instances"].as_array().map(Vec::len) == Some(count) {
            return listed;
        }
        assert!(Instant::now() < deadline, "{count} instances: {listed:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn instances_show_their_mapping_sets_and_flag_a_disagreement(backend: Backend) {
    let beat = |config: &mut signpost::config::Config| {
        config.database.heartbeat_interval = Duration::from_millis(200);
    };
    let first = TestApp::spawn_on(TestDb::fresh(backend).await, beat).await;
    let alone = instances(&first, 1).await;
    assert_eq!(alone["agree"], true, "{alone}");
    assert!(
        alone["instances"][0]["mappings"]
            .as_str()
            .unwrap()
            .contains("activelives 1.0.0"),
        "{alone}"
    );
    if backend == Backend::Sqlite {
        return; // (one process owns a SQLite database)
    }
    let edited = edited_mappings();
    let second = TestApp::spawn_on(TestDb::shared(&first.db.url), |config| {
        beat(config);
        config.mappings_dir = edited.path().to_owned();
    })
    .await;
    let both = instances(&first, 2).await;
    assert_eq!(both["agree"], false, "{both}");
    assert_eq!(both["mapping_sets"], 2, "{both}");
    let sets: Vec<&str> = both["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["mappings"].as_str().unwrap())
        .collect();
    assert!(
        sets.iter().any(|m| m.contains("activelives 1.0.1")),
        "{both}"
    );
    assert!(
        sets.iter().any(|m| m.contains("activelives 1.0.0")),
        "{both}"
    );
    let metrics = first.get_text("/metrics").await;
    assert!(metrics.contains("signpost_instances 2"), "{metrics}");
    assert!(
        metrics.contains("signpost_instance_mapping_sets 2"),
        "{metrics}"
    );
    // The second one stops cleanly: the fleet agrees again.
    second.stop().await;
    let after = instances(&first, 1).await;
    assert_eq!(after["agree"], true, "{after}");
}

on_both_backends!(instances_show_their_mapping_sets_and_flag_a_disagreement);
