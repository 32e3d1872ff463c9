# Atlas Secure: everything the bot says, in English. Telegram HTML: <b>, <i>, <code> only.
# Every id here is also in ru.ftl with the same placeholders (a test checks it).

welcome = Welcome to <b>Atlas Secure VPN</b>, { $name }!
    Fast, private VPN keys that work on every device. Choose what to do below.
menu = <b>Main menu</b>
help = Use the buttons to buy a subscription, get your key, top up or withdraw your balance.
    /start opens the menu, /cancel stops whatever you are doing.
reset-notice = The bot was updated and your unfinished step was reset. Here is the menu.
not-understood = I did not understand that. Please use the buttons below.
unknown-command = Unknown command. /start opens the menu.
send-text = Please send the answer as a text message.
stale-button = That button is no longer active. Here is the current menu.
try-later = The service is busy right now. Nothing was charged. Please try again in a minute.
too-long-to-keep = That is too long for me to keep. Please send something shorter.
rate-limited = Too many attempts. Please try again in { $minutes } { $minutes ->
        [one] minute
       *[other] minutes
    }.
failed = Something went wrong on our side. Nothing was charged. Please try again later.
purchase-unconfirmed = We could not confirm your purchase: something went wrong on our side. Press the same button again to finish it: it will not charge you twice. Please do not pay for it another way meanwhile.
purchase-confirm-first = Your purchase from the balance is not confirmed yet. Press the balance button again to finish it: it will not charge you twice. Other ways to pay open once it is done.
purchase-paid-another-way = This order is already paid, or opened for payment, another way or before a promo code, so nothing more was charged. To finish it, press the way to pay you chose first; or check “My subscription” and your balance, and start a new purchase from the menu.
cancelled-unconfirmed = Cancelled. Your purchase from the balance may have gone through before that: check “My subscription” before you buy again.
cancelled = Cancelled.
banned = Your account is blocked. Please contact support.

btn-buy = 🛒 Buy VPN
btn-subscription = 🔑 My subscription
btn-balance = 💰 Balance
btn-top-up = ➕ Top up
btn-trial = 🎁 Free trial
btn-promo = 🏷 Promo code
btn-referral = 👥 Invite friends
btn-withdraw = 💸 Withdraw
btn-support = 💬 Support
btn-language = 🌐 Language
btn-language-ru = 🇷🇺 Русский
btn-language-en = 🇬🇧 English
btn-admin = 🛠 Admin
btn-menu = ⬅️ Menu
btn-cancel = ✖️ Cancel
btn-confirm = ✅ Confirm
btn-check-payment = 🔄 I paid, check
btn-pay-balance = From balance ({ $balance } ₽)
btn-pay-crypto = Crypto (CryptoBot)
btn-pay-stars = Telegram Stars ({ $stars } ⭐)
btn-enter-promo = 🏷 Enter a promo code
btn-reissue = 🔁 New key
btn-auto-renew = { $state ->
        [on] 🔁 Auto-renewal: on
       *[off] ⏸ Auto-renewal: off
    }
btn-tariff = { $title }
btn-period = { $days } { $days ->
        [one] day
       *[other] days
    } — { $price } ₽
btn-approve = ✅ Approve
btn-reject = ❌ Reject
btn-unit = { $unit ->
        [hours] Hours
        [days] Days
       *[never] No expiry
    }
btn-unlimited = Unlimited
btn-credit = ➕ Credit
btn-debit = ➖ Debit
btn-send-broadcast = 📣 Send to everyone
btn-admin-withdrawals = 💸 Withdrawals
btn-admin-find = 🔎 Find a user
btn-admin-credit = ➕ Credit balance
btn-admin-debit = ➖ Debit balance
btn-admin-new-promo = 🏷 New promo code
btn-admin-disable-promo = 🚫 Disable a promo code
btn-admin-reissue = 🔁 Reissue a key
btn-admin-broadcast = 📣 Broadcast
btn-admin-stats = 📊 Statistics

amount-empty = Please send an amount, for example <code>150</code> or <code>150.50</code>.
amount-not-number = That is not an amount. Send digits only, for example <code>150</code> or <code>150.50</code>.
amount-zero = The amount must be greater than zero.
amount-negative = The amount cannot be negative.
amount-too-large = The amount is too large: the most is { $max } ₽.
amount-too-precise = Use at most two digits after the point, for example <code>150.50</code>.

trial-activated = 🎁 Your free trial is on for { $days } { $days ->
        [one] day
       *[other] days
    }, until { $until }. Your key is being prepared: open “My subscription” in a minute.
trial-used = You have already used your free trial.
trial-not-for-subscribers = The free trial is for new users without a subscription.

no-subscription = You have no subscription yet.
subscription-info = <b>Your subscription</b>
    Valid until: { $until }{ $trial ->
        [yes] {" "}(trial)
       *[no] {""}
    }
    Auto-renewal from balance: { $auto_renew ->
        [on] on
       *[off] off
    }
subscription-ended = Your subscription ended on { $until }. Buy a new period to get your key back.
key-shown = Your key (tap to copy):
    <code>{ $uri }</code>
