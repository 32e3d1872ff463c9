//! `atlas-sim`: the command line of the simulation harness.
//!
//!   atlas-sim audit [--seeds N] [--dir DIR] [--jobs J]
//!   atlas-sim run <scenario|dir> [--seeds N] [--seed S] [--coordination redis|legacy] [--check-determinism] [--report FILE] [--break GUARD]
//!   atlas-sim replay <scenario> --seed S [--coordination redis|legacy] [--report FILE] [--break GUARD]
//!   atlas-sim fuzz [--budget SECONDS] [--max-cases N] [--seed S] [--out DIR] [--jobs J] [--coordination redis|legacy] [--break GUARD]
//!
//! Wall-clock time is read here only, to report how much faster than real time the runs went;
//! nothing inside a run sees it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use atlas_sim::runner::{PROGRESS_MIN_PERCENT, run};
use atlas_sim::scenario::{BrokenGuard, Legacy, Mode, Scenario};

/// Every run allocates for each HTTP hop, Redis command and store call; mimalloc, as in
/// `atlas-bot`, takes about a fifth off a whole-bot run (BENCHMARKS.md). Nothing a run does
/// depends on where its memory lies: runs hash the same (`--check-determinism`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage:
  atlas-sim audit [--seeds N] [--dir DIR] [--jobs J]
      the audit's risk matrix as executable proof: each hazard's scenario fails on the legacy
      design (with the seed that shows it) and holds on the Redis design over N seeds; the
      scenarios shared over J processes (the machine's cores by default)
  atlas-sim run <scenario.toml|dir> [--seeds N] [--seed S] [--coordination redis|legacy] [--check-determinism] [--jobs J] [--report FILE] [--break GUARD]
      run scenarios over seeds 0..N (or one seed), the seeds shared over J processes (1 by
      default); exit 0 only when every run holds. --report (one scenario file) draws the first
      failing seed's run (or the first seed's) as an HTML page. --break (as for fuzz) runs them
      with that guard switched off: a mutation check of the scenarios
  atlas-sim replay <scenario.toml> --seed S [--coordination redis|legacy] [--report FILE] [--break GUARD]
      one run, with its trace (and with --report, drawn as a self-contained HTML page: a lane per
      host, the faults over them, the violations linked to the events they name); ATLAS_SIM_LOG=<filter> (say info, or atlas=debug) adds the
      bot's own log lines on stderr, stamped with simulated time and the host
  atlas-sim fuzz [--budget SECONDS] [--max-cases N] [--seed S] [--out DIR] [--jobs J] [--coordination redis|legacy] [--break GUARD]
      whole-bot scenarios generated from the seed (topology, intake, users, faults) for SECONDS
      (60 by default) or N cases, whichever ends first, J at a time in worker processes (the machine's cores by default); the first that breaks an
      invariant is shrunk to a small scenario that still breaks it, written to DIR (target/fuzz
      by default) with the command that replays it; exit 1 when one was found. --break dedupe|
      lease|fencing switches that guard off in the sim Redis (a mutation check of the fuzzer);
      key_fence the store model's check of a reissue's fencing token (bot_reissue_paused_holder
      reaches it; the fuzzer does not draw the fault that does)
  atlas-sim bench [--seeds N]
      time compression of the five-instance scenario and of the whole bot (five instances, 500
      users: scenarios/bench/) beside raw turmoil with as many idle hosts, and seeds per second
      over every scenario (figures for BENCHMARKS.md)";

struct Options {
    target: Option<PathBuf>,
    seeds: Option<u64>,
    seed: Option<u64>,
    mode: Mode,
    check_determinism: bool,
    dir: Option<PathBuf>,
    hash_only: bool,
    jobs: Option<usize>,
    budget: Option<f64>,
    out: Option<PathBuf>,
    broken: Option<BrokenGuard>,
    report: Option<PathBuf>,
    max_cases: Option<u64>,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        target: None,
        seeds: None,
        seed: None,
        mode: Mode::Redis,
        check_determinism: false,
        dir: None,
        hash_only: false,
        jobs: None,
        budget: None,
        out: None,
        broken: None,
        report: None,
        max_cases: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seeds" => o.seeds = Some(value("--seeds")?.parse().context("--seeds takes a number")?),
            "--seed" => o.seed = Some(value("--seed")?.parse().context("--seed takes a number")?),
            "--coordination" => {
                o.mode = match value("--coordination")?.as_str() {
                    "redis" => Mode::Redis,
                    "legacy" => Mode::Legacy,
                    other => anyhow::bail!("--coordination is redis or legacy, not {other}"),
                }
            }
            "--check-determinism" => o.check_determinism = true,
            "--hash-only" => o.hash_only = true,
            "--dir" => o.dir = Some(value("--dir")?.into()),
            "--budget" => o.budget = Some(value("--budget")?.parse().context("--budget takes a number of seconds")?),
            "--out" => o.out = Some(value("--out")?.into()),
            "--report" => o.report = Some(value("--report")?.into()),
            "--max-cases" => o.max_cases = Some(value("--max-cases")?.parse().context("--max-cases takes a number")?),
            "--break" => {
                let name = value("--break")?;
                o.broken = Some(
                    BrokenGuard::ALL
                        .into_iter()
                        .find(|g| g.name() == name)
                        .with_context(|| format!("--break is one of {:?}", BrokenGuard::ALL.map(BrokenGuard::name)))?,
                );
            }
            "--jobs" => o.jobs = Some(value("--jobs")?.parse().context("--jobs takes a number")?),
            flag if flag.starts_with("--") => anyhow::bail!("unknown option {flag}"),
            path => o.target = Some(path.into()),
        }
    }
    Ok(o)
}

