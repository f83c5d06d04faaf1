//! The nmdb server: a bounded in-memory cache in front of a durable
//! database, served over TCP, UDP (and TIPC, SCTP) in the original binary
//! protocol.
//!
//! Where a request goes, by module:
//! - [`transport`]: bytes arrive (TCP frames, datagrams) and replies leave;
//! - [`engine`]: the request is parsed (with `nmdb_proto`) and executed on
//!   the [`cache`]; database work is queued on the [`dbqueue`], which runs
//!   it on a [`backend`] and answers through [`reply`].
//!
//! [`Server`] puts them together; `main.rs` only adds the process concerns
//! ([`run`]: daemon, log file, pid file, signals, and [`notify`] for the
//! service manager).

pub mod backend;
pub mod budget;
pub mod cache;
pub mod config;
pub mod daemon;
pub mod dbqueue;
pub mod engine;
pub mod fdlimit;
pub mod groupcommit;
pub mod incr;
pub mod logfile;
pub mod metrics;
pub mod netthreads;
pub mod notify;
pub mod poller;
pub mod reply;
pub mod run;
pub mod server;
pub mod shard;
pub mod stats;
pub mod throttle;
pub mod transport;
pub mod workqueue;

#[cfg(test)]
mod testing;

pub use config::Config;
pub use server::{LocalAddrs, Server, StartError};
