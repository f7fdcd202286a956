//! The pool's dispatcher thread: hands tasks to workers, collects results, and replaces
//! workers that die or retire, failing only the task a dead worker was running.
//!
//! Each worker has its own connection, and tasks sent to it are answered in order, so the
//! dispatcher always knows which task a worker holds: the oldest unanswered one. Small tasks
//! are sent ahead (up to [`PREFETCH`] per worker) so that a worker never waits for the
//! dispatcher between tasks; large ones only to an idle worker, which is reading and so never
//! blocks the dispatcher's write.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use multiproc_pipe::{Connection, Waitable, pipe, wait};
use multiproc_process::call::{Call, Reply, catch_panic};
use multiproc_process::{Process, StartMethod};
use multiproc_wire::spin::{DEFAULT_WATCH, Spin};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result, describe_exit};
use crate::result::Sink;
use crate::worker::{FromWorker, ToWorker, WorkerArgs, worker_main};

/// Tasks a worker may hold (running plus sent ahead) at first, and whenever its tasks are slow.
const PREFETCH: usize = 2;
/// The most it may hold when its tasks are quick: a worker that finishes tasks in
/// microseconds would otherwise sleep between them waiting for the dispatcher.
const PREFETCH_QUICK: usize = 32;
/// Tasks answered faster than this (one after the other) count as quick.
const QUICK_TASK: Duration = Duration::from_micros(200);
/// A task this small may be sent to a busy worker.
const SMALL_TASK: usize = 32 << 10;
/// While watching finds work, the sentinels are polled at least this often.
const SENTINEL_LOOK: Duration = Duration::from_millis(1);
/// How long a stopping worker may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One unit of work: a call and where its result goes.
///
/// A task always reaches its sink: [`finish`](Task::finish) hands it its outcome, and a task
/// dropped unfinished (the pool's thread ended, a submission that was never received) fails
/// with [`ErrorKind::Closed`], so that no waiter can wait for it forever.
pub(crate) struct Task {
    pub(crate) call: Call,
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) chunk: usize,
    finished: bool,
}

impl Task {
    pub(crate) fn new(call: Call, sink: Arc<dyn Sink>, chunk: usize) -> Task {
        Task { call, sink, chunk, finished: false }
    }

    /// Hands the outcome to the sink. User code runs there (the result's `Deserialize`, the
    /// `Drop` of values, a callback when the callback thread is gone): the sinks guard their
    /// decoding, and a panic anywhere else fails the task with it instead of ending the thread.
    pub(crate) fn finish(mut self, reply: Result<Reply>) {
        self.finished = true;
        let (sink, chunk) = (&self.sink, self.chunk);
        if let Err(panic) = catch_panic(|| sink.complete(chunk, reply)) {
            let _ = catch_panic(|| sink.complete(chunk, Err(Error::result_panicked(panic))));
        }
    }

    /// Marks the task settled without telling its sink (whoever holds it does).
    pub(crate) fn forget(mut self) {
        self.finished = true;
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if !self.finished {
            let error = Error::new(ErrorKind::Closed, "the pool stopped before the task finished");
            let (sink, chunk) = (&self.sink, self.chunk);
            let _ = catch_panic(|| sink.complete(chunk, Err(error)));
        }
    }
}

/// What the pool's handle asks of the dispatcher.
pub(crate) enum Command {
    Submit(Vec<Task>),
    Close,
    Terminate,
    /// Panics in the pool's thread (the tests of what waiters see when it dies).
    #[cfg(test)]
    Panic,
}

/// How workers are made.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) init: Option<Call>,
    pub(crate) maxtasks: Option<usize>,
    pub(crate) method: StartMethod,
}

/// Same encoding as `worker::ToWorker`, borrowing the call.
#[derive(Serialize)]
enum ToWorkerRef<'a> {
    Task { id: u64, call: &'a Call },
    Stop,
}