key-pending = Your key is being prepared. It will be ready in a minute.
key-failed = We could not create your key. Our team has been told and will fix it soon.
auto-renew-set = { $state ->
        [on] Auto-renewal is on: your subscription will be renewed from your balance.
       *[off] Auto-renewal is off.
    }
reissued = Here is your new key (the old one no longer works):
    <code>{ $uri }</code>
reissued-by-support = Support replaced your VPN key; the old one no longer works. Your new key:
    <code>{ $uri }</code>
reissue-busy = A new key is already being made. Please wait a moment.
reissue-fenced = Another key change happened at the same time. Please open “My subscription” to see your key.

balance = Your balance: <b>{ $balance } ₽</b>
top-up-ask-amount = How much do you want to top up? Send an amount from { $min } to { $max } ₽.
top-up-too-small = The smallest top-up is { $min } ₽.
top-up-choose-method = Top up by { $amount } ₽. How do you want to pay?
invoice-crypto = Pay { $amount } ₽ in crypto here:
    { $url }
    Then press “I paid, check”.
invoice-stars = We sent you an invoice for { $stars } ⭐. Pay it right there in Telegram.
invoice-title = Atlas Secure VPN
invoice-purchase = VPN subscription for { $days } { $days ->
        [one] day
       *[other] days
    }
invoice-top-up = Balance top-up of { $amount } ₽
payment-pending = We have not received the payment yet. If you have just paid, check again in a minute.
payment-unavailable = This payment method is not available right now. Please choose another one.
invoice-expired = The invoice has expired. Start again if you still want to pay.
order-already-paid = This order is already paid.
invoice-cancelled = This order was cancelled, so its invoice is no longer expected. If you pay it anyway, press “I paid, check” afterwards: the money will go to your balance.
top-up-credited = ✅ { $amount } ₽ added. Your balance: <b>{ $balance } ₽</b>

choose-tariff = Choose a plan:
nothing-on-sale = Nothing is on sale right now. Please come back later.
choose-period = <b>{ $title }</b>: choose a period:
choose-method = <b>{ $title }</b>, { $days } { $days ->
        [one] day
       *[other] days
    }: <b>{ $price } ₽</b>. How do you want to pay?
choose-method-promo = <b>{ $title }</b>, { $days } { $days ->
        [one] day
       *[other] days
    }: <b>{ $price } ₽</b> instead of { $full } ₽ with code <code>{ $code }</code> (−{ $percent }%). How do you want to pay?
promo-ask = Send your promo code.
promo-applied = ✅ Code <code>{ $code }</code> gives { $percent }% off. Choose a plan:
promo-not-found = There is no such promo code.
promo-disabled = This promo code is no longer active.
promo-expired = This promo code has expired.
promo-exhausted = This promo code has been used up.
promo-used = You have already used this promo code.
promo-invalid = A promo code is 3 to 32 latin letters, digits, “_” or “-”.
purchased = ✅ Paid { $amount } ₽. Your subscription is valid until { $until }. Balance: { $balance } ₽.
    Your key is in “My subscription”.
insufficient-balance = Not enough money: the price is { $price } ₽, your balance is { $balance } ₽. Top up or choose another way to pay.
free-use-balance = With this code the period is free: choose “From balance”.
purchase-unavailable = This plan is not on sale any more. Please choose another one.
paid = ✅ Payment received. Your subscription is valid until { $until }. Your key is in “My subscription”.
paid-to-balance = We received your payment of { $amount } ₽, but that order was already closed, so the money went to your balance.
payment-unmatched = We received a payment we could not match to an order. Please contact support: nothing is lost.
pre-checkout-refused = This invoice can no longer be paid. Please start the purchase again.

withdraw-balance-too-low = Your balance is { $balance } ₽. The smallest withdrawal is { $min } ₽.
withdraw-ask-amount = Your balance is { $balance } ₽. How much do you want to withdraw? At least { $min } ₽.
withdraw-below-min = The smallest withdrawal is { $min } ₽.
withdraw-above-balance = You can withdraw at most your balance, { $balance } ₽.
withdraw-confirm-amount = Withdraw <b>{ $amount } ₽</b>?
withdraw-ask-requisites = Send the card or wallet number to receive the money.
requisites-length = The details must be { $min } to { $max } characters long.
requisites-control = The details contain characters that are not allowed. Send them as one line of text.
withdraw-final-confirm = Please check:
    Amount: <b>{ $amount } ₽</b>
    To: <code>{ $requisites }</code>
    Send the request?
withdraw-created = ✅ Withdrawal request #{ $id } for { $amount } ₽ created. Your balance: { $balance } ₽. We will let you know when it is processed.
withdraw-decided = { $verdict ->
        [approved] ✅ Your withdrawal #{ $id } of { $amount } ₽ has been paid out.
       *[rejected] ❌ Your withdrawal #{ $id } was declined; { $amount } ₽ went back to your balance.
    }

referral = <b>Invite friends</b> and get { $percent }% of every purchase they make.
    Your link: { $link }
    Invited: { $invited }. Earned: { $earned } ₽.
