//! The restore queue of a mount: jobs run one at a time, in the order they
//! were accepted, by one worker thread.
//!
//! Jobs live in `<index>/jobs/` (never in the backup path): `<id>.json`
//! holds the request, state, progress, timings and final report, rewritten
//! atomically (temporary file, fsync, rename) on every state change and
//! about once a second while running; `<id>.journal` gets one line per item
//! handled (`R` restored or `S` skipped, then the item's key), appended and
//! fsynced as each item completes. When the daemon starts again, a job that
//! was queued or running is run again from the start of its plan: items
//! its journal names are counted, not sent again, and an item sent just
//! before a crash but not yet journaled is recognised by the target (by
//! its bytes, see the module `target`) and skipped, so nothing is restored
//! twice. Journal lines carry the item's content digest, so items with the
//! same bytes are numbered as copies alike on every run.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::catalog::private;
use crate::control::request::Request;
use crate::model::Millis;
use crate::restore::cancel::Cancel;
use crate::restore::engine::{self, DoneItem, ItemOutcome, Report, RestoreSource, RunHooks};
use crate::timeline::format_instant;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Stopped,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Stopped => "stopped",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed | JobState::Stopped)
    }
}

/// One accepted request and what became of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    /// The request line as written.
    pub line: String,
    pub request: Request,
    pub state: JobState,
    pub submitted: Millis,
    /// When the job first started (it names the undelete keyword).
    pub started: Option<Millis>,
    pub finished: Option<Millis>,
    /// How many times the job was started (more than 1 after a restart).
    pub runs: u32,
    pub done: u64,
    pub total: u64,
    pub report: Option<Report>,
    /// Why the job failed.
    pub error: Option<String>,
}

impl Job {
    /// The vendor's operation name for the request.
    pub fn verb(&self) -> &'static str {
        match self.request {
            Request::Item { .. } => "item",
            Request::Account { .. } => "account",
            Request::Undelete { .. } => "undelete",
            Request::External { .. } => "external",
        }
    }

    pub fn account(&self) -> String {
        match &self.request {
            Request::Item { account, .. }
            | Request::Account { account, .. }
            | Request::Undelete { account, .. } => account.clone(),
            Request::External {
                accounts, domains, ..
            } => {
                let mut all: Vec<String> = accounts.clone();
                all.extend(domains.iter().map(|d| format!("@{d}")));
                if all.is_empty() {
                    "*".into()
                } else {
                    all.join(",")
                }
            }
        }
    }

    /// One line of `.control/queue`:
    /// `ID STATE VERB ACCOUNT DONE/TOTAL submitted=INSTANT`.
    pub fn queue_line(&self) -> String {
        format!(
            "{} {} {} {} {}/{} submitted={}",
            self.id,
            self.state.as_str(),
            self.verb(),
            self.account(),
            self.done,
            self.total,
            format_instant(self.submitted)
        )
    }

    /// The text of `.control/jobs/<id>`.
    pub fn status_text(&self) -> String {
        let when = |t: Option<Millis>| t.map(format_instant).unwrap_or_else(|| "-".into());
        let mut s = format!(
            "id: {}\nrequest: {}\nstate: {}\nprogress: {}/{}\nsubmitted: {}\nstarted: {}\nfinished: {}\n",
            self.id,
            self.line,
            self.state.as_str(),
            self.done,
            self.total,
            format_instant(self.submitted),
            when(self.started),
            when(self.finished),
        );
        if let (Some(a), Some(b)) = (self.started, self.finished) {
            let secs = (b - a).max(0) as f64 / 1000.0;
            s.push_str(&format!("elapsed: {secs:.3} s\n"));
            if secs > 0.0 && self.done > 0 {
                s.push_str(&format!("rate: {:.0} items/s\n", self.done as f64 / secs));
            }
        }
        if self.runs > 1 {
            s.push_str(&format!("runs: {} (resumed after a restart)\n", self.runs));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!("error: {e}\n"));
        }
        if let Some(r) = &self.report {
            s.push('\n');
            s.push_str(&r.render());
        }
        s
    }
}

/// What can be stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopWhat {
    All,
    Job(u64),
}

/// The queue and its worker.
#[derive(Clone)]
pub struct RestoreQueue {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    src: RestoreSource,
    jobs: Mutex<BTreeMap<u64, Job>>,
    wake: Condvar,
    /// Asks the running job to stop between two items.
    stop_running: AtomicBool,
    /// Stops the running job's connections at once.
    cancel: Mutex<Arc<Cancel>>,
}

pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

