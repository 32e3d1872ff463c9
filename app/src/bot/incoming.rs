//! What the bot reacts to, in its own small type, converted in this one place from the Bot API's
//! `Update` (teloxide's types, parsed from Telegram's JSON). The sender is always the update's
//! `from`: nothing a user types or puts in callback data can name another user.

use teloxide_core::types::{MediaKind, MessageKind, Update as TgUpdate, UpdateKind};

use crate::domain::{Language, UserId, Username};

/// One update the bot handles: who sent it, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// Telegram's `update_id`: the dedupe key and the root of every idempotency key.
    pub id: i64,
    pub user: UserId,
    /// The sender's first name as Telegram shows it (for a greeting; at most 64 characters).
    pub name: String,
    pub username: Option<Username>,
    /// Telegram's `language_code` of the sender, for a user the bot does not know yet.
    pub language: Option<Language>,
    pub incoming: Incoming,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// `/name args` (a `@botname` suffix dropped); `/start`'s args are its deep-link payload.
    Command {
        command: Command,
        args: String,
    },
    Text(String),
    /// A button pressed: its data (untrusted) and the message it was on.
    Callback {
        query_id: String,
        data: String,
        message_id: Option<i32>,
    },
    /// A message of another kind (sticker, photo, voice, ...), where text may be expected.
    Unsupported(Kind),
    /// Telegram asks whether an invoice may still be paid (answer within 10 s).
    PreCheckout {
        query_id: String,
        payload: String,
        currency: String,
        total: u32,
    },
    /// A payment went through.
    Paid(Payment),
    /// The user blocked the bot (`true`) or came back (`false`): Telegram's `my_chat_member`.
    Membership {
        blocked: bool,
    },
}

