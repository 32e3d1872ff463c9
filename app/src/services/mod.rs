//! Use cases that span several ports (coordination, store, providers). Dialogues and workers
//! call these; the simulation drives them the same way.

pub mod reissue;
