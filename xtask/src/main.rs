//! Project automation for the multiproc workspace (`cargo xtask <command>`), std only.

use std::env;
use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

type Result<T, E = String> = std::result::Result<T, E>;

const HELP: &str = "\
usage: cargo xtask <command> [args]

commands:
  demo [FILTER]       build and run every examples/*.rs scenario (120 s timeout each);
                      FILTER keeps the scenarios whose name contains it
  bench [FILTER...]   run crates/bench (multiproc) and crates/bench/cpython.py (CPython)
                      on the same workloads, interleaved, and print the speed-ups;
                      FILTERs keep the workloads whose name contains any of them
  stress [N] [-- ARGS] run the whole test suite N times (default 10) while a CPU hog runs
                      on every core, and print every test that failed or hung (ARGS go to
                      each test binary, e.g. `-- barrier`)
  ci                  cargo fmt --check, clippy -D warnings, test, then demo
  help                print this text

environment: CARGO (cargo to use), PYTHON (interpreter for bench, default python3)
";

/// Wall-clock limit for one demo scenario.
const DEMO_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a failed scenario's output (its last lines) `demo` prints.
const MAX_FAILURE_LINES: usize = 200;

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((cmd, rest)) => (cmd.as_str(), rest),
        None => {
            eprint!("{HELP}");
            return Err("no command given".into());
        }
    };
    match cmd {
        "demo" => match rest {
            [] => demo(None),
            [filter] => demo(Some(filter)),
            _ => Err("demo takes at most one FILTER".into()),
        },
        "bench" => bench(rest),
        "stress" => stress(rest),
        "ci" if rest.is_empty() => ci(),
        "ci" => Err("ci takes no arguments".into()),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => {
            eprint!("{HELP}");
            Err(format!("unknown command `{other}`"))
        }
    }
}

// ---------------------------------------------------------------- demo

fn demo(filter: Option<&str>) -> Result<()> {
    let root = root();
    let mut scenarios = scenarios(&root)?;
    if let Some(f) = filter {
        scenarios.retain(|name| name.contains(f));
        if scenarios.is_empty() {
            return Err(format!("no scenario matches `{f}`"));
        }
    }

    run(cargo(&root).args(["build", "--release", "-p", "multiproc-examples", "--examples"]))?;

    let bin_dir = target_dir(&root).join("release").join("examples");
    let log_dir = target_dir(&root).join("xtask").join("demo");
    fs::create_dir_all(&log_dir).map_err(|e| format!("creating {}: {e}", log_dir.display()))?;

    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for name in &scenarios {
        let log = log_dir.join(format!("{name}.log"));
        let mut cmd = Command::new(bin_dir.join(name));
        cmd.current_dir(&root);
        let (outcome, elapsed) = run_with_timeout(&mut cmd, &log, DEMO_TIMEOUT)?;
        let result = match outcome {
            Some(status) if status.success() => "ok".to_string(),
            Some(status) => describe_failure(status),
            None => "TIMEOUT".to_string(),
        };
        if result != "ok" {
            failed.push((name.clone(), result.clone(), log));
        }
        rows.push(vec![name.clone(), result, format_duration(elapsed)]);
    }

    println!();
    print_table(&["scenario", "result", "time"], &[false, false, true], &rows);
    for (name, result, log) in &failed {
        let output = String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = output.lines().collect();
        let skip = lines.len().saturating_sub(MAX_FAILURE_LINES);
        println!("\n---- {name}: {result} (full output in {}) ----", log.display());
        if skip > 0 {
            println!("[... {skip} earlier lines omitted ...]");
        }
        for line in &lines[skip..] {
            println!("{line}");
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        let names: Vec<&str> = failed.iter().map(|(n, ..)| n.as_str()).collect();
        Err(format!("{} of {} scenario(s) failed: {}", failed.len(), rows.len(), names.join(", ")))
    }
}

/// The example names of every `examples/*.rs` (sorted by file), each checked against an
/// `[[example]]` entry of `examples/Cargo.toml` so that no file is silently skipped.
fn scenarios(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("examples");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".rs"))
        .collect();
    files.sort();

    let manifest_path = dir.join("Cargo.toml");
    let manifest = fs::read_to_string(&manifest_path)
        .map_err(|e| format!("reading {}: {e}", manifest_path.display()))?;
    let declared = declared_examples(&manifest);

    let mut scenarios = Vec::new();
    let mut missing = Vec::new();
    for file in files {
        match declared.iter().find(|(_, path)| *path == file) {
            Some((name, _)) => scenarios.push(name.clone()),
            None => missing.push(file),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "examples/{{{}}}: no `[[example]] name = \"..\" path = \"<file>\"` entry in {}",
            missing.join(", "),
            manifest_path.display()
        ));
    }
    if scenarios.is_empty() {
        return Err(format!("no scenario found in {}", dir.display()));
    }
    Ok(scenarios)
}

/// `(name, path)` of each `[[example]]` table, by a plain line scan of the manifest.
fn declared_examples(manifest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(Option<String>, Option<String>)> = None;
    let mut flush = |cur: &mut Option<(Option<String>, Option<String>)>| {
        if let Some((name, Some(path))) = cur.take() {
            let name = name.unwrap_or_else(|| path.trim_end_matches(".rs").to_string());
            out.push((name, path));
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut current);
            current = (line == "[[example]]").then_some((None, None));
        } else if let Some((name, path)) = current.as_mut() {
            if let Some(v) = string_value(line, "name") {
                *name = Some(v);
            } else if let Some(v) = string_value(line, "path") {
                *path = Some(v);
            }
        }
    }
    flush(&mut current);
    out
}

/// The value of `key = "value"` on `line`, if it is that line.
fn string_value(line: &str, key: &str) -> Option<String> {
    let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
    let value = rest.strip_prefix('"')?.split('"').next()?;
    Some(value.to_string())
}

/// Runs `cmd` with stdout and stderr both appended to `log` (a file, so nothing can block
/// on a full pipe, even when grandchildren keep it open); `None` means it timed out and
/// was killed.
fn run_with_timeout(
    cmd: &mut Command,
    log: &Path,
    timeout: Duration,
) -> Result<(Option<ExitStatus>, Duration)> {
    let out = File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    echo(cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spawning {}: {e}", show(cmd)))?;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok((Some(status), start.elapsed()));
        }
        if start.elapsed() >= timeout {
            // The whole process group when the child leads one (its test binaries too).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill(); // fails only if it has exited meanwhile
            child.wait().map_err(|e| e.to_string())?;
            return Ok((None, start.elapsed()));
        }
        // Short sleeps keep the measured time within ~0.5% (or 0.2 ms) of the real one.
        let nap = start.elapsed() / 200;
        thread::sleep(nap.clamp(Duration::from_micros(200), Duration::from_millis(20)));
    }
}

fn describe_failure(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("FAIL (exit {code})");
    }
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return format!("FAIL (signal {signal})");
    }
    format!("FAIL ({status})")
}

fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1000.0 { format!("{ms:.1} ms") } else { format!("{:.2} s", ms / 1e3) }
}

// ---------------------------------------------------------------- bench

/// Rates: bigger is better. `us` (time per operation) is the only smaller-is-better unit.
const RATE_UNITS: &[&str] = &["ops/s", "MB/s", "items/s"];

fn bench(filters: &[String]) -> Result<()> {
    let root = root();
    let python = env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let script = root.join("crates").join("bench").join("cpython.py");
    let ours = target_dir(&root).join("release").join("multiproc-bench");

    let python_version = capture(Command::new(&python).arg("--version"))?;
    let rustc_version = capture(Command::new("rustc").arg("--version"))?;
    run(cargo(&root).args(["build", "--release", "-p", "multiproc-bench"]))?;

    let rust_list = lines(&capture(Command::new(&ours).arg("--list"))?);
    let python_list = lines(&capture(Command::new(&python).arg(&script).arg("--list"))?);
    // Ours first, in their order, then the ones only CPython has (shown with "-" for us).
    let mut workloads = rust_list.clone();
    workloads.extend(python_list.iter().filter(|w| !rust_list.contains(w)).cloned());
    if !filters.is_empty() {
        workloads.retain(|w| filters.iter().any(|f| w.contains(f.as_str())));
    }
    if workloads.is_empty() {
        return Err("no workload to run (check the filters)".into());
    }

    let mut rows = Vec::new();
    let mut failures = 0;
    for (i, w) in workloads.iter().enumerate() {
        eprintln!("xtask: [{}/{}] {w}", i + 1, workloads.len());
        // CPython then ours, workload by workload, so machine noise hits both alike.
        let theirs = if python_list.contains(w) {
            measure(Command::new(&python).arg(&script).arg(w), w)
        } else {
            Ok(None)
        };
        let ours = if rust_list.contains(w) { measure(Command::new(&ours).arg(w), w) } else { Ok(None) };
        failures += usize::from(theirs.is_err()) + usize::from(ours.is_err());
        rows.push(bench_row(w, theirs, ours));
    }

    println!();
    println!("python: {}  ({})", python_version.trim(), Path::new(&python).display());
    println!("rustc:  {}", rustc_version.trim());
    println!();
    print_table(
        &["workload", "unit", "CPython", "multiproc", "speed-up"],
        &[false, false, true, true, true],
        &rows,
    );
    println!("\nspeed-up > 1 means multiproc is faster (us: time per op; rates: per second)");
    if failures > 0 {
        return Err(format!("{failures} benchmark run(s) failed (see FAIL above)"));
    }
    Ok(())
}

/// Runs one benchmark program on workload `w` and returns its `(unit, value)` result line
/// (`Ok(None)` when it printed none: it does not know that workload).
fn measure(cmd: &mut Command, w: &str) -> Result<Option<(String, f64)>> {
    let stdout = capture(cmd).inspect_err(|e| eprintln!("xtask: {e}"))?;
    for line in stdout.lines() {
        match line.split('\t').collect::<Vec<_>>()[..] {
            [name, unit, value] if name == w => {
                let value = value.trim().parse().map_err(|e| format!("{w}: bad value {value:?}: {e}"))?;
                return Ok(Some((unit.to_string(), value)));
            }
            _ => {} // not a result line for `w`: ignored
        }
    }
    Ok(None)
}

type Measure = Result<Option<(String, f64)>>;

fn bench_row(w: &str, theirs: Measure, ours: Measure) -> Vec<String> {
    let cell = |m: &Measure| match m {
        Ok(Some((_, v))) => format_value(*v),
        Ok(None) => "-".to_string(),
        Err(_) => "FAIL".to_string(),
    };
    let unit = match (&ours, &theirs) {
        (Ok(Some((u, _))), _) | (_, Ok(Some((u, _)))) => u.clone(),
        _ => "-".to_string(),
    };
    let speed_up = match (&theirs, &ours) {
        (Ok(Some((tu, _))), Ok(Some((ou, _)))) if tu != ou => format!("units differ: {tu} vs {ou}"),
        (Ok(Some((_, t))), Ok(Some((_, o)))) if unit == "us" => ratio(*t, *o),
        (Ok(Some((_, t))), Ok(Some((_, o)))) if RATE_UNITS.contains(&unit.as_str()) => ratio(*o, *t),
        (Ok(Some(_)), Ok(Some(_))) => format!("unknown unit {unit}"),
        _ => "-".to_string(),
    };
    vec![w.to_string(), unit, cell(&theirs), cell(&ours), speed_up]
}

fn ratio(num: f64, den: f64) -> String {
    if den <= 0.0 || !num.is_finite() {
        return "-".to_string();
    }
    let r = num / den;
    if r < 1.0 { format!("{r:.2}x") } else { format!("{r:.1}x") }
}

fn format_value(v: f64) -> String {
    match v.abs() {
        a if a >= 1000.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.3}"),
    }
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

// ---------------------------------------------------------------- stress

/// Wall-clock limit for one run of the whole suite under load (CI's budget for it is 15 min).
const STRESS_RUN_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// What one test did in the stress runs.
#[derive(Default)]
struct Record {
    passed: u32,
    failed: Vec<usize>,
    hung: Vec<usize>,
}

fn stress(args: &[String]) -> Result<()> {
    let (ours, test_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let runs: usize = match ours {
        [] => 10,
        [n] => {
            n.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("stress: `{n}` is not a run count"))?
        }
        _ => return Err("stress takes at most one run count before `--`".into()),
    };
    let root = root();
    let binaries = test_binaries(&root)?;
    let logs = target_dir(&root).join("stress");
    fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;

    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..cores)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                    }
                }
            })
        })
        .collect();
    eprintln!("stress: {runs} runs of the test suite with {cores} CPU hogs; logs in {}", logs.display());

    let mut records: std::collections::BTreeMap<String, Record> = Default::default();
    let mut summary = Vec::new();
    for run in 1..=runs {
        let log = logs.join(format!("run-{run}.log"));
        let mut cmd = cargo(&root);
        cmd.args(["test", "--workspace", "--no-fail-fast", "--"]).args(test_args);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let (status, took) = run_with_timeout(&mut cmd, &log, STRESS_RUN_TIMEOUT)?;
        let text = fs::read_to_string(&log).unwrap_or_default();
        let outcome = parse_test_log(&text, &binaries);
        for (name, result) in &outcome {
            let record = records.entry(name.clone()).or_default();
            match result {
                TestResult::Ok => record.passed += 1,
                TestResult::Failed => record.failed.push(run),
                TestResult::Hung => record.hung.push(run),
            }
        }
        let bad = outcome.values().filter(|r| **r != TestResult::Ok).count();
        let verdict = match status {
            None => format!("TIMED OUT after {}", format_duration(took)),
            Some(s) if s.success() && bad == 0 => "clean".to_string(),
            Some(s) if bad == 0 => {
                format!("{} with no failed test (see {})", describe_failure(s), log.display())
            }
            Some(_) => format!("{bad} tests failed or hung"),
        };
        eprintln!(
            "stress: run {run}/{runs}: {} tests in {}: {verdict}",
            outcome.len(),
            format_duration(took)
        );
        summary.push((status.is_some_and(|s| s.success()) && bad == 0, verdict));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hogs.into_iter().for_each(|h| drop(h.join()));

    let clean = summary.iter().filter(|(ok, _)| *ok).count();
    let list = |runs: &[usize]| runs.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let rows: Vec<Vec<String>> = records
        .iter()
        .filter(|(_, r)| !r.failed.is_empty() || !r.hung.is_empty())
        .map(|(name, r)| vec![name.clone(), r.passed.to_string(), list(&r.failed), list(&r.hung)])
        .collect();
    println!();
    if rows.is_empty() {
        println!("no test failed or hung in {runs} runs ({} tests)", records.len());
    } else {
        print_table(
            &["test", "passed", "failed in runs", "hung in runs"],
            &[false, true, false, false],
            &rows,
        );
    }
    println!("{clean}/{runs} clean runs");
    if clean == runs { Ok(()) } else { Err(format!("{} of {runs} runs were not clean", runs - clean)) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestResult {
    Ok,
    Failed,
    Hung,
}

/// Builds every test binary of the workspace and maps each executable's file name to
/// `package/target`, so that tests of same-named files in different crates stay apart.
fn test_binaries(root: &Path) -> Result<std::collections::HashMap<String, String>> {
    let out = capture(cargo(root).args(["test", "--workspace", "--no-run", "--message-format=json"]))?;
    let mut map = std::collections::HashMap::new();
    for line in out.lines().filter(|l| l.contains("\"reason\":\"compiler-artifact\"")) {
        let (Some(exe), Some(id), Some(target)) =
            (json_str(line, "executable"), json_str(line, "package_id"), json_str(line, "name"))
        else {
            continue;
        };
        // `path+file:///…/crates/shmem#multiproc-shmem@0.1.0`, or `…/crates/shmem#0.1.0`.
        let package = id.rsplit_once('#').map_or(id.as_str(), |(path, rest)| match rest.split_once('@') {
            Some((name, _)) => name,
            None => path.rsplit('/').next().unwrap_or(path),
        });
        let file = exe.rsplit('/').next().unwrap_or(&exe).to_string();
        map.insert(file, format!("{package}/{target}"));
    }
    Ok(map)
}

/// The string value of the first `"key":"…"` in a line of JSON (no escapes in the values
/// looked up here).
fn json_str(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    line[start..].split('"').next().map(str::to_string)
}

/// Every test named in a `cargo test` log, with how it ended: failed, or hung (reported as
/// running for over 60 seconds and never finished, or still running when the run was killed).
fn parse_test_log(
    log: &str,
    binaries: &std::collections::HashMap<String, String>,
) -> std::collections::BTreeMap<String, TestResult> {
    let mut results = std::collections::BTreeMap::new();
    let mut binary = String::from("?");
    for line in log.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Running ") {
            // `Running tests/sync.rs (target/debug/deps/sync-6d0e…)`
            let exe = rest.rsplit_once('(').map_or(rest, |(_, e)| e.trim_end_matches(')'));
            let file = exe.rsplit('/').next().unwrap_or(exe);
            binary = binaries.get(file).cloned().unwrap_or_else(|| file.to_string());
        } else if let Some(rest) = line.strip_prefix("Doc-tests ") {
            binary = format!("{rest}/doc");
        } else if let Some(rest) = line.strip_prefix("test ") {
            let name = |n: &str| format!("{binary}::{}", n.trim());
            if let Some((test, how)) = rest.rsplit_once(" ... ") {
                let result = match how.trim() {
                    "ok" => TestResult::Ok,
                    h if h.starts_with("FAILED") => TestResult::Failed,
                    _ => continue, // ignored
                };
                results.insert(name(test), result);
            } else if let Some(test) = rest.strip_suffix(" has been running for over 60 seconds") {
                results.entry(name(test)).or_insert(TestResult::Hung);
            }
        }
    }
    results
}

// ---------------------------------------------------------------- ci

fn ci() -> Result<()> {
    let root = root();
    run(cargo(&root).args(["fmt", "--all", "--", "--check"]))?;
    run(cargo(&root).args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run(cargo(&root).args(["test", "--workspace"]))?;
    demo(None)
}

// ---------------------------------------------------------------- helpers

/// The workspace root: the parent of this crate's directory.
fn root() -> PathBuf {
    let dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dir.parent().expect("xtask lives in a workspace subdirectory").to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// `$CARGO` (the cargo running us), run from the workspace root.
fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    cmd.current_dir(root);
    cmd
}

/// Runs `cmd` with inherited stdio; fails unless it exits successfully.
fn run(cmd: &mut Command) -> Result<()> {
    echo(cmd);
    let status = cmd.status().map_err(|e| format!("running {}: {e}", show(cmd)))?;
    if status.success() { Ok(()) } else { Err(format!("`{}` failed: {status}", show(cmd))) }
}

/// Runs `cmd` and returns its stdout (stderr passes through); fails unless it succeeds.
fn capture(cmd: &mut Command) -> Result<String> {
    echo(cmd);
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("running {}: {e}", show(cmd)))?;
    if !out.status.success() {
        return Err(format!("`{}` failed: {}", show(cmd), out.status));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("`{}`: non-UTF-8 output: {e}", show(cmd)))
}

fn echo(cmd: &Command) {
    eprintln!("$ {}", show(cmd));
}

fn show(cmd: &Command) -> String {
    let quote = |s: &std::ffi::OsStr| {
        let s = s.to_string_lossy();
        if s.is_empty() || s.contains(char::is_whitespace) { format!("'{s}'") } else { s.into_owned() }
    };
    std::iter::once(quote(cmd.get_program())).chain(cmd.get_args().map(quote)).collect::<Vec<_>>().join(" ")
}

/// Prints an aligned table; `right[i]` right-aligns column `i`.
fn print_table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .zip(right)
            .map(|((c, &w), &r)| if r { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect();
        println!("{}", parts.join(" | ").trim_end());
    };
    line(&mut headers.iter().copied());
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    println!("{}", rule.join("-|-"));
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_failed_and_hung_tests_per_binary() {
        let binaries = [("sync-0abc".to_string(), "multiproc-shmem/sync".to_string())].into();
        let log = "\
     Running tests/sync.rs (target/debug/deps/sync-0abc)
test passes ... ok
test fails ... FAILED
test hangs has been running for over 60 seconds
test slow has been running for over 60 seconds
test slow ... ok
test skipped ... ignored
   Doc-tests multiproc_pipe
test crates/pipe/src/lib.rs - (line 5) ... FAILED
";
        let results = parse_test_log(log, &binaries);
        let got: Vec<(&str, TestResult)> = results.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            got,
            [
                ("multiproc-shmem/sync::fails", TestResult::Failed),
                ("multiproc-shmem/sync::hangs", TestResult::Hung),
                ("multiproc-shmem/sync::passes", TestResult::Ok),
                ("multiproc-shmem/sync::slow", TestResult::Ok),
                ("multiproc_pipe/doc::crates/pipe/src/lib.rs - (line 5)", TestResult::Failed),
            ]
        );
    }
}
