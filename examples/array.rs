//! Shared Array: a child process adds 1 to every element of a shared array of 3 integers, and
//! the parent prints them.

use multiproc::Array;
use multiproc::Process;

/// The child: adds 1 to every element, holding the array's lock.
fn add_one(arr: Array<i32>) {
    for x in arr.lock().expect("the lock's previous holder died").iter_mut() {
        *x += 1;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arr = Array::from_slice(&[1, 2, 3])?;
    println!("shared array before: {:?}", arr.to_vec()?);

    let mut p = Process::new(add_one, arr.clone());
    p.start()?;
    let code = p.join()?;

    let values = arr.to_vec()?;
    for (i, x) in values.iter().enumerate() {
        println!("arr[{i}] = {x}");
    }
    if code != 0 || values != [2, 3, 4] {
        eprintln!("unexpected array {values:?} (child exit code {code}), expected [2, 3, 4]");
        std::process::exit(1);
    }
    Ok(())
}
