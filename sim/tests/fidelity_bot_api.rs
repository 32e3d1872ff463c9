//! The fake Bot API held to teloxide's types: every method the bot calls, made through the bot's
//! own client (`BotApi::call`, which reads each answer as the method's teloxide output type), on
//! the fake over simulated HTTP. An answer teloxide cannot read is a fidelity bug; an answer it
//! reads must also say what the request asked for. Then the bot's messenger makes its own
//! requests (its payloads, its handling of 429s and refusals) against the same fake.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use atlas::net::client::HttpClient;
use atlas::telegram::api::{BotApi, TelegramError};
use atlas_sim::bot::hosts::{self, Fakes, INTERNET_HOST, TELEGRAM_PORT};
use atlas_sim::bot_api::{Redelivery, updates};
use atlas_sim::net::SimNetwork;
use atlas_sim::world::{self, Network};
use secrecy::SecretString;
use teloxide_core::payloads::{
    AnswerCallbackQuery, AnswerPreCheckoutQuery, GetMe, GetUpdates, GetWebhookInfo, RefundStarPayment, SendInvoice,
    SendMessage, SetWebhook,
};
use teloxide_core::types::{
    CallbackQueryId, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, LabeledPrice, PreCheckoutQueryId, Recipient,
    TelegramTransactionId, UpdateKind, UserId as TgUserId,
};

const SHOPPER: i64 = 501;

