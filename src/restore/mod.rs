//! Restores: what a request restores and how it runs (`engine`), the job
//! queue of a mount (`queue`), where restored messages go (`target`) and
//! how they get there over IMAP (`imap`).

pub mod cancel;
pub mod engine;
pub mod folder_tree;
pub mod imap;
pub mod queue;
pub mod runner;
pub mod secret;
pub mod target;
pub mod wire;
