//! The fake Bot API held to teloxide's types: every method the bot calls, made through the bot's
//! own client (`BotApi::call`, which reads each answer as the method's teloxide output type), on
//! the fake over simulated HTTP. An answer teloxide cannot read is a fidelity bug; an answer it
//! reads must also say what the request asked for.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use atlas::net::client::HttpClient;
use atlas::telegram::api::{BotApi, TelegramError};
use atlas_sim::bot::hosts::{self, Fakes, TELEGRAM_HOST};
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
        let base = url::Url::parse(&format!("http://{TELEGRAM_HOST}:8081")).unwrap();
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
