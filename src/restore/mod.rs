//! Restores: where restored messages go (`target`) and how they get there
//! over IMAP (`imap`). The job queue that drives them lives elsewhere and
//! knows only the [`target::Target`] trait.

pub mod imap;
pub mod target;
