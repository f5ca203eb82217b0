//! What the benchmarks share: the sandbox in a child process (so this process's memory is the
//! product's alone), free ports, and the process's memory figures.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sandbox {
    child: Child,
    pub pipedrive_url: String,
    #[allow(dead_code)] // not every bench talks to Brevo
    pub brevo_url: String,
}

impl Sandbox {
    #[allow(dead_code)] // not every bench reads it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Builds the sandbox (release) if needed and starts it with `args`; waits until it answers.
///
/// It is built in a target directory of its own: built alone, the sandbox's dependencies resolve
/// other features than in the bench's build (rustls and what uses it), so in the shared one each
/// `cargo bench` rebuilt them, and the sandbox's build after it rebuilt them again (2 min each).
pub fn sandbox(args: &[String]) -> anyhow::Result<Sandbox> {
    let root = env!("CARGO_MANIFEST_DIR");
    let target = format!("{root}/target/bench-sandbox");
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "pipebridge-sandbox",
            "--bin",
            "sandbox",
            "--target-dir",
            &target,
        ])
        .current_dir(root)
        .status()?;
    anyhow::ensure!(built.success(), "building the sandbox failed");
    let (pd, brevo) = (free_port(), free_port());
    let child = Command::new(format!("{target}/release/sandbox"))
        .args([
            "--pipedrive-addr",
            &format!("127.0.0.1:{pd}"),
            "--brevo-addr",
            &format!("127.0.0.1:{brevo}"),
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let sb = Sandbox {
        child,
        pipedrive_url: format!("http://127.0.0.1:{pd}"),
        brevo_url: format!("http://127.0.0.1:{brevo}"),
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::net::TcpStream::connect(("127.0.0.1", brevo)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", pd)).is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "the sandbox did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(sb)
}

/// A field of /proc/self/status in KiB (`VmRSS:` now, `VmHWM:` the peak).
pub fn mem_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user and system) a process has used, from `/proc/<pid>/stat`.
#[allow(dead_code)] // not every bench reads it
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// CPU seconds used by every PostgreSQL process on this machine (the server and its backends).
#[allow(dead_code)] // not every bench reads it
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// Resets the peak resident size (`VmHWM`) so later readings cover what follows only.
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs the bench binaries without it,
/// and a benchmark has no place in the test run (minutes, release builds, no assertions).
pub fn is_bench_run() -> bool {
    let yes = std::env::args().any(|a| a == "--bench");
    if !yes {
        println!("a benchmark: run it with `cargo bench` (see docs/benchmarks.md)");
    }
    yes
}
