//! `easgate gateway` and `easgate check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use gateway::error::Error;
use gateway::model::Runtime;
use gateway::validate::{self, DevCertMode};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::prelude::*;

/// Audit lines (one per request) go here, as JSON on stdout; everything else is a log on stderr.
const AUDIT_TARGET: &str = "easgate::audit";

#[derive(clap::Args)]
pub struct GatewayArgs {
    /// Config file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
}

#[derive(clap::Args)]
pub struct CheckConfigArgs {
    /// Config file (TOML).
    pub file: PathBuf,
}

pub fn run_gateway(args: GatewayArgs) -> ExitCode {
    init_tracing();
    // Audit lines: batched to stdout by one writer thread; finished after the runtime is gone,
    // so the lines of requests ended by the drain (and by dropping the runtime) are written.
    let audit = gateway::audit::sink::start_stdout();
    let code = run(&args);
    if let Some(writer) = audit {
        writer.finish();
    }
    code
}

fn run(args: &GatewayArgs) -> ExitCode {
    // The control plane (accept loop, management API, health checks, signals). Device
    // connections run on one single-threaded runtime per core (`gateway::workers`).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(gateway::server::run(&args.config));
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::InvalidConfig { errors }) => {
            for e in &errors {
                tracing::error!("{}: {e}", args.config.display());
            }
            tracing::error!("{} config error(s): not started", errors.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs: `RUST_LOG` (default `info`, with rustls at `error`: it warns on every handshake whose
/// SNI is an IP address) on stderr. Audit: the data plane's JSON lines on stdout, written by
/// `gateway::audit::sink`'s batching writer (not through `tracing`), always on, because turning
/// verbose logging down must never turn the audit trail off.
fn init_tracing() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rustls=error"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(|meta| meta.target() != AUDIT_TARGET))
        .with_filter(filter);
    tracing_subscriber::registry().with(logs).init();
}

/// Prints every error, one per line, and exits 1; or `config OK` and a summary, exit 0. Never
/// writes anything (a missing development certificate is generated in memory only).
pub fn check_config(args: CheckConfigArgs) -> ExitCode {
    match validate::load_file(&args.file, DevCertMode::InMemory) {
        Ok(runtime) => {
            println!("config OK: {}", args.file.display());
            print!("{}", summary(&runtime));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{}: {} error(s)", args.file.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}

/// What the gateway will do with this config, in the admin form's terms.
fn summary(rt: &Runtime) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let src = &rt.source;
    let _ = writeln!(s, "  sentry host     {}", rt.sentry_host);
    let devices = if rt.device_tls.is_some() {
        "TLS, HTTP/2 + HTTP/1.1"
    } else {
        "plain HTTP: TLS offloaded"
    };
    let _ = writeln!(s, "  devices         {} ({devices})", rt.listen.devices);
    let mut creds = Vec::new();
    if rt.management.token.is_some() {
        creds.push("bearer token".to_string());
    }
    if !rt.management.client_ca.is_empty() {
        creds.push(format!(
            "client certificates ({} CA)",
            rt.management.client_ca.len()
        ));
    }
    let _ = writeln!(
        s,
        "  management      {} (TLS; {})",
        rt.listen.management,
        creds.join(", ")
    );
    let certificate = match &src.tls.cert {
        Some(cert) => cert.clone(),
        None => {
            let (path, _) = gateway::dev_certificate::paths(&rt.data_dir);
            format!(
                "development certificate {} (devices will not trust it)",
                path.display()
            )
        }
    };
    let _ = writeln!(s, "  certificate     {certificate}");
    let _ = writeln!(s, "  data dir        {}", rt.data_dir.display());
    let a = &rt.activesync;
    let _ = writeln!(
        s,
        "  activesync      {}, server auth {}, server TLS {}",
        if a.enabled {
            "enabled"
        } else {
            "DISABLED (devices get 503)"
        },
        src.activesync.server_auth,
        if a.server_tls.is_some() {
            "on (certificate and host name verified)"
        } else {
            "off"
        }
    );
    for svc in &a.services {
        let servers: Vec<String> = svc.servers.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            s,
            "  service         {} -> {}",
            svc.name,
            servers.join("; ")
        );
    }
    let p = &rt.servers;
    let _ = writeln!(
        s,
        "  scheduling      {}; dead after {} failures within {} ms",
        src.global_server.scheduling,
        p.dead_threshold,
        p.failure_window.as_millis()
    );
    match a.health_check {
        Some(h) => {
            let _ = writeln!(
                s,
                "  health check    every {} s; back after {} good checks",
                h.interval.as_secs(),
                h.live_threshold
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  health check    off; a dead server is retried after {} ms",
                p.dead_time.as_millis()
            );
        }
    }
    s
}
