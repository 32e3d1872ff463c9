//! The A/B that proves the harness: every scenario in `scenarios/` holds on the Redis design for
//! a sample of seeds while getting through its workload, and the legacy design breaks the very
//! invariant the scenario names (or holds, where the scenario says the guard is the same in both
//! designs). And the same seed gives the same history.

use std::path::Path;

use atlas_sim::runner::{PROGRESS_MIN_PERCENT, run};
use atlas_sim::scenario::{BotIntake, Legacy, Mode, Scenario, Workload};

const SEEDS: u64 = 4;

fn scenarios() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    Scenario::files(&dir).unwrap().iter().map(|f| Scenario::load(f).unwrap()).collect()
}

#[test]
fn every_scenario_holds_on_redis_and_gets_through_its_workload() {
    for scenario in scenarios() {
        for seed in 0..SEEDS {
            let result = run(&scenario, seed, Mode::Redis).unwrap();
            assert!(result.violations.is_empty(), "{} seed {seed} on redis: {:?}", scenario.name, result.violations);
            let p = result.progress;
            assert!(
                p.enough(),
                "{} seed {seed} got through {} of {} planned steps (at least {PROGRESS_MIN_PERCENT}% needed)",
                scenario.name,
                p.done,
                p.planned
            );
            // The bench's floor replays what a whole-bot run counted: every kind of it is there
            // (a poller's updates come in its getUpdates calls, not as deliveries).
            if let Workload::Bot(bot) = &scenario.workload {
                let t = result.traffic;
                let delivered = bot.intake == BotIntake::Polling || t.deliveries > 0;
                assert!(delivered && t.redis > 0 && t.store > 0 && t.telegram > 0, "{}: {t:?}", scenario.name);
            }
        }
    }
}

#[test]
fn the_legacy_design_breaks_the_invariant_each_scenario_names() {
    for scenario in scenarios() {
        let results: Vec<_> = (0..SEEDS).map(|seed| run(&scenario, seed, Mode::Legacy).unwrap()).collect();
        match &scenario.legacy {
            Legacy::Breaks(invariant) => {
                let shown = results.iter().any(|r| r.violations.iter().any(|(i, _)| i == invariant));
                let seen: Vec<_> = results.iter().flat_map(|r| r.violations.iter().map(|(i, _)| i.name())).collect();
                assert!(
                    shown,
                    "{}: the legacy design never broke `{}` in {SEEDS} seeds (it broke {seen:?})",
                    scenario.name,
                    invariant.name()
                );
            }
            Legacy::Holds(_) => {
                for r in &results {
                    assert!(r.violations.is_empty(), "{} seed {} on legacy: {:?}", scenario.name, r.seed, r.violations);
                }
            }
        }
    }
}

#[test]
fn a_seed_replays_exactly() {
    for scenario in scenarios() {
        let (a, b) = (run(&scenario, 7, Mode::Redis).unwrap(), run(&scenario, 7, Mode::Redis).unwrap());
        assert_eq!(a.hash, b.hash, "{} is not deterministic", scenario.name);
        let c = run(&scenario, 8, Mode::Redis).unwrap();
        assert_ne!(a.hash, c.hash, "{}: different seeds gave the same history", scenario.name);
    }
}

