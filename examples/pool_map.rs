//! Pool.map: the cubes of a range computed in parallel, results in input order.

use multiproc::Pool;

fn cube(x: i64) -> i64 {
    x * x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(4)?;
    let results = pool.map(cube, 1..=10)?;
    println!("map(cube, 1..=10) = {results:?}");
    let expected: Vec<i64> = (1..=10).map(|x| x * x * x).collect();
    if results != expected {
        eprintln!("wrong results, expected {expected:?}");
        std::process::exit(1);
    }
    Ok(())
}
