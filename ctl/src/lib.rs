//! The ABI of the tcplog device, `/dev/tcplog`.
//!
//! This crate is the one definition of everything that crosses the boundary between the kernel
//! module and userspace: the ABI version, the ioctl numbers and the layouts of what they carry, and
//! the layouts of the records read from the device. The kernel module includes [`abi`] as source
//! (`#[path = "ctl/src/abi/mod.rs"]`), the tool depends on this crate by path, so both always agree.
//!
//! It is plain `no_std` Rust with no dependencies, because it must build both with the kernel's
//! rustc (1.85, edition 2021, no `std`) and with the host's cargo.
#![no_std]

pub mod abi;

pub use abi::*;
