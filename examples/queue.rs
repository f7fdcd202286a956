//! Queues: one process puts the cubes of 1..=10 into a queue, another takes them and adds 1,
//! and the results come back to the parent through a second queue, in order.

use multiproc::Process;
use multiproc::Queue;

/// The first child: puts the cube of each number into `cubes`.
fn cube(cubes: Queue<i64>) {
    for x in 1..=10 {
        cubes.put(x * x * x).expect("put");
    }
}

/// The second child: takes each cube, adds 1, and puts it into `results`.
fn add_one((cubes, results): (Queue<i64>, Queue<i64>)) {
    for _ in 1..=10 {
        let c = cubes.get().expect("get");
        results.put(c + 1).expect("put");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cubes = Queue::new()?;
    let results = Queue::new()?;

    let mut producer = Process::new(cube, cubes.clone());
    let mut worker = Process::new(add_one, (cubes.clone(), results.clone()));
    producer.start()?;
    worker.start()?;

    let got: Vec<i64> = (0..10).map(|_| results.get()).collect::<Result<_, _>>()?;
    for (name, p) in [("producer", &mut producer), ("worker", &mut worker)] {
        let code = p.join()?;
        if code != 0 {
            eprintln!("{name} exited with {code}");
            std::process::exit(1);
        }
    }

    println!("{got:?}");
    let expected = [2, 9, 28, 65, 126, 217, 344, 513, 730, 1001];
    if got != expected {
        eprintln!("wrong results {got:?}, expected {expected:?}");
        std::process::exit(1);
    }
    Ok(())
}
