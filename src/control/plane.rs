//! The control plane of a mount with a restore queue:
//!
//! ```text
//! .control/
//!   README       how to use it
//!   restore      write request lines; each accepted line becomes a job
//!   jobs/<id>    state, progress, timings and report of a job
//!   queue        running and queued jobs, one per line
//!   stop         write a job id, or "all"
//!   last-error   why the last refused write was refused
//! ```
//!
//! A write to `restore` may hold several lines (blank lines and lines
//! starting with `#` are ignored). Every line is checked first (syntax,
//! target, password file, that the account and item exist); only when all
//! pass are they queued, together, in order. Otherwise the write fails with
//! EINVAL, no job is created, and `last-error` says which line and why.

use std::sync::Mutex;

use super::request::parse_request_by;
use super::{last_error_text, ControlEntry, ControlPlane, README};
use crate::restore::engine;
use crate::restore::queue::{RestoreQueue, StopWhat};

pub struct QueuePlane {
    queue: RestoreQueue,
    last_error: Mutex<String>,
}

impl QueuePlane {
    pub fn new(queue: RestoreQueue) -> QueuePlane {
        QueuePlane {
            queue,
            last_error: Mutex::new(String::new()),
        }
    }

    fn refused(&self, why: String) -> Result<(), String> {
        self.refuse(why.clone());
        Err(why)
    }

    fn restore(&self, data: &[u8], writer: u32) -> Result<(), String> {
        let Ok(text) = std::str::from_utf8(data) else {
            return self.refused("restore: the request is not UTF-8".into());
        };
        let mut accepted = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let checked = parse_request_by(trimmed, writer)
                .map_err(|e| e.0)
                .and_then(|r| engine::check(self.queue.source(), &r).map(|()| r));
            match checked {
                Ok(r) => accepted.push((trimmed.to_string(), r)),
                Err(why) => {
                    return self.refused(format!("line {}: {trimmed}: {why}", n + 1));
                }
            }
        }
        if accepted.is_empty() {
            return self.refused("restore: no request in what was written".into());
        }
        match self.queue.submit(accepted) {
            Ok(ids) => {
                log::info!("control: queued jobs {ids:?}");
                Ok(())
            }
            Err(why) => self.refused(why),
        }
    }

    /// One job id or `all` a line; every line is checked before any job
    /// is stopped.
    fn stop(&self, data: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(data);
        let mut which = Vec::new();
        for what in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            which.push(match what {
                "all" => StopWhat::All,
                id => match id.parse::<u64>() {
                    Ok(id) => StopWhat::Job(id),
                    Err(_) => {
                        return self
                            .refused(format!("stop: {what:?} is neither a job id nor \"all\""))
                    }
                },
            });
        }
        if which.is_empty() {
            return self.refused("stop: write a job id or \"all\"".into());
        }
        for w in which {
            if let Err(why) = self.queue.stop(w) {
                return self.refused(format!("stop: {why}"));
            }
        }
        Ok(())
    }
}

fn file(name: &str, writable: bool) -> ControlEntry {
    ControlEntry {
        name: name.to_string(),
        is_dir: false,
        writable,
    }
}

impl ControlPlane for QueuePlane {
    fn list(&self, dir: &str) -> Option<Vec<ControlEntry>> {
        match dir {
            "" => Some(vec![
                file("README", false),
                file("restore", true),
                ControlEntry {
                    name: "jobs".into(),
                    is_dir: true,
                    writable: false,
                },
                file("queue", false),
                file("stop", true),
                file("last-error", false),
            ]),
            "jobs" => Some(
                self.queue
                    .jobs()
                    .iter()
                    .map(|j| file(&j.id.to_string(), false))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let text = match path {
            "README" => README.to_string(),
            "restore" | "stop" => String::new(),
            "last-error" => self.last_error.lock().unwrap().clone(),
            "queue" => self
                .queue
                .jobs()
                .iter()
                .filter(|j| !j.state.is_finished())
                .map(|j| j.queue_line() + "\n")
                .collect(),
            _ => {
                let id = path.strip_prefix("jobs/")?.parse::<u64>().ok()?;
                self.queue.job(id)?.status_text()
            }
        };
        Some(text.into_bytes())
    }

    fn write(&self, path: &str, data: &[u8], writer: u32) -> Result<(), String> {
        match path {
            "restore" => self.restore(data, writer),
            "stop" => self.stop(data),
            other => self.refused(format!("{other} is not writable")),
        }
    }

    fn refuse(&self, why: String) {
        log::warn!("control: refused: {why}");
        *self.last_error.lock().unwrap() = last_error_text(&why);
    }
}
