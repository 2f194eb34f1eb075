//! The command line, as clap reads it. Kept apart from `main.rs` and free of
//! the library's types, so that `packaging/docgen` can include this file and
//! generate the man pages and shell completions from the same definitions.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "misp-guard",
    version,
    about = "Transparent guard for MISP server synchronisation",
    long_about = "Transparent guard for MISP server synchronisation: it sits on the wire \
between MISP instances, judges every exchange of the sync protocol (push and pull) \
against the rules of its config file, forwards what passes and answers what does not \
with a JSON 403 naming the rule. The README (/usr/share/doc/misp-guard/README.md.gz \
in the Debian package) describes the config file, the nftables table the guard owns \
and the systemd service."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the guard.
    Run {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// Add an explicit-proxy listener.
        #[arg(long = "proxy-listen", value_name = "ADDR")]
        proxy_listen: Vec<SocketAddr>,
        /// Add a transparent listener (traffic redirected by nftables).
        #[arg(long = "transparent-listen", value_name = "ADDR")]
        transparent_listen: Vec<SocketAddr>,
    },
    /// Judge one exchange offline: prints `allowed` or `blocked: …`,
    /// exits 0 (allowed), 1 (blocked) or 2 (usage or config error).
    Check {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// The connecting instance's address.
        #[arg(long)]
        source: IpAddr,
        /// HTTP method.
        #[arg(long)]
        method: String,
        /// `http://HOST:PORT/PATH` as the client asks for it.
        #[arg(long)]
        url: String,
        /// The request body.
        #[arg(long = "request-body", value_name = "FILE")]
        request_body: Option<PathBuf>,
        /// A request header, `Name: value` (e.g. Content-Encoding).
        #[arg(long = "request-header", value_name = "HEADER")]
        request_header: Vec<String>,
        /// The response body (judged as a 200 answer).
        #[arg(long = "response-body", value_name = "FILE")]
        response_body: Option<PathBuf>,
        /// A response header, `Name: value` (e.g. X-UserOrgUUID).
        #[arg(long = "response-header", value_name = "HEADER")]
        response_header: Vec<String>,
    },
    /// Config file tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The guard's own certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The nftables table the guard owns (`inet misp_guard`).
    Nft {
        #[command(subcommand)]
        command: NftCommand,
    },
    /// Reload a running guard and wait for the outcome.
    ///
    /// The unit's ExecReload=: sends the guard SIGHUP and waits until it
    /// reports the outcome of that reload in its runtime directory. Exits 0
    /// when the new config is in force, 1 when the guard refused it (the old
    /// config and nftables table stay in force) or did not answer.
    Reload {
        /// The guard's process id (under systemd: $MAINPID).
        #[arg(long)]
        pid: u32,
        /// The directory the guard reports reload outcomes in: its unit's
        /// RuntimeDirectory= (/run/misp-guard); default $RUNTIME_DIRECTORY.
        #[arg(long = "runtime-dir", env = "RUNTIME_DIRECTORY", value_name = "DIR")]
        runtime_dir: PathBuf,
        /// How long to wait for the outcome, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
pub enum NftCommand {
    /// Print the table the config asks for, as `nft list` shows it.
    Render {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Replace the table with the one the config asks for, in one batch.
    Install {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Remove the table (the redirect and drop rules go with it).
    Remove {
        /// A config file (checked; the table is the same whatever it says).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a new guard CA (ca.crt, ca.key) in a directory; refuses to
    /// overwrite existing files.
    Init {
        /// The directory to write ca.crt and ca.key to.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the problems of a config file, or a summary when it is good.
    Check {
        /// The config file.
        file: PathBuf,
    },
}
