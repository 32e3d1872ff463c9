//! `/start` (with a referral deep link), the main menu and the screens that are one message:
//! referral program, support, language.

use super::action::{Action, Nav};
use super::incoming::{Command, Incoming};
use super::state::Record;
use super::text::Msg;
use super::{Keys, Next, Turn, account, purchase, subscription, withdraw};
use crate::domain::{Language, UserId};
use crate::ports::store::Accounts;
use crate::runtime::wiring::Adapters;

/// The deep-link payload of a referral: `ref_<user id>`.
const REFERRAL_PREFIX: &str = "ref_";

/// The referrer a `/start` payload names, if it is well formed. The store keeps it only for a
/// new user, only if it is a known user, and never the user themself.
pub fn referrer(payload: &str) -> Option<UserId> {
    let id = payload.trim().strip_prefix(REFERRAL_PREFIX)?;
    if id.is_empty() || id.len() > 18 || !id.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    UserId::new(id.parse().ok()?)
}

/// The main menu's buttons; admins also get the admin tools.
pub fn keys(admin: bool) -> Keys {
    let nav = |msg: Msg, nav: Nav| (msg, Action::Nav(nav));
    let mut keys = vec![
        vec![nav(Msg::BtnBuy, Nav::Buy), nav(Msg::BtnSubscription, Nav::Subscription)],
        vec![nav(Msg::BtnBalance, Nav::Balance), nav(Msg::BtnTopUp, Nav::TopUp)],
        vec![nav(Msg::BtnTrial, Nav::Trial), nav(Msg::BtnPromo, Nav::Promo)],
        vec![nav(Msg::BtnReferral, Nav::Referral), nav(Msg::BtnWithdraw, Nav::Withdraw)],
        vec![nav(Msg::BtnSupport, Nav::Support), nav(Msg::BtnLanguage, Nav::Language)],
    ];
    if admin {
        keys.push(vec![(Msg::BtnAdmin, Action::Admin(super::action::AdminNav::Menu))]);
    }
    keys
}

/// Registers the sender (or brings their username up to date) and starts their record. A
/// `/start` payload's referrer is passed on: this is the only place users are registered.
pub async fn register<A: Adapters>(turn: &mut Turn<'_, A>) -> Record {
    let update = turn.update;
    let referrer = match &update.incoming {
        Incoming::Command { command: Command::Start, args } => referrer(args),
        _ => None,
    };
    let language = update.language.unwrap_or_default();
    turn.registered = true;
    match turn.app.store.register_user(update.user, language, referrer, update.username.clone(), turn.now()).await {
        Ok(user) => Record { lang: user.language, conversation: None },
        Err(e) => {
            tracing::warn!(error = %e, "user not registered; answering in their Telegram language");
            Record { lang: language, conversation: None }
        }
    }
}

/// `/start`: always works, whatever the conversation; ends it.
pub async fn start<A: Adapters>(turn: &mut Turn<'_, A>, _payload: &str) -> Next {
    if !turn.registered {
        register(turn).await;
    }
    let name = if turn.update.name.trim().is_empty() { "🙂".to_owned() } else { turn.update.name.clone() };
    turn.say(Msg::Welcome { name });
    turn.menu();
    Next::Done
}

/// A menu button: the screen it names. Pressing one in the middle of a conversation leaves it.
pub async fn nav<A: Adapters>(turn: &mut Turn<'_, A>, record: &mut Record, nav: Nav) -> Next {
    match nav {
        Nav::Menu => {
            turn.menu();
            Next::Done
        }
        Nav::Buy => purchase::start(turn, None).await,
        Nav::Promo => purchase::promo_start(turn),
        Nav::Subscription => subscription::show(turn).await,
        Nav::Trial => subscription::trial(turn).await,
        Nav::ToggleAutoRenew => subscription::toggle_auto_renew(turn).await,
        Nav::ReissueKey => subscription::reissue(turn).await,
        Nav::Balance => account::balance(turn).await,
        Nav::TopUp => account::top_up_start(turn),
        Nav::Withdraw => withdraw::start(turn).await,
        Nav::Referral => referral(turn).await,
        Nav::Support => {
            let contact = turn.app.rules.support_contact.clone();
            turn.say_keys(Msg::Support { contact }, back());
            Next::Done
        }
        Nav::Language => {
            let keys = vec![vec![
                (Msg::BtnLanguageRu, Action::Nav(Nav::SetLanguage(Language::Ru))),
                (Msg::BtnLanguageEn, Action::Nav(Nav::SetLanguage(Language::En))),
            ]];
            turn.say_keys(Msg::LanguageChoose, keys);
            Next::Done
        }
        Nav::SetLanguage(language) => {
            if let Err(e) = turn.app.store.set_language(turn.user(), language).await {
                tracing::warn!(error = %e, "language not stored; kept in the conversation record");
            }
            turn.lang = language;
            record.lang = language;
            turn.say(Msg::LanguageSet);
            turn.menu();
            Next::Done
        }
    }
}

/// A single "back to the menu" button.
pub fn back() -> Keys {
    vec![vec![(Msg::BtnMenu, Action::Nav(Nav::Menu))]]
}

async fn referral<A: Adapters>(turn: &mut Turn<'_, A>) -> Next {
    let user = turn.user();
    let stats = match turn.app.store.referral_stats(user).await {
        Ok(stats) => stats,
        Err(e) => {
            turn.failed("referral_stats", &e);
            return Next::Done;
        }
    };
    let payload = format!("{REFERRAL_PREFIX}{user}");
    let link = match &turn.app.rules.bot_username {
        Some(bot) => format!("https://t.me/{bot}?start={payload}"),
        None => format!("/start {payload}"),
    };
    let percent = turn.app.rules.shop.referral_percent;
    turn.say_keys(Msg::Referral { link, invited: stats.invited, earned: stats.earned, percent }, back());
    Next::Done
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn referral_payloads() {
        assert_eq!(referrer("ref_42"), UserId::new(42));
        for bad in ["", "ref_", "ref_0", "ref_-1", "ref_4x", "42", "ref_99999999999999999999", "REF_42"] {
            assert_eq!(referrer(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn referral_parsing_never_panics(payload in "\\PC{0,80}") {
            let _ = referrer(&payload);
        }
    }
}
