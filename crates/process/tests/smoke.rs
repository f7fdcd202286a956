//! Smoke test.
use multiproc_process::*;

fn cube(x: u64) -> u64 {
    x * x * x
}

#[test]
fn runs() {
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let mut p = Process::new(cube, 3);
        p.set_start_method(m);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), 0);
        assert_eq!(p.result().unwrap(), 27, "{m}");
    }
}
