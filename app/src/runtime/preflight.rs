//! Start-up checks: the bot starts only when what it cannot work without answers. In prod that
//! includes Redis (audit part 0): a missing or unreachable Redis stops the start, naming the
//! variable to fix.

use std::sync::Arc;

use super::config::{CoordinationMode, Settings};
use crate::coord::AnyCoordination;
use crate::ports::{Clock, Ids};
use crate::store::PgStore;

/// Connects to PostgreSQL and pings Redis (when coordination is on Redis). Errors name the
/// variable and show the URL with its password redacted.
pub async fn preflight(settings: &Settings, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Result<(), String> {
    let prefix = settings.app_env.prefix();
    let store = PgStore::connect(settings.database_url.expose(), 1)
        .await
        .map_err(|e| format!("cannot reach PostgreSQL at {} ({prefix}_DATABASE_URL): {e:#}", settings.database_url))?;
    store.pool().close().await;
    if settings.coordination == CoordinationMode::Redis {
        let shown = settings.redis_url.as_ref().map_or_else(|| "<not set>".to_owned(), ToString::to_string);
        let AnyCoordination::Redis(redis) = AnyCoordination::from_settings(settings, clock, ids)? else {
            return Err(format!("{prefix}_COORDINATION is redis but no Redis coordination was built"));
        };
        redis.ping().await.map_err(|e| format!("cannot reach Redis at {shown} ({prefix}_REDIS_URL): {e}"))?;
    }
    Ok(())
}
