//! easgate's data plane. The request path reads as stages:
//! accept → identify device → decide access → route → pick server → forward → filter response.
#![forbid(unsafe_code)]

pub mod access;
pub mod access_api;
pub mod config;
pub mod error;
pub mod model;
pub mod state;

// Data plane: the request path and what it keeps between requests.
pub mod activesync;
pub mod attachments;
pub mod audit;
pub mod connect;
pub mod forward;
pub mod h1;
pub mod health;
pub mod identity;
pub mod listener;
pub mod metrics;
pub mod pick;
pub mod proxy;
pub mod redirect;
pub mod route;
pub mod timeout;
pub mod versions;
pub mod wipe;
pub mod workers;

pub use listener::{serve_devices, serve_devices_on};

// Control plane: config validation, management API, reload, process lifecycle.
pub mod atomic_file;
pub mod dev_certificate;
pub mod management;
pub mod reload;
pub mod server;
pub mod validate;
