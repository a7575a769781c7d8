//! Server-role WebSocket decoder over arbitrary client bytes; the checks are in `ws_common.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringcast::proto::Role;

#[path = "ws_common.rs"]
mod ws_common;

fuzz_target!(|data: &[u8]| ws_common::run(Role::Server, data));
