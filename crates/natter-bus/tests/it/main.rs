//! The in-process bus passes the bus conformance suite: every "node" of a
//! cluster is a clone of one `LocalBus`, as in a single process.

use std::sync::Arc;

use async_trait::async_trait;
use natter_bus::conformance::Harness;
use natter_bus::{Bus, LocalBus};

struct Local(LocalBus);

#[async_trait]
impl Harness for Local {
    async fn fresh() -> Option<Self> {
        Some(Local(LocalBus::new()))
    }

    async fn node(&self) -> Arc<dyn Bus> {
        Arc::new(self.0.clone())
    }
}

natter_bus::bus_conformance_tests!(Local);
