//! The flows file's writer thread: appends JSON lines in batches, reopens the file at its path
//! when asked (SIGUSR1: logrotate's `create` renames the file away and expects new records in a
//! new file), and lives through a file that cannot be written (a full disk, a read-only file):
//! the lost records are counted, the error is logged at most once per interval, and every later
//! batch tries again. Must never block the proxy: it only drains a bounded queue.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use tokio::time::Instant;

/// At most one "cannot write" line per this long (issue 15: a full disk must not flood the log).
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Lines written in one `write` at most: one system call per burst, and a bound on what one
/// failure loses.
const BATCH_LINES: u64 = 256;
/// How often an idle writer looks whether a reopen was asked for (a request also wakes it).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// What the flows file's writers did, for `/metrics`; shared by every writer a reload starts.
#[derive(Debug, Default)]
pub struct FileStats {
    /// Records written to the file.
    pub written: AtomicU64,
    /// Records lost because a write failed.
    pub failed: AtomicU64,
    /// Records dropped because the writer's queue was full (the disk could not keep up).
    pub dropped: AtomicU64,
    /// Bumped by each reopen request; a writer whose file is older reopens it.
    pub(super) reopen: AtomicU64,
}

/// Opens `path` for appending (created 0600: paths and headers are private).
pub fn open_append(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The writer's state between batches.
pub(super) struct Writer {
    pub path: PathBuf,
    pub file: fs::File,
    /// The reopen generation `file` was opened at.
    pub generation: u64,
    /// When the last failure was logged, and how many records failed since.
    last_report: Option<Instant>,
    unreported: u64,
    failing: bool,
}

impl Writer {
    pub fn new(path: PathBuf, file: fs::File, generation: u64) -> Writer {
        Writer {
            path,
            file,
            generation,
            last_report: None,
            unreported: 0,
            failing: false,
        }
    }

    /// Drains `rx` until every sender is gone. An empty line only wakes the writer.
    pub fn run(mut self, rx: Receiver<String>, stats: &FileStats) {
        let mut batch: Vec<u8> = Vec::new();
        loop {
            let first = match rx.recv_timeout(IDLE_POLL) {
                Ok(line) => Some(line),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.reopen_if_asked(stats);
            let mut lines: u64 = 0;
            for line in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                if !line.is_empty() {
                    batch.extend_from_slice(line.as_bytes());
                    batch.push(b'\n');
                    lines += 1;
                }
                if lines == BATCH_LINES {
                    break;
                }
            }
            if lines > 0 {
                self.write(&batch, lines, stats);
                batch.clear();
            }
        }
    }

    fn reopen_if_asked(&mut self, stats: &FileStats) {
        let wanted = stats.reopen.load(Ordering::Acquire);
        if wanted == self.generation {
            return;
        }
        self.generation = wanted;
        let path = self.path.display().to_string();
        match open_append(&self.path) {
            Ok(file) => {
                self.file = file;
                tracing::info!(path, "flows file reopened");
            }
            // The old file stays: records still land somewhere.
            Err(e) => {
                tracing::error!(path, error = %e, "reopening the flows file failed; writing on to the old one")
            }
        }
    }

    fn write(&mut self, batch: &[u8], lines: u64, stats: &FileStats) {
        let path = self.path.display().to_string();
        match self.file.write_all(batch) {
            Ok(()) => {
                stats.written.fetch_add(lines, Ordering::Relaxed);
                if std::mem::take(&mut self.failing) {
                    let lost = std::mem::take(&mut self.unreported);
                    tracing::warn!(path, lost, "flows file writable again");
                }
            }
            Err(e) => {
                stats.failed.fetch_add(lines, Ordering::Relaxed);
                self.failing = true;
                self.unreported += lines;
                let now = Instant::now();
                let due = self
                    .last_report
                    .is_none_or(|at| now.duration_since(at) >= ERROR_LOG_INTERVAL);
                if due {
                    let lost = std::mem::take(&mut self.unreported);
                    tracing::error!(
                        path,
                        error = %e,
                        lost,
                        "writing flows file failed; records are lost (ward_flows_write_failed_total), next report in 10s at the earliest"
                    );
                    self.last_report = Some(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every write to /dev/full fails (ENOSPC, a full disk): the records are counted as lost
    /// and the writer goes on until its senders are gone.
    #[test]
    fn failed_writes_are_counted_not_fatal() {
        let path = Path::new("/dev/full");
        let Ok(file) = open_append(path) else {
            return;
        };
        let stats = FileStats::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        for line in ["a", "", "b", "c"] {
            tx.send(line.to_owned()).unwrap();
        }
        drop(tx);
        let writer = Writer::new(path.to_path_buf(), file, 0);
        writer.run(rx, &stats);
        assert_eq!(
            stats.failed.load(Ordering::Relaxed),
            3,
            "the wake-up line is no record"
        );
        assert_eq!(stats.written.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn written_lines_and_a_reopen_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        let stats = FileStats::default();
        let mut writer = Writer::new(path.clone(), open_append(&path).unwrap(), 0);
        writer.write(b"one\n", 1, &stats);
        std::fs::rename(&path, dir.path().join("f.jsonl.1")).unwrap();
        stats.reopen.fetch_add(1, Ordering::AcqRel);
        writer.reopen_if_asked(&stats);
        writer.write(b"two\n", 1, &stats);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f.jsonl.1")).unwrap(),
            "one\n"
        );
        assert_eq!(stats.written.load(Ordering::Relaxed), 2);
    }
}
