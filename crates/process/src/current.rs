//! Who this process is: `current_process`, `parent_process`, and the names of its children.

use std::sync::Mutex;

use crate::sys;

#[derive(Debug, Clone)]
struct Identity {
    name: String,
    daemon: bool,
    path: Vec<u32>,
    parent: Option<ParentProcess>,
    started: u32,
}

static IDENTITY: Mutex<Option<Identity>> = Mutex::new(None);

fn with_identity<T>(f: impl FnOnce(&mut Identity) -> T) -> T {
    let mut guard = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    let identity = guard.get_or_insert_with(|| Identity {
        name: "MainProcess".into(),
        daemon: false,
        path: Vec::new(),
        parent: None,
        started: 0,
    });
    f(identity)
}

/// Called in a new child before its target runs.
pub(crate) fn become_child(name: String, path: Vec<u32>, daemon: bool, parent: ParentProcess) {
    let mut guard = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    *guard = Some(Identity { name, daemon, path, parent: Some(parent), started: 0 });
}

/// The identity path and default name (`Process-1`, `Process-1:2`, ...) of the next child.
pub(crate) fn next_child() -> (Vec<u32>, String) {
    with_identity(|id| {
        id.started += 1;
        let mut path = id.path.clone();
        path.push(id.started);
        let parts: Vec<String> = path.iter().map(u32::to_string).collect();
        let name = format!("Process-{}", parts.join(":"));
        (path, name)
    })
}

/// This process as a parent describes itself to a child.
pub(crate) fn as_parent() -> ParentProcess {
    ParentProcess { pid: sys::getpid(), name: with_identity(|id| id.name.clone()) }
}

/// The process this code runs in, as [`current_process`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: i32,
    daemon: bool,
    identity: Vec<u32>,
}

impl CurrentProcess {
    /// `MainProcess` in a process not started by multiproc, else the name its parent gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether this process was started as a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The position in the process tree: empty for the main process, `[1]` for its first child,
    /// `[1, 2]` for that child's second child (CPython's `_identity`).
    pub fn identity(&self) -> &[u32] {
        &self.identity
    }
}

/// The parent of a process started by multiproc, as [`parent_process`] describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParentProcess {
    pid: i32,
    name: String,
}

impl ParentProcess {
    /// The parent's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The parent's name (`MainProcess` for a top-level program).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Describes the process this code runs in.
///
/// ```
/// let me = multiproc_process::current_process();
/// assert_eq!(me.pid(), std::process::id() as i32);
/// assert_eq!(me.name(), "MainProcess");
/// ```
pub fn current_process() -> CurrentProcess {
    with_identity(|id| CurrentProcess {
        name: id.name.clone(),
        pid: sys::getpid(),
        daemon: id.daemon,
        identity: id.path.clone(),
    })
}

/// The parent of this process when multiproc started it, else `None`.
///
/// ```
/// assert!(multiproc_process::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    with_identity(|id| id.parent.clone())
}

/// The number of online CPUs (CPython's `multiprocessing.cpu_count`).
///
/// ```
/// assert!(multiproc_process::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    sys::online_cpus()
}

/// Makes this process ignore `SIGINT` (Ctrl-C), as CPython's server processes do: its
/// forkserver, and the server process of a manager, call `signal(SIGINT, SIG_IGN)` first.
///
/// A terminal sends Ctrl-C to every process of its foreground group, so a server started for
/// a program gets the interrupt the program itself may handle, and must not die of it; the
/// program stops its servers its own way. Processes started afterwards with the `Fork` or
/// `Spawn` method inherit the setting (`ForkServer` children get the forkserver's original
/// one).
///
/// ```no_run
/// // First thing in a server process's target.
/// multiproc_process::ignore_sigint();
/// ```
pub fn ignore_sigint() {
    sys::ignore_sigint();
}
