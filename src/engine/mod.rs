//! io_uring engine (being written): worker loop, rings, direct descriptors, slab, timer wheel.
#![deny(clippy::undocumented_unsafe_blocks)]
pub mod wheel;
