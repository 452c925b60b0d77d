//! The processes of a stream benchmark: starting the real `natter` server,
//! pinning it and the load generator to cores of their own, and reading
//! CPU time and resident memory from `/proc`.
//!
//! A load test on a small machine measures the generator as much as the
//! server unless the two are kept apart and both are watched; these
//! helpers make it possible to say which of them was the limit.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The CPUs this process may run on (its affinity mask).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread, and so every thread it starts later, to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as above.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit (thousands of
/// sockets); returns the new soft limit. Children inherit it, so the
/// server started afterwards gets it too.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur as u64)
    }
}

/// A program on `PATH`, if there is one.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// CPU time (user + system, all threads) of a process, in seconds; `None`
/// is this process.
pub fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_stat(&stat)?.1)
}

/// The name and the CPU time (user + system, in seconds) in a `stat` line
/// of a process or a thread.
fn parse_stat(stat: &str) -> anyhow::Result<(String, f64)> {
    // The command name (field 2) may contain spaces; fields resume after
    // its closing parenthesis, with field 3 (state) first.
    let open = stat.find('(').context("malformed stat")?;
    let close = stat.rfind(')').context("malformed stat")?;
    let name = stat[open + 1..close].to_owned();
    let rest = stat.get(close + 2..).context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after state.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok((name, (utime + stime) as f64 / clock_ticks_per_second()))
}

/// CPU time of each live thread of process `pid`, by thread id, with the
/// thread's name: which of the server's threads (its async workers, the
/// SQLite writer, syncer, checkpointer) limited a run.
pub fn thread_cpu_seconds(pid: u32) -> anyhow::Result<HashMap<u32, (String, f64)>> {
    let dir = format!("/proc/{pid}/task");
    let mut threads = HashMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may end between the listing and the read.
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            threads.insert(tid, parse_stat(&stat)?);
        }
    }
    Ok(threads)
}

/// Bytes process `pid` caused to be written to storage (`write_bytes` of
/// `/proc/<pid>/io`, counted when page-cache pages are dirtied); `None`
/// where the kernel does not tell.
pub fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Busy CPU time of the whole machine or of one core, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Busy {
    /// user, nice, system and steal, in seconds.
    pub tasks: f64,
    /// irq and softirq, in seconds: loopback networking is largely
    /// accounted here rather than to the processes that caused it.
    pub irq: f64,
}

impl Busy {
    pub fn total(&self) -> f64 {
        self.tasks + self.irq
    }

    pub fn since(&self, earlier: Busy) -> Busy {
        Busy {
            tasks: self.tasks - earlier.tasks,
            irq: self.irq - earlier.irq,
        }
    }
}

/// The busy time of the machine (`cpu: None`) or of one core, so that the
/// reports can show what else competed for the cores and whether a core
/// was saturated, whoever was using it.
pub fn busy(cpu: Option<usize>) -> anyhow::Result<Busy> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let name = match cpu {
        Some(c) => format!("cpu{c}"),
        None => "cpu".to_owned(),
    };
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let sum = |idx: &[usize]| idx.iter().filter_map(|&i| f.get(i)).sum::<u64>() as f64;
    let tck = clock_ticks_per_second();
    Ok(Busy {
        tasks: sum(&[0, 1, 2, 7]) / tck,
        irq: sum(&[5, 6]) / tck,
    })
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {key} in {path}"))
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    Ok(status_kib(pid, "VmRSS")? as f64 / 1024.0)
}

/// A running `natter serve` on a fresh data directory and a free port.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// The plain (STARTTLS) XMPP c2s listener, as the server logged it.
    pub xmpp_addr: Option<SocketAddr>,
    /// Warning and error lines the server logged.
    pub problems: Arc<AtomicU64>,
    /// Kept so that the directory lives as long as the server (taken by
    /// [`Server::stop_keeping_data`]).
    data: Option<tempfile::TempDir>,
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte(@..~)
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads a pipe of the server to its end, forwarding the listening
/// address once and echoing warnings and errors, so that the server never
/// blocks on a full pipe.
fn drain(
    pipe: impl Read + Send + 'static,
    addr_tx: mpsc::Sender<SocketAddr>,
    xmpp: Arc<Mutex<Option<SocketAddr>>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    problems: Arc<AtomicU64>,
) {
    std::thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            if let Some(tx) = &addr_tx
                && let Some(i) = line.find("http=")
            {
                let word = line[i + 5..].split_whitespace().next().unwrap_or("");
                if let Ok(a) = word.parse() {
                    let _ = tx.send(a);
                    addr_tx = None;
                }
            }
            // "XMPP listening addr=… direct_tls=false", logged before the
            // HTTP address.
            if line.contains("XMPP listening")
                && line.contains("direct_tls=false")
                && let Some(i) = line.find("addr=")
                && let Ok(a) = line[i + 5..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .parse()
            {
                *xmpp.lock().expect("xmpp address") = Some(a);
            }
            if line.contains(" WARN ") || line.contains(" ERROR ") || line.contains("panicked") {
                // Echo the first few; a flood (e.g. at shutdown) is counted.
                match problems.fetch_add(1, Ordering::Relaxed) {
                    0..10 => eprintln!("[natter] {line}"),
                    10 => eprintln!("[natter] (further warnings and errors are only counted)"),
                    _ => {}
                }
            }
            let mut t = tail.lock().expect("tail");
            if t.len() == 20 {
                t.pop_front();
            }
            t.push_back(line);
        }
    });
}

