//! The A/B that proves the harness: every scenario in `scenarios/` holds on the Redis design for
//! a sample of seeds, and fails on the audit's legacy design with an invariant it names. And the
//! same seed gives the same history.

use std::path::Path;

use atlas_sim::runner::{Mode, run};
use atlas_sim::scenario::Scenario;

const SEEDS: u64 = 4;

fn scenarios() -> Vec<Scenario> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    Scenario::files(&dir).unwrap().iter().map(|f| Scenario::load(f).unwrap()).collect()
}

#[test]
fn every_scenario_holds_on_redis() {
    for scenario in scenarios() {
        for seed in 0..SEEDS {
            let result = run(&scenario, seed, Mode::Redis).unwrap();
            assert!(result.violations.is_empty(), "{} seed {seed} on redis: {:?}", scenario.name, result.violations);
            assert!(result.history.records.len() > 10, "{} seed {seed} did almost nothing", scenario.name);
        }
    }
}

#[test]
fn every_scenario_fails_on_the_legacy_design_with_a_named_invariant() {
    for scenario in scenarios() {
        if !scenario.legacy_must_fail {
            // Guarded the same way in both designs (PostgreSQL): the legacy design holds too.
            for seed in 0..SEEDS {
                let result = run(&scenario, seed, Mode::Legacy).unwrap();
                assert!(
                    result.violations.is_empty(),
                    "{} seed {seed} on legacy: {:?}",
                    scenario.name,
                    result.violations
                );
            }
            continue;
        }
        let failed =
            (0..SEEDS).map(|seed| run(&scenario, seed, Mode::Legacy).unwrap()).find(|r| !r.violations.is_empty());
        let result = failed.unwrap_or_else(|| {
            panic!("{}: the legacy design held on every seed; the scenario shows nothing", scenario.name)
        });
        assert!(scenario.invariants.contains(&result.violations[0].0));
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