impl RestoreQueue {
    /// Load the jobs under `<index_dir>/jobs`; queued and interrupted jobs
    /// run again once [`RestoreQueue::start`] is called.
    pub fn open(index_dir: &Path, src: RestoreSource) -> Result<RestoreQueue> {
        let dir = index_dir.join("jobs");
        private::create_dir(&dir)?;
        let mut jobs = BTreeMap::new();
        for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = e?.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let job: Job = match fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice(&b)?))
            {
                Ok(j) => j,
                Err(e) => {
                    log::warn!("ignoring job file {}: {e:#}", path.display());
                    continue;
                }
            };
            if job.state == JobState::Running {
                log::info!("job {} was interrupted; it resumes", job.id);
            }
            jobs.insert(job.id, job);
        }
        Ok(RestoreQueue {
            shared: Arc::new(Shared {
                dir,
                src,
                jobs: Mutex::new(jobs),
                wake: Condvar::new(),
                stop_running: AtomicBool::new(false),
                cancel: Mutex::new(Arc::new(Cancel::default())),
            }),
        })
    }

    /// Start the worker thread (it runs for the life of the process).
    pub fn start(&self) {
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("restore-queue".into())
            .spawn(move || worker(&shared))
            .expect("spawning the restore worker");
    }

    /// Queue requests, all or none, in order; their job ids.
    pub fn submit(&self, requests: Vec<(String, Request)>) -> Result<Vec<u64>, String> {
        let mut jobs = self.shared.jobs.lock().unwrap();
        let first = jobs.keys().next_back().map_or(1, |id| id + 1);
        let now = now_millis();
        let mut new = Vec::new();
        for (id, (line, request)) in (first..).zip(requests) {
            new.push(Job {
                id,
                line,
                request,
                state: JobState::Queued,
                submitted: now,
                started: None,
                finished: None,
                runs: 0,
                done: 0,
                total: 0,
                report: None,
                error: None,
            });
        }
        let mut written = Vec::new();
        for job in &new {
            if let Err(e) = self.shared.persist(job) {
                for id in written {
                    let _ = fs::remove_file(self.shared.job_path(id));
                }
                return Err(format!("cannot store the job: {e:#}"));
            }
            written.push(job.id);
        }
        for job in new {
            jobs.insert(job.id, job);
        }
        self.shared.wake.notify_all();
        Ok(written)
    }

    /// Stop one job or all: queued jobs at once, the running one between
    /// two items. Returns the ids concerned.
    pub fn stop(&self, what: StopWhat) -> Result<Vec<u64>, String> {
        let mut jobs = self.shared.jobs.lock().unwrap();
        let ids: Vec<u64> = match what {
            StopWhat::All => jobs
                .values()
                .filter(|j| !j.state.is_finished())
                .map(|j| j.id)
                .collect(),
            StopWhat::Job(id) => match jobs.get(&id) {
                None => return Err(format!("no job {id}")),
                Some(j) if j.state.is_finished() => {
                    return Err(format!("job {id} is already {}", j.state.as_str()))
                }
                Some(_) => vec![id],
            },
        };
        for id in &ids {
            let job = jobs.get_mut(id).expect("listed above");
            match job.state {
                JobState::Queued => {
                    job.state = JobState::Stopped;
                    job.finished = Some(now_millis());
                    if let Err(e) = self.shared.persist(job) {
                        log::error!("storing job {id}: {e:#}");
                    }
                }
                JobState::Running => {
                    self.shared.stop_running.store(true, Ordering::SeqCst);
                    self.shared.cancel.lock().unwrap().cancel();
                }
                _ => {}
            }
        }
        Ok(ids)
    }

    /// Every job, by id.
    pub fn jobs(&self) -> Vec<Job> {
        self.shared.jobs.lock().unwrap().values().cloned().collect()
    }

    pub fn job(&self, id: u64) -> Option<Job> {
        self.shared.jobs.lock().unwrap().get(&id).cloned()
    }

    pub fn source(&self) -> &RestoreSource {
        &self.shared.src
    }

    /// Wait until job `id` is finished (for tests and the CLI).
    pub fn wait(&self, id: u64, timeout: Duration) -> Option<Job> {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id)?;
            if job.state.is_finished() || Instant::now() > deadline {
                return Some(job);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Shared {
    fn job_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn journal_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.journal"))
    }

    /// Write a job's JSON atomically.
    fn persist(&self, job: &Job) -> Result<()> {
        let path = self.job_path(job.id);
        let tmp = self.dir.join(format!(".{}.json.tmp", job.id));
        let mut f = private::create_file(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(job)?)?;
        f.sync_all()?;
        fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Job)) -> Option<Job> {
        let mut jobs = self.jobs.lock().unwrap();
        let job = jobs.get_mut(&id)?;
        f(job);
        let copy = job.clone();
        if let Err(e) = self.persist(&copy) {
            log::error!("storing job {id}: {e:#}");
        }
        Some(copy)
    }
}

fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut jobs = shared.jobs.lock().unwrap();
            loop {
                let next = jobs
                    .values()
                    .find(|j| matches!(j.state, JobState::Queued | JobState::Running))
                    .map(|j| j.id);
                if let Some(id) = next {
                    shared.stop_running.store(false, Ordering::SeqCst);
                    *shared.cancel.lock().unwrap() = Arc::new(Cancel::default());
                    let job = jobs.get_mut(&id).expect("just found");
                    job.state = JobState::Running;
                    job.runs += 1;
                    job.started.get_or_insert_with(now_millis);
                    job.finished = None;
                    let copy = job.clone();
                    if let Err(e) = shared.persist(&copy) {
                        log::error!("storing job {id}: {e:#}");
                    }
                    break copy;
                }
                jobs = shared.wake.wait(jobs).unwrap();
            }
        };
        log::info!("job {} started: {}", job.id, job.line);
        let (state, report, error) = match run_job(shared, &job) {
            Ok(run) if run.stopped => (JobState::Stopped, Some(run.report), None),
            Ok(run) => match run.error {
                Some(e) => (JobState::Failed, Some(run.report), Some(e)),
                None => (JobState::Done, Some(run.report), None),
            },
            Err(e) => (JobState::Failed, None, Some(format!("{e:#}"))),
        };
        log::info!("job {} {}", job.id, state.as_str());
        shared.update(job.id, |j| {
            j.state = state;
            j.finished = Some(now_millis());
            j.report = report;
            j.error = error;
        });
    }
}

fn run_job(shared: &Shared, job: &Job) -> Result<engine::RunResult> {
    let run_day = job.started.unwrap_or(job.submitted);
    let plan = engine::plan(&shared.src, &job.request, run_day).map_err(anyhow::Error::msg)?;
    let journal_path = shared.journal_path(job.id);
    let done = read_journal(&journal_path)?;
    let journal = private::append_file(&journal_path)?;
    let mut hooks = QueueHooks {
        shared,
        id: job.id,
        journal,
        done: done.len() as u64,
        last_saved: Instant::now(),
    };
    engine::run(&shared.src, &plan, &done, &mut hooks)
}

/// The items a job's journal names: `R` (restored) or `S` (skipped), a
/// tab, the item's key (three tab-separated fields), and since the
/// content digests, a tab and the digest.
fn read_journal(path: &Path) -> Result<HashMap<String, DoneItem>> {
    let text = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = HashMap::new();
    // Only complete lines count: a line cut by a crash is not done.
    for line in text.split_inclusive(|&b| b == b'\n') {
        let Some(line) = line.strip_suffix(b"\n") else {
            continue;
        };
        let line = String::from_utf8_lossy(line);
        let fields: Vec<&str> = line.split('\t').collect();
        let restored = match fields.first() {
            Some(&"R") => true,
            Some(&"S") => false,
            _ => continue,
        };
        let (key, digest) = match fields.len() {
            4 => (fields[1..4].join("\t"), None),
            5 => (fields[1..4].join("\t"), Some(fields[4].to_string())),
            _ => continue,
        };
        out.insert(key, DoneItem { restored, digest });
    }
    Ok(out)
}

struct QueueHooks<'a> {
    shared: &'a Shared,
    id: u64,
    journal: File,
    done: u64,
    last_saved: Instant,
}

impl RunHooks for QueueHooks<'_> {
    fn planned(&mut self, total: u64) {
        let done = self.done;
        self.shared.update(self.id, |j| {
            j.total = total;
            j.done = done;
        });
    }

    fn item_done(&mut self, key: &str, digest: Option<&str>, outcome: &ItemOutcome) -> Result<()> {
        let tag = match outcome {
            ItemOutcome::Restored => Some('R'),
            ItemOutcome::Skipped => Some('S'),
            // Unrestored items are tried again when the job resumes.
            ItemOutcome::Unrestored(..) => None,
        };
        if let Some(tag) = tag {
            let line = match digest {
                Some(d) => format!("{tag}\t{key}\t{d}\n"),
                None => format!("{tag}\t{key}\n"),
            };
            self.journal
                .write_all(line.as_bytes())
                .context("writing the job journal")?;
            self.journal
                .sync_data()
                .context("syncing the job journal")?;
        }
        self.done += 1;
        let done = self.done;
        let mut jobs = self.shared.jobs.lock().unwrap();
        if let Some(j) = jobs.get_mut(&self.id) {
            j.done = done;
            if self.last_saved.elapsed() > Duration::from_secs(1) {
                self.last_saved = Instant::now();
                let copy = j.clone();
                drop(jobs);
                self.shared.persist(&copy)?;
            }
        }
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        self.shared.stop_running.load(Ordering::SeqCst)
    }

    fn cancel(&self) -> Arc<Cancel> {
        self.shared.cancel.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_ignores_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        fs::write(&p, "R\ta\t1\t0\nS\ta\t2\t0\tabc\nR\ta\t3").unwrap();
        let j = read_journal(&p).unwrap();
        assert_eq!(j.len(), 2);
        assert!(j["a\t1\t0"].restored);
        assert!(!j["a\t2\t0"].restored);
        assert_eq!(j["a\t1\t0"].digest, None);
        assert_eq!(j["a\t2\t0"].digest.as_deref(), Some("abc"));
    }
}
