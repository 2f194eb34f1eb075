//! The `misp-guard` command: reads flags and hands over to the library.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use misp_guard::check;
use misp_guard::config::{Config, FirewallMode, Problem};
use misp_guard::listen::{self, Mode};
use misp_guard::relay::{Shared, Snapshot};
use misp_guard::telemetry::metrics::metrics;
use misp_guard::{admin, firewall, service, telemetry, tls};

use cli::{CaCommand, Cli, Command, ConfigCommand, NftCommand};

/// A line on stdout. Output piped into a command that stops reading
/// (`misp-guard check … | head -1`) is no reason to panic: the rest of the
/// output is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// How often the table is read back besides after nftables' change
/// notifications (see `firewall::Kept`).
const TABLE_CHECK: Duration = Duration::from_secs(10);

/// Exit code for a bad config or usage (sysexits EX_USAGE/EX_CONFIG style).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            proxy_listen,
            transparent_listen,
        } => run(config, proxy_listen, transparent_listen, started),
        Command::Nft { command } => nft(command),
        Command::Reload {
            pid,
            runtime_dir,
            timeout,
        } => match service::request_reload(pid, &runtime_dir, Duration::from_secs(timeout)) {
            Ok(message) => {
                say!("{message}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("misp-guard: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check {
            config,
            source,
            method,
            url,
            request_body,
            request_header,
            response_body,
            response_header,
        } => {
            let result = (|| -> Result<check::Outcome, String> {
                let (config, _warnings) = Config::load(&config).map_err(|e| e.to_string())?;
                let read =
                    |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
                let headers = |v: &[String]| -> Result<Vec<(String, String)>, String> {
                    v.iter()
                        .map(|h| check::header_arg(h).map_err(|e| e.to_string()))
                        .collect()
                };
                let x = check::Exchange {
                    source: Some(source),
                    method,
                    url,
                    request_headers: headers(&request_header)?,
                    request_body: request_body.as_ref().map(read).transpose()?,
                    response_headers: headers(&response_header)?,
                    response_body: response_body.as_ref().map(read).transpose()?,
                };
                check::judge(&config, &x).map_err(|e| e.to_string())
            })();
            match result {
                Ok(check::Outcome::Allow(notes)) => {
                    say!("allowed");
                    for n in notes {
                        say!("note: {n}");
                    }
                    ExitCode::SUCCESS
                }
                Ok(check::Outcome::Block(reason)) => {
                    say!("blocked: {reason}");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("misp-guard: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Ca {
            command: CaCommand::Init { out },
        } => match std::fs::create_dir_all(&out)
            .map_err(|e| format!("{}: cannot create: {e}", out.display()))
            .and_then(|()| tls::ca_init(&out).map_err(|e| e.to_string()))
        {
            Ok(files) => {
                say!("{}", files.instructions);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("misp-guard: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file) {
            Ok((config, warnings)) => {
                print_warnings(&warnings);
                let summary = config.summary();
                // The certificates and keys the config names are part of
                // it: a config whose TLS material does not load is bad.
                match Snapshot::build(config) {
                    Ok(_) => {
                        say!("{summary}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{}: TLS settings:\n{e}", file.display());
                        ExitCode::from(EXIT_CONFIG)
                    }
                }
            }
            Err(e) if e.is_unconfigured() => {
                print_warnings(&e.warnings);
                say!(
                    "no instances configured: edit {} (the rest of it is valid; `misp-guard run` refuses it until it names the instances)",
                    file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

/// `misp-guard nft …`: exit 0, 1 (the kernel or the host said no) or 2
/// (the config).
fn nft(command: NftCommand) -> ExitCode {
    let load = |path: &PathBuf| match Config::load(path) {
        Ok((config, warnings)) => {
            print_warnings(&warnings);
            Ok(config)
        }
        Err(e) => {
            eprintln!("{e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    };
    let plan = |config: &Config| {
        let port = firewall::listener_port(config);
        match (config.guard.firewall.mode, port) {
            (FirewallMode::Off, _) | (_, None) => {
                eprintln!("misp-guard: guard.firewall.mode is \"off\": the guard manages no nftables table (set it to \"host\" or \"gateway\")");
                Err(ExitCode::from(EXIT_CONFIG))
            }
            (_, Some(port)) => match firewall::plan(config, port) {
                Ok(Some(plan)) => Ok(plan),
                Ok(None) => Err(ExitCode::from(EXIT_CONFIG)),
                Err(e) => {
                    eprintln!("misp-guard: {e}");
                    Err(ExitCode::FAILURE)
                }
            },
        }
    };
    let result = match command {
        NftCommand::Render { config } => load(&config).and_then(|c| plan(&c)).map(|p| {
            print!("{}", firewall::render(&p));
        }),
        NftCommand::Install { config } => {
            load(&config)
                .and_then(|c| plan(&c))
                .and_then(|p| match firewall::install(&p) {
                    Ok(done) => {
                        say!("installed {done}");
                        Ok(())
                    }
                    Err(e) => {
                        eprintln!("misp-guard: {e}");
                        Err(ExitCode::FAILURE)
                    }
                })
        }
        NftCommand::Remove { config } => config
            .as_ref()
            .map_or(Ok(()), |c| load(c).map(drop))
            .and_then(|()| match firewall::remove() {
                Ok(true) => {
                    say!("removed table inet {}", firewall::TABLE);
                    Ok(())
                }
                Ok(false) => {
                    say!("no table inet {}: nothing to remove", firewall::TABLE);
                    Ok(())
                }
                Err(e) => {
                    eprintln!("misp-guard: {e}");
                    Err(ExitCode::FAILURE)
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn print_warnings(warnings: &[Problem]) {
    for w in warnings {
        eprintln!("warning: {}: {}", w.path, w.message);
    }
}

fn run(
    path: PathBuf,
    proxy: Vec<SocketAddr>,
    transparent: Vec<SocketAddr>,
    started: Instant,
) -> ExitCode {
    let (config, warnings) = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            let line = if e.is_unconfigured() {
                format!("no instances configured: edit {}", path.display())
            } else {
                e.to_string()
            };
            eprintln!("{line}");
            service::status(&line);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = telemetry::init(&config.guard.log) {
        eprintln!("misp-guard: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for w in &warnings {
        tracing::warn!(path = %w.path, "{}", w.message);
    }
    let snapshot = match Snapshot::build(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("TLS settings: {e}");
            eprintln!("{}: TLS settings:\n{e}", path.display());
            service::status(&format!("refused: TLS settings: {e}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("misp-guard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(path, snapshot, proxy, transparent, started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("misp-guard: {e}");
            service::status(&format!("failed: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    path: PathBuf,
    snapshot: Snapshot,
    mut proxy: Vec<SocketAddr>,
    mut transparent: Vec<SocketAddr>,
    started: Instant,
) -> Result<(), String> {
    let config = &snapshot.config;
    proxy.extend(config.guard.proxy_listen.iter().copied());
    transparent.extend(config.guard.transparent_listen.iter().copied());
    if proxy.is_empty() && transparent.is_empty() {
        return Err(
            "no listener: set guard.listen or pass --proxy-listen/--transparent-listen".into(),
        );
    }
    check_mark_capability(config.guard.upstream_mark)?;

    let mut listeners = Vec::new();
    for (addrs, mode) in [(&proxy, Mode::Proxy), (&transparent, Mode::Transparent)] {
        for addr in addrs {
            let l = listen::bind(*addr).await.map_err(|e| e.to_string())?;
            tracing::info!(listen.addr = %addr, mode = ?mode, "listening");
            listeners.push((l, mode));
        }
    }
    let admin = match config.guard.admin.listen {
        Some(addr) => {
            let l = listen::bind(addr).await.map_err(|e| e.to_string())?;
            tracing::info!(listen.addr = %addr, "admin listener: /metrics, /healthz");
            Some(l)
        }
        None => None,
    };
    metrics().listening();
    announce(config, 0);
    // The table after the listeners: redirected traffic then finds the
    // guard at once. It stays when the guard stops (fail closed).
    let port = firewall::listener_port(config);
    let kept = firewall::Kept::new();
    let table = install_table(&kept, config, port)?;
    metrics().table(table.is_some());
    if let Some(done) = &table {
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "firewall {done} installed"
        );
    }
    let serving = Serving {
        proxy: &proxy,
        transparent: &transparent,
    };
    let mut status = serving.describe(config.instances.len(), table.as_ref());

    let mut max_connections = config.guard.limits.max_connections;
    let limit = Arc::new(Semaphore::new(max_connections));
    let grace = config.guard.timeouts.shutdown_grace;
    let (tx, rx) = watch::channel(Arc::new(snapshot));
    let shared = Arc::new(Shared { current: rx });
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut accept = Vec::new();
    if let Some(l) = admin {
        accept.push(tokio::spawn(admin::run(l, shutdown.clone())));
    }
    let mut watching = false;
    let mut watch = |table: Option<&firewall::Installed>| {
        if table.is_some() && !watching {
            watching = true;
            tokio::spawn(kept.clone().watch(TABLE_CHECK, shutdown.clone()));
        }
    };
    watch(table.as_ref());
    for (l, mode) in listeners {
        accept.push(tokio::spawn(listen::run(
            l,
            mode,
            shared.clone(),
            limit.clone(),
            shutdown.clone(),
            tracker.clone(),
        )));
    }

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    // Ready only now: every listener is bound, the table is in place and a
    // SIGHUP (systemctl reload) reloads instead of ending the process.
    let mut reports = service::Reports::from_env();
    reports.ready();
    service::ready(&status);
    let _watchdog = service::watchdog();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                reports.begin();
                service::reloading();
                match reload(&path).and_then(|new| {
                // The new table before the new config: a table the kernel
                // refuses refuses the reload, and the old table stays.
                let port = port.or_else(|| firewall::listener_port(&new.config));
                install_table(&kept, &new.config, port).map(|done| (new, done))
            }) {
                Ok((new, done)) => {
                    if let Some(done) = &done {
                        tracing::info!("firewall {done} rebuilt");
                    }
                    metrics().table(done.is_some());
                    watch(done.as_ref());
                    if new.config.guard.admin.listen != shared.snapshot().config.guard.admin.listen {
                        tracing::warn!("guard.admin.listen changed: the admin listener stays where it is until a restart");
                    }
                    announce(&new.config, reports.generation());
                    status = serving.describe(new.config.instances.len(), done.as_ref());
                    // The connection cap follows the config: raised at once,
                    // lowered as slots free up (busy ones are not cut).
                    let wanted = new.config.guard.limits.max_connections;
                    if wanted > max_connections {
                        limit.add_permits(wanted - max_connections);
                    } else {
                        let limit = limit.clone();
                        let fewer = (max_connections - wanted) as u32;
                        tokio::spawn(async move {
                            if let Ok(p) = limit.acquire_many(fewer).await {
                                p.forget();
                            }
                        });
                    }
                    max_connections = wanted;
                    let _ = tx.send(Arc::new(new));
                    metrics().reload(true);
                    tracing::info!(config = %path.display(), "config reloaded (listeners unchanged)");
                    let done = format!("reload {} in force", reports.generation());
                    reports.finish(Ok(&done));
                    service::ready(&format!("{status}; {done}"));
                }
                Err(e) => {
                    tracing::error!(config = %path.display(), "config reload refused, the old config stays in force: {e}");
                    reports.finish(Err(&e));
                    metrics().reload(false);
                    monitor_warning(&shared.snapshot().config);
                    service::ready(&format!("{status}; reload {} refused: {e}", reports.generation()));
                }
            }},
        }
    }
    service::stopping();
    tracing::info!("shutting down: no new connections, in-flight exchanges may finish");
    shutdown.cancel();
    for a in accept {
        let _ = a.await;
    }
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("grace period over, closing the remaining connections");
    }
    Ok(())
}

/// The config `generation` is now in force: its mode to the metrics, and
/// the monitor-mode warning when it applies.
fn announce(config: &Config, generation: u64) {
    let firewall = config.guard.firewall.mode != FirewallMode::Off;
    metrics().config(config.guard.mode, firewall, generation);
    monitor_warning(config);
}

/// Loud, at start and after every reload: a dry run blocks nothing.
fn monitor_warning(config: &Config) {
    let monitored = config.monitored();
    if monitored.is_empty() {
        return;
    }
    tracing::warn!(
        mode = "monitor",
        instances = %monitored.join(", "),
        "MONITOR MODE: the rules of these instances are only logged (\"would block\"), their traffic is NOT blocked"
    );
}

/// What the guard serves, for `STATUS=`.
struct Serving<'a> {
    proxy: &'a [SocketAddr],
    transparent: &'a [SocketAddr],
}

impl Serving<'_> {
    fn describe(&self, instances: usize, table: Option<&firewall::Installed>) -> String {
        let listeners: Vec<String> = (self.transparent.iter().map(|a| format!("{a} transparent")))
            .chain(self.proxy.iter().map(|a| format!("{a} proxy")))
            .collect();
        let table = match table {
            Some(t) => format!("{t} installed"),
            None => "no table of its own (guard.firewall.mode off)".into(),
        };
        format!(
            "instances: {instances}; listeners: {}; {table}",
            listeners.join(", ")
        )
    }
}

/// A new snapshot from the config file: the config and the TLS material it
/// names, all loaded before anything is swapped.
fn reload(path: &std::path::Path) -> Result<Snapshot, String> {
    let (config, warnings) = Config::load(path).map_err(|e| e.to_string())?;
    for w in &warnings {
        tracing::warn!(path = %w.path, "{}", w.message);
    }
    Snapshot::build(config).map_err(|e| format!("TLS settings:\n{e}"))
}

/// Install the table `config` asks for, redirecting to `port`; nothing when
/// its firewall mode is off (a table installed earlier then stays, since
/// removing it would open the direct path: `misp-guard nft remove` does).
fn install_table(
    kept: &firewall::Kept,
    config: &Config,
    port: Option<u16>,
) -> Result<Option<firewall::Installed>, String> {
    if config.guard.firewall.mode == FirewallMode::Off {
        kept.forget();
        if firewall::installed().unwrap_or(false) {
            tracing::warn!(
                "guard.firewall.mode is \"off\" but table inet {} is installed: it stays (remove it with `misp-guard nft remove`)",
                firewall::TABLE
            );
        }
        return Ok(None);
    }
    let port = port.ok_or("guard.firewall.mode needs a transparent listener")?;
    let plan = firewall::plan(config, port)
        .map_err(|e| e.to_string())?
        .ok_or("guard.firewall.mode is off")?;
    kept.install(plan).map(Some).map_err(|e| e.to_string())
}

/// Fail at start, not on the first connection, when the firewall mark
/// cannot be set (the process lacks CAP_NET_ADMIN).
fn check_mark_capability(mark: u32) -> Result<(), String> {
    if mark == 0 {
        return Ok(());
    }
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| format!("socket: {e}"))?;
    s.set_mark(mark).map_err(|e| {
        format!("guard.upstream_mark: cannot mark upstream sockets ({e}); run as root or with CAP_NET_ADMIN, or set guard.upstream_mark to 0")
    })
}
