//! HTTP/1.1 on both sides of the gateway, written for this proxy's shape of traffic rather than
//! taken from hyper: thousands of requests parked for up to an hour (ActiveSync Ping) must cost
//! a few KiB each, and a short Sync must cost a handful of system calls and no task hand-off.
//!
//! - A connection borrows a read buffer ([`buffers`]) only while bytes are arriving and gives it
//!   back before it waits again: a parked Ping or an idle keep-alive connection holds none.
//! - Heads are parsed with `httparse` into `http` types whose header values are slices of one
//!   exact-size copy of the head ([`head`]); the original header-name case travels with it.
//! - The device side ([`server`]) drives one connection in one task: head, body (small bodies are
//!   read whole before the request is handled), the request path, the response.
//! - The server side ([`client`]) writes a request and waits for the response head on the same
//!   task; a server connection is owned by whoever uses it (the pool, a device connection pinned
//!   by NTLM, or the response body while it streams), never by a background task.
//!
//! HTTP/2 from devices stays on hyper (see [`crate::listener`]).

pub mod body;
pub mod buffers;
pub mod client;
pub mod framing;
pub mod head;
pub mod server;
pub mod socket;
