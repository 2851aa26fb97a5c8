//! Policy hot reload: a watch on the folders of the policy file and of every list file it names
//! (a Kubernetes `..data` swap included), debounced, and SIGHUP; a refused file keeps the
//! rules in force.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{State, build_interceptor, sd_notify};
use crate::config::{self, Config};

/// Editors save in bursts (write, rename, chmod): one reload per burst.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(200);

pub(super) async fn reloader(
    path: Option<PathBuf>,
    state: Arc<State>,
    mut rx: mpsc::Receiver<&'static str>,
    mut watch: Option<Watch>,
    notifier: Arc<sd_notify::Notifier>,
) {
    while let Some(why) = rx.recv().await {
        // Coalesce the burst of events one save produces.
        tokio::time::sleep(RELOAD_DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        let Some(path) = path.as_deref() else {
            tracing::info!(
                why,
                "reload requested, but ward runs on the embedded policy"
            );
            continue;
        };
        notifier.reloading();
        let reloaded = reload(path, &state, why);
        // Ready again either way: a refused reload keeps serving the previous rules.
        notifier.ready();
        if reloaded && let Some(w) = watch.as_mut() {
            // The new policy may name other list files: follow them from now on.
            w.follow(path, &state.config.load());
        }
    }
}

/// Loads the policy (and its list files) again; `false` when it keeps the previous rules.
fn reload(path: &Path, state: &State, why: &str) -> bool {
    let new = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            state
                .metrics
                .reload_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(why, file = %path.display(), errors = %e, "policy reload failed: keeping the previous rules");
            return false;
        }
    };
    let old = state.config.load();
    if new.listen != old.listen {
        tracing::warn!("listen addresses changed: restart ward to apply them");
    }
    if (&new.admin, &new.admin_token, new.admin_public_metrics)
        != (&old.admin, &old.admin_token, old.admin_public_metrics)
    {
        tracing::warn!("admin settings changed: restart ward to apply them");
    }
    let current = state.interceptor.load();
    match build_interceptor(
        &new,
        current.as_ref().as_ref(),
        &state.pinning,
        &state.metrics,
        &state.flows,
        state.key_access,
    ) {
        Ok(i) => state.interceptor.store(Arc::new(i)),
        Err(e) => {
            tracing::error!(error = %e, "policy reload failed: keeping the previous rules");
            return false;
        }
    }
    let summary = new.summary();
    state.config.store(Arc::new(new));
    // Counted and logged once in force: whoever waits for the record sees the new rules.
    state.metrics.reloads.fetch_add(1, Ordering::Relaxed);
    tracing::info!(why, summary = %summary, "policy reloaded");
    true
}

/// Watches the folders of the policy file and of its list files, not the files: editors and
/// Kubernetes ConfigMaps replace files by rename, which a watch on the file itself would lose.
/// Events name absolute paths because the folders are watched by absolute path. A file that
/// is a symlink through another entry of its folder (a ConfigMap's `policy.yaml ->
/// ..data/policy.yaml`) also reloads when that entry changes: the kubelet updates by renaming
/// a new `..data` over the old, and the file's own name sees no event.
pub(super) struct Watch {
    watcher: notify::RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    /// The files whose change reloads, shared with the event handler.
    files: Arc<Mutex<HashSet<PathBuf>>>,
}

/// `path` made absolute without touching the file system (the file may not exist yet).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Watch {
    pub(super) fn start(
        path: &Path,
        config: &Config,
        tx: mpsc::Sender<&'static str>,
    ) -> Option<Watch> {
        let files: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
        let watched = files.clone();
        let handler = move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            let files = watched.lock().unwrap_or_else(|e| e.into_inner());
            if !ev.kind.is_access() && ev.paths.iter().any(|p| files.contains(p)) {
                let _ = tx.try_send("file changed");
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the policy file; SIGHUP still reloads");
                return None;
            }
        };
        let mut watch = Watch {
            watcher,
            dirs: HashSet::new(),
            files,
        };
        watch.follow(path, config);
        Some(watch)
    }

    /// Watches the policy file and `config`'s list files (and only those).
    fn follow(&mut self, path: &Path, config: &Config) {
        use notify::{RecursiveMode, Watcher};
        let files: HashSet<PathBuf> = std::iter::once(path)
            .chain(config.lists.iter().map(|l| l.path.as_path()))
            .map(absolute)
            .collect();
        let links = files.iter().filter_map(|f| link_entry(f));
        let wanted: HashSet<PathBuf> = links.chain(files.iter().cloned()).collect();
        for dir in wanted.iter().filter_map(|f| f.parent()) {
            if self.dirs.contains(dir) {
                continue;
            }
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir.to_path_buf());
                }
                Err(e) => {
                    tracing::warn!(error = %e, dir = %dir.display(), "cannot watch a policy folder; SIGHUP still reloads");
                }
            }
        }
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = wanted;
    }
}

/// When `file` is a symlink whose target lies below another entry of the same folder, that
/// entry (`dir/..data` for `dir/policy.yaml -> ..data/policy.yaml`): swapping it changes the file.
fn link_entry(file: &Path) -> Option<PathBuf> {
    let dir = file.parent()?;
    let target = dir.join(std::fs::read_link(file).ok()?);
    let first = target.strip_prefix(dir).ok()?.components().next()?;
    match first {
        std::path::Component::Normal(name) => Some(dir.join(name)),
        _ => None,
    }
}
