//! The one intake function every update goes through, whether it came by polling, by webhook or
//! from the simulation: begin (dedupe, chat lease, flood limit, FSM record), the handler, commit.
//! A chat whose lease is held is retried a bounded number of times; when Redis is unavailable
//! the handler runs degraded (see `coord::policy`).

use std::future::Future;
use std::time::Duration;

use crate::coord::limits::LEASE_TTL;
use crate::coord::policy::{CommitVerdict, Extended, Guarded, Intake};
use crate::domain::UserId;
use crate::ports::Coordination;
use crate::ports::coordination::{Admission, BeginOutcome, FsmRecord, FsmWrite, UpdateTicket};

/// How long, in total, an update waits for its chat's lease before it is handed back for
/// redelivery (`Handled::GaveUp`). A handler holds the lease for a few store and Telegram calls,
/// well within `LEASE_TTL`; waiting longer than a lease covers an instance that died holding it.
/// A live handler that runs longer keeps its lease (`keep_lease`, up to `HOLD_MAX_LEASES`): an
/// update waiting behind it is handed back and comes again.
pub const BUSY_WAIT_TOTAL: Duration = Duration::from_secs(35);

/// How many lease lengths a live handler may keep its chat at most: past that its lease is left
/// to expire (a handler stuck on something without a timeout must not block its chat forever),
/// and its commit is refused if someone took the chat meanwhile.
pub const HOLD_MAX_LEASES: u32 = 3;

/// The longest single wait before asking again: the lease may be released long before it would
/// expire, and the update should then go ahead at once.
pub const BUSY_WAIT_MAX: Duration = Duration::from_millis(500);

/// What became of one update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The handler ran and its state was committed.
    Committed,
    /// The handler ran but its new state could not be stored (too large): the conversation kept
    /// its old state, and the chat was released.
    StateRefused,
    /// The handler ran but its lease ran out first (a frozen process, a handler stuck past the
    /// longest hold) and the update is done or taken by another delivery of it: nothing was
    /// written. Delivered again it is a duplicate, or waits for that handler (whose lease may
    /// run out too). (A lease that ran out with nobody touching the chat since still commits.)
    LeaseLost,
    /// The handler ran but the record changed behind the lease, or its lease ran out and the
    /// chat moved on without it: nothing was written, and it is not delivered again (run again
    /// it would come after what the user did next).
    Conflict,
    /// Already handled (or dropped for good): the handler did not run.
    Duplicate,
    /// Being handled right now elsewhere: the handler did not run here. That run may still hand
    /// the update back, so it must be delivered again later.
    InProgress,
    /// Over the flood limit: dropped, the handler did not run.
    Flooded,
    /// The chat stayed busy through every retry: the handler did not run.
    GaveUp,
    /// Redis was unavailable: the handler ran from a fresh state and nothing was committed.
    Degraded,
    /// Redis failed between begin and commit: the handler ran, its state may not have been
    /// saved while its replies went out. The update is delivered again: if the commit did land,
    /// the redelivery is a duplicate; if not, it runs again from the state it began with once
    /// the lease ends (money keyed by step moves once, the replies come again), so the user is
    /// never left at a step the conversation does not hold.
    CommitFailed,
    /// A pre-checkout query, answered at once outside the conversation (no lease, no state).
    Answered,
    /// The handler could not handle the update now (money received while the store failed):
    /// nothing was committed and the update was forgotten. The intake path must have it
    /// delivered again (a webhook answers with an error; the poller keeps it for a retry).
    Retry,
}

impl Handled {
    /// The outcome's name, as metrics and logs show it.
    pub fn name(&self) -> &'static str {
        match self {
            Handled::Committed => "committed",
            Handled::StateRefused => "state_refused",
            Handled::LeaseLost => "lease_lost",
            Handled::Conflict => "conflict",
            Handled::Duplicate => "duplicate",
            Handled::InProgress => "in_progress",
            Handled::Flooded => "flooded",
            Handled::GaveUp => "gave_up",
            Handled::Degraded => "degraded",
            Handled::CommitFailed => "commit_failed",
            Handled::Retry => "retry",
            Handled::Answered => "answered",
        }
    }

    /// Whether the update must be delivered again: it was not handled, or its state may not be
    /// kept, and dropping it could lose something (a chat that stayed busy, a handler that asked
    /// for a retry, a commit Redis did not confirm or refused for a lost lease).
    pub fn wants_redelivery(&self) -> bool {
        matches!(
            self,
            Handled::Retry | Handled::GaveUp | Handled::InProgress | Handled::CommitFailed | Handled::LeaseLost
        )
    }
}

