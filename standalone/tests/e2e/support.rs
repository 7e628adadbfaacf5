//! The standalone binary as a child process, on ports and a data directory of its own.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use livemix_testkit::{http, unique};
use serde_json::Value;
use tokio::process::{Child, Command};

/// A running `livemix` process.
pub struct Standalone {
    pub management: String,
    pub vod: String,
    pub ingest: String,
    pub data_dir: PathBuf,
    child: Child,
}

/// A data directory of its own under the system temp directory.
pub fn data_dir() -> PathBuf {
    std::env::temp_dir().join(unique("livemix-standalone"))
}

/// Ports the OS just handed out (and took back), so parallel tests do not collide.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Standalone {
    /// Starts `livemix` on `data_dir` with these extra flags and waits until its APIs answer.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let [management, vod, edge_api, ingest] = [free_port(), free_port(), free_port(), free_port()];
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("livemix.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_livemix"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--management-addr=127.0.0.1:{management}"))
            .arg(format!("--vod-addr=127.0.0.1:{vod}"))
            .arg(format!("--edge-api-addr=127.0.0.1:{edge_api}"))
            .arg(format!("--ingest-addr=127.0.0.1:{ingest}"))
            .args(extra)
            .env_remove("DATABASE_URL")
            .env_remove("MEMCACHED_URL")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting livemix");
        let node = Self {
            management: format!("http://127.0.0.1:{management}"),
            vod: format!("http://127.0.0.1:{vod}"),
            ingest: format!("http://127.0.0.1:{ingest}"),
            data_dir: data_dir.to_owned(),
            child,
        };
        for url in [node.mgmt("/liveness/ready"), format!("{}/liveness/alive", node.ingest)] {
            livemix_testkit::eventually("livemix to answer", || async {
                http().get(&url).send().await.ok()?.status().is_success().then_some(())
            })
            .await;
        }
        node
    }

    pub fn mgmt(&self, path: &str) -> String {
        format!("{}{path}", self.management)
    }

    pub async fn get(&self, path: &str) -> Value {
        http().get(self.mgmt(path)).send().await.expect("GET").json().await.expect("JSON")
    }

    /// SIGTERM, as a service manager stops it; it must exit cleanly within a few seconds.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("livemix to exit after SIGTERM")
            .expect("wait");
        assert!(status.success(), "livemix exited with {status}; log in {}", self.data_dir.display());
    }

    /// SIGKILL: a crash, nothing flushed or said goodbye to.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("wait");
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("livemix.log")).unwrap_or_default()
    }
}
