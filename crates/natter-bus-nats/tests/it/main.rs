//! The NATS bus against a real `nats-server` started by these tests on a
//! free loopback port (never the machine's own server): the bus
//! conformance suite, and health across a server restart.
//!
//! `nats-server` is taken from `NATTER_TEST_NATS_SERVER`, else `PATH`, else
//! `/usr/sbin`; without it the tests print a notice and pass vacuously,
//! unless `NATTER_TEST_REQUIRE_NATS=1` makes that a failure.

mod health;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use natter_bus::Bus;
use natter_bus::conformance::Harness;
use natter_bus_nats::NatsBus;

/// The `nats-server` binary, or `None` with a notice.
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NATTER_TEST_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .collect::<Vec<_>>();
    let found = candidates.into_iter().find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("NATTER_TEST_REQUIRE_NATS").as_deref() != Ok("1"),
            "nats-server not found and NATTER_TEST_REQUIRE_NATS=1"
        );
        eprintln!("NOTICE: nats-server not found; skipping the NATS bus tests");
    }
    found
}

/// A `nats-server` of our own; killed when dropped.
pub struct NatsServer {
    child: Child,
    pub port: u16,
    binary: PathBuf,
}

impl NatsServer {
    pub fn start() -> Option<Self> {
        let binary = nats_server_binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Self::spawn(&binary, port);
        Some(Self {
            child,
            port,
            binary,
        })
    }

    fn spawn(binary: &PathBuf, port: u16) -> Child {
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server listens");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.binary, self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Each cluster runs on a server of its own, stopped with the harness.
struct Nats {
    server: NatsServer,
}

#[async_trait]
impl Harness for Nats {
    async fn fresh() -> Option<Self> {
        Some(Nats {
            server: NatsServer::start()?,
        })
    }

    async fn node(&self) -> Arc<dyn Bus> {
        Arc::new(
            NatsBus::connect(&self.server.url(), Duration::from_secs(10))
                .await
                .expect("connects"),
        )
    }
}

natter_bus::bus_conformance_tests!(Nats);
