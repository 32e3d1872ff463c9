//! Expiry cleanup and the key reconciler, leader-only. Outline keys do not expire by themselves,
//! so expiry is ours:
//!
//! 1. the keys of subscriptions that ended more than a grace period ago are revoked in the store
//!    (their activation goes back to pending, so a renewal gets a new key);
//! 2. every key revoked in the store and not yet at the panel is revoked there (an outbox: a
//!    panel that failed once is asked again next tick);
//! 3. the reconciler lists the panel's keys and revokes every key of ours nobody owns: a fenced
//!    reissue's key, an attempt superseded by a later one, a key of an unknown subscription
//!    (`domain::keys::is_orphan`); keys still being made are left alone.

use std::time::Duration;

use super::{Lease, Tally};
use crate::domain::{KeyLabel, is_orphan};
use crate::ports::VpnProvider;
use crate::ports::store::Subscriptions;
use crate::runtime::wiring::{Adapters, App};

/// Steps 1 and 2: at most `limit` subscriptions retired and `limit` keys revoked at the panel.
pub async fn tick<A: Adapters>(app: &App<A>, lease: Lease<'_>, grace: Duration, limit: u32) -> Tally {
    let mut tally = Tally::default();
    if lease.holds() {
        match app.store.retire_ended(app.clock.now(), grace, limit).await {
            Ok(retired) => {
                for key in &retired {
                    tracing::info!(
                        event = "KEY_RETIRED",
                        subscription_id = key.subscription.get(),
                        user_id = key.user.get(),
                        "the subscription ended"
                    );
                }
                tally.done += retired.len() as u32;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ended subscriptions not retired");
                tally.failed += 1;
            }
        }
    }
    let to_revoke = match app.store.keys_to_revoke(limit).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "keys to revoke not read");
            tally.failed += 1;
            return tally;
        }
    };
    let mut revoked = Vec::new();
    for key in to_revoke {
        if !lease.holds() {
            break;
        }
        match app.vpn.revoke_key(&key.panel_key_id).await {
            Ok(()) => revoked.push(key.key_id),
            Err(e) => {
                tracing::warn!(event = "KEY_REVOKE_FAILED", key_id = key.key_id, error = %e, "panel refused");
                tally.failed += 1;
            }
        }
    }
    if !revoked.is_empty() {
        let count = revoked.len() as u32;
        match app.store.revoked_at_panel(revoked, app.clock.now()).await {
            Ok(()) => tally.done += count,
            // Revoked at the panel already: asking again next tick is harmless.
            Err(e) => tracing::warn!(error = %e, "panel revocations not recorded"),
        }
    }
    tally
}

/// Step 3: revokes at most `limit` orphaned keys of ours found at the panel.
pub async fn reconcile<A: Adapters>(app: &App<A>, lease: Lease<'_>, limit: u32) -> Tally {
    let mut tally = Tally::default();
    let listed = match app.vpn.list_keys().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "panel keys not listed");
            tally.failed += 1;
            return tally;
        }
    };
    let ours: Vec<(String, KeyLabel)> =
        listed.into_iter().filter_map(|id| KeyLabel::parse(&id).map(|label| (id, label))).collect();
    // The census is read after the listing: a key recorded in between is seen as recorded, and
    // a key only becomes an orphan by being superseded, which never reverts.
    let mut subscriptions: Vec<_> = ours.iter().map(|(_, label)| label.subscription()).collect();
    subscriptions.sort();
    subscriptions.dedup();
    let ids = ours.iter().map(|(id, _)| id.clone()).collect();
    let census = match app.store.key_census(ids, subscriptions).await {
        Ok(census) => census,
        Err(e) => {
            tracing::warn!(error = %e, "key census not read");
            tally.failed += 1;
            return tally;
        }
    };
    for (id, label) in ours {
        if tally.done >= limit || !lease.holds() {
            break;
        }
        let recorded = census.recorded.iter().find(|(r, _)| *r == id).map(|(_, active)| *active);
        let facts = census.facts.iter().find(|f| f.subscription == label.subscription());
        let orphan = match recorded {
            Some(active) => !active,
            None => is_orphan(label, facts),
        };
        if !orphan {
            tally.skipped += 1;
            continue;
        }
        match app.vpn.revoke_key(&id).await {
            Ok(()) => {
                tracing::info!(event = "ORPHAN_KEY_REVOKED", panel_key_id = id.as_str(), "not any subscription's key");
                tally.done += 1;
            }
            Err(e) => {
                tracing::warn!(event = "KEY_REVOKE_FAILED", panel_key_id = id.as_str(), error = %e, "panel refused");
                tally.failed += 1;
            }
        }
    }
    tally
}