#[test]
fn every_answer_the_bot_reads_is_a_teloxide_type() {
    let fakes = Fakes::new(Redelivery::default());
    let mut sim = world::builder(1, Duration::from_secs(60), Duration::from_millis(1), Network::default()).build();
    hosts::add_fakes(&mut sim, &fakes);
    let checked = Rc::new(RefCell::new(Vec::<&str>::new()));
    let (api, done) = (fakes.telegram.clone(), checked.clone());
    sim.client("atlas-0", async move {
        let base = url::Url::parse(&format!("http://{INTERNET_HOST}:{TELEGRAM_PORT}")).unwrap();
        let bot = BotApi::new(HttpClient::new(SimNetwork, None)?, base, SecretString::from(hosts::TOKEN.to_owned()));
        let ok = |method: &'static str| done.borrow_mut().push(method);

        let me = bot.call(&GetMe::new()).await.expect("getMe");
        assert!(me.user.is_bot && me.username.is_some());
        ok("getMe");

        // Polling: no webhook, then the updates a user sent, in order.
        let info = bot.call(&GetWebhookInfo::new()).await.expect("getWebhookInfo");
        assert!(info.url.is_none(), "no webhook set yet: {info:?}");
        ok("getWebhookInfo");
        api.push(updates::text(SHOPPER, "en", "/start"));
        api.push(updates::callback(SHOPPER, "en", "q1", "buy"));
        api.push(updates::pre_checkout(SHOPPER, "en", "pc1", "p:7", 133));
        api.push(updates::paid(SHOPPER, "en", "p:7", 133, "charge-1"));
        let mut fetch = GetUpdates::new();
        fetch.timeout = Some(0);
        let got = bot.call(&fetch).await.expect("getUpdates");
        let kinds: Vec<&str> = got
            .iter()
            .map(|u| match &u.kind {
                UpdateKind::Message(m) if m.successful_payment().is_some() => "payment",
                UpdateKind::Message(m) => {
                    assert_eq!(m.chat.id, ChatId(SHOPPER));
                    "message"
                }
                UpdateKind::CallbackQuery(q) => {
                    assert_eq!(q.data.as_deref(), Some("buy"));
                    "callback"
                }
                UpdateKind::PreCheckoutQuery(q) => {
                    assert_eq!((q.total_amount, q.invoice_payload.as_str()), (133, "p:7"));
                    "pre_checkout"
                }
                other => panic!("an update the bot does not expect: {other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["message", "callback", "pre_checkout", "payment"]);
        ok("getUpdates");

        let hook = url::Url::parse("http://balancer:8080/telegram/hook").unwrap();
        let mut set = SetWebhook::new(hook.clone());
        set.secret_token = Some("s3cret".into());
        bot.call(&set).await.expect("setWebhook");
        let info = bot.call(&GetWebhookInfo::new()).await.expect("getWebhookInfo after setWebhook");
        assert_eq!(info.url.as_ref(), Some(&hook));
        ok("setWebhook");

        let mut send = SendMessage::new(Recipient::Id(ChatId(SHOPPER)), "<b>Main menu</b>");
        send.reply_markup =
            Some(InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Buy VPN", "buy")]]).into());
        let sent = bot.call(&send).await.expect("sendMessage");
        assert_eq!((sent.chat.id, sent.text()), (ChatId(SHOPPER), Some("<b>Main menu</b>")));
        ok("sendMessage");

        bot.call(&AnswerCallbackQuery::new(CallbackQueryId("q1".into()))).await.expect("answerCallbackQuery");
        ok("answerCallbackQuery");
        let answer = AnswerPreCheckoutQuery::new(PreCheckoutQueryId("pc1".into()), true);
        bot.call(&answer).await.expect("answerPreCheckoutQuery");
        ok("answerPreCheckoutQuery");

        let invoice = SendInvoice::new(
            Recipient::Id(ChatId(SHOPPER)),
            "Atlas Secure VPN",
            "VPN subscription for 30 days",
            "p:8",
            "XTR",
            [LabeledPrice::new("Atlas Secure VPN", 133)],
        );
        let message = bot.call(&invoice).await.expect("sendInvoice");
        assert_eq!(message.chat.id, ChatId(SHOPPER));
        assert!(message.invoice().is_some(), "the invoice message carries the invoice: {message:?}");
        ok("sendInvoice");

        let refund = RefundStarPayment::new(TgUserId(SHOPPER as u64), TelegramTransactionId("charge-1".into()));
        bot.call(&refund).await.expect("refundStarPayment");
        ok("refundStarPayment");

        // A refusal comes back as Telegram words it, and the client reads it as one.
        api.block(SHOPPER);
        match bot.call(&SendMessage::new(Recipient::Id(ChatId(SHOPPER)), "hello")).await {
            Err(TelegramError::Unreachable(description)) => {
                assert!(description.contains("blocked"), "{description}");
            }
            other => panic!("a blocked user's chat refuses messages: {other:?}"),
        }
        ok("an error answer");
        Ok(())
    });
    sim.run().expect("the simulation runs");
    assert_eq!(
        *checked.borrow(),
        [
            "getMe",
            "getWebhookInfo",
            "getUpdates",
            "setWebhook",
            "sendMessage",
            "answerCallbackQuery",
            "answerPreCheckoutQuery",
            "sendInvoice",
            "refundStarPayment",
            "an error answer"
        ]
    );
}

/// What the bot's messenger (`TelegramMessenger`) itself sends, with the payloads it builds,
/// answered by the fake: every answer reads back as the messenger expects, the fake saw what
/// the messenger meant, and Telegram's refusals (429 with `retry_after`, a blocked chat, a
/// second refund) come back as the messenger's own errors.
#[test]
fn the_messengers_own_requests_are_answered_as_telegram_answers_them() {
    use atlas::domain::UserId;
    use atlas::ports::messenger::{Button, Messenger as _, MessengerError, OutgoingMessage, StarsInvoice};
    use atlas::telegram::messenger::TelegramMessenger;
    use atlas_sim::bot_api::Fault;

    let fakes = Fakes::new(Redelivery::default());
    let mut sim = world::builder(1, Duration::from_secs(60), Duration::from_millis(1), Network::default()).build();
    hosts::add_fakes(&mut sim, &fakes);
    let api = fakes.telegram.clone();
    let seen = fakes.telegram.clone();
    sim.client("atlas-0", async move {
        let base = url::Url::parse(&format!("http://{INTERNET_HOST}:{TELEGRAM_PORT}")).unwrap();
        let bot = BotApi::new(HttpClient::new(SimNetwork, None)?, base, SecretString::from(hosts::TOKEN.to_owned()));
        let messenger = TelegramMessenger::unlimited(
            std::sync::Arc::new(bot),
            std::sync::Arc::new(atlas_sim::clock::SimClock::default()),
        );
        let shopper = UserId::new(SHOPPER).unwrap();
        // What Telegram delivered: the queries and the payment the messenger answers.
        api.push(updates::callback(SHOPPER, "en", "q1", "buy"));
        api.push(updates::callback(SHOPPER, "en", "q2", "balance"));
        api.push(updates::pre_checkout(SHOPPER, "en", "pc1", "p:8", 133));
        api.push(updates::pre_checkout(SHOPPER, "en", "pc2", "p:9", 133));
        api.push(updates::paid(SHOPPER, "en", "p:8", 133, "charge-1"));

        let menu = OutgoingMessage {
            text: "<b>Main menu</b> &amp; more".into(),
            keyboard: vec![
                vec![Button { label: "Buy VPN".into(), callback_data: "buy".into() }],
                vec![
                    Button { label: "Balance".into(), callback_data: "balance".into() },
                    Button { label: "Help".into(), callback_data: "help".into() },
                ],
            ],
        };
        let first = messenger.send(shopper, menu).await.expect("a message");
        let second = messenger.send(shopper, OutgoingMessage { text: "plain".into(), keyboard: vec![] }).await.unwrap();
        assert!(second > first, "message ids grow per chat: {first}, {second}");
        messenger.answer_callback("q1", Some("Done")).await.expect("a callback answer");
        messenger.answer_callback("q2", None).await.expect("a silent callback answer");
        let invoice = StarsInvoice {
            title: "Atlas Secure VPN".into(),
            description: "VPN subscription for 30 days".into(),
            payload: "p:8".into(),
            stars: 133,
        };
        let invoice_id = messenger.send_invoice(shopper, invoice).await.expect("an invoice");
        assert!(invoice_id > second);
        messenger.answer_pre_checkout("pc1", None).await.expect("a pre-checkout yes");
        messenger.answer_pre_checkout("pc2", Some("The price changed")).await.expect("a pre-checkout no");
        // A refund whose first try meets a server error is repeated.
        api.inject("refundStarPayment", Fault::ServerError);
        messenger.refund_stars(shopper, "charge-1").await.expect("a refund");
        // A second refund of one charge: Telegram refuses it, the messenger counts it as done.
        messenger.refund_stars(shopper, "charge-1").await.expect("a refund made before is a refund");
        // What was never delivered cannot be answered or refunded.
        let stranger = UserId::new(SHOPPER + 1).unwrap();
        assert!(messenger.answer_callback("never-delivered", None).await.is_err());
        assert!(messenger.answer_pre_checkout("never-delivered", None).await.is_err());
        assert!(messenger.refund_stars(shopper, "charge-unknown").await.is_err());
        assert!(messenger.refund_stars(stranger, "charge-1").await.is_err(), "another user's charge");

        // Telegram says "slow down": the messenger waits as long as it is told, then sends; told
        // to wait past its budget, it gives the wait to its caller.
        api.inject("sendMessage", Fault::TooManyRequests { retry_after: 3 });
        let slowed = messenger.send(shopper, OutgoingMessage { text: "again".into(), keyboard: vec![] }).await;
        assert!(slowed.is_ok(), "{slowed:?}");
        api.inject("sendMessage", Fault::TooManyRequests { retry_after: 30 });
        let later = messenger.send(shopper, OutgoingMessage { text: "later".into(), keyboard: vec![] }).await;
        assert!(matches!(later, Err(MessengerError::RetryAfter(d)) if d == Duration::from_secs(30)), "{later:?}");
        api.block(SHOPPER);
        let blocked = messenger.send(shopper, OutgoingMessage { text: "hello".into(), keyboard: vec![] }).await;
        assert!(matches!(blocked, Err(MessengerError::ChatUnreachable)), "{blocked:?}");
        Ok(())
    });
    sim.run().expect("the simulation runs");

    // What the fake recorded is what the messenger meant.
    let messages = seen.calls_of("sendMessage");
    let texts: Vec<&str> = messages.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["<b>Main menu</b> &amp; more", "plain", "again", "again", "later", "hello"]);
    let times: Vec<Duration> =
        seen.calls().iter().filter(|c| c.method.eq_ignore_ascii_case("sendMessage")).map(|c| c.at).collect();
    assert!(times[3] - times[2] >= Duration::from_secs(3), "the repeat waited as told: {times:?}");
    assert_eq!(messages[0]["chat_id"], SHOPPER);
    assert_eq!(messages[0]["text"], "<b>Main menu</b> &amp; more");
    assert_eq!(messages[0]["parse_mode"], "HTML");
    assert_eq!(messages[0]["link_preview_options"]["is_disabled"], true);
    let rows = &messages[0]["reply_markup"]["inline_keyboard"];
    assert_eq!((rows[0][0]["text"].as_str(), rows[0][0]["callback_data"].as_str()), (Some("Buy VPN"), Some("buy")));
    assert_eq!(rows[1].as_array().map(Vec::len), Some(2));
    assert!(messages[1].get("reply_markup").is_none(), "no keyboard, none sent: {}", messages[1]);
    let answers = seen.calls_of("answerCallbackQuery");
    assert_eq!((answers[0]["text"].as_str(), answers[1].get("text")), (Some("Done"), None));
    let invoice = &seen.calls_of("sendInvoice")[0];
    assert_eq!((invoice["currency"].as_str(), invoice["provider_token"].as_str()), (Some("XTR"), Some("")));
    assert_eq!(invoice["prices"][0]["amount"], 133);
    assert_eq!(invoice["payload"], "p:8");
    let checkouts = seen.calls_of("answerPreCheckoutQuery");
    assert_eq!((checkouts[0]["ok"].as_bool(), checkouts[1]["ok"].as_bool()), (Some(true), Some(false)));
    assert_eq!(checkouts[1]["error_message"], "The price changed");
    assert_eq!(seen.calls_of("refundStarPayment").len(), 5, "one refund repeated after a server error");
}
