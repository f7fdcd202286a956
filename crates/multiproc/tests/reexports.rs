//! Tests that each re-export of the umbrella crate resolves to the crate it names.

#[test]
fn resolves_every_reexport() {
    let _: fn() -> multiproc::process::CurrentProcess = multiproc::current_process;
    let _: fn() -> usize = multiproc::cpu_count;
    let _ = multiproc::StartMethod::ForkServer;
    let _ = multiproc::wire::frame::DEFAULT_MAX_LEN;
    let me = multiproc::prelude::current_process();
    assert_eq!(me.name(), "MainProcess");
}

#[test]
fn resolves_pipe_reexports() {
    let (mut a, mut b) = multiproc::pipe(true).expect("pipe");
    a.send(&5u8).expect("send");
    assert_eq!(b.recv::<u8>().expect("recv"), 5);
    let _ = multiproc::pipe::DEFAULT_MAX_MESSAGE;
    let _: Option<multiproc::Address> = None;
}

fn double(x: u32) -> u32 {
    x * 2
}

#[test]
fn resolves_pool_reexports() {
    let pool = multiproc::Pool::new(1).expect("pool");
    assert_eq!(pool.apply(double, 4).expect("apply"), 8);
    let _: Option<multiproc::AsyncResult<u32>> = None;
    let _ = multiproc::pool::ErrorKind::WorkerLost;
}

#[test]
fn resolves_shmem_reexports() {
    let v = multiproc::Value::new(3i64).expect("value");
    v.set(4).expect("set");
    assert_eq!(v.get().expect("get"), 4);
    let _ = multiproc::shmem::NAME_PREFIX;
    let _: Option<multiproc::Lock> = None;
}

#[test]
fn resolves_queue_reexports() {
    let q: multiproc::Queue<u32> = multiproc::Queue::new().expect("queue");
    q.put(7).expect("put");
    assert_eq!(q.get().expect("get"), 7);
    let _: Option<multiproc::JoinableQueue<u8>> = None;
    let _: Option<multiproc::queue::SimpleQueue<u8>> = None;
}

#[test]
fn resolves_manager_reexports() {
    let _ = multiproc::manager::ErrorKind::Disconnected;
    let _: Option<multiproc::Manager> = None;
}
