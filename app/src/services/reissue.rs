//! Reissuing a user's VPN key (the audit's `_REISSUE_LOCKS`, part 2.3). One reissue per user at
//! a time across all instances: a Redis lock whose fencing token is claimed in PostgreSQL as soon
//! as the lock is taken, so a holder whose lock expired (a paused or partitioned instance) cannot
//! install its key; it revokes the key it created instead. Panel calls carry a label derived from the token, so a retried call
//! never creates a second key.

use std::time::Duration;

use crate::domain::UserId;
use crate::ports::coordination::LockName;
use crate::ports::store::KeyError;
use crate::ports::vpn::PanelKey;
use crate::ports::{Clock, Coordination, Store, VpnProvider};

/// How long a reissue may hold the user's lock: one panel call (bounded by its own timeout of a
/// few seconds) and one store call (10 s at most). Past this, another reissue may start, and the
/// fencing token stops the late one.
pub const REISSUE_LOCK_TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReissueOutcome {
    /// The new key is installed; the old one (if any) was revoked at the panel.
    Reissued { key: PanelKey, fencing_token: u64 },
    /// Another reissue of this user's key is running.
    Busy,
    /// The user has no subscription to reissue a key for.
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

pub async fn reissue_key<C, S, V>(
    coordination: &C,
    store: &S,
    vpn: &V,
    clock: &dyn Clock,
    user: UserId,
    lock_ttl: Duration,
) -> Result<ReissueOutcome, ReissueError>
where
    C: Coordination,
    S: Store,
    V: VpnProvider,
{
    let Some(subscription) = store.subscription(user).await.map_err(|e| anyhow::anyhow!(e))? else {
        return Ok(ReissueOutcome::NoSubscription);
    };
    let guard = match coordination.acquire_lock(LockName::KeyReissue(user), lock_ttl).await {
        Ok(Some(guard)) => guard,
        Ok(None) => return Ok(ReissueOutcome::Busy),
        Err(_) => return Ok(ReissueOutcome::TryLater),
    };
    let outcome = reissue_under_lock(store, vpn, clock, user, subscription.id, guard.fencing_token).await;
    let _ = coordination.release_lock(&guard).await;
    outcome
}

/// The reissue itself, while the lock is held; the caller releases the lock however it ends.
async fn reissue_under_lock<S: Store, V: VpnProvider>(
    store: &S,
    vpn: &V,
    clock: &dyn Clock,
    user: UserId,
    subscription_id: i64,
    fencing_token: u64,
) -> Result<ReissueOutcome, ReissueError> {
    // Claim the token in the store before anything else: from now on, an older holder that is
    // still running (its lock expired under it) cannot install.
    match store.claim_key_fence(subscription_id, fencing_token, clock.now()).await {
        Ok(()) => {}
        Err(KeyError::StaleFencingToken { .. }) => return Ok(ReissueOutcome::Fenced),
        Err(KeyError::UnknownSubscription) => return Ok(ReissueOutcome::NoSubscription),
        Err(KeyError::Unexpected(e)) => return Err(ReissueError::Unexpected(e)),
    }
    let label = format!("reissue-{subscription_id}-{fencing_token}");
    let key = match vpn.create_key(subscription_id, &label).await {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(user_id = user.get(), error = %e, "panel refused a reissue");
            return Ok(ReissueOutcome::TryLater);
        }
    };
    match store.install_reissued_key(subscription_id, fencing_token, key.clone(), clock.now()).await {
        Ok(installed) => {
            if let Some(old) = installed.replaced_panel_key_id
                && let Err(e) = vpn.revoke_key(&old).await
            {
                tracing::warn!(user_id = user.get(), error = %e, "old key not revoked at the panel");
            }
            tracing::info!(user_id = user.get(), fencing_token, "KEY_REISSUED");
            Ok(ReissueOutcome::Reissued { key, fencing_token })
        }
        Err(KeyError::StaleFencingToken { current }) => {
            tracing::warn!(
                user_id = user.get(),
                token = fencing_token,
                current,
                "reissue fenced off; revoking its key"
            );
            let _ = vpn.revoke_key(&key.panel_key_id).await;
            Ok(ReissueOutcome::Fenced)
        }
        Err(KeyError::UnknownSubscription) => Ok(ReissueOutcome::NoSubscription),
        Err(KeyError::Unexpected(e)) => Err(ReissueError::Unexpected(e)),
    }
}
