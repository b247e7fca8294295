//! The writable `.control/` directory: request lines, and later the queue
//! and job reports.

pub mod request;
