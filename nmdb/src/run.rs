//! The process around the server: command line, background, log and pid
//! files, and signals.

use crate::config::Config;
use crate::{daemon, logfile, notify, Server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use std::path::Path;
use std::process::ExitCode;

fn write_pid_file(path: &Path) -> std::io::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
        .map_err(|e| std::io::Error::new(e.kind(), format!("pid file {}: {e}", path.display())))
}

/// `nmdb`'s entry point.
pub fn main() -> ExitCode {
    let cfg = match Config::from_args(std::env::args_os()) {
        Ok(cfg) => cfg,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let ready = if cfg.foreground {
        None
    } else {
        match daemon::daemonize() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("nmdb: cannot go to the background: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let fail = |ready: Option<daemon::Ready>, msg: String| {
        log::error!("{msg}");
        eprintln!("nmdb: {msg}");
        if let Some(r) = ready {
            r.failed(&msg);
        }
        ExitCode::FAILURE
    };
    if let Err(e) = logfile::init(cfg.log_file.as_deref()) {
        return fail(ready, e.to_string());
    }
    // Before any thread starts, so every thread inherits the blocked
    // default actions and the signals arrive here.
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2]) {
        Ok(s) => s,
        Err(e) => return fail(ready, format!("cannot install signal handlers: {e}")),
    };
    log::info!("nmdb {} starting", env!("CARGO_PKG_VERSION"));
    let server = match Server::start(&cfg) {
        Ok(s) => s,
        Err(e) => return fail(ready, e.to_string()),
    };
    if let Some(path) = &cfg.pid_file {
        if let Err(e) = write_pid_file(path) {
            server.shutdown();
            return fail(ready, e.to_string());
        }
    }
    match ready {
        // The waiting parent is the process the service manager started:
        // it tells it, with this process's pid (see notify.rs).
        Some(r) => r.started(),
        None => notify::ready(),
    }
    log::info!("ready");

    for sig in signals.forever() {
        match sig {
            SIGHUP => match logfile::reopen() {
                Ok(()) => log::info!("log file reopened"),
                Err(e) => eprintln!("nmdb: cannot reopen the log file: {e}"),
            },
            SIGUSR1 => {
                server.modes().set_read_only();
                log::info!("SIGUSR1: now read-only");
            }
            SIGUSR2 => {
                let passive = server.modes().toggle_passive();
                log::info!(
                    "SIGUSR2: now {}",
                    if passive { "passive" } else { "active" }
                );
            }
            _ => {
                log::info!("signal {sig}: shutting down");
                break;
            }
        }
    }
    notify::stopping();
    server.shutdown();
    if let Some(path) = &cfg.pid_file {
        let _ = std::fs::remove_file(path);
    }
    log::info!("clean shutdown");
    ExitCode::SUCCESS
}
