//! Updates as Telegram sends them (the objects the fake queues, before it numbers them), and
//! Telegram's check of a message in HTML parse mode, so an escaping mistake is refused here as
//! Telegram would refuse it.

use serde_json::{Value, json};

/// A user, as the `from` of an update.
pub fn user(id: i64, language: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": format!("User{id}"), "username": format!("user{id}"),
        "language_code": language})
}

fn message_from(id: i64, language: &str, content: Value) -> Value {
    let mut message = json!({"message_id": 1, "date": 1_767_225_600,
        "chat": {"id": id, "type": "private", "first_name": format!("User{id}")}, "from": user(id, language)});
    if let (Some(message), Some(content)) = (message.as_object_mut(), content.as_object()) {
        message.extend(content.clone());
    }
    json!({ "message": message })
}

/// A text message (a command too: `/start ref_7`).
pub fn text(from: i64, language: &str, text: &str) -> Value {
    let mut content = json!({ "text": text });
    if text.starts_with('/') {
        let length = text.split_whitespace().next().map_or(0, |c| c.encode_utf16().count());
        content["entities"] = json!([{"type": "bot_command", "offset": 0, "length": length}]);
    }
    message_from(from, language, content)
}

/// A sticker where text may be expected.
pub fn sticker(from: i64, language: &str) -> Value {
    message_from(
        from,
        language,
        json!({"sticker": {"file_id": "f", "file_unique_id": "u", "type": "regular", "width": 512, "height": 512,
            "is_animated": false, "is_video": false}}),
    )
}

/// A button pressed: its callback data.
pub fn callback(from: i64, language: &str, query_id: &str, data: &str) -> Value {
    json!({"callback_query": {"id": query_id, "from": user(from, language), "chat_instance": "ci", "data": data}})
}

/// Telegram asks whether a Stars invoice may be paid.
pub fn pre_checkout(from: i64, language: &str, query_id: &str, payload: &str, stars: u32) -> Value {
    json!({"pre_checkout_query": {"id": query_id, "from": user(from, language), "currency": "XTR",
        "total_amount": stars, "invoice_payload": payload}})
}

/// A Stars payment went through.
pub fn paid(from: i64, language: &str, payload: &str, stars: u32, charge_id: &str) -> Value {
    message_from(
        from,
        language,
        json!({"successful_payment": {"currency": "XTR", "total_amount": stars, "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""}}),
    )
}

/// The user blocked (`kicked`) or unblocked (`member`) the bot.
pub fn membership(from: i64, language: &str, status: &str) -> Value {
    let old = if status == "kicked" { "member" } else { "kicked" };
    let bot = json!({"id": super::BOT_ID, "is_bot": true, "first_name": "Atlas"});
    // A `kicked` member carries until when (0: for ever).
    let member = |status: &str| match status {
        "kicked" => json!({"user": bot, "status": status, "until_date": 0}),
        _ => json!({"user": bot, "status": status}),
    };
    json!({"my_chat_member": {"chat": {"id": from, "type": "private", "first_name": format!("User{from}")},
        "from": user(from, language), "date": 1_767_225_600,
        "old_chat_member": member(old), "new_chat_member": member(status)}})
}

/// The tags Telegram's HTML parse mode knows.
const TAGS: [&str; 16] = [
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
];

/// Whether `text` parses as Telegram HTML: only known tags, properly nested, and `&` only in
/// the entities `&lt;` `&gt;` `&amp;` `&quot;` or a numeric one.
pub fn check_html(text: &str) -> Result<(), String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['<', '&']) {
        let after = &rest[at..];
        if after.starts_with('&') {
            let end = after.find(';').ok_or_else(|| format!("unterminated entity at {after:.10}"))?;
            let entity = &after[1..end];
            let numeric =
                entity.strip_prefix('#').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !numeric && !["lt", "gt", "amp", "quot"].contains(&entity) {
                return Err(format!("unsupported entity &{entity};"));
            }
            rest = &after[end + 1..];
            continue;
        }
        let end = after.find('>').ok_or("unclosed start tag")?;
        let tag = &after[1..end];
        let (closing, tag) = match tag.strip_prefix('/') {
            Some(name) => (true, name),
            None => (false, tag),
        };
        let name = tag.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
        if !TAGS.contains(&name.as_str()) {
            return Err(format!("unsupported start tag \"{name}\""));
        }
        if closing {
            if open.pop().as_deref() != Some(name.as_str()) {
                return Err(format!("unexpected end tag \"{name}\""));
            }
        } else {
            open.push(name);
        }
        rest = &after[end + 1..];
    }
    match open.pop() {
        Some(name) => Err(format!("can't find end tag corresponding to start tag \"{name}\"")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_html_is_checked_as_telegram_does() {
        assert!(check_html("<b>Atlas</b> &lt;tag&gt; &amp; <code>x</code> &#128512;").is_ok());
        assert!(check_html("<b>bold</i>").is_err());
        assert!(check_html("1 < 2").is_err());
        assert!(check_html("Tom & Jerry").is_err());
        assert!(check_html("<b>open").is_err());
        assert!(check_html("<script>x</script>").is_err());
        assert!(check_html("<a href=\"https://t.me\">link</a>").is_ok());
    }

    #[test]
    fn updates_parse_as_teloxide_reads_them() {
        for (n, update) in [
            text(1, "en", "/start ref_7"),
            sticker(1, "ru"),
            callback(1, "en", "cb1", "m"),
            pre_checkout(1, "en", "pc1", "p:5", 133),
            paid(1, "en", "p:5", 133, "charge"),
            membership(1, "en", "kicked"),
            membership(1, "en", "member"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut update = update;
            update["update_id"] = json!(n);
            // From text, as the bot reads it (teloxide borrows from the input, which a Value
            // cannot lend).
            let parsed: teloxide_core::types::Update = serde_json::from_str(&update.to_string()).unwrap();
            // teloxide reads what it cannot parse as `Error`: that must not happen to ours.
            assert!(!matches!(parsed.kind, teloxide_core::types::UpdateKind::Error(_)), "{update}");
        }
    }
}
