//! A harness for tests that fork: the `Fork` start method (and `Process::from_closure`) must
//! not run in a multithreaded process, and libtest runs tests on many threads. Give such tests
//! a binary of their own with `harness = false` and let its `main` call [`run_serially`]: each
//! test runs on the main thread, one after the other, with libtest's name filters.
//!
//! ```no_run
//! // tests/fork.rs, declared in Cargo.toml with `[[test]] name = "fork" harness = false`
//! use std::time::Duration;
//!
//! fn forks_a_child() {
//!     let mut p = multiproc_process::Process::from_closure(|| 7);
//!     p.set_start_method(multiproc_process::StartMethod::Fork);
//!     p.start().unwrap();
//!     assert_eq!(p.join().unwrap(), 0);
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     multiproc_process::testing::run_serially(&[("forks_a_child", forks_a_child)], Duration::from_secs(60))
//! }
//! ```

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Duration;

use crate::sys;

/// A test for [`run_serially`]: its name and its body (which fails by panicking).
pub type Test = (&'static str, fn());

/// Runs the `tests` selected by the command line one after the other on the calling thread,
/// printing libtest's lines (`test NAME ... ok`, `test result: ...`); the exit code fails when
/// a test did.
///
/// Arguments as libtest takes them: names to select (substrings, or whole names with
/// `--exact`), `--skip NAME`, `--list`; `--ignored` selects none (no test here is ignored);
/// other flags are accepted and ignored. A test fails if another thread is running when it
/// starts (a thread an earlier test left would make every later fork refuse), and the whole
/// binary is ended by `SIGALRM` if one test runs longer than `limit`.
pub fn run_serially(tests: &[Test], limit: Duration) -> ExitCode {
    let options = Options::parse(std::env::args().skip(1));
    let selected: Vec<&Test> = tests.iter().filter(|(name, _)| options.selects(name)).collect();
    if options.list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for &&(name, test) in &selected {
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        sys::alarm(limit);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
            assert_eq!(threads, 1, "{threads} threads running before {name}");
            test();
        }));
        sys::alarm(Duration::ZERO);
        if outcome.is_ok() {
            println!("ok");
        } else {
            println!("FAILED");
            failed.push(name);
        }
    }
    let passed = selected.len() - failed.len();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed\n");
        ExitCode::SUCCESS
    } else {
        println!("\nfailures: {failed:?}\ntest result: FAILED. {passed} passed; {} failed\n", failed.len());
        ExitCode::FAILURE
    }
}

/// The command line, as libtest reads it.
#[derive(Debug, Default)]
struct Options {
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    list: bool,
    ignored: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Options {
        let mut options = Options::default();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--exact" => options.exact = true,
                "--list" => options.list = true,
                "--ignored" => options.ignored = true,
                "--skip" => options.skips.extend(args.next()),
                // Flags whose value is the next argument.
                "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                    args.next();
                }
                flag if flag.starts_with('-') => {}
                filter => options.filters.push(filter.to_owned()),
            }
        }
        options
    }

    fn matches(&self, name: &str, pattern: &str) -> bool {
        if self.exact { name == pattern } else { name.contains(pattern) }
    }

    fn selects(&self, name: &str) -> bool {
        !self.ignored
            && (self.filters.is_empty() || self.filters.iter().any(|f| self.matches(name, f)))
            && !self.skips.iter().any(|s| self.matches(name, s))
    }
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn options(args: &[&str]) -> Options {
        Options::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn selects_like_libtest() {
        assert!(options(&[]).selects("any"));
        assert!(options(&["fork"]).selects("passes_to_forked"));
        assert!(!options(&["fork", "--exact"]).selects("passes_to_forked"));
        assert!(options(&["--exact", "a_b"]).selects("a_b"));
        assert!(!options(&["--skip", "slow"]).selects("a_slow_one"));
        assert!(!options(&["--ignored"]).selects("any"));
        assert!(options(&["--test-threads", "1", "a"]).selects("a"));
        assert!(!options(&["--test-threads", "1", "a"]).selects("b"));
    }
}
