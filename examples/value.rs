//! Shared Value: a child process cubes a shared f64 in place (4 -> 64), a second child cubes the
//! modified number again (64 -> 262144), and the parent reads the double-cubed result.

use multiproc::Process;
use multiproc::Value;

/// The child: cubes the shared number in place, under its lock.
fn cube(num: Value<f64>) {
    num.update(|x| *x = x.powi(3)).expect("the lock's previous holder died");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let num = Value::new(4.0f64)?;
    println!("shared value before: {}", num.get()?);

    let mut results = Vec::new();
    for round in 1..=2 {
        let mut p = Process::new(cube, num.clone());
        p.start()?;
        let code = p.join()?;
        if code != 0 {
            eprintln!("child {round} exited with {code}");
            std::process::exit(1);
        }
        let value = num.get()?;
        println!("after child {round} cubed it in place: {value}");
        results.push(value);
    }

    if results != [64.0, 262144.0] {
        eprintln!("wrong results {results:?}, expected [64.0, 262144.0]");
        std::process::exit(1);
    }
    println!("double-cubed result: {}", results[1]);
    Ok(())
}
