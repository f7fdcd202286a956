//! Pool.imap: results arrive one by one, in input order, while later inputs are still being
//! computed; the input is pulled lazily, so it may be endless.

use multiproc::Pool;

fn cube(x: i64) -> i64 {
    x * x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(4)?;
    let mut results = Vec::new();
    // An endless input: only what is consumed (plus a bounded window) is ever computed.
    for result in pool.imap(cube, 1..).take(10) {
        let result = result?;
        println!("imap result: {result}");
        results.push(result);
    }
    let expected: Vec<i64> = (1..=10).map(|x| x * x * x).collect();
    if results != expected {
        eprintln!("wrong results {results:?}, expected {expected:?}");
        std::process::exit(1);
    }
    Ok(())
}
