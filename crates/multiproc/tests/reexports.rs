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
