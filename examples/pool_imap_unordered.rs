//! Pool.imap_unordered: results arrive in completion order, not input order.

use multiproc::Pool;

fn slow_cube(x: i64) -> i64 {
    // Larger inputs finish first, so the completion order differs from the input order.
    std::thread::sleep(std::time::Duration::from_millis(10 * (10 - x as u64)));
    x * x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(4)?;
    let mut results = Vec::new();
    for result in pool.imap_unordered(slow_cube, 1..=10) {
        let result = result?;
        println!("imap_unordered result: {result}");
        results.push(result);
    }
    let mut sorted = results.clone();
    sorted.sort_unstable();
    let expected: Vec<i64> = (1..=10).map(|x| x * x * x).collect();
    if sorted != expected {
        eprintln!("wrong results {results:?}, expected {expected:?} in some order");
        std::process::exit(1);
    }
    println!("completion order differs from input order: {}", results != expected);
    Ok(())
}
