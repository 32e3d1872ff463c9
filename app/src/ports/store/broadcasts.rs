//! Sending an admin's broadcast (queued by `AdminTools::create_broadcast`): the sender walks the
//! users by id from where it stopped, and claims each delivery before it sends, so a crash
//! resumes without repeating a message and two senders never send one recipient the same
//! broadcast twice.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{BroadcastId, Language, UserId};

/// The oldest broadcast not yet sent to everyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastJob {
    pub id: BroadcastId,
    /// As the admin wrote it (plain text: the sender escapes it for Telegram's HTML).
    pub text: String,
    /// Every user up to this id has been handled.
    pub after_user: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub user: UserId,
    pub language: Language,
}

pub trait Broadcasts: Send + Sync + 'static {
    fn open_broadcast(&self) -> impl Future<Output = Result<Option<BroadcastJob>, StoreError>> + Send;

    /// Users after `after_user` by id who can be written to (not banned, not blocked), at most
    /// `limit`.
    fn recipients(
        &self,
        after_user: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Recipient>, StoreError>> + Send;

    /// Claims one delivery; `false` when it was claimed before (by any sender).
    fn claim_delivery(
        &self,
        broadcast: BroadcastId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives a claim back: the message was certainly not sent (Telegram said to slow down).
    fn release_delivery(
        &self,
        broadcast: BroadcastId,
        user: UserId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records progress: everyone up to `through_user` is handled, `sent` more were sent;
    /// `done` closes the broadcast. Progress never moves back.
    fn advance_broadcast(
        &self,
        broadcast: BroadcastId,
        through_user: i64,
        sent: u32,
        done: bool,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