/// A scenario whose configuration cannot be run is refused when it is loaded, naming the
/// problem, never reported later as a violation.
#[test]
fn a_misconfigured_scenario_is_refused_at_load() {
    let dir = std::env::temp_dir().join(format!("atlas-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/chat_restart.toml")).unwrap();
    let cases = [
        (
            "leader_failover on a chat",
            base.replace("invariants = [", "invariants = [\"leader_failover\", "),
            "leader_failover",
        ),
        ("money_once on a chat", base.replace("invariants = [", "invariants = [\"money_once\", "), "money_once"),
        (
            "legacy breaks an unchecked invariant",
            base.replace("breaks = \"fsm_survives_restart\"", "breaks = \"money_once\""),
            "money_once",
        ),
        (
            "unknown action",
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/rate_limits_skewed.toml"))
                .unwrap()
                .replace("\"promo\"", "\"promos\""),
            "promos",
        ),
        (
            "a store call caught with no delay on the links",
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/bot_reissue_paused_holder.toml"),
            )
            .unwrap()
            .replace("min_latency_ms = 1", "min_latency_ms = 0"),
            "min_latency_ms",
        ),
        (
            "a store call caught on a chat",
            format!(
                "{base}\n[[faults]]\nkind = \"pause_at_store_call\"\ncall = \"x\"\nat_secs = 1.0\nfor_secs = 2.0\n"
            ),
            "whole-bot",
        ),
    ];
    for (what, text, named) in cases {
        let path = dir.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", Scenario::load(&path).unwrap_err());
        assert!(err.contains(named), "{what}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The mutation check of the scenarios: with each guard of the Redis design's scripts, and the
/// store's check of a reissue's token, switched off (`atlas-sim run <scenario> --break GUARD`),
/// the scenario that proves it breaks the invariant it guards.
#[test]
fn each_guard_switched_off_breaks_the_scenario_that_proves_it() {
    use atlas_sim::scenario::BrokenGuard;
    let cases = [
        (BrokenGuard::Dedupe, "chat_two_instances", "no_update_twice"),
        (BrokenGuard::Lease, "reissue_paused_holder", "no_double_reissue"),
        (BrokenGuard::Fencing, "chat_restarts_and_pauses", "handlers_never_overlap"),
        (BrokenGuard::KeyFence, "bot_reissue_paused_holder", "no_double_reissue"),
    ];
    for (guard, name, invariant) in cases {
        let mut scenario = scenarios().into_iter().find(|s| s.name == name).expect("the scenario is there");
        scenario.broken_guard = Some(guard);
        // About 4 seeds in 10 break the fencing check; 20 keep the test from hanging on a
        // handful should a change move the interleavings.
        let broke = (0..20).any(|seed| {
            let result = run(&scenario, seed, Mode::Redis).unwrap();
            result.violations.iter().any(|(i, _)| i.name() == invariant)
        });
        assert!(broke, "{name} with {} switched off never broke {invariant} in 20 seeds", guard.name());
    }
}

/// `run --jobs 2` shares the seeds out over worker processes: the verdicts come back whole (a
/// seed that breaks an invariant, with its replay command), and each seed hashes as in a fresh
/// process.
#[test]
fn seeds_run_in_worker_processes_come_back_whole() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/chat_two_instances.toml");
    let atlas_sim = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_atlas-sim"))
            .arg("run")
            .arg(&scenario)
            .args(["--seeds", "4", "--jobs", "2", "--check-determinism"])
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, said) = atlas_sim(&[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("| chat_two_instances | redis | 4 | 4 | 0 |") && said.contains("same hashes"), "{said}");
    let (code, said) = atlas_sim(&["--break", "dedupe"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("[no_update_twice]") && said.contains("--break dedupe"), "{said}");
    assert!(said.contains("same hashes"), "a broken guard is deterministic too: {said}");
}

/// The cases the fuzzer found (`scenarios/found/`, each with the seed that broke it) hold since
/// their fixes.
#[test]
fn each_case_the_fuzzer_found_holds_at_its_seed() {
    let found = [("admin_reissue_reply_lost.toml", 278_189), ("sigterm_during_freeze.toml", 704_648)];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/found");
    assert_eq!(Scenario::files(&dir).unwrap().len(), found.len(), "every case found is listed here");
    for (file, seed) in found {
        let scenario = Scenario::load(&dir.join(file)).unwrap();
        let result = run(&scenario, seed, Mode::Redis).unwrap();
        assert!(result.violations.is_empty(), "{file} seed {seed}: {:?}", result.violations);
    }
}

/// A `pause_at_store_call` waiting for a call no instance sends fails the run, naming the call,
/// rather than holding a run whose fault never happened.
#[test]
fn a_store_call_pause_that_never_trips_fails_the_run() {
    let mut scenario = scenarios().into_iter().find(|s| s.name == "bot_reissue_paused_holder").unwrap();
    for fault in &mut scenario.faults {
        if let atlas_sim::scenario::Fault::PauseAtStoreCall { call, .. } = fault {
            *call = "no_such_call".into();
        }
    }
    let err = format!("{:#}", run(&scenario, 0, Mode::Redis).unwrap_err());
    assert!(err.contains("no_such_call"), "{err}");
}
