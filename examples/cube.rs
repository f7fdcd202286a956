//! The multiprocessing cube: each number is cubed in a child process of its own, and the
//! parent collects the results.

use multiproc::Process;

fn cube(x: i64) -> i64 {
    let result = x * x * x;
    println!("{x} cube is {result} (computed in {})", multiproc::current_process().name());
    result
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let numbers = [3, 4, 5, 6, 7, 8];
    let mut children: Vec<Process<i64>> = numbers.iter().map(|&x| Process::new(cube, x)).collect();
    for p in &mut children {
        p.start()?;
    }
    let mut cubes = Vec::new();
    for p in &mut children {
        cubes.push(p.result()?);
        assert_eq!(p.exitcode(), Some(0), "{} exit code", p.name());
    }
    println!("cubes: {cubes:?}");
    let expected: Vec<i64> = numbers.iter().map(|x| x * x * x).collect();
    if cubes != expected {
        eprintln!("wrong cubes: expected {expected:?}");
        std::process::exit(1);
    }
    println!("Done");
    Ok(())
}
