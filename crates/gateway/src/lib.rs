//! easgate's data plane. The request path reads as stages:
//! accept → authenticate device → decide access → route → pick server → forward → filter response.
#![forbid(unsafe_code)]

pub mod config;
pub mod model;
pub mod state;
