//! The run function: one instance of the bot, from its adapters to a served, draining, stopped
//! process. `atlas-bot run` calls it with the live adapters (`runtime::live_run`); the
//! simulation calls it for each simulated instance with its own. Nothing the bot does at run
//! time lives outside it.
//!
//! Start: ask Telegram who the bot is (the token works, the API answers; the username makes the
//! referral links), set the webhook in webhook mode (idempotent, safe from many instances at
//! once; never deleted on stop), then serve the HTTP endpoints and take updates — by webhook, or
//! by polling while this instance holds the poller lease.
//!
//! Stop, when `shutdown` resolves: the instance drains (the webhook answers 503 and `/readyz`
//! says so; the poller stops fetching and resigns its lease), updates in flight get
//! `shutdown_timeout` to finish, then the server closes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use teloxide_core::payloads::{GetMe, SetWebhook};

use super::agreed_clock::AgreedClock;
use super::gate::Gate;
use super::poller::{ALLOWED_UPDATES, PollerError, poll};
use super::settings::Intake;
use super::wiring::{Adapters, App, Parts, Rules, assemble};
use super::workers::{WorkerConfig, run_workers};
use super::{http, payment_webhook, webhook};
use crate::net::{Listener, Network};
use crate::telegram::api::{BotApi, TelegramError};

/// Tries of each start-up call to Telegram, and the pause before the next (doubling).
const START_ATTEMPTS: u32 = 5;
const START_PAUSE_FIRST: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub intake: Intake,
    pub updates_in_flight_max: usize,
    pub shutdown_timeout: Duration,
    pub workers: WorkerConfig,
    /// Crypto Pay's `invoice_paid` webhook: its path and the token that signs it.
    pub payment_webhook: Option<(String, secrecy::SecretString)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("Telegram refused or did not answer at start ({0})")]
    Telegram(TelegramError),
    #[error(transparent)]
    Poller(#[from] PollerError),
}

/// Runs one instance until `shutdown` resolves (`Ok`) or polling meets a conflict (`Err`).
pub async fn run<A: Adapters, N: Network, L: Listener>(
    mut parts: Parts<A>,
    mut rules: Rules,
    telegram: Arc<BotApi<N>>,
    metrics: Option<PrometheusHandle>,
    config: RunConfig,
    listener: L,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let start = async {
        let me = at_start(|| telegram.call(&GetMe {})).await?;
        tracing::info!(bot_id = me.user.id.0, "Telegram answers for the bot");
        if let Intake::Webhook { url, secret, max_connections } = &config.intake {
            let mut request = SetWebhook::new(url.clone());
            request.secret_token = Some(secrecy::ExposeSecret::expose_secret(secret).to_owned());
            request.max_connections = Some(*max_connections);
            request.allowed_updates = Some(ALLOWED_UPDATES.to_vec());
            at_start(|| telegram.call(&request)).await?;
            tracing::info!(path = url.path(), "webhook set");
        }
        Ok::<_, RunError>(me)
    };
    // A stop signal during the start ends it cleanly: nothing was taken yet.
    let me = tokio::select! {
        started = start => started?,
        () = &mut shutdown => {
            tracing::info!("stopped before the start completed");
            return Ok(());
        }
    };
    rules.bot_username = me.user.username.clone();
    let clock = Arc::new(AgreedClock::new(parts.clock.clone()));
    parts.clock = clock.clone();
    let app = Arc::new(assemble(parts, rules));
    // The wall clock is set by the shared one before the first update is taken.
    let agreed = tokio::select! {
        agreed = clock.agree_at_start(&app.coordination) => agreed,
        () = &mut shutdown => {
            tracing::info!("stopped before the start completed");
            return Ok(());
        }
    };
    let agreeing = tokio::spawn({
        let (app, clock) = (app.clone(), clock.clone());
        async move { clock.keep_agreeing(&app.coordination, agreed).await }
    });
    let gate = Arc::new(Gate::new(config.updates_in_flight_max));
    let mut router = http::router(app.clone(), gate.clone(), metrics);
    if let Intake::Webhook { url, secret, .. } = &config.intake {
        router = router.merge(webhook::router(url.path(), app.clone(), secret.clone(), gate.clone()));
    }
    if let Some((path, token)) = &config.payment_webhook {
        router = router.merge(payment_webhook::router(path, app.clone(), token.clone()));
    }
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<Duration>();
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<Duration>();
    let server = tokio::spawn(async move {
        // The server drains with whatever is left of the shutdown timeout.
        let drain = async move { drain_rx.await.unwrap_or(Duration::ZERO) };
        crate::net::server::serve_until(listener, router, server_stopped, drain).await;
    });
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(run_workers(app.clone(), config.workers.clone(), workers_stopped));
    let (stop_intake, intake_stopped) = tokio::sync::watch::channel(false);
    let intake = async {
        match config.intake {
            Intake::Polling => {
                let mut stopped = intake_stopped.clone();
                poll(app.clone(), telegram.clone(), gate.clone(), async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
            }
            Intake::Webhook { .. } => {
                let mut stopped = intake_stopped.clone();
                let _ = stopped.wait_for(|s| *s).await;
                Ok(())
            }
        }
    };
    tokio::pin!(intake);
    let outcome = tokio::select! {
        () = &mut shutdown => None,
        ended = &mut intake => Some(ended),
    };
    tracing::info!("shutting down: no new updates; those in flight finish");
    let deadline = app.clock.monotonic() + config.shutdown_timeout;
    gate.drain();
    stop_intake.send_replace(true);
    stop_workers.send_replace(true);
    let left = |app: &App<A>| deadline.saturating_sub(app.clock.monotonic());
    let outcome = match outcome {
        Some(ended) => ended,
        None => tokio::time::timeout(left(&app), intake).await.unwrap_or(Ok(())),
    };
    if !gate.idle(left(&app)).await {
        tracing::warn!(in_flight = gate.in_flight(), "updates still in flight at the shutdown timeout");
    }
    // Workers finish the tick in hand and resign their leases, within the same bound.
    let abort = workers.abort_handle();
    if tokio::time::timeout(left(&app), workers).await.is_err() {
        tracing::warn!("background work still running at the shutdown timeout; stopped");
        abort.abort();
    }
    let _ = drain_tx.send(left(&app));
    let _ = stop_server.send(Duration::ZERO);
    let _ = server.await;
    agreeing.abort();
    tracing::info!("stopped");
    outcome.map_err(RunError::from)
}

/// A start-up call, repeated after transient failures; a refusal stops the start at once.
async fn at_start<T, F, Fut>(mut call: F) -> Result<T, RunError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TelegramError>>,
{
    let mut pause = START_PAUSE_FIRST;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() && attempt < START_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "Telegram did not answer at start; trying again");
                // Many instances starting at once may be told to wait: they wait as told.
                let told = match &e {
                    TelegramError::RetryAfter(after) => *after,
                    _ => Duration::ZERO,
                };
                tokio::time::sleep(pause.max(told)).await;
                pause *= 2;
            }
            Err(e) => return Err(RunError::Telegram(e)),
        }
    }
}