impl Incoming {
    /// Never dropped by the flood limit: a payment or a pre-checkout query (money is moving),
    /// and a membership change (whether the user can be written to must not be lost).
    pub fn is_exempt(&self) -> bool {
        matches!(self, Incoming::PreCheckout { .. } | Incoming::Paid(_) | Incoming::Membership { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub payload: String,
    pub currency: String,
    pub total: u32,
    /// Unique per payment: what the store dedupes on.
    pub charge_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Menu,
    Cancel,
    Help,
    Admin,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sticker,
    Photo,
    Voice,
    Video,
    Document,
    Other,
}

/// The longest text the bot looks at: Telegram's own limit for a message. Anything longer is
/// cut here, so no parser ever sees more.
pub const TEXT_CHARS_MAX: usize = 4_096;

impl Command {
    fn parse(name: &str) -> Command {
        match name.to_ascii_lowercase().as_str() {
            "start" => Command::Start,
            "menu" => Command::Menu,
            "cancel" => Command::Cancel,
            "help" => Command::Help,
            "admin" => Command::Admin,
            _ => Command::Unknown,
        }
    }
}

/// Splits `/name@bot args` into the command and its arguments.
fn command(text: &str) -> Option<Incoming> {
    let rest = text.strip_prefix('/')?;
    let (head, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = head.split('@').next().unwrap_or(head);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some(Incoming::Command { command: Command::parse(name), args: args.trim().to_owned() })
}

fn text(text: &str) -> Incoming {
    let text: String = text.chars().take(TEXT_CHARS_MAX).collect();
    command(&text).unwrap_or(Incoming::Text(text))
}

fn kind_of(kind: &MessageKind) -> Kind {
    let MessageKind::Common(common) = kind else { return Kind::Other };
    match &common.media_kind {
        MediaKind::Sticker(_) => Kind::Sticker,
        MediaKind::Photo(_) => Kind::Photo,
        MediaKind::Voice(_) => Kind::Voice,
        MediaKind::Video(_) | MediaKind::VideoNote(_) | MediaKind::Animation(_) => Kind::Video,
        MediaKind::Document(_) => Kind::Document,
        _ => Kind::Other,
    }
}

/// The sender as the bot knows them; `None` for a bot or an id that is not a user id.
fn sender(user: &teloxide_core::types::User) -> Option<Sender> {
    if user.is_bot {
        return None;
    }
    Some(Sender {
        id: UserId::new(i64::try_from(user.id.0).ok()?)?,
        name: user.first_name.chars().take(64).collect(),
        username: user.username.as_deref().and_then(Username::parse),
        language: user.language_code.as_deref().map(Language::from_code),
    })
}

struct Sender {
    id: UserId,
    name: String,
    username: Option<Username>,
    language: Option<Language>,
}

/// The bot's view of a Bot API update; `None` for what it does not handle (group chats,
/// channel posts, edits, bots, and kinds it never asked for).
pub fn from_telegram(update: &TgUpdate) -> Option<Update> {
    let (from, incoming) = match &update.kind {
        UpdateKind::Message(message) => {
            if !message.chat.is_private() {
                return None;
            }
            let incoming = if let Some(paid) = message.successful_payment() {
                Incoming::Paid(Payment {
                    payload: paid.invoice_payload.clone(),
                    currency: paid.currency.clone(),
                    total: paid.total_amount,
                    charge_id: paid.telegram_payment_charge_id.0.clone(),
                })
            } else if let Some(t) = message.text() {
                text(t)
            } else {
                Incoming::Unsupported(kind_of(&message.kind))
            };
            (message.from.as_ref()?, incoming)
        }
        UpdateKind::CallbackQuery(query) => {
            let incoming = Incoming::Callback {
                query_id: query.id.0.clone(),
                data: query.data.clone().unwrap_or_default(),
                message_id: query.message.as_ref().map(|m| m.id().0),
            };
            (&query.from, incoming)
        }
        UpdateKind::MyChatMember(member) => {
            if !member.chat.is_private() {
                return None;
            }
            use teloxide_core::types::ChatMemberKind;
            let blocked = match member.new_chat_member.kind {
                ChatMemberKind::Banned(_) | ChatMemberKind::Left => true,
                ChatMemberKind::Member(_) => false,
                _ => return None,
            };
            (&member.from, Incoming::Membership { blocked })
        }
        UpdateKind::PreCheckoutQuery(query) => {
            let incoming = Incoming::PreCheckout {
                query_id: query.id.0.clone(),
                payload: query.invoice_payload.clone(),
                currency: query.currency.clone(),
                total: query.total_amount,
            };
            (&query.from, incoming)
        }
        _ => return None,
    };
    let sender = sender(from)?;
    Some(Update {
        id: i64::from(update.id.0),
        user: sender.id,
        name: sender.name,
        username: sender.username,
        language: sender.language,
        incoming,
    })
}

/// Parses the JSON of one update as Telegram sends it (webhook body, `getUpdates` item).
pub fn parse(json: &[u8]) -> Result<Option<Update>, serde_json::Error> {
    let update: TgUpdate = serde_json::from_slice(json)?;
    Ok(from_telegram(&update))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        format!(
            r#"{{"update_id":10,"message":{{"message_id":5,"date":1767225600,
            "chat":{{"id":42,"type":"private","first_name":"A"}},
            "from":{{"id":42,"is_bot":false,"first_name":"A","username":"alice","language_code":"en-GB"}},
            "text":{}}}}}"#,
            serde_json::to_string(text).unwrap()
        )
    }

    proptest::proptest! {
        /// Whatever a message says, it becomes a command only when it is `/name` (letters,
        /// digits, `_`; a `@bot` suffix dropped), and the command keeps its arguments trimmed.
        #[test]
        fn commands_are_read_only_from_their_own_shape(text in "/?[a-zA-Z_@0-9 ]{0,12}[^\\x00]{0,12}") {
            match command(&text) {
                Some(Incoming::Command { command: parsed, args }) => {
                    let rest = text.strip_prefix('/').unwrap();
                    let (head, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    let name = head.split('@').next().unwrap();
                    proptest::prop_assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    proptest::prop_assert_eq!(parsed, Command::parse(name));
                    proptest::prop_assert_eq!(args, tail.trim());
                }
                Some(other) => proptest::prop_assert!(false, "not a command: {:?}", other),
                None => {
                    let looks_like_one = text.strip_prefix('/').is_some_and(|rest| {
                        let head = rest.split(char::is_whitespace).next().unwrap_or("");
                        let name = head.split('@').next().unwrap_or("");
                        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                    proptest::prop_assert!(!looks_like_one, "refused {:?}", text);
                }
            }
        }
    }

    #[test]
    fn telegram_json_becomes_our_update() {
        let u = parse(message("/start ref_7").as_bytes()).unwrap().unwrap();
        assert_eq!((u.id, u.user.get(), u.language), (10, 42, Some(Language::En)));
        assert_eq!(u.username.unwrap().as_str(), "alice");
        assert_eq!(u.incoming, Incoming::Command { command: Command::Start, args: "ref_7".into() });
        let u = parse(message("/Cancel@atlas_bot").as_bytes()).unwrap().unwrap();
        assert_eq!(u.incoming, Incoming::Command { command: Command::Cancel, args: String::new() });
        let u = parse(message("150.50").as_bytes()).unwrap().unwrap();
        assert_eq!(u.incoming, Incoming::Text("150.50".into()));
        let long = "x".repeat(10_000);
        let u = parse(message(&long).as_bytes()).unwrap().unwrap();
        assert_eq!(u.incoming, Incoming::Text("x".repeat(TEXT_CHARS_MAX)));
    }

    #[test]
    fn the_sender_comes_from_the_update_never_from_data() {
        let json = r#"{"update_id":11,"callback_query":{"id":"q1","chat_instance":"c",
            "from":{"id":42,"is_bot":false,"first_name":"A"},"data":"a:u:cr:999"}}"#;
        let u = parse(json.as_bytes()).unwrap().unwrap();
        assert_eq!(u.user.get(), 42);
        assert!(matches!(u.incoming, Incoming::Callback { ref data, .. } if data == "a:u:cr:999"));
    }

    #[test]
    fn group_chats_and_bots_are_not_handled() {
        let group = message("/start").replace(r#""type":"private""#, r#""type":"group","title":"G""#);
        assert_eq!(parse(group.as_bytes()).unwrap(), None);
        let bot = message("hi").replace(r#""is_bot":false"#, r#""is_bot":true"#);
        assert_eq!(parse(bot.as_bytes()).unwrap(), None);
    }
}
