//! Pool.apply: each number is cubed by a pool worker, one blocking call at a time.

use multiproc::Pool;

fn cube(x: i64) -> i64 {
    x * x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(4)?;
    let mut results = Vec::new();
    for x in 1..=6 {
        let result = pool.apply(cube, x)?;
        println!("apply(cube, {x}) = {result}");
        results.push(result);
    }
    let expected = [1, 8, 27, 64, 125, 216];
    if results != expected {
        eprintln!("wrong results {results:?}, expected {expected:?}");
        std::process::exit(1);
    }
    Ok(())
}