support = Questions? Write to { $contact }.
language-choose = Choose your language:
language-set = Language set: English.

admin-only = This action is for administrators only.
admin-menu = <b>Admin tools</b>
admin-no-withdrawals = There are no pending withdrawals.
admin-withdrawal = Withdrawal #{ $id } from user { $user }
    Amount: <b>{ $amount } ₽</b>
    To: <code>{ $requisites }</code>
    Created: { $created }
admin-decided = Withdrawal #{ $id } { $verdict ->
        [approved] approved.
       *[rejected] rejected; the money went back to the user.
    }
admin-already-decided = Withdrawal #{ $id } was already { $verdict ->
        [approved] approved
       *[rejected] rejected
    } by someone else.
admin-unknown-withdrawal = There is no such withdrawal.
admin-ask-user = Send the user's Telegram id or @username.
admin-user-not-found = No such user (by id, or by the username they had at /start).
admin-user-info = User <code>{ $id }</code> { $username }
    Balance: { $balance } ₽
    Subscription until: { $until }
    Blocked: { $banned ->
        [yes] yes
       *[no] no
    }
admin-ask-amount = Send the amount for user { $user }.
admin-confirm-adjust = { $direction ->
        [credit] Credit
       *[debit] Debit
    } { $amount } ₽ { $direction ->
        [credit] to
       *[debit] from
    } user { $user }?
admin-adjusted = ✅ { $direction ->
        [credit] Credited
       *[debit] Debited
    } { $amount } ₽. User { $user } now has { $balance } ₽.
admin-adjust-insufficient = The user has only { $balance } ₽.
admin-promo-ask-code = Send the new promo code (3 to 32 latin letters, digits, “_” or “-”).
admin-promo-code-invalid = A promo code is 3 to 32 latin letters, digits, “_” or “-”. Send another.
admin-promo-ask-unit = How long is the code valid?
admin-promo-ask-value = How many { $unit ->
        [hours] hours
       *[days] days
    }? Send a whole number from 1 to 3650.
admin-promo-value-invalid = Send a whole number from 1 to 3650.
admin-promo-ask-max-uses = How many times can it be used in total? Send a number or press “Unlimited”.
admin-promo-max-uses-invalid = Send a whole number from 1 to 1000000, or press “Unlimited”.
admin-promo-ask-percent = What discount, in percent (1 to 100)?
admin-promo-percent-invalid = Send a whole number from 1 to 100.
admin-promo-confirm = Create code <code>{ $code }</code>: −{ $percent }%, uses: { $uses }, valid until: { $expires }?
admin-promo-created = ✅ Promo code <code>{ $code }</code> created.
admin-promo-exists = A promo code <code>{ $code }</code> already exists.
admin-promo-ask-disable = Send the promo code to disable.
admin-promo-disabled = ✅ Promo code <code>{ $code }</code> is disabled.
admin-promo-already-off = Promo code <code>{ $code }</code> was already disabled.
admin-promo-unknown = There is no promo code <code>{ $code }</code>.
admin-reissued = ✅ A new key was issued to user { $user }.
admin-no-subscription = User { $user } has no subscription.
admin-broadcast-ask = Send the text of the broadcast (up to { $max } characters).
admin-broadcast-empty = The broadcast needs some text. Send the text of the broadcast.
admin-broadcast-too-long = That text has { $length } characters; a broadcast may have at most { $max }. Please send a shorter one.
admin-broadcast-confirm = The broadcast will read:
    { $text }
    Send it to every user?
admin-broadcast-queued = ✅ Broadcast #{ $id } queued; it is being sent.
admin-stats = <b>Statistics</b>
    Users: { $users }
    Active subscriptions: { $active } (trials: { $trials })
    Pending withdrawals: { $pending }
    Last 24 hours: { $purchases } purchases, { $revenue } ₽
unlimited = unlimited
no-expiry = never
no-username = (no username)

# Sent by the background workers.
reminder-before = ⏳ Your subscription ends in { $hours } h, on { $until }. Renew it in “Buy” to keep your key working.
trial-ends-soon = ⏳ Your free trial ends in { $hours } h, on { $until }. Choose a plan in “Buy” to keep your VPN.
trial-ended = Your free trial is over. Choose a plan in “Buy” to keep your VPN.
key-ready = 🔑 Your key is ready (tap to copy):
    <code>{ $uri }</code>
key-activation-failed = We could not create your key. Our team has been told and will fix it soon; your days are kept.
admin-activation-failed = ⚠️ No key could be made for user { $user } (subscription { $subscription }) after every attempt: { $error }
renewed = ✅ Your subscription was renewed from your balance ({ $amount } ₽). It is valid until { $until }.
renewal-short = Your subscription could not be renewed: your balance is too low. Top up and buy a period in “Buy” to keep your VPN.
renewal-unavailable = Your plan is no longer sold, so it could not be renewed. Choose another plan in “Buy”.
broadcast = { $text }
payment-refunded = We could not match your payment to an order, so the Stars were returned to you. Nothing was charged.
