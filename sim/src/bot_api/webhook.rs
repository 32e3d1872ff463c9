//! The fake's webhook pusher, with Telegram's semantics: updates go out in order, one in flight
//! per queue (a chat's messages; a user's callback queries; a user's pre-checkout queries), at
//! most `max_connections` at once; an update whose answer is not 2xx (or does not come in time)
//! blocks its queue and is sent again after a backoff that doubles up to a cap.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use atlas::net::Network;
use atlas::net::client::HttpClient;
use bytes::Bytes;
use hyper::Method;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{FakeBotApi, queue_of};

/// Pushes pending updates to the webhook while one is set, until `stop` resolves.
pub async fn deliver_webhooks<N: Network>(api: FakeBotApi, client: HttpClient<N>, stop: impl Future<Output = ()>) {
    let client = std::sync::Arc::new(client);
    let mut in_flight: BTreeSet<i64> = BTreeSet::new();
    let mut retry_at: BTreeMap<i64, Instant> = BTreeMap::new();
    let mut backoff: BTreeMap<i64, Duration> = BTreeMap::new();
    let mut sending: JoinSet<(i64, i64, Result<(), String>)> = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let arrived = api.arrived.notified();
        let now = Instant::now();
        let webhook = api.webhook();
        if let Some(webhook) = &webhook {
            let ready: Vec<(i64, serde_json::Value)> = {
                let state = api.state();
                let mut seen: BTreeSet<i64> = BTreeSet::new();
                state
                    .pending
                    .iter()
                    .filter(|(_, update)| seen.insert(queue_of(update)))
                    .filter(|(_, update)| !in_flight.contains(&queue_of(update)))
                    .filter(|(_, update)| retry_at.get(&queue_of(update)).is_none_or(|at| *at <= now))
                    .map(|(id, update)| (*id, update.clone()))
                    .take(webhook.max_connections.saturating_sub(in_flight.len()))
                    .collect()
            };
            for (id, update) in ready {
                let queue = queue_of(&update);
                in_flight.insert(queue);
                let (client, webhook, timeout) = (client.clone(), webhook.clone(), api.redelivery.answer_timeout);
                sending.spawn(async move {
                    let mut headers = vec![("content-type", "application/json".to_owned())];
                    if let Some(secret) = &webhook.secret {
                        headers.push(("x-telegram-bot-api-secret-token", secret.clone()));
                    }
                    let body = Bytes::from(update.to_string());
                    let answer = client.request(Method::POST, &webhook.url, &headers, body, timeout).await;
                    let outcome = match answer {
                        Ok(response) if response.status.is_success() => Ok(()),
                        Ok(response) => Err(format!("Wrong response from the webhook: {}", response.status)),
                        Err(e) => Err(format!("Connection error: {e}")),
                    };
                    (queue, id, outcome)
                });
            }
        }
        let next_retry = retry_at.values().filter(|at| **at > now).min().copied();
        tokio::select! {
            () = &mut stop => break,
            () = arrived => {}
            Some(done) = sending.join_next(), if !sending.is_empty() => {
                let (queue, id, outcome) = done.expect("a delivery task does not panic");
                in_flight.remove(&queue);
                let mut state = api.state();
                match outcome {
                    Ok(()) => {
                        let update = state.pending.remove(&id);
                        state.delivered.push(id);
                        if let Some(update) = update
                            && duplicate(id, &api.redelivery)
                            && !state.duplicated.contains_key(&id)
                        {
                            // Telegram did not get the answer: the same update comes again.
                            state.duplicated.insert(id, super::HandedBack::of(&update));
                            state.pending.insert(id, update);
                            api.arrived.notify_waiters();
                        }
                        retry_at.remove(&queue);
                        backoff.remove(&queue);
                    }
                    Err(why) => {
                        state.failed_deliveries += 1;
                        if let Some(back) = state.pending.get(&id).map(super::HandedBack::of) {
                            state.handed_back.push(back);
                        }
                        state.last_error = Some(why);
                        let pause = backoff.get(&queue).map_or(api.redelivery.first, |p| (*p * 2).min(api.redelivery.max));
                        backoff.insert(queue, pause);
                        retry_at.insert(queue, Instant::now() + pause);
                    }
                }
            }
            () = sleep_until(next_retry) => {}
        }
    }
    sending.shutdown().await;
}

/// Whether update `id` is one Telegram delivers twice: a hash of the id and the seed against the
/// percentage, so a run repeats.
fn duplicate(id: i64, redelivery: &super::Redelivery) -> bool {
    let mixed = (id as u64 ^ redelivery.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) % 100 < u64::from(redelivery.duplicate_percent)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