impl Server {
    /// Starts `natter serve` on 127.0.0.1 port 0 with a fresh data
    /// directory, pinned to `cpu` with `taskset` if given, and waits for
    /// its listening address.
    pub fn start(natter: &Path, cpu: Option<usize>) -> anyhow::Result<Server> {
        Self::start_with(natter, cpu, &[], &[])
    }

    /// [`Server::start`] with extra arguments after `serve …` and extra
    /// environment variables (e.g. an XMPP listener).
    pub fn start_with(
        natter: &Path,
        cpu: Option<usize>,
        args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let data = tempfile::Builder::new().prefix("natter-bench-").tempdir()?;
        Self::start_in(natter, cpu, args, env, data)
    }

    /// [`Server::start_with`] on an existing data directory (one that an
    /// earlier server of the run left, see [`Server::stop_keeping_data`]).
    pub fn start_in(
        natter: &Path,
        cpu: Option<usize>,
        args: &[String],
        env: &[(&str, &str)],
        data: tempfile::TempDir,
    ) -> anyhow::Result<Server> {
        if !natter.is_file() {
            bail!(
                "no natter binary at {} (build it with `cargo build --release -p natter-server`, or pass --natter)",
                natter.display()
            );
        }
        let mut cmd = match cpu {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.arg("-c").arg(c.to_string()).arg(natter);
                cmd
            }
            None => Command::new(natter),
        };
        // Only our settings: a NATTER_DATABASE in the caller's environment
        // must not point the benchmark at a real database.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("NATTER_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .arg("--http")
            .arg("127.0.0.1:0")
            .args(["--xmpp", "127.0.0.1:0", "--xmpps", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .env("NATTER_ACCOUNTS__SCRAM_ITERATIONS", "4096")
            .env("NATTER_STREAM__COMMANDS_PER_SECOND", "100000")
            .env("NATTER_LOG", "info")
            .env("NO_COLOR", "1")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", natter.display()))?;
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let problems = Arc::new(AtomicU64::new(0));
        let xmpp = Arc::new(Mutex::new(None));
        drain(
            child.stdout.take().expect("stdout"),
            tx.clone(),
            xmpp.clone(),
            tail.clone(),
            problems.clone(),
        );
        drain(
            child.stderr.take().expect("stderr"),
            tx,
            xmpp.clone(),
            tail.clone(),
            problems.clone(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => break a,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait()? {
                        std::thread::sleep(Duration::from_millis(100));
                        let t: Vec<String> = tail.lock().expect("tail").iter().cloned().collect();
                        bail!(
                            "natter exited with {status} before listening:\n{}",
                            t.join("\n")
                        );
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        bail!("natter did not log its address (http=…) within 60 s");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait()?;
                    let t: Vec<String> = tail.lock().expect("tail").iter().cloned().collect();
                    bail!(
                        "natter exited with {status} before listening:\n{}",
                        t.join("\n")
                    );
                }
            }
        };
        let xmpp_addr = *xmpp.lock().expect("xmpp address");
        Ok(Server {
            child,
            pid,
            addr,
            xmpp_addr,
            problems,
            data: Some(data),
        })
    }

    /// Stops the server and hands over its data directory.
    pub fn stop_keeping_data(mut self) -> anyhow::Result<tempfile::TempDir> {
        let data = self.data.take().context("data directory")?;
        self.stop()?;
        Ok(data)
    }

    /// Stops the server: SIGTERM, then SIGKILL after 10 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("natter did not stop within 10 s of SIGTERM; killing it");
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
