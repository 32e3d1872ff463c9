//! The Messenger port in the simulation, for now: every message an instance sends is recorded in
//! the run's history (who to, what), after a short simulated delay. (The fake Bot API host, with
//! its 429s and timeouts, replaces it when the whole bot runs in the simulation.)

use std::time::Duration;

use atlas::domain::UserId;
use atlas::ports::Messenger;
use atlas::ports::messenger::{MessengerError, OutgoingMessage, StarsInvoice};

use crate::history::{Event, lock};
use crate::instance::InstanceCtx;

/// How long a simulated Bot API call takes.
const CALL: Duration = Duration::from_millis(2);

pub struct SimMessenger {
    pub ctx: InstanceCtx,
}

impl SimMessenger {
    async fn call(&self) {
        tokio::time::sleep(CALL).await;
        self.ctx.wait_out_pause().await;
    }

    fn record(&self, to: UserId, text: String) {
        lock(&self.ctx.history).push(Event::Sent { instance: self.ctx.index, to: to.get(), text });
    }
}

impl Messenger for SimMessenger {
    async fn send(&self, to: UserId, message: OutgoingMessage) -> Result<i32, MessengerError> {
        self.call().await;
        self.record(to, message.text);
        Ok(1)
    }

    async fn answer_callback(&self, _callback_id: &str, _toast: Option<&str>) -> Result<(), MessengerError> {
        self.call().await;
        Ok(())
    }

    async fn send_invoice(&self, to: UserId, invoice: StarsInvoice) -> Result<i32, MessengerError> {
        self.call().await;
        self.record(to, format!("invoice {} for {} stars", invoice.payload, invoice.stars));
        Ok(1)
    }

    async fn answer_pre_checkout(&self, _query_id: &str, _refusal: Option<&str>) -> Result<(), MessengerError> {
        self.call().await;
        Ok(())
    }

    async fn refund_stars(&self, _user: UserId, _charge_id: &str) -> Result<(), MessengerError> {
        self.call().await;
        Ok(())
    }
}
