//! Reissuing a user's VPN key (the audit's `_REISSUE_LOCKS`, part 2.3). One reissue per user at
//! a time across all instances: a Redis lock whose fencing token is claimed in PostgreSQL as soon
//! as the lock is taken, so a holder whose lock expired (a paused or partitioned instance) cannot
//! install its key; it revokes the key it created instead. Panel calls carry a label derived from
//! the token ([`panel_label`]), so a retried call never creates a second key.

use std::time::Duration;

use crate::coord::policy::{Guarded, LockVerdict};
use crate::domain::{KeyLabel, SubscriptionId, UserId};
use crate::ports::coordination::LockName;
use crate::ports::store::KeyError;
use crate::ports::vpn::PanelKey;
use crate::ports::{Clock, Coordination, Store, VpnProvider};

/// How long a reissue may hold the user's lock: one panel call (bounded by its own timeout of a
/// few seconds) and one store call (16 s at most). Past this, another reissue may start, and the
/// fencing token stops the late one.
pub const REISSUE_LOCK_TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReissueOutcome {
    /// The new key is installed; the old one (if any) was revoked at the panel.
    Reissued { key: PanelKey, fencing_token: u64 },
    /// This request's reissue was already made (the request came again: its replies were lost):
    /// `key` is the subscription's key now (the one it installed, or a later one).
    AlreadyReissued { key: PanelKey },
    /// Another reissue of this user's key is running.
    Busy,
    /// The user has no subscription running to reissue a key for.
    NoSubscription,
    /// This reissue's lock expired before it could install; a newer one won. Its key was revoked.
    Fenced,
    /// Redis or the panel is unavailable: nothing changed, try again later.
    TryLater,
}

#[derive(Debug, thiserror::Error)]
pub enum ReissueError {
    /// The store did not answer: the key may or may not be installed. Nothing is revoked (it
    /// might be the active key); the next reissue replaces whatever is there.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The idempotency label of the key a reissue creates at the panel: one per subscription and
/// fencing token, so a retried create returns the same key, and a checker can tell whose key it
/// is.
pub fn panel_label(subscription: SubscriptionId, fencing_token: u64) -> String {
    KeyLabel::Reissue { subscription, token: fencing_token }.to_string()
}

/// Reissues `user`'s key. `request` names what asked for it (the bot's update or step key): a
/// request that comes again after its reissue installed a key is answered with that key (the
/// first try may have been cut off before it could say so or release its lock).
pub async fn reissue_key<C, S, V>(
    coordination: &Guarded<C>,
    store: &S,
    vpn: &V,
    clock: &dyn Clock,
    user: UserId,
    lock_ttl: Duration,
    request: Option<&str>,
) -> Result<ReissueOutcome, ReissueError>
where
    C: Coordination,
    S: Store,
    V: VpnProvider,
{
    // An ended subscription has no key to reissue (the expiry cleanup takes keys back; a new
    // one comes with the next purchase).
    let subscription = store.subscription(user).await.map_err(|e| anyhow::anyhow!(e))?;
    let Some(subscription) = subscription.filter(|s| s.expires_at > clock.now()) else {
        return Ok(ReissueOutcome::NoSubscription);
    };
    if let Some(request) = request
        && let Some(key) = store.reissued_for(subscription.id, request).await.map_err(|e| anyhow::anyhow!(e))?
    {
        tracing::info!(user_id = user.get(), "the reissue this request asked for was already made");
        return Ok(ReissueOutcome::AlreadyReissued { key });
    }
    let guard = match coordination.acquire_lock(LockName::KeyReissue(user), lock_ttl).await {
        LockVerdict::Held(guard) => guard,
        LockVerdict::Busy => return Ok(ReissueOutcome::Busy),
        LockVerdict::TryLater => return Ok(ReissueOutcome::TryLater),
    };
    let outcome = reissue_under_lock(store, vpn, clock, user, subscription.id, guard.fencing_token, request).await;
    coordination.release_lock(&guard).await;
    outcome
}

/// The reissue itself, while the lock is held; the caller releases the lock however it ends.
async fn reissue_under_lock<S: Store, V: VpnProvider>(
    store: &S,
    vpn: &V,
    clock: &dyn Clock,
    user: UserId,
    subscription: SubscriptionId,
    fencing_token: u64,
    request: Option<&str>,
) -> Result<ReissueOutcome, ReissueError> {
    // Claim the token in the store before anything else: from now on, an older holder that is
    // still running (its lock expired under it) cannot install.
    match store.claim_key_fence(subscription, fencing_token, clock.now()).await {
        Ok(()) => {}
        Err(KeyError::StaleFencingToken { current }) => {
            assert!(current >= fencing_token, "the store refused a token newer than what it holds");
            return Ok(ReissueOutcome::Fenced);
        }
        Err(KeyError::UnknownSubscription) => return Ok(ReissueOutcome::NoSubscription),
        Err(KeyError::Unexpected(e)) => return Err(ReissueError::Unexpected(e)),
    }
    let key = match vpn.create_key(subscription, &panel_label(subscription, fencing_token)).await {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(user_id = user.get(), error = %e, "panel refused a reissue");
            return Ok(ReissueOutcome::TryLater);
        }
    };
    match store.install_reissued_key(subscription, fencing_token, key.clone(), request, clock.now()).await {
        Ok(installed) => {
            if let Some(old) = installed.replaced_panel_key_id
                && let Err(e) = vpn.revoke_key(&old).await
            {
                tracing::warn!(user_id = user.get(), error = %e, "old key not revoked at the panel");
            }
            tracing::info!(event = "KEY_REISSUED", user_id = user.get(), fencing_token);
            Ok(ReissueOutcome::Reissued { key, fencing_token })
        }
        Err(KeyError::StaleFencingToken { current }) => {
            tracing::warn!(
                user_id = user.get(),
                token = fencing_token,
                current,
                "reissue fenced off; revoking its key"
            );
            if let Err(e) = vpn.revoke_key(&key.panel_key_id).await {
                tracing::warn!(user_id = user.get(), error = %e, "fenced key not revoked; the reconciler will");
            }
            Ok(ReissueOutcome::Fenced)
        }
        Err(KeyError::UnknownSubscription) => Ok(ReissueOutcome::NoSubscription),
        Err(KeyError::Unexpected(e)) => Err(ReissueError::Unexpected(e)),
    }
}
