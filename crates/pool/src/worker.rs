//! The worker process: runs calls from its own connection, one at a time, in order.

use multiproc_pipe::Connection;
use multiproc_process::call::{Call, Reply, catch_panic};
use serde::{Deserialize, Serialize};

/// What a worker is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) conn: Connection,
    pub(crate) init: Option<Call>,
}

/// Parent to worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run this call and answer with its id.
    Task { id: u64, call: Call },
    /// Exit once every earlier task is answered.
    Stop,
}

/// Worker to parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The initializer (if any) succeeded; tasks may come.
    Ready,
    /// The initializer failed; the worker exits.
    InitFailed(String),
    /// The results of task `id`, or why the call could not run at all.
    Done { id: u64, reply: Result<Reply, String> },
}

/// The worker's main loop: the target of every worker process.
pub(crate) fn worker_main(args: WorkerArgs) {
    let WorkerArgs { mut conn, init } = args;
    crate::sys::keep_freed_memory();
    if let Some(init) = init {
        let outcome = run(init).and_then(|reply| {
            match reply.decode::<()>().map_err(|e| e.to_string())?.into_iter().next() {
                Some(Err(panic)) => Err(format!("panicked: {panic}")),
                _ => Ok(()),
            }
        });
        if let Err(message) = outcome {
            let _ = conn.send(&FromWorker::InitFailed(message));
            return;
        }
    }
    if conn.send(&FromWorker::Ready).is_err() {
        return;
    }
    loop {
        match conn.recv::<ToWorker>() {
            Ok(ToWorker::Task { id, call }) => {
                let reply = run(call);
                if conn.send(&FromWorker::Done { id, reply }).is_err() {
                    return;
                }
            }
            // Stop, or the pool has gone: either way the worker is done.
            Ok(ToWorker::Stop) | Err(_) => return,
        }
    }
}

/// Runs a call. Its function runs under `catch_unwind` (a panic is that item's result); so do
/// the `Deserialize` of its arguments and the `Serialize` of its results here: a panic there
/// fails the whole call with its message, and the worker goes on.
fn run(call: Call) -> Result<Reply, String> {
    catch_panic(|| call.run().map_err(|e| e.to_string())).unwrap_or_else(|panic| {
        Err(format!("cannot decode the arguments or encode the results: panicked: {panic}"))
    })
}
