//! A real systemd for the package tests: a Debian 12 root made once with
//! debootstrap and kept between runs, booted with systemd-nspawn on an
//! overlay of that root (so every run starts from the same clean system),
//! with commands run inside it through nsenter.
//!
//! The container has its own network namespace (`--private-network`),
//! attached under a name so the helpers of [`super::sync`] can run peers in
//! it with `ip netns exec`, and only the addresses a test gives it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::Netns;

/// The packages of the cached root: systemd as PID 1, and what the package
/// depends on (an admin's `apt install ./misp-guard_*.deb` would fetch
/// them; the container has no network to fetch them from).
const INCLUDE: &str = "systemd,systemd-sysv,dbus,libnftnl11,libmnl0,nftables,adduser";
/// The cached root's directory name: bump it when `INCLUDE` changes.
const ROOT_NAME: &str = "bookworm-systemd-1";
const DEFAULT_CACHE: &str = "/var/cache/misp-guard-test";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The cached root, built when missing: `$MISP_GUARD_TEST_CACHE` (default
/// /var/cache/misp-guard-test)/bookworm-systemd-1. Built in a directory of
/// its own and renamed into place, so a run cut short leaves no half root.
pub fn cached_root() -> Result<PathBuf, String> {
    let cache = std::env::var_os("MISP_GUARD_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
    let root = cache.join(ROOT_NAME);
    if root.join("usr/lib/systemd/systemd").exists() {
        return Ok(root);
    }
    fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let building = cache.join(format!("{ROOT_NAME}.building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&building);
    let mirror = std::env::var("MISP_GUARD_DEBIAN_MIRROR").unwrap_or(DEFAULT_MIRROR.into());
    eprintln!(
        "building the Debian 12 root for the systemd tests in {} (once per machine)",
        root.display()
    );
    let started = Instant::now();
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={INCLUDE}"),
            "bookworm",
        ])
        .arg(&building)
        .arg(&mirror)
        .output()
        .map_err(|e| format!("debootstrap: {e}"))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&building);
        return Err(format!(
            "debootstrap failed: {}",
            tail(&String::from_utf8_lossy(&out.stdout), 5)
        ));
    }
    // Another run may have finished first: its root is as good as ours.
    if fs::rename(&building, &root).is_err() {
        let _ = fs::remove_dir_all(&building);
    }
    eprintln!("root built in {:.0?}", started.elapsed());
    Ok(root)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A booted container. Dropping it powers it off and removes its overlay.
pub struct Container {
    /// Its network namespace, attached as a named one.
    pub netns: Netns,
    /// The PID (on the host) of its PID 1.
    pub leader: u32,
    nspawn: Child,
    merged: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Container {
    /// Boot `root` (read-only: the container writes to an overlay) and
    /// wait until systemd says the system is running.
    pub fn boot(root: &Path, tag: &str) -> Result<Container, String> {
        let dir = tempfile::Builder::new()
            .prefix("mg-nspawn-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let (upper, work, merged) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("root"),
        );
        for d in [&upper, &work, &merged] {
            fs::create_dir(d).map_err(|e| e.to_string())?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            root.display(),
            upper.display(),
            work.display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount an overlay: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let log = dir.path().join("nspawn.log");
        let name = format!("mg-{tag}-{}", std::process::id());
        let nspawn = Command::new("systemd-nspawn")
            .args(["--quiet", "--boot", "--private-network", "--register=no"])
            .args(["--keep-unit", "--console=passive", "--machine", &name, "-D"])
            .arg(&merged)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).map_err(|e| e.to_string())?)
            .stderr(Stdio::from(
                fs::File::options()
                    .append(true)
                    .open(&log)
                    .map_err(|e| e.to_string())?,
            ))
            .spawn();
        let nspawn = match nspawn {
            Ok(c) => c,
            Err(e) => {
                unmount(&merged);
                return Err(format!("systemd-nspawn: {e}"));
            }
        };
        let mut c = Container {
            netns: Netns {
                name: name.clone(),
                dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            },
            leader: 0,
            nspawn,
            merged,
            log,
            _dir: dir,
        };
        c.leader = c.find_leader()?;
        let attach = Command::new("ip")
            .args(["netns", "attach", &name, &c.leader.to_string()])
            .output()
            .map_err(|e| e.to_string())?;
        if !attach.status.success() {
            return Err(format!(
                "ip netns attach: {}",
                String::from_utf8_lossy(&attach.stderr)
            ));
        }
        // "offline" until PID 1 is systemd and has its bus up; then --wait
        // waits for the boot to end.
        let start = Instant::now();
        let state = loop {
            let out = c.run("timeout 90 systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if (state != "offline" && !state.is_empty())
                || start.elapsed() > Duration::from_secs(60)
            {
                break state;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if state != "running" {
            let failed = c.run("systemctl --failed --no-pager --no-legend");
            return Err(format!(
                "the container's systemd is {state:?}, not running; failed units:\n{}",
                String::from_utf8_lossy(&failed.stdout)
            ));
        }
        Ok(c)
    }

    /// nspawn's child that is PID 1 of the new PID namespace.
    fn find_leader(&mut self) -> Result<u32, String> {
        let parent = self.nspawn.id();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                return Err(format!(
                    "systemd-nspawn exited ({status}): {}",
                    fs::read_to_string(&self.log).unwrap_or_default().trim()
                ));
            }
            for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // The fields after the command name, which may hold spaces.
                let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
                let ppid = after.split_whitespace().nth(1);
                if ppid != Some(&parent.to_string()) {
                    continue;
                }
                let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                let inner = status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|l| l.split_whitespace().last());
                if inner == Some("1") {
                    return Ok(pid);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("the container's PID 1 did not appear".into())
    }

    /// `sh -c script` inside the container, in all its namespaces, with a
    /// clean environment.
    pub fn run(&self, script: &str) -> Output {
        self.command(script).output().expect("run nsenter")
    }

    fn command(&self, script: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.leader.to_string(),
            "-a",
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("SYSTEMD_PAGER", "")
        .stdin(Stdio::null());
        c
    }

    /// [`Container::run`] that must succeed; its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "{script}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Write `contents` to `path` inside the container, as `cat > path`
    /// does (in place: an editor's save, closed after writing).
    pub fn write(&self, path: &str, contents: &[u8]) {
        let mut c = self.command(&format!("cat > '{path}'"));
        c.stdin(Stdio::piped());
        let mut child = c.spawn().expect("run nsenter");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(contents)
            .expect("write into the container");
        let status = child.wait().unwrap();
        assert!(status.success(), "writing {path}: {status}");
    }

    /// A file of the container's root file system, from the host.
    pub fn host_path(&self, path: &str) -> PathBuf {
        self.merged.join(path.trim_start_matches('/'))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        // SIGTERM makes nspawn power the container off; the attached
        // namespace name goes with the Netns.
        let pid = Pid::from_raw(self.nspawn.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let start = Instant::now();
        while self.nspawn.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(15) {
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unmount(&self.merged);
    }
}

fn unmount(dir: &Path) {
    let ok = Command::new("umount")
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("umount").arg("-l").arg(dir).status();
    }
}
