//! `TestDb::reset_to`: a used copy put back to the template's contents, as the fidelity tests'
//! thousands of sequences use it. The reset proves itself; these tests show that proof can fail.

use atlas::ports::store::Accounts as _;
use atlas_tests::{Template, TestDb, count, crypto, t0, uid, user_with_balance};
use sqlx::Connection as _;

#[tokio::test]
async fn a_used_copy_is_put_back_to_the_template() {
    let template = Template::new().await;
    let db = TestDb::copy_of(&template, 2).await;
    let commits: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(db.pool()).await.unwrap();
    assert_eq!(commits, "off", "a copy's commits wait for no disk flush");
    let bound: String = sqlx::query_scalar("SHOW statement_timeout").fetch_one(db.pool()).await.unwrap();
    assert_eq!(bound, "8s", "a copy keeps the store's statement timeout");
    let fresh_tariffs = count(&db, "SELECT count(*) FROM tariffs").await;
    user_with_balance(&db.store, 7, "25").await;
    db.store.top_up(uid(7), crypto("again", "5"), t0()).await.unwrap();
    sqlx::query("DELETE FROM tariff_periods").execute(db.pool()).await.unwrap();
    db.reset_to(&template).await.expect("the reset");
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM balance_ledger").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM tariffs").await, fresh_tariffs);
    assert!(count(&db, "SELECT count(*) FROM tariff_periods").await > 0);
    // Ids start where a fresh copy's do.
    user_with_balance(&db.store, 8, "1").await;
    let first: i64 = sqlx::query_scalar("SELECT min(id) FROM balance_ledger").fetch_one(db.pool()).await.unwrap();
    assert_eq!(first, 1);
}

#[tokio::test]
async fn a_reset_refuses_what_it_cannot_put_back() {
    let template = Template::new().await;
    let db = TestDb::copy_of(&template, 2).await;
    // A session of the test still holding a lock there.
    let url = format!("{}/{}", atlas_tests::server_url(), db.name());
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(42)").execute(&mut other).await.unwrap();
    let refused = db.reset_to(&template).await.expect_err("a lock is still held");
    assert!(refused.to_string().contains("still at work"), "{refused:#}");
    sqlx::query("SELECT pg_advisory_unlock(42)").execute(&mut other).await.unwrap();
    drop(other);
    db.reset_to(&template).await.expect("nothing at work any more");
    // A relation the reset does not restore.
    sqlx::query("CREATE SCHEMA extra").execute(db.pool()).await.unwrap();
    sqlx::query("CREATE TABLE extra.notes (id INT)").execute(db.pool()).await.unwrap();
    let refused = db.reset_to(&template).await.expect_err("a table outside public");
    assert!(refused.to_string().contains("would not restore"), "{refused:#}");
}