fn default_dir() -> PathBuf {
    let here = Path::new("scenarios");
    if here.is_dir() { here.to_owned() } else { Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios") }
}

/// The command that replays one seed; `broken`: the guard `--break` switched off for this run.
fn replay_command(path: &Path, seed: u64, mode: Mode, broken: Option<BrokenGuard>) -> String {
    let broken = broken.map(|g| format!(" --break {}", g.name())).unwrap_or_default();
    format!("atlas-sim replay {} --seed {seed} --coordination {}{broken}", path.display(), mode.name())
}

/// The scenario at `path`, with the guard `--break` names switched off (a mutation check of a
/// scenario: it must then fail).
fn load(path: &Path, o: &Options) -> anyhow::Result<Scenario> {
    let mut scenario = Scenario::load(path)?;
    if let Some(guard) = o.broken {
        scenario.broken_guard = Some(guard);
    }
    Ok(scenario)
}

fn progress(name: &str, done: u64, total: u64) {
    if name.is_empty() {
        return;
    }
    let width = 30;
    let filled = (done * width / total.max(1)) as usize;
    eprint!("\r{name:<28} [{}{}] {done}/{total}", "#".repeat(filled), ".".repeat(width as usize - filled));
    let _ = std::io::stderr().flush();
    if done == total {
        eprintln!();
    }
}

/// Runs one seed again in a separate process and returns its history hash.
fn hash_in_other_process(path: &Path, seed: u64, mode: Mode, broken: Option<BrokenGuard>) -> anyhow::Result<u64> {
    let exe = std::env::current_exe()?;
    let mut args = vec![
        "replay".to_owned(),
        path.display().to_string(),
        "--seed".into(),
        seed.to_string(),
        "--coordination".into(),
        mode.name().into(),
        "--hash-only".into(),
    ];
    if let Some(guard) = broken {
        args.extend(["--break".into(), guard.name().into()]);
    }
    let out = std::process::Command::new(exe).env_remove("ATLAS_SIM_LOG").args(args).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    u64::from_str_radix(text.trim(), 16).with_context(|| format!("no hash from the second process: {text}"))
}

/// Runs `seed` again with its events captured and draws it to `file`; the run must be the one
/// that was judged (`judged` is its history hash), or the page would show another.
fn report(file: &Path, scenario: &Scenario, seed: u64, mode: Mode, judged: u64) -> anyhow::Result<()> {
    let (result, lines) = atlas_sim::report::capture(|| run(scenario, seed, mode));
    let result = result?;
    anyhow::ensure!(
        result.hash == judged,
        "seed {seed} ran differently with its events captured (history {:016x}, judged {judged:016x}): no report",
        result.hash
    );
    std::fs::write(file, atlas_sim::report::page(scenario, &result, &lines))
        .with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!("report of seed {seed} written to {}", file.display());
    Ok(())
}

fn cmd_run(o: Options) -> anyhow::Result<bool> {
    let target = o.target.clone().context("run needs a scenario file or directory")?;
    anyhow::ensure!(o.report.is_none() || target.is_file(), "--report draws one run: give run one scenario file");
    let mut all_held = true;
    let mut rows = Vec::new();
    let (mut simulated, started) = (0.0, Instant::now());
    for path in Scenario::files(&target)? {
        let scenario = load(&path, &o)?;
        let seeds: Vec<u64> = match o.seed {
            Some(s) => vec![s],
            None => (0..o.seeds.unwrap_or(scenario.seeds)).collect(),
        };
        let mut failures: Vec<(Seeded, String)> = Vec::new();
        let mut nondeterministic = Vec::new();
        let mut least_progress = 100;
        let mut stalled = Vec::new();
        // The run a report draws: the first failing seed's, or the first seed's.
        let mut drawn: Option<(u64, u64)> = None;
        for result in run_seeds(&scenario, &path, &seeds, &o)? {
            let seed = result.seed;
            if drawn.is_none() || (!result.violations.is_empty() && failures.is_empty()) {
                drawn = Some((seed, result.hash));
            }
            simulated += result.simulated.as_secs_f64();
            least_progress = least_progress.min(result.progress.percent());
            if o.mode == Mode::Redis && !result.progress.enough() {
                stalled.push(seed);
            }
            if let Some(again) = result.again
                && again != result.hash
            {
                nondeterministic.push(format!("seed {seed}: {:016x} then {again:016x}", result.hash));
            }
            if !result.violations.is_empty() {
                let command = replay_command(&path, seed, o.mode, o.broken);
                failures.push((result, command));
            }
        }
        let held = seeds.len() - failures.len();
        all_held &= failures.is_empty() && nondeterministic.is_empty() && stalled.is_empty();
        if !stalled.is_empty() {
            eprintln!(
                "STALLED {}: seeds {stalled:?} got through less than {PROGRESS_MIN_PERCENT}% of the workload",
                scenario.name
            );
        }
        rows.push(format!(
            "| {} | {} | {} | {held} | {} | {least_progress}% | {} |",
            scenario.name,
            o.mode.name(),
            seeds.len(),
            failures.len(),
            if o.check_determinism {
                if nondeterministic.is_empty() { "same hashes" } else { "DIFFERENT" }
            } else {
                "not checked"
            }
        ));
        for (result, command) in &failures {
            for (invariant, why) in &result.violations {
                eprintln!("FAILED {} seed {} [{}]: {why}", scenario.name, result.seed, invariant.name());
            }
            eprintln!("  replay: {command}");
        }
        for line in &nondeterministic {
            eprintln!("NONDETERMINISTIC {}: {line}", scenario.name);
        }
        if let Some((seed, hash)) = o.report.as_ref().and(drawn) {
            // The first failing seed's run, or the first seed's, run again (runs repeat).
            report(o.report.as_deref().expect("asked for"), &scenario, seed, o.mode, hash)?;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!("| scenario | coordination | seeds | held | failed | least progress | determinism |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!("{simulated:.0} simulated seconds in {wall:.1} wall seconds ({:.0}x)", simulated / wall.max(1e-9));
    Ok(all_held)
}

fn cmd_replay(o: Options) -> anyhow::Result<bool> {
    let path = o.target.clone().context("replay needs a scenario file")?;
    let seed = o.seed.context("replay needs --seed S")?;
    let scenario = load(&path, &o)?;
    if let Ok(filter) = std::env::var("ATLAS_SIM_LOG") {
        atlas_sim::logs::to_stderr(&filter)?;
    }
    let result = run(&scenario, seed, o.mode)?;
    if let Some(file) = &o.report {
        report(file, &scenario, seed, o.mode, result.hash)?;
    }
    if o.hash_only {
        println!("{:016x}", result.hash);
        return Ok(true);
    }
    print!("{}", result.history.trace());
    if scenario.swarm {
        // What this seed drew, to read the trace against.
        let drawn = atlas_sim::bot::swarm::draw(&scenario, seed);
        println!("drawn by seed {seed}: {} instances, {} s", drawn.instances, drawn.duration_secs);
        println!("  workload: {:?}", drawn.workload);
        println!("  faults: {:?}", drawn.faults);
        println!("  invariants: {:?}", drawn.invariants.iter().map(|i| i.name()).collect::<Vec<_>>());
    }
    println!("scenario {} seed {seed} coordination {}: history {:016x}", scenario.name, o.mode.name(), result.hash);
    for (invariant, why) in &result.violations {
        println!("VIOLATED [{}]: {why}", invariant.name());
    }
    if result.violations.is_empty() {
        println!(
            "every invariant held: {}",
            scenario.invariants.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(result.violations.is_empty())
}

/// One row of the audit: the scenario at `path` on the legacy design (until it breaks the named
/// invariant) and on the Redis design (every seed); the row, the simulated seconds, and whether
/// the row proves what the scenario claims.
/// One audit row: the line, the simulated seconds, and whether it proves its claim.
type AuditRow = anyhow::Result<(String, f64, bool)>;

fn audit_one(path: &Path, seeds_wanted: Option<u64>) -> AuditRow {
    let scenario = Scenario::load(path)?;
    let seeds = seeds_wanted.unwrap_or(scenario.seeds);
    let mut simulated = 0.0;
    // The legacy design: the first seed that breaks the invariant the scenario names (or, for
    // a scenario whose guard is the same in both designs, every seed holding).
    let mut shown = None;
    let mut other = None;
    for seed in 0..seeds {
        let result = run(&scenario, seed, Mode::Legacy)?;
        simulated += result.simulated.as_secs_f64();
        let named = match &scenario.legacy {
            Legacy::Breaks(invariant) => result.violations.iter().find(|(i, _)| i == invariant),
            Legacy::Holds(_) => result.violations.first(),
        };
        if let Some((invariant, why)) = named {
            shown = Some((seed, invariant.name(), why.clone()));
            break;
        }
        if other.is_none() {
            other = result.violations.first().map(|(i, _)| (seed, i.name()));
        }
    }
    // The Redis design: every seed must hold, having got through its workload.
    let mut failed = Vec::new();
    for seed in 0..seeds {
        let result = run(&scenario, seed, Mode::Redis)?;
        simulated += result.simulated.as_secs_f64();
        if !result.violations.is_empty() || !result.progress.enough() {
            failed.push(seed);
        }
    }
    let must_fail = matches!(scenario.legacy, Legacy::Breaks(_));
    let legacy = match (&shown, &scenario.legacy) {
        (Some((seed, invariant, why)), Legacy::Breaks(_)) => format!("FAILS `{invariant}` (seed {seed}): {why}"),
        (None, Legacy::Breaks(expected)) => match other {
            Some((seed, found)) => {
                format!("NOT SHOWN: `{}` held on {seeds} seeds (seed {seed} broke `{found}` instead)", expected.name())
            }
            None => format!("NOT SHOWN: held on {seeds} seeds"),
        },
        (None, Legacy::Holds(why)) => format!("holds on {seeds} seeds, as expected: {why}"),
        (Some((seed, invariant, why)), Legacy::Holds(_)) => {
            format!("UNEXPECTEDLY FAILS `{invariant}` (seed {seed}): {why}")
        }
    };
    let redis = if failed.is_empty() {
        format!("holds on {seeds}/{seeds} seeds")
    } else {
        format!("FAILS on seeds {failed:?}: `{}`", replay_command(path, failed[0], Mode::Redis, None))
    };
    let proven = shown.is_some() == must_fail && failed.is_empty();
    Ok((format!("| {} | {} | {legacy} | {redis} |", scenario.hazard, scenario.name), simulated, proven))
}

/// What `run` keeps of one seed's run.
struct Seeded {
    seed: u64,
    violations: Vec<(atlas_sim::scenario::Invariant, String)>,
    hash: u64,
    /// The hash of the same seed run in another process, when determinism is checked.
    again: Option<u64>,
    simulated: Duration,
    progress: atlas_sim::faults::Progress,
}

/// Runs `seeds` of `scenario`, shared out over `--jobs` processes (one by default: each run is a
/// world of its own on the thread that runs it), in the order of `seeds`.
/// One seed of `scenario` (the file at `path`), and its hash in another process when
/// determinism is checked.
fn seeded(scenario: &Scenario, path: &Path, seed: u64, o: &Options) -> anyhow::Result<Seeded> {
    let result = run(scenario, seed, o.mode)?;
    let again = if o.check_determinism { Some(hash_in_other_process(path, seed, o.mode, o.broken)?) } else { None };
    Ok(Seeded {
        seed,
        violations: result.violations,
        hash: result.hash,
        again,
        simulated: result.simulated,
        progress: result.progress,
    })
}

fn run_seeds(scenario: &Scenario, path: &Path, seeds: &[u64], o: &Options) -> anyhow::Result<Vec<Seeded>> {
    let jobs = o.jobs.unwrap_or(1);
    if jobs > 1 {
        // Each job a process of its own: runs in threads of one process draw tokio's task numbers
        // from one counter in turn, and a run's numbers decide the order a crashed host's
        // connections close in (docs/simulation.md, Determinism).
        let mut worker =
            vec!["seed".to_owned(), path.display().to_string(), "--coordination".into(), o.mode.name().into()];
        if let Some(guard) = o.broken {
            worker.extend(["--break".into(), guard.name().into()]);
        }
        if o.check_determinism {
            worker.push("--check-determinism".into());
        }
        let items: Vec<String> = seeds.iter().map(u64::to_string).collect();
        let answers = share_out_in_processes(&items, jobs, &scenario.name, &worker)?;
        return answers.iter().map(|a| seeded_of(a, o.check_determinism)).collect();
    }
    share_out(seeds, jobs, &scenario.name, |&seed| seeded(scenario, path, seed, o)).into_iter().collect()
}

/// One seed's run as a worker process answers it (`worker seed`).
fn seeded_value(s: &Seeded) -> serde_json::Value {
    serde_json::json!({
        "seed": s.seed,
        "violations": s.violations,
        "hash": s.hash,
        "again": s.again,
        "simulated": s.simulated.as_secs_f64(),
        "planned": s.progress.planned,
        "done": s.progress.done,
    })
}

fn seeded_of(v: &serde_json::Value, checked: bool) -> anyhow::Result<Seeded> {
    let number = |key: &str| v[key].as_u64().with_context(|| format!("no {key} in a worker's answer {v}"));
    Ok(Seeded {
        seed: number("seed")?,
        violations: serde_json::from_value(v["violations"].clone())?,
        hash: number("hash")?,
        again: if checked { Some(number("again")?) } else { None },
        simulated: Duration::from_secs_f64(v["simulated"].as_f64().context("no simulated seconds")?),
        progress: atlas_sim::faults::Progress { planned: number("planned")? as usize, done: number("done")? as usize },
    })
}

/// Each item sent to a worker process of this binary (`atlas-sim worker WORKER…`), `jobs` of them
/// at once, one item at a time on its stdin; what it answered for each, in the order of `items`
/// (an error it met on an item, with its words).
fn share_out_in_processes(
    items: &[String],
    jobs: usize,
    name: &str,
    worker: &[String],
) -> anyhow::Result<Vec<serde_json::Value>> {
    Workers::new(worker, jobs, None).each(items, name).into_iter().collect()
}

/// Worker processes of this binary (`atlas-sim worker WORKER…`), kept from one batch of items to
/// the next (the fuzzer sends many small ones). A worker that dies is started again for the next
/// item; the item it was on is answered with the error.
struct Workers {
    args: Vec<String>,
    children: Vec<std::sync::Mutex<Option<Child>>>,
    /// How long a worker may take over one item before it is killed (`None`: as long as it
    /// takes).
    patience: Option<Duration>,
}

/// A worker gave no answer within its patience, and was killed.
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}: the run hung")]
struct WorkerHung(Duration);

/// A worker ended (or broke its pipes) before it answered.
#[derive(Debug, thiserror::Error)]
#[error("the worker process ended without an answer")]
struct WorkerDied;

/// A worker could not be started (the binary gone, say).
#[derive(Debug, thiserror::Error)]
#[error("a worker process could not be started: {0}")]
struct WorkerStart(String);

/// One worker process and its pipes.
struct Child {
    process: std::process::Child,
    to: std::process::ChildStdin,
    /// Its answer lines, read by a thread of their own (so that waiting for one can end);
    /// `None` when it closed its output.
    answers: std::sync::mpsc::Receiver<Option<String>>,
}

impl Child {
    fn start(args: &[String]) -> anyhow::Result<Child> {
        let mut process = std::process::Command::new(std::env::current_exe()?)
            .arg("worker")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| WorkerStart(e.to_string()))?;
        let (Some(to), Some(from)) = (process.stdin.take(), process.stdout.take()) else {
            anyhow::bail!("a worker process without pipes");
        };
        let (send, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut from = std::io::BufReader::new(from);
            loop {
                let mut line = String::new();
                let read = from.read_line(&mut line);
                let line = matches!(read, Ok(n) if n > 0).then(|| line.trim_end().to_owned());
                let ended = line.is_none();
                if send.send(line).is_err() || ended {
                    return;
                }
            }
        });
        Ok(Child { process, to, answers })
    }

    /// Its answer line to `item`, within `patience`.
    fn ask(&mut self, item: &str, patience: Option<Duration>) -> anyhow::Result<String> {
        use std::io::Write as _;
        use std::sync::mpsc::RecvTimeoutError;
        if writeln!(self.to, "{item}").and_then(|()| self.to.flush()).is_err() {
            return Err(self.ended());
        }
        let answer = match patience {
            Some(patience) => self.answers.recv_timeout(patience),
            None => self.answers.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match answer {
            Ok(Some(line)) => Ok(line),
            Ok(None) | Err(RecvTimeoutError::Disconnected) => Err(self.ended()),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.process.kill();
                Err(WorkerHung(patience.unwrap_or_default()).into())
            }
        }
    }

    /// Why it ended: status 2 is `atlas-sim worker` refusing its arguments or its input (the
    /// fuzzer's fault); anything else (a signal, an abort) is the run dying on the item.
    fn ended(&mut self) -> anyhow::Error {
        match self.process.wait() {
            Ok(status) if status.code() == Some(2) => WorkerStart(format!("the worker exited: {status}")).into(),
            _ => WorkerDied.into(),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Its stdin closes with it: the worker ends when it has read everything.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Workers {
    fn new(args: &[String], jobs: usize, patience: Option<Duration>) -> Workers {
        let children = (0..jobs.max(1)).map(|_| std::sync::Mutex::new(None)).collect();
        Workers { args: args.to_vec(), children, patience }
    }

    /// What the workers answered for each item, in the order of `items`.
    fn each(&self, items: &[String], name: &str) -> Vec<anyhow::Result<serde_json::Value>> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let answers: std::sync::Mutex<Vec<Option<anyhow::Result<String>>>> =
            std::sync::Mutex::new(items.iter().map(|_| None).collect());
        std::thread::scope(|scope| {
            for slot in self.children.iter().take(items.len()) {
                scope.spawn(|| {
                    let mut child = slot.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let answer = match child.as_mut() {
                            Some(running) => running.ask(item, self.patience),
                            None => Child::start(&self.args)
                                .and_then(|started| child.insert(started).ask(item, self.patience)),
                        };
                        if answer.is_err() {
                            // Gone or broken: a new one for the next item.
                            *child = None;
                        }
                        answers.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(answer);
                        let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        progress(name, finished as u64, items.len() as u64);
                    }
                });
            }
        });
        let answers = answers.into_inner().unwrap_or_else(|p| p.into_inner());
        let answer_of = |answer: Option<anyhow::Result<String>>, item: &String| -> anyhow::Result<serde_json::Value> {
            let line = answer.with_context(|| format!("{item} was not run"))??;
            let mut v: serde_json::Value =
                serde_json::from_str(&line).with_context(|| format!("a worker answered {line:?} for {item}"))?;
            anyhow::ensure!(v["item"].as_str() == Some(item.as_str()), "a worker answered {line:?} for {item}");
            if let Some(error) = v["error"].as_str() {
                anyhow::bail!("{item}: {error}");
            }
            Ok(v["answer"].take())
        };
        answers.into_iter().zip(items).map(|(answer, item)| answer_of(answer, item)).collect()
    }
}

/// `atlas-sim worker seed <scenario> [--coordination M] [--break G] [--check-determinism]`,
/// `atlas-sim worker case [--coordination M]` or `atlas-sim worker audit [--seeds N]`: reads one
/// item a line (a seed, a fuzz case as JSON, a scenario file) and
/// answers each with one line, for `share_out_in_processes`.
fn cmd_worker(kind: &str, o: Options) -> anyhow::Result<bool> {
    use std::io::{BufRead as _, Write as _};
    let stdout = std::io::stdout();
    // The scenario a seed worker runs, loaded once.
    let scenario = match kind {
        "seed" => {
            let path = o.target.clone().context("worker seed needs a scenario file")?;
            Some((load(&path, &o)?, path))
        }
        _ => None,
    };
    for line in std::io::stdin().lock().lines() {
        let item = line?;
        let answer = || -> anyhow::Result<serde_json::Value> {
            Ok(match (kind, &scenario) {
                ("seed", Some((scenario, path))) => {
                    let seed: u64 = item.trim().parse().with_context(|| format!("not a seed: {item:?}"))?;
                    seeded_value(&seeded(scenario, path, seed, &o)?)
                }
                ("case", _) => {
                    let case = case_of_line(&item)?;
                    let verdict = atlas_sim::fuzz::judge(&case, o.mode);
                    serde_json::json!({ "broken": verdict.broken, "why": verdict.why })
                }
                ("audit", _) => {
                    let (line, simulated, proven) = audit_one(Path::new(item.trim()), o.seeds)?;
                    serde_json::json!({ "line": line, "simulated": simulated, "proven": proven })
                }
                (other, _) => anyhow::bail!("unknown worker {other}"),
            })
        };
        // An error on one item is that item's answer; the worker goes on with the next.
        let answer = match answer() {
            Ok(answer) => serde_json::json!({ "item": item, "answer": answer }),
            Err(e) => serde_json::json!({ "item": item, "error": format!("{e:#}") }),
        };
        let mut out = stdout.lock();
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(true)
}

/// `work` on every item, shared out over `jobs` threads, with a progress bar; the results in the
/// order of `items`. Runs are independent worlds, each on the thread that runs it: nothing
/// inside a run sees the threads.
fn share_out<I: Sync, T: Send>(items: &[I], jobs: usize, name: &str, work: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<T>>> = std::sync::Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress(name, finished as u64, items.len() as u64);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.into_iter().map(|r| r.expect("every item was run")).collect()
}

fn cmd_audit(o: Options) -> anyhow::Result<bool> {
    let dir = o.dir.clone().unwrap_or_else(default_dir);
    let started = Instant::now();
    let files = Scenario::files(&dir)?;
    // Scenarios are shared out over `--jobs` processes (the machine's cores by default).
    let jobs = o.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rows: Vec<AuditRow> = if jobs > 1 {
        // A process per job, as for `run --jobs`: every row's runs exact, as a replay sees them.
        let mut worker = vec!["audit".to_owned()];
        if let Some(seeds) = o.seeds {
            worker.extend(["--seeds".into(), seeds.to_string()]);
        }
        let items: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        share_out_in_processes(&items, jobs, "audit", &worker)?
            .iter()
            .map(|v| -> AuditRow {
                Ok((
                    v["line"].as_str().context("no row in a worker's answer")?.to_owned(),
                    v["simulated"].as_f64().context("no simulated seconds in a worker's answer")?,
                    v["proven"].as_bool().context("no verdict in a worker's answer")?,
                ))
            })
            .collect()
    } else {
        share_out(&files, jobs, "audit", |path| audit_one(path, o.seeds))
    };
    let mut simulated = 0.0;
    let mut proven = true;
    let mut lines = Vec::new();
    for row in rows {
        let (line, seconds, holds) = row?;
        simulated += seconds;
        proven &= holds;
        lines.push(line);
    }
    println!("| hazard (audit) | scenario | legacy design (in-memory, per instance) | Redis design |");
    println!("|---|---|---|---|");
    for line in &lines {
        println!("{line}");
    }
    let wall = started.elapsed().as_secs_f64();
    println!();
    println!(
        "{}",
        if proven {
            "Every hazard is reproduced on the legacy design and fixed on the Redis design."
        } else {
            "NOT PROVEN: see the rows above."
        }
    );
    println!(
        "{simulated:.0} simulated seconds in {wall:.1} wall seconds ({:.0}x) {}",
        simulated / wall.max(1e-9),
        if jobs > 1 { format!("in {jobs} processes") } else { "in one thread".to_owned() }
    );
    Ok(proven)
}

/// Simulated seconds per wall second of a bare turmoil world: `hosts` idle hosts, the given tick,
/// 60 simulated seconds. The floor cost of any simulation on this machine.
fn raw_turmoil(hosts: usize, tick_ms: u64) -> f64 {
    let started = Instant::now();
    let mut sim = atlas_sim::world::builder(
        0,
        std::time::Duration::from_secs(120),
        std::time::Duration::from_millis(tick_ms),
        Default::default(),
    )
    .build();
    for i in 0..hosts {
        sim.host(format!("idle-{i}"), || async {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
        });
    }
    while sim.elapsed() < std::time::Duration::from_secs(60) {
        sim.step().expect("idle hosts do not fail");
    }
    sim.elapsed().as_secs_f64() / started.elapsed().as_secs_f64()
}

fn cmd_bench(o: Options) -> anyhow::Result<bool> {
    let dir = o.dir.clone().unwrap_or_else(default_dir);
    let five = Scenario::load(&dir.join("chat_five_instances.toml"))?;
    let seeds = o.seeds.unwrap_or(10);
    let hosts = five.instances + 1;
    let raw = raw_turmoil(hosts, five.tick_ms);
    let started = Instant::now();
    let mut simulated = 0.0;
    for seed in 0..seeds {
        simulated += run(&five, seed, Mode::Redis)?.simulated.as_secs_f64();
    }
    let ours = simulated / started.elapsed().as_secs_f64();
    let raw_after = raw_turmoil(hosts, five.tick_ms);
    let raw_mean = (raw + raw_after) / 2.0;
    let files = Scenario::files(&dir)?;
    let started = Instant::now();
    let mut runs = 0;
    for path in &files {
        let scenario = Scenario::load(path)?;
        for seed in 0..seeds {
            run(&scenario, seed, Mode::Redis)?;
            runs += 1;
        }
    }
    let per_second = runs as f64 / started.elapsed().as_secs_f64();
    // The whole bot: five instances, 500 shoppers, 60 simulated seconds, beside bare turmoil
    // with as many idle hosts (instances, Redis, store, balancer, the internet) at the same step.
    let bot = Scenario::load(&dir.join("bench/bot_five_instances.toml"))?;
    let bot_hosts = bot.instances + atlas_sim::bot::SHARED_HOSTS.len();
    let bot_raw = raw_turmoil(bot_hosts, bot.tick_ms);
    let bot_seeds = o.seeds.unwrap_or(bot.seeds).min(bot.seeds.max(1));
    let started = Instant::now();
    let mut bot_simulated = 0.0;
    let mut bot_held = 0;
    let mut runs = Vec::new();
    for seed in 0..bot_seeds {
        let result = run(&bot, seed, Mode::Redis)?;
        bot_simulated += result.simulated.as_secs_f64();
        bot_held += usize::from(result.violations.is_empty());
        runs.push((result.traffic, result.simulated));
    }
    let bot_ours = bot_simulated / started.elapsed().as_secs_f64();
    let bot_raw_after = raw_turmoil(bot_hosts, bot.tick_ms);
    // The same round trips between the same hosts with nothing at either end: the floor the
    // transport sets, whatever the bot does.
    let started = Instant::now();
    let mut floor_simulated = 0.0;
    let shape = atlas_sim::bot::floor::Shape {
        instances: bot.instances,
        network: atlas_sim::faults::network_of(&bot),
        tick: std::time::Duration::from_millis(bot.tick_ms),
    };
    for (traffic, simulated) in &runs {
        let active = std::time::Duration::from_secs_f64(bot.duration_secs);
        // A webhook world: with polling there would be no deliveries to carry the round trips.
        anyhow::ensure!(traffic.deliveries > 0, "the bench scenario delivered no webhook: {traffic:?}");
        let floor = atlas_sim::bot::floor::run(shape, *traffic, active, *simulated);
        anyhow::ensure!(floor.answered == traffic.deliveries, "the floor answered {floor:?} of {traffic:?}");
        floor_simulated += simulated.as_secs_f64();
    }
    let floor_speed = floor_simulated / started.elapsed().as_secs_f64();
    let per_seed = |count: fn(&atlas_sim::faults::Traffic) -> u64| {
        runs.iter().map(|(t, _)| count(t)).sum::<u64>() / runs.len().max(1) as u64
    };
    println!("| measure | figure |");
    println!("|---|---|");
    println!(
        "| raw turmoil, {hosts} idle hosts, {} ms tick (before, after) | {raw:.0}x, {raw_after:.0}x |",
        five.tick_ms
    );
    println!(
        "| chat_five_instances ({} instances + Redis, 60 s), {seeds} seeds | {ours:.0}x ({:.2} of raw turmoil) |",
        five.instances,
        ours / raw_mean
    );
    println!(
        "| every scenario ({} files) x {seeds} seeds on the Redis design | {per_second:.1} seeds/s |",
        files.len()
    );
    println!(
        "| raw turmoil, {bot_hosts} idle hosts, {} ms tick (before, after) | {bot_raw:.0}x, {bot_raw_after:.0}x |",
        bot.tick_ms
    );
    println!(
        "| {} ({} instances, {} users, {} s), {bot_seeds} seeds, {bot_held} held | {bot_ours:.0}x ({:.3} of raw turmoil) |",
        bot.name,
        bot.instances,
        match &bot.workload {
            atlas_sim::scenario::Workload::Bot(w) => w.users,
            _ => 0,
        },
        bot.duration_secs,
        bot_ours / ((bot_raw + bot_raw_after) / 2.0)
    );
    println!(
        "| its transport floor: the same hosts and round trips, nothing at either end (a seed: {} deliveries, {} Redis commands, {} store calls, {} Bot API, {} panel, {} Crypto Pay calls) | {floor_speed:.0}x (the bot at {:.2} of it) |",
        per_seed(|t| t.deliveries),
        per_seed(|t| t.redis),
        per_seed(|t| t.store),
        per_seed(|t| t.telegram),
        per_seed(|t| t.panel),
        per_seed(|t| t.crypto),
        bot_ours / floor_speed
    );
    Ok(true)
}

/// How long a worker may run one fuzz case (a whole-bot case takes seconds, a debug build's
/// tens of them) before the case is judged a hung run, its worker killed and started again.
const CASE_PATIENCE: Duration = Duration::from_secs(300);

/// A fuzz case as one line of a worker's input: its seed, and its scenario as the file the
/// fuzzer writes (TOML, whose round trip the fuzzer's tests check: a JSON number may come back
/// a last digit off).
fn case_line(case: &atlas_sim::fuzz::Case) -> anyhow::Result<String> {
    Ok(serde_json::json!({ "seed": case.seed, "scenario": case.scenario.to_toml()? }).to_string())
}

fn case_of_line(line: &str) -> anyhow::Result<atlas_sim::fuzz::Case> {
    let v: serde_json::Value = serde_json::from_str(line).context("a case is a JSON line")?;
    let seed = v["seed"].as_u64().context("a case has a seed")?;
    let scenario: Scenario = toml::from_str(v["scenario"].as_str().context("a case has a scenario")?)?;
    Ok(atlas_sim::fuzz::Case { scenario, seed })
}

/// A worker's verdict on a case. A worker that died on it (a crash of the run itself: the
/// thread version would have died with it) is a failure of the simulation, to shrink like any
/// other; anything else that went wrong is the fuzzer's own (a worker that could not start or
/// refused its arguments, a case it could not read): an error, which ends the search, or the
/// shrinking of a case found (the case is still written).
fn verdict_of(answer: anyhow::Result<serde_json::Value>) -> anyhow::Result<atlas_sim::fuzz::Verdict> {
    use atlas_sim::fuzz::Verdict;
    let judged = answer.and_then(|v| {
        Ok(Verdict {
            broken: serde_json::from_value(v["broken"].clone())?,
            why: v["why"].as_str().context("a verdict has its words")?.to_owned(),
        })
    });
    match judged {
        Ok(verdict) => Ok(verdict),
        Err(e) if e.is::<WorkerDied>() => {
            Ok(Verdict { broken: vec!["simulation".into()], why: "the worker process died on this case".into() })
        }
        Err(e) if e.is::<WorkerHung>() => Ok(Verdict { broken: vec!["simulation".into()], why: format!("{e}") }),
        Err(e) => Err(e.context("fuzz: the worker processes failed, not a case")),
    }
}

fn cmd_fuzz(o: Options) -> anyhow::Result<bool> {
    use atlas_sim::fuzz::{Limits, Verdict, judge, scenario_file, session};
    let budget = o.budget.unwrap_or(60.0);
    anyhow::ensure!(budget.is_finite() && budget > 0.0, "--budget is a number of seconds above 0");
    let budget = Duration::from_secs_f64(budget);
    let seed = o.seed.unwrap_or(0);
    let jobs = o.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mode = o.mode;
    let started = Instant::now();
    // Shrinking a find may go on until twice the budget.
    let search_over = || started.elapsed() >= budget;
    let shrink_over = || started.elapsed() >= budget * 2;
    let limits = Limits {
        search_over: &search_over,
        max_cases: o.max_cases.unwrap_or(u64::MAX),
        shrink_over: &shrink_over,
        max_shrink_runs: 500,
    };
    let judged = std::sync::atomic::AtomicU64::new(0);
    // More than one job: each a process of its own, kept for the session, so that every case
    // runs exactly as its replay will (runs in threads of one process share tokio's task
    // numbers; docs/simulation.md, Determinism).
    let args = ["case".into(), "--coordination".into(), mode.name().into()];
    let workers = (jobs > 1).then(|| Workers::new(&args, jobs, Some(CASE_PATIENCE)));
    let judge_all = |cases: &[atlas_sim::fuzz::Case]| {
        let verdicts: Vec<Verdict> = match &workers {
            None => cases.iter().map(|case| judge(case, mode)).collect(),
            Some(workers) => {
                let items: Vec<String> = cases.iter().map(case_line).collect::<anyhow::Result<_>>()?;
                workers.each(&items, "").into_iter().map(verdict_of).collect::<anyhow::Result<_>>()?
            }
        };
        let n = judged.fetch_add(cases.len() as u64, std::sync::atomic::Ordering::Relaxed) + cases.len() as u64;
        eprint!("\rfuzz: {n} runs, {:.0} s", started.elapsed().as_secs_f64());
        if verdicts.iter().any(|v| !v.held()) {
            eprintln!();
        }
        Ok(verdicts)
    };
    let session = session(seed, o.broken, jobs, &limits, &judge_all)?;
    eprintln!();
    let Some(found) = session.found else {
        println!(
            "fuzz --seed {seed}: {} cases on the {} design in {:.1} s, every invariant held (each case is a whole-bot run)",
            session.cases,
            mode.name(),
            started.elapsed().as_secs_f64()
        );
        return Ok(true);
    };
    let out = o.out.clone().unwrap_or_else(|| PathBuf::from("target/fuzz"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let file = format!("fuzz_{}_seed{seed}_case{}.toml", mode.name(), found.index);
    let path = out.join(&file);
    std::fs::write(&path, scenario_file(&found, seed, mode, &path)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "fuzz --seed {seed}: case {} ({} tried, {:.1} s) broke {} ({} design)",
        found.index,
        session.cases,
        started.elapsed().as_secs_f64(),
        found.first_verdict.broken.join(", "),
        mode.name()
    );
    println!("{}", found.first_verdict.why);
    println!(
        "shrunk in {} runs ({} still failing): {} instance(s), {} user(s), {} fault(s), {:.0} s; it breaks {}",
        found.shrink_runs,
        found.shrink_failures,
        found.least.scenario.instances,
        found.least.users(),
        found.least.scenario.faults.len(),
        found.least.scenario.duration_secs,
        found.verdict.broken.join(", ")
    );
    println!("{}", found.verdict.why);
    if let Some(why) = &found.interrupted {
        println!("shrinking stopped early, the fuzzer's own failure: {why}");
    }
    println!("written to {}; replay with:", path.display());
    println!("  atlas-sim run {} --seed {} --coordination {}", path.display(), found.least.seed, mode.name());
    // The written scenario carries the broken guard.
    println!("  {}", replay_command(&path, found.least.seed, mode, None));
    Ok(false)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if command == "worker" {
        let kind = args.get(1).cloned().unwrap_or_default();
        let result = options(args.get(2..).unwrap_or_default()).and_then(|o| cmd_worker(&kind, o));
        if let Err(e) = &result {
            eprintln!("atlas-sim worker: {e:#}");
        }
        return if result.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(2) };
    }
    let result = options(&args[1..]).and_then(|o| match command.as_str() {
        "run" => cmd_run(o),
        "replay" => cmd_replay(o),
        "audit" => cmd_audit(o),
        "bench" => cmd_bench(o),
        "fuzz" => cmd_fuzz(o),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(true)
        }
        other => Err(anyhow::anyhow!("unknown command {other}\n{USAGE}")),
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("atlas-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}
