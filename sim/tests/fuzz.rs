//! The fuzzer finds what a broken guard lets through, and shrinks it to a small scenario that
//! `atlas-sim run` replays: the mutation check of the fuzzer itself.

use atlas_sim::fuzz::{Limits, judge, scenario_file, session};
use atlas_sim::scenario::{BrokenGuard, Mode, Scenario, Workload};

#[test]
fn the_fuzzer_finds_a_broken_lease_and_shrinks_it() {
    let limits = Limits { search_over: &|| false, max_cases: 10, shrink_over: &|| false, max_shrink_runs: 25 };
    let judge_all = |cases: &[atlas_sim::fuzz::Case]| Ok(cases.iter().map(|c| judge(c, Mode::Redis)).collect());
    let found =
        session(1, Some(BrokenGuard::Lease), 1, &limits, &judge_all).unwrap().found.expect("found within 10 cases");
    let (first, least) = (&found.first.scenario, &found.least.scenario);
    assert!(found.verdict.broken.iter().any(|b| found.first_verdict.broken.contains(b)), "{found:?}");
    let users = |s: &Scenario| match &s.workload {
        Workload::Bot(bot) => (bot.users, bot.journeys.len()),
        _ => unreachable!("whole-bot cases"),
    };
    assert!(least.instances <= first.instances && least.faults.len() <= first.faults.len());
    assert!(users(least) <= users(first));
    assert!(found.shrink_failures > 0, "shrinking made it smaller at least once");

    // The file replays: the same failure from the file, and none with the guard intact.
    let dir = std::env::temp_dir().join(format!("atlas-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("found.toml");
    std::fs::write(&path, scenario_file(&found, 1, Mode::Redis, &path).unwrap()).unwrap();
    let replayed = Scenario::load(&path).unwrap();
    assert_eq!(replayed.broken_guard, Some(BrokenGuard::Lease));
    let case = atlas_sim::fuzz::Case { scenario: replayed, seed: found.least.seed };
    assert_eq!(judge(&case, Mode::Redis).broken, found.verdict.broken);
    let mut intact = case.clone();
    intact.scenario.broken_guard = None;
    let verdict = judge(&intact, Mode::Redis);
    assert!(verdict.held(), "with the guard in place the shrunk scenario holds: {}", verdict.why);
    std::fs::remove_dir_all(&dir).ok();
}

/// With more than one job each case runs in a worker process of its own (`atlas-sim worker
/// case`), and what the fuzzer found there replays from its file with `atlas-sim run`: the same
/// invariant broken by the same seed.
#[test]
fn a_case_found_by_worker_processes_replays_from_its_file() {
    let dir = std::env::temp_dir().join(format!("atlas-fuzz-jobs-{}", std::process::id()));
    let atlas_sim = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atlas-sim")).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let out = dir.to_str().unwrap();
    let (code, said) = atlas_sim(&[
        "fuzz",
        "--jobs",
        "2",
        "--coordination",
        "legacy",
        "--seed",
        "1",
        "--max-cases",
        "4",
        "--budget",
        "5",
        "--out",
        out,
    ]);
    assert_eq!(code, Some(1), "the legacy design breaks within 4 cases: {said}");
    let replay = said.lines().find(|l| l.trim_start().starts_with("atlas-sim run ")).expect("a replay command");
    let args: Vec<&str> = replay.split_whitespace().skip(1).collect();
    let broken = said.lines().find_map(|l| l.split_once("; it breaks ")).map(|(_, b)| b.trim()).expect("what it broke");
    let (code, replayed) = atlas_sim(&args);
    assert_eq!(code, Some(1), "the file fails again: {replayed}");
    for invariant in broken.split(", ") {
        assert!(replayed.contains(&format!("[{invariant}]")), "{invariant} broken again: {replayed}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
