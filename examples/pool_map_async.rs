//! Pool.map_async: the map runs while the parent does other work, then the results are
//! fetched from the AsyncResult.

use std::time::Duration;

use multiproc::Pool;

fn cube(x: i64) -> i64 {
    x * x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(4)?;
    let pending = pool.map_async(cube, 1..=10);
    println!("map_async submitted; the parent keeps working meanwhile");
    let results = pending.get_timeout(Duration::from_secs(30))?;
    println!("map_async(cube, 1..=10).get() = {results:?}");
    let expected: Vec<i64> = (1..=10).map(|x| x * x * x).collect();
    if results != expected || pending.successful() != Some(true) {
        eprintln!("wrong results, expected {expected:?}");
        std::process::exit(1);
    }
    Ok(())
}
