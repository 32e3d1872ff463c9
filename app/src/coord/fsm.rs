//! Conversation state as stored in the FSM record: the dialogue's state enum in a versioned
//! JSON envelope. A record that no longer decodes (an old format after a deploy, or corruption)
//! is reported as `Reset`: the caller sends the user to the main menu with a message, and the
//! next commit overwrites it. It never locks the user out.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::limits::FSM_DATA_MAX_BYTES;
use crate::ports::coordination::{CoordinationError, FsmRecord};

/// The envelope's format. Bump it when a state enum changes incompatibly: old records then
/// decode as `Reset` instead of as a wrong state.
pub const FSM_FORMAT: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope<T> {
    f: u32,
    s: T,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Loaded<T> {
    /// No conversation: start from the main menu.
    Fresh,
    Resumed(T),
    /// A record was there but could not be read: main menu, with an apology.
    Reset,
}

pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, CoordinationError> {
    let bytes = serde_json::to_vec(&Envelope { f: FSM_FORMAT, s: state })
        .map_err(|e| CoordinationError::Invalid(format!("state does not encode: {e}")))?;
    check_size(&bytes)?;
    Ok(bytes)
}

pub fn check_size(bytes: &[u8]) -> Result<(), CoordinationError> {
    if bytes.len() > FSM_DATA_MAX_BYTES {
        return Err(CoordinationError::Invalid(format!("state of {} bytes is over {FSM_DATA_MAX_BYTES}", bytes.len())));
    }
    Ok(())
}

pub fn decode<T: DeserializeOwned>(record: &FsmRecord) -> Loaded<T> {
    let Some(data) = &record.data else {
        return Loaded::Fresh;
    };
    match serde_json::from_slice::<Envelope<T>>(data) {
        Ok(envelope) if envelope.f == FSM_FORMAT => Loaded::Resumed(envelope.s),
        _ => Loaded::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Eq)]
    enum Withdraw {
        Amount,
        Confirm { amount: i64 },
    }

    fn record(data: &[u8]) -> FsmRecord {
        FsmRecord { version: 3, data: Some(data.to_vec()) }
    }

    #[test]
    fn round_trips_and_resets_what_it_cannot_read() {
        let bytes = encode(&Withdraw::Confirm { amount: 500 }).unwrap();
        assert_eq!(decode::<Withdraw>(&record(&bytes)), Loaded::Resumed(Withdraw::Confirm { amount: 500 }));
        assert_eq!(decode::<Withdraw>(&FsmRecord::default()), Loaded::Fresh);
        assert_eq!(decode::<Withdraw>(&record(b"\xff\x00garbage")), Loaded::Reset);
        assert_eq!(decode::<Withdraw>(&record(br#"{"f":0,"s":"Amount"}"#)), Loaded::Reset);
        assert_eq!(decode::<Withdraw>(&record(br#"{"f":1,"s":"Renamed"}"#)), Loaded::Reset);
    }

    #[test]
    fn refuses_oversized_state() {
        assert!(matches!(encode(&"x".repeat(FSM_DATA_MAX_BYTES)), Err(CoordinationError::Invalid(_))));
    }
}
