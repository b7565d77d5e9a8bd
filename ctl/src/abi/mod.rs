// SPDX-License-Identifier: GPL-2.0

//! Everything the device and its readers agree on.
//!
//! All structures are `#[repr(C)]` with explicit padding fields, fixed-width integers in native byte
//! order, and compile-time assertions of their sizes and field offsets, so a change to a layout
//! cannot slip through unnoticed. Any incompatible change bumps [`ABI_VERSION`].

pub mod filter;
pub mod ioctl;
pub mod pod;
pub mod record;
pub mod rules;

pub use filter::*;
pub use ioctl::*;
pub use pod::Pod;
pub use record::*;
pub use rules::*;

/// Version of the ABI described by this crate.
///
/// The module reports its own through [`TCPLOG_IOC_VERSION`]; the tool refuses to talk to a
/// module whose version differs from the one it was built with.
pub const ABI_VERSION: u32 = 5;

/// Path of the device node the module registers.
pub const DEVICE_PATH: &str = "/dev/tcplog";

/// Name of the misc device (the node's name under `/dev`).
pub const DEVICE_NAME: &str = "tcplog";