/// The context a handler gets: which update, and the state it starts from (`None` when the
/// update is handled degraded).
#[derive(Clone, Debug)]
pub struct UpdateContext {
    pub user: UserId,
    pub update_id: i64,
    pub fsm: Option<FsmRecord>,
}

/// Runs `handler` for one update under the coordination protocol.
pub async fn handle_update<C, H, Fut>(
    coordination: &Guarded<C>,
    user: UserId,
    update_id: i64,
    admission: Admission,
    handler: H,
) -> Handled
where
    C: Coordination,
    H: FnOnce(UpdateContext) -> Fut,
    Fut: Future<Output = FsmWrite>,
{
    const _: () = assert!(BUSY_WAIT_TOTAL.as_secs() > LEASE_TTL.as_secs(), "wait out at least one whole lease");
    let mut waited = Duration::ZERO;
    let ticket = loop {
        match coordination.begin_update(user, update_id, admission).await {
            Intake::Degraded => {
                let write = handler(UpdateContext { user, update_id, fsm: None }).await;
                return if write == FsmWrite::Retry { Handled::Retry } else { Handled::Degraded };
            }
            Intake::Coordinated(BeginOutcome::Proceed(ticket)) => break ticket,
            Intake::Coordinated(BeginOutcome::Duplicate) => return Handled::Duplicate,
            Intake::Coordinated(BeginOutcome::InProgress) => return Handled::InProgress,
            Intake::Coordinated(BeginOutcome::Flooded { .. }) => return Handled::Flooded,
            Intake::Coordinated(BeginOutcome::Busy { retry_after }) => {
                if waited >= BUSY_WAIT_TOTAL {
                    tracing::warn!(user_id = user.get(), update_id, "chat stayed busy; update given up");
                    return Handled::GaveUp;
                }
                let wait = retry_after.clamp(Duration::from_millis(1), BUSY_WAIT_MAX);
                tokio::time::sleep(wait).await;
                waited += wait;
            }
        }
    };
    // The lease is kept while the handler runs: a handler that waits out Telegram's per-chat
    // pacing (1 message a second) or a slow provider outlived a short lease, its commit was
    // refused, and the redelivery ran the update again (fuzzer, seed 1).
    let handler = handler(UpdateContext { user, update_id, fsm: Some(ticket.fsm.clone()) });
    let write = tokio::select! {
        write = handler => write,
        never = keep_lease(coordination, user, &ticket) => match never {},
    };
    let retry = write == FsmWrite::Retry;
    let mut verdict = coordination.commit_update(user, &ticket, write.clone()).await;
    if verdict == CommitVerdict::Failed {
        // A hand-back too: stored, it frees the chat at once for the redelivery.
        verdict = commit_again(coordination, user, &ticket, write).await;
    }
    if retry {
        // Handed back: to be delivered again whatever became of the commit (a lost lease or a
        // failed commit leaves the marker to expire with the lease, so the redelivery runs).
        return Handled::Retry;
    }
    match verdict {
        CommitVerdict::Committed => Handled::Committed,
        CommitVerdict::StateRefused => Handled::StateRefused,
        CommitVerdict::LeaseLost => {
            tracing::warn!(user_id = user.get(), update_id, "handler outlived its lease; state not saved");
            Handled::LeaseLost
        }
        CommitVerdict::VersionConflict => Handled::Conflict,
        CommitVerdict::Failed => Handled::CommitFailed,
    }
}