pub(crate) struct Worker {
    process: Process,
    conn: Connection,
    /// Ids of tasks sent and not answered, oldest first.
    inflight: VecDeque<u64>,
    sent: usize,
    ready: bool,
    retiring: bool,
    /// The connection has reached end of stream: only the sentinel matters now.
    hung_up: bool,
    /// How many tasks it may hold, adapted to how quickly it answers.
    depth: usize,
    /// When it last answered (or was first given a task while idle).
    last_answer: Instant,
}

static NEXT_WORKER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Starts one worker (not yet ready: it reports when its initializer has run).
pub(crate) fn start_worker(config: &Config, threaded: bool) -> Result<Worker> {
    let io = |e: multiproc_pipe::Error| {
        Error::new(ErrorKind::Io, format!("cannot create a worker connection: {e}"))
    };
    let (ours, theirs) = pipe(true).map_err(io)?;
    let init = match &config.init {
        Some(call) => Some(call.try_clone().map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?),
        None => None,
    };
    let mut process = Process::new(worker_main, WorkerArgs { conn: theirs, init });
    let n = NEXT_WORKER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    process
        .set_daemon(true)
        .set_start_method(config.method)
        .set_name(format!("PoolWorker-{n}"))
        // Replacement workers are forked from the dispatcher thread; a worker only runs
        // this crate's loop and the user's functions.
        .allow_threads(threaded);
    process.start().map_err(|e| Error::new(ErrorKind::Io, format!("cannot start a worker: {e}")))?;
    Ok(Worker {
        process,
        conn: ours,
        inflight: VecDeque::new(),
        sent: 0,
        ready: false,
        retiring: false,
        hung_up: false,
        depth: PREFETCH,
        last_answer: Instant::now(),
    })
}

/// Waits for a new worker's first word: ready, or its initializer's error.
pub(crate) fn await_ready(worker: &mut Worker, deadline: Instant) -> Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let sentinel = worker.process.sentinel().expect("started");
        let ready = wait(&[&worker.conn, &sentinel], Some(left))
            .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
        if ready.is_empty() {
            return Err(Error::new(ErrorKind::Initializer, "a worker did not become ready in time"));
        }
        if ready.contains(&0) {
            return match worker.conn.recv::<FromWorker>() {
                Ok(FromWorker::Ready) => {
                    worker.ready = true;
                    Ok(())
                }
                Ok(FromWorker::InitFailed(message)) => Err(Error::new(ErrorKind::Initializer, message)),
                Ok(FromWorker::Done { .. }) => {
                    Err(Error::new(ErrorKind::Io, "unexpected message from a worker"))
                }
                Err(_) => {
                    let code = worker.process.join_timeout(STOP_GRACE).ok().flatten();
                    Err(Error::new(
                        ErrorKind::Initializer,
                        format!("a worker died while starting ({})", describe_exit(code)),
                    ))
                }
            };
        }
        // Only the sentinel: the worker exited; its last words, if any, are read above next.
        if !worker.conn.poll(Some(Duration::ZERO)).unwrap_or(false) {
            let code = worker.process.join_timeout(STOP_GRACE).ok().flatten();
            return Err(Error::new(
                ErrorKind::Initializer,
                format!("a worker died while starting ({})", describe_exit(code)),
            ));
        }
    }
}

/// Stops a worker: asks it to exit, then kills it if it does not.
pub(crate) fn stop_worker(mut worker: Worker, kill: bool) {
    if kill {
        let _ = worker.process.kill();
    } else {
        let _ = worker.conn.send_as::<ToWorker, _>(&ToWorkerRef::Stop);
    }
    if !matches!(worker.process.join_timeout(STOP_GRACE), Ok(Some(_))) {
        let _ = worker.process.kill();
        let _ = worker.process.join();
    }
}

