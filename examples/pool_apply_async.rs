//! Pool.apply_async with a callback: results are collected by a callback as each task
//! completes, then checked once every task is done.

use std::sync::{Arc, Mutex};

use multiproc::Pool;

fn cube(x: i64) -> i64 {
    x * x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(4)?;
    let collected = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (1..=6)
        .map(|x| {
            let collected = collected.clone();
            pool.apply_async_with(
                cube,
                x,
                move |result: &i64| collected.lock().unwrap().push(*result),
                |error| eprintln!("task failed: {error}"),
            )
        })
        .collect();
    for handle in &handles {
        handle.get()?; // returns after the task's callback has run
    }
    let mut results = collected.lock().unwrap().clone();
    println!("collected by the callback, in completion order: {results:?}");
    results.sort_unstable();
    if results != [1, 8, 27, 64, 125, 216] {
        eprintln!("wrong results {results:?}");
        std::process::exit(1);
    }
    Ok(())
}