/// Extends the chat lease of `ticket` every third of a lease (sooner after a call Redis did not
/// answer), for as long as it is polled beside the handler in the same task, up to
/// `HOLD_MAX_LEASES` lease lengths. Once the lease is known to be gone it stops asking.
async fn keep_lease<C: Coordination>(
    coordination: &Guarded<C>,
    user: UserId,
    ticket: &UpdateTicket,
) -> std::convert::Infallible {
    let every = (ticket.lease_ttl / 3).max(Duration::from_millis(10));
    let last_extend = tokio::time::Instant::now() + ticket.lease_ttl * (HOLD_MAX_LEASES - 1);
    let mut pause = every;
    loop {
        tokio::time::sleep(pause).await;
        if tokio::time::Instant::now() > last_extend {
            let update_id = ticket.update_id;
            tracing::warn!(user_id = user.get(), update_id, "handler held its chat too long; lease left to expire");
            return std::future::pending().await;
        }
        pause = match coordination.extend_update(user, ticket).await {
            Extended::Yes => every,
            Extended::Unknown => every / 3,
            Extended::Lost => {
                tracing::warn!(user_id = user.get(), update_id = ticket.update_id, "chat lease lost while handling");
                return std::future::pending().await;
            }
        };
    }
}

/// How long a commit Redis did not confirm is tried again, and the pauses between the tries.
pub const COMMIT_RETRY_BUDGET: Duration = Duration::from_secs(5);
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(1);

/// Tries again a commit Redis did not confirm (a restart, a dropped connection, a short cut).
/// The handler's replies are out: the sooner the state that goes with them is stored, the
/// sooner the user's next answer finds the step they were asked about. The same ticket is
/// committed, so the lease token still guards it. A landed commit marks the update done, so a
/// retry answered `LeaseLost` (done, or taken by another delivery) keeps the verdict `Failed`
/// and the update is delivered again: a duplicate if the first try landed. Any other answer is
/// definite: stored now (the lease still ours, or run out with nobody touching the chat),
/// refused as too large, or a conflict (the chat moved on without it).
async fn commit_again<C: Coordination>(
    coordination: &Guarded<C>,
    user: UserId,
    ticket: &crate::ports::coordination::UpdateTicket,
    write: FsmWrite,
) -> CommitVerdict {
    let mut pause = COMMIT_RETRY_FIRST;
    let mut waited = Duration::ZERO;
    while waited < COMMIT_RETRY_BUDGET {
        tokio::time::sleep(pause).await;
        waited += pause;
        pause = (pause * 2).min(COMMIT_RETRY_MAX);
        match coordination.commit_update(user, ticket, write.clone()).await {
            CommitVerdict::Failed => {}
            CommitVerdict::LeaseLost => break,
            definite => {
                tracing::info!(user_id = user.get(), update_id = ticket.update_id, "commit answered on a later try");
                return definite;
            }
        }
    }
    CommitVerdict::Failed
}

/// The bot's handling of one update under the coordination protocol: what the webhook route,
/// the poller, the tests and the simulation all call.
pub async fn process<A: crate::runtime::wiring::Adapters>(
    app: &crate::runtime::wiring::App<A>,
    update: &crate::bot::incoming::Update,
) -> Handled {
    use tracing::Instrument as _;
    // Admins are not flood-limited (their commands have their own limit, 100 a minute): an
    // admin working through requests fast had a press dropped unanswered (swarm seed 4793).
    let admission = if update.incoming.is_exempt() || app.rules.is_admin(update.user) {
        Admission::Exempt
    } else {
        Admission::Counted
    };
    let started = app.clock.monotonic();
    let work = async {
        if matches!(update.incoming, crate::bot::incoming::Incoming::PreCheckout { .. }) {
            crate::bot::answer_pre_checkout(app, update).await;
            return Handled::Answered;
        }
        handle_update(&app.coordination, update.user, update.id, admission, |ctx| async move {
            crate::bot::handle(app, update, ctx.fsm.as_ref()).await
        })
        .await
    };
    let handled = work.instrument(crate::bot::span(update)).await;
    metrics::counter!("atlas_updates_total", "outcome" => handled.name()).increment(1);
    let seconds = app.clock.monotonic().saturating_sub(started).as_secs_f64();
    metrics::histogram!("atlas_update_seconds").record(seconds);
    tracing::debug!(
        user_id = update.user.get(),
        update_id = update.id,
        outcome = handled.name(),
        ms = (seconds * 1000.0) as u64,
        "update handled"
    );
    handled
}