pub(crate) struct Dispatcher {
    pub(crate) rx: Receiver<Command>,
    pub(crate) waker: UnixStream,
    pub(crate) sleeping: Arc<AtomicBool>,
    pub(crate) workers: Vec<Worker>,
    pub(crate) config: Config,
    queue: VecDeque<(u64, Task)>,
    inflight: HashMap<u64, Task>,
    next_id: u64,
    closing: bool,
    broken: Option<Error>,
    /// Answers read and not yet handed to their sinks (see `wait_and_handle`).
    answered: Vec<(Task, Result<Reply>)>,
    /// How long to watch for work before sleeping (a worker's answer or a new task that comes
    /// within it costs no wake-up), adapted to whether watching pays.
    spin: Spin,
    /// When the sentinels and the waker were last polled.
    polled: Instant,
}

impl Dispatcher {
    pub(crate) fn new(
        rx: Receiver<Command>,
        waker: UnixStream,
        sleeping: Arc<AtomicBool>,
        workers: Vec<Worker>,
        config: Config,
    ) -> Dispatcher {
        Dispatcher {
            rx,
            waker,
            sleeping,
            workers,
            config,
            queue: VecDeque::new(),
            inflight: HashMap::new(),
            next_id: 0,
            closing: false,
            broken: None,
            answered: Vec::new(),
            spin: Spin::new(DEFAULT_WATCH),
            polled: Instant::now(),
        }
    }

    /// The thread's body.
    ///
    /// User code that runs here is guarded where it runs (see [`Task::finish`]); should the
    /// thread panic anyway, every worker is stopped and every task fails, so that no waiter
    /// waits forever, and later submissions fail with [`ErrorKind::Closed`].
    pub(crate) fn run(mut self) {
        if let Err(panic) = catch_panic(|| self.serve()) {
            self.stop(Error::new(ErrorKind::Closed, format!("the pool's thread panicked: {panic}")));
        }
    }

    fn serve(&mut self) {
        loop {
            if !self.take_commands() {
                self.stop(Error::new(ErrorKind::Closed, "the pool was terminated"));
                return;
            }
            if let Some(error) = self.broken.clone() {
                for (_, task) in self.queue.drain(..) {
                    task.finish(Err(error.clone()));
                }
            }
            self.assign();
            if self.closing && self.queue.is_empty() && self.inflight.is_empty() {
                for worker in self.workers.drain(..) {
                    stop_worker(worker, false);
                }
                return;
            }
            self.wait_and_handle();
        }
    }

