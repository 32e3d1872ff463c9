//! First contact: /start, the menu, balance.

use atlas_tests::bot::{BotHarness, texts};

#[tokio::test]
async fn start_shows_the_menu_and_balance_works() {
    let bot = BotHarness::new(&[1]).await;
    let replies = bot.send_text(100, "/start").await;
    println!("{}", texts(&replies));
    assert!(texts(&replies).contains("Welcome"));
    let replies = bot.press(100, "Balance").await;
    println!("{}", texts(&replies));
    assert!(texts(&replies).contains("0.00"));
}
