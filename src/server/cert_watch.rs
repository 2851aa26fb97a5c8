//! Reloads HTTPS listeners' certificates when their files change, as the policy is reloaded:
//! the folders are watched (renames, Kubernetes `..data` swaps), a burst of events is one
//! reload, and a pair that fails to load leaves the current certificate serving.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::front::entry::Entry;

/// A certificate and its key are often written one after the other: one reload for both.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Starts watching the certificate files of `entries` (those that have any); the watcher
/// lives as long as the returned value.
pub(super) fn spawn(entries: Vec<Arc<Entry>>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let entries: Vec<Arc<Entry>> = entries.into_iter().filter(|e| e.is_tls()).collect();
    let files: BTreeSet<PathBuf> = entries
        .iter()
        .filter_map(|e| e.tls_files())
        .flat_map(|t| [t.cert.clone(), t.key.clone()])
        .collect();
    if files.is_empty() {
        return None;
    }
    let (tx, rx) = mpsc::channel(8);
    let names: BTreeSet<_> = files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|n| n.to_owned())
        .collect();
    let handler = move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && !ev.kind.is_access()
            && ev.paths.iter().any(|p| {
                // `..data` is the symlink Kubernetes swaps when a Secret changes.
                p.file_name()
                    .is_some_and(|n| names.contains(n) || n == "..data")
            })
        {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the listener certificates: they will not reload");
            return None;
        }
    };
    let dirs: BTreeSet<&Path> = files
        .iter()
        .map(|f| {
            f.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        })
        .collect();
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch a listener certificate folder: it will not reload");
        }
    }
    tokio::spawn(reloader(entries, rx));
    Some(watcher)
}

async fn reloader(entries: Vec<Arc<Entry>>, mut rx: mpsc::Receiver<()>) {
    while rx.recv().await.is_some() {
        tokio::time::sleep(DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        for entry in &entries {
            match entry.reload_tls() {
                Ok(()) => tracing::info!(listener = %entry.addr, "listener certificate reloaded"),
                Err(issue) => tracing::error!(
                    listener = %entry.addr,
                    error = %issue,
                    "listener certificate reload failed: keeping the previous one"
                ),
            }
        }
    }
}