    /// Takes every pending command; `false` on terminate.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Command::Submit(tasks)) => {
                    for task in tasks {
                        self.next_id += 1;
                        self.queue.push_back((self.next_id, task));
                    }
                }
                Ok(Command::Close) => self.closing = true,
                Ok(Command::Terminate) => return false,
                #[cfg(test)]
                Ok(Command::Panic) => panic!("told to panic"),
                Err(TryRecvError::Empty) => return true,
                // The pool's handle is gone without closing: finish what was submitted.
                Err(TryRecvError::Disconnected) => {
                    self.closing = true;
                    return true;
                }
            }
        }
    }

    /// Hands queued tasks to workers, breadth first: every idle worker gets a task before any
    /// worker gets one sent ahead, so a task never waits behind another while a worker idles.
    fn assign(&mut self) {
        for depth in 0..PREFETCH_QUICK {
            for index in 0..self.workers.len() {
                let worker = &self.workers[index];
                if !worker.ready
                    || worker.retiring
                    || worker.hung_up
                    || worker.inflight.len() != depth
                    || depth >= worker.depth
                {
                    continue;
                }
                let Some((_, task)) = self.queue.front() else { return };
                // Large tasks go only to idle workers (see the module's documentation).
                if depth > 0 && task.call_size() > SMALL_TASK {
                    return;
                }
                let (id, task) = self.queue.pop_front().expect("front exists");
                let worker = &mut self.workers[index];
                if worker.conn.send_as::<ToWorker, _>(&ToWorkerRef::Task { id, call: &task.call }).is_err() {
                    // The worker is dying: the task was not taken; its sentinel will tell.
                    worker.hung_up = true;
                    self.queue.push_front((id, task));
                    continue;
                }
                if worker.inflight.is_empty() {
                    worker.last_answer = Instant::now();
                }
                worker.inflight.push_back(id);
                worker.sent += 1;
                self.inflight.insert(id, task);
                if self.config.maxtasks.is_some_and(|max| worker.sent >= max) {
                    worker.retiring = true;
                    let _ = worker.conn.send_as::<ToWorker, _>(&ToWorkerRef::Stop);
                }
            }
        }
    }

    /// Watches for a command or an answer for up to the spin budget; whether one came.
    fn watch(&self) -> bool {
        let (rx, workers) = (&self.rx, &self.workers);
        self.spin.watch(None, || {
            !rx.is_empty()
                || workers.iter().any(|w| !w.hung_up && !w.inflight.is_empty() && w.conn.ready_now())
        })
    }

    fn wait_and_handle(&mut self) {
        let busy = !self.inflight.is_empty() || !self.queue.is_empty();
        let found = busy && !self.spin.budget().is_zero() && self.watch();
        // Announce the sleep, then look once more: a submitter that sent before seeing the
        // flag is seen here; one that sent after it writes to the waker (Pool::wake).
        if !found {
            self.sleeping.store(true, Ordering::SeqCst);
            if !self.rx.is_empty() {
                self.sleeping.store(false, Ordering::SeqCst);
                return;
            }
        }
        let slept = Instant::now();
        // Work found by watching needs no system call, except now and then to look at the
        // sentinels (a worker that died) and the waker.
        let quick = found && slept - self.polled < SENTINEL_LOOK;
        let ready = if quick {
            let readable = (0..self.workers.len())
                .filter(|&i| !self.workers[i].hung_up && self.workers[i].conn.ready_now())
                .collect();
            (readable, Vec::new(), false)
        } else {
            self.polled = slept;
            let sentinels: Vec<_> =
                self.workers.iter().map(|w| w.process.sentinel().expect("workers are started")).collect();
            let mut objects: Vec<&dyn Waitable> = vec![&self.waker];
            // A connection at end of stream stays readable: leave it out once seen.
            let conns: Vec<usize> = (0..self.workers.len()).filter(|&i| !self.workers[i].hung_up).collect();
            objects.extend(conns.iter().map(|&i| &self.workers[i].conn as &dyn Waitable));
            objects.extend(sentinels.iter().map(|s| s as &dyn Waitable));
            let ready = wait(&objects, found.then_some(Duration::ZERO)).unwrap_or_default();
            let mut readable = Vec::new();
            let mut exited = Vec::new();
            let mut woken = false;
            for i in ready {
                if i == 0 {
                    woken = true;
                } else if i <= conns.len() {
                    readable.push(conns[i - 1]);
                } else {
                    exited.push(i - 1 - conns.len());
                }
            }
            (readable, exited, woken)
        };
        if !found && busy {
            self.spin.slept(slept.elapsed());
        }
        self.sleeping.store(false, Ordering::SeqCst);
        if ready.2 {
            let mut drain = [0u8; 64];
            while matches!((&self.waker).read(&mut drain), Ok(n) if n > 0) {}
        }
        for &index in &ready.0 {
            self.read_worker(index);
        }
        // Highest index first, so that removing a worker does not shift the others.
        let mut exited = ready.1;
        exited.sort_unstable_by(|a, b| b.cmp(a));
        for index in exited {
            self.reap_worker(index);
        }
        // Workers that answered get their next tasks before the answers are decoded (which
        // can take as long as the task did): they work while the results are handled.
        if !self.answered.is_empty() {
            self.assign();
            for (task, reply) in self.answered.drain(..) {
                task.finish(reply);
            }
        }
    }

    /// Reads every message a worker has sent.
    fn read_worker(&mut self, index: usize) {
        loop {
            let worker = &mut self.workers[index];
            // `ready_now` looks at the shared ring without a system call; end of stream was
            // seen by `wait` (or the sentinel will tell).
            if worker.hung_up || !worker.conn.ready_now() {
                return;
            }
            match worker.conn.recv::<FromWorker>() {
                Ok(FromWorker::Ready) => worker.ready = true,
                Ok(FromWorker::InitFailed(message)) => {
                    worker.hung_up = true;
                    self.broken = Some(Error::new(ErrorKind::Initializer, message));
                }
                Ok(FromWorker::Done { id, reply }) => {
                    let now = Instant::now();
                    worker.depth = if now - worker.last_answer < QUICK_TASK {
                        (worker.depth * 2).min(PREFETCH_QUICK)
                    } else {
                        PREFETCH
                    };
                    worker.last_answer = now;
                    if worker.inflight.front() == Some(&id) {
                        worker.inflight.pop_front();
                    } else {
                        worker.inflight.retain(|&t| t != id);
                    }
                    if let Some(task) = self.inflight.remove(&id) {
                        let reply: Result<Reply> = reply.map_err(|e| Error::new(ErrorKind::Codec, e));
                        self.answered.push((task, reply));
                    }
                }
                Err(_) => {
                    // End of stream or garbage: the worker is dead or useless; the sentinel
                    // (after a kill, for garbage) settles its tasks.
                    worker.hung_up = true;
                    let _ = worker.process.kill();
                }
            }
        }
    }

    /// A worker exited: fail the task it was running, give the others back, replace it.
    fn reap_worker(&mut self, index: usize) {
        // Read every answer it sent before dying, even if a failed send marked it hung up:
        // otherwise a finished task would be taken for the one it died running.
        self.workers[index].hung_up = false;
        self.read_worker(index);
        let mut worker = self.workers.swap_remove(index);
        let code = worker.process.join_timeout(STOP_GRACE).ok().flatten();
        if !worker.ready && self.broken.is_none() {
            // Died before its initializer finished: starting another would die the same way.
            self.broken = Some(Error::new(
                ErrorKind::Initializer,
                format!("a worker died during initialization ({})", describe_exit(code)),
            ));
        }
        if let Some(running) = worker.inflight.pop_front() {
            if let Some(task) = self.inflight.remove(&running) {
                task.finish(Err(Error::worker_lost(code)));
            }
        }
        for id in worker.inflight.drain(..).rev() {
            if let Some(task) = self.inflight.remove(&id) {
                self.queue.push_front((id, task));
            }
        }
        let needed = !self.closing || !self.queue.is_empty() || !self.inflight.is_empty();
        if self.broken.is_none() && needed {
            match start_worker(&self.config, true) {
                Ok(worker) => self.workers.push(worker),
                Err(error) => {
                    if self.workers.is_empty() {
                        self.broken = Some(error);
                    }
                }
            }
        }
        if self.workers.is_empty() && self.broken.is_none() && needed {
            self.broken = Some(Error::new(ErrorKind::Io, "no worker could be started"));
        }
    }

    /// Kills every worker and fails every task not yet finished with `error`, submitted ones
    /// included (a submission that comes later finds the channel closed).
    fn stop(&mut self, error: Error) {
        for worker in self.workers.drain(..) {
            stop_worker(worker, true);
        }
        for (_, task) in self.queue.drain(..) {
            task.finish(Err(error.clone()));
        }
        for (_, task) in self.inflight.drain() {
            task.finish(Err(error.clone()));
        }
        for (task, _) in self.answered.drain(..) {
            task.finish(Err(error.clone()));
        }
        for command in self.rx.try_iter() {
            if let Command::Submit(tasks) = command {
                tasks.into_iter().for_each(|task| task.finish(Err(error.clone())));
            }
        }
    }
}

impl Drop for Dispatcher {
    /// Stops the workers it still has: a pool thread that could not start, or that ended
    /// without stopping them, leaves no process behind.
    fn drop(&mut self) {
        for worker in self.workers.drain(..) {
            stop_worker(worker, true);
        }
    }
}

impl Task {
    fn call_size(&self) -> usize {
        self.call.encoded_len()
    }
}
