//! The gateway process: load and validate the config, bind both listeners, serve until SIGTERM or
//! SIGINT, then drain. SIGHUP re-reads the config file (see [`crate::reload`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::error::Error;
use crate::reload::ControlPlane;
use crate::state::Gateway;
use crate::validate::{self, DevCertMode};
use crate::workers::DeviceWorkers;

/// Accept backlog: a gateway restart makes thousands of devices reconnect at once.
const BACKLOG: u32 = 4096;
/// Time left after the drain timeout for tasks to notice and close connections.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs the gateway with the config file at `config_path` until SIGTERM or SIGINT; returns after
/// the drain (then the process may exit 0).
pub async fn run(config_path: &Path) -> Result<(), Error> {
    // Installed before anything else: the default action of SIGHUP is to terminate the process,
    // and an admin may send it while we are still starting.
    let hangups = signal(SignalKind::hangup()).map_err(|source| Error::Signal {
        name: "SIGHUP",
        source,
    })?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|source| Error::Signal {
        name: "SIGTERM",
        source,
    })?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|source| Error::Signal {
        name: "SIGINT",
        source,
    })?;

    let path = config_path.to_path_buf();
    let runtime =
        match tokio::task::spawn_blocking(move || validate::load_file(&path, DevCertMode::Persist))
            .await
        {
            Ok(loaded) => loaded.map_err(|errors| Error::InvalidConfig { errors })?,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
    let devices = bind(runtime.listen.devices)?;
    let management = bind(runtime.listen.management)?;

    // The persisted device list: enforced from the first request; unreadable → not started.
    let access = load_device_access(&runtime).await?;
    let cp = ControlPlane::new(Gateway::with_access(runtime, access), config_path);
    let hup_cp = cp.clone();
    let hup_task = tokio::spawn(reload_on_hangup(hup_cp, hangups));
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
            _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
        }
    };
    // One device worker per core unless configured (as nginx's `worker_processes`); see
    // `crate::workers`. Read once: the threads live as long as the process.
    let configured = cp.gateway().current().source.advanced.device_workers as usize;
    let workers = match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    tracing::info!(device_workers = workers, "starting device workers");
    let workers = Arc::new(DeviceWorkers::start(workers).map_err(Error::Workers)?);
    let result = serve(cp, devices, management, stop, Some(workers.clone())).await;
    hup_task.abort();
    // The accept loop has drained (or closed) every device connection: end the worker threads.
    if let Ok(workers) = Arc::try_unwrap(workers) {
        let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    }
    result
}

/// Serves both listeners until `stop` resolves, then stops accepting and waits for in-flight
/// device requests (parked Pings included) up to the drain timeout. Split from [`run`] so tests
/// can drive it with their own listeners and stop signal.
pub async fn serve(
    cp: Arc<ControlPlane>,
    devices: TcpListener,
    management: TcpListener,
    stop: impl Future<Output = ()>,
    workers: Option<Arc<DeviceWorkers>>,
) -> Result<(), Error> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let gateway = cp.gateway().clone();
    let rt = gateway.current();
    tracing::info!(
        sentry_host = %rt.sentry_host,
        devices = %local_addr(&devices),
        management = %local_addr(&management),
        device_tls = rt.device_tls.is_some(),
        services = rt.activesync.services.len(),
        "easgate gateway started"
    );
    drop(rt);

    let shutdown_rx_for_flusher = shutdown_rx.clone();
    let device_task = tokio::spawn(crate::serve_devices_on(
        gateway.clone(),
        devices,
        shutdown_rx.clone(),
        workers,
    ));
    let management_task = tokio::spawn(crate::management::serve_management(
        cp.clone(),
        management,
        shutdown_rx,
    ));
    // It idles while `activesync.health_check` is off and follows reloads by itself.
    let health_task = crate::health::spawn_checker(gateway.clone());
    // Writes the device state file periodically and once more at shutdown.
    let mut flush_rx = shutdown_rx_for_flusher;
    let flusher = tokio::spawn(gateway.access.clone().run_flusher(async move {
        let _ = flush_rx.wait_for(|stop| *stop).await;
    }));

    stop.await;
    let _ = shutdown_tx.send(true);
    let drain = gateway.current().timeouts.drain;
    if tokio::time::timeout(drain + DRAIN_GRACE, device_task)
        .await
        .is_err()
    {
        tracing::warn!(
            drain_ms = drain.as_millis() as u64,
            "drain timeout reached: closing the remaining device connections"
        );
    }
    management_task.abort();
    health_task.abort();
    if tokio::time::timeout(DRAIN_GRACE, flusher).await.is_err() {
        tracing::warn!("device state not written at shutdown within {DRAIN_GRACE:?}");
    }
    tracing::info!("easgate gateway stopped");
    Ok(())
}

/// The device access state from `device_access.state_file` (relative paths: the data dir). A
/// state file that cannot be read as ours stops the start (fail closed: an empty list would let
/// blocked and wiped devices in).
pub async fn load_device_access(
    runtime: &crate::model::Runtime,
) -> Result<Arc<crate::access::DeviceAccess>, Error> {
    let policy = runtime.source.device_access.validate()?;
    let path = runtime.data_dir.join(&policy.state_file);
    Ok(crate::access::DeviceAccess::load(policy, path).await?)
}

async fn reload_on_hangup(cp: Arc<ControlPlane>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!(file = %cp.config_path().display(), "SIGHUP: reloading the config");
        // Errors are logged by the reload itself; the old config stays in force.
        let _ = cp.reload_from_file().await;
    }
}

/// Binds with `SO_REUSEADDR` (a restart must not wait for TIME_WAIT) and a deep backlog.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let fail = |source| Error::Bind { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(BACKLOG).map_err(fail)
}

fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}
