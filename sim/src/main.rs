//! `atlas-sim`: the deterministic simulation harness. It will run the real `atlas` code as
//! several instances in a turmoil world (see DESIGN.md §5); until the world exists it says so and
//! fails, rather than pretending to have checked anything.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "atlas-sim: the simulation world is not built yet; no scenario can run.\n\
         Planned commands: audit, run <scenario|dir> --seeds N, replay <scenario> --seed S."
    );
    ExitCode::from(2)
}
