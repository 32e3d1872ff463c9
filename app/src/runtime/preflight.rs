//! Start-up checks: the bot starts only when what it cannot work without answers. In prod that
//! includes Redis (audit part 0): a missing or unreachable Redis stops the start, naming the
//! variable to fix.

use std::sync::Arc;

use super::settings::{CoordinationSetting, Settings};
use super::wiring;
use crate::ports::{Clock, Ids};

/// Connects to PostgreSQL and pings Redis (when coordination is on Redis). Errors name the
/// variable and show the URL with its password redacted.
pub async fn preflight(settings: &Settings, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Result<(), String> {
    let store = wiring::live_store(settings, 1).await?;
    store.pool().close().await;
    if let CoordinationSetting::Redis(redis) = &settings.coordination {
        let coordination = wiring::live_redis(settings, redis, clock, ids)?;
        wiring::ping_redis(settings, redis, &coordination).await?;
    }
    Ok(())
}
