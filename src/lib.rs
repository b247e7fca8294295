//! mailbackfs: mount a mail-server backup read-only as
//! `account/date/folder/item.eml` trees.
//!
//! Layers, bottom up: `format` (one reader per backup format) produces the
//! common `model`; `catalog` stores it in SQLite; `timeline` says which state
//! is valid at an instant; `fs` is the filesystem core (testable without the
//! kernel) and `fuse` the thin adapter that serves it. `control` parses
//! restore requests; `restore` writes restored messages to their targets.

pub mod catalog;
pub mod check;
pub mod control;
pub mod format;
pub mod fs;
pub mod fuse;
pub mod getitem;
pub mod model;
pub mod mount;
pub mod mutf7;
pub mod restore;
pub mod synth;
pub mod timeline;
