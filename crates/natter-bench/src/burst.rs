//! Bursts of operations (log-ins, history pages), measured from the
//! outside: a fixed number in flight (log-in rate, history), or all at
//! once from a common instant (a reconnect storm), with latency
//! percentiles, failures and the server's CPU time per operation. Shared
//! by the JSON API and XMPP scenarios.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;

use crate::proc;
use crate::stream::hist::Hist;
use crate::stream::{CpuSnapshot, CpuUse, Environment};

/// A burst of operations measured from the outside.
#[derive(Serialize)]
pub(crate) struct BurstReport {
    scenario: &'static str,
    parameters: serde_json::Value,
    environment: Environment,
    attempts: usize,
    succeeded: usize,
    failed: usize,
    failure_samples: Vec<String>,
    seconds: f64,
    per_second: f64,
    latency_p50_ms: f64,
    latency_p90_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    cpu: CpuUse,
    server_cpu_ms_per_op: f64,
    server_rss_after_mib: f64,
}

impl BurstReport {
    pub fn print(&self, json: bool) -> anyhow::Result<Vec<String>> {
        println!(
            "| scenario | server | operations | failed | seconds | per s | p50 ms | p90 ms | p99 ms | max ms | server CPU % (core busy) | server ms/operation | server RSS MiB | generator CPU % (core busy) | other CPU % |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} ({}) | {:.2} | {:.1} | {:.0} ({}) | {:.0} |",
            self.scenario,
            self.environment.server,
            self.attempts,
            self.failed,
            self.seconds,
            self.per_second,
            self.latency_p50_ms,
            self.latency_p90_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.cpu.server_percent,
            crate::stream::opt_pct(self.cpu.server_core_busy_percent),
            self.server_cpu_ms_per_op,
            self.server_rss_after_mib,
            self.cpu.generator_percent,
            crate::stream::opt_pct(self.cpu.generator_core_busy_percent),
            self.cpu.other_percent,
        );
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        }
        let mut failures = Vec::new();
        if self.failed > 0 {
            failures.push(format!(
                "{} operations failed: {:?}",
                self.failed, self.failure_samples
            ));
        }
        Ok(failures)
    }
}

/// Runs `attempts` operations through `run(i)`, `concurrency` at a time,
/// and measures them.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn burst<F, Fut>(
    scenario: &'static str,
    parameters: serde_json::Value,
    pid: u32,
    env: &Environment,
    attempts: usize,
    concurrency: usize,
    started: Option<Instant>,
    run: F,
) -> anyhow::Result<BurstReport>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let hist = Hist::new();
    let failed = AtomicU64::new(0);
    let samples = std::sync::Mutex::new(Vec::new());
    let cpu0 = CpuSnapshot::take(pid, env)?;
    let start = started.unwrap_or_else(Instant::now);
    futures::stream::iter((0..attempts).map(|i| {
        let (hist, failed, samples, run) = (&hist, &failed, &samples, &run);
        async move {
            let t = started.unwrap_or_else(Instant::now);
            match run(i).await {
                Ok(()) => hist.record(t.elapsed().as_micros() as u64),
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    let mut s = samples.lock().expect("samples");
                    if s.len() < 5 {
                        s.push(format!("{e:#}"));
                    }
                }
            }
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect::<Vec<()>>()
    .await;
    let seconds = start.elapsed().as_secs_f64();
    let cpu1 = CpuSnapshot::take(pid, env)?;
    let failed = failed.load(Ordering::Relaxed) as usize;
    let succeeded = attempts - failed;
    let server_cpu = cpu1.since(&cpu0).server_percent / 100.0 * (cpu1.at - cpu0.at).as_secs_f64();
    Ok(BurstReport {
        scenario,
        parameters,
        environment: env.clone(),
        attempts,
        succeeded,
        failed,
        failure_samples: samples.into_inner().expect("samples"),
        seconds,
        per_second: succeeded as f64 / seconds,
        latency_p50_ms: hist.quantile_ms(0.5),
        latency_p90_ms: hist.quantile_ms(0.9),
        latency_p99_ms: hist.quantile_ms(0.99),
        latency_max_ms: hist.max_ms(),
        cpu: cpu1.since(&cpu0),
        server_cpu_ms_per_op: if succeeded > 0 {
            server_cpu * 1e3 / succeeded as f64
        } else {
            0.0
        },
        server_rss_after_mib: proc::rss_mib(pid)?,
    })
}
