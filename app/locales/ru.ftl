# Atlas Secure: всё, что говорит бот, по-русски. Telegram HTML: только <b>, <i>, <code>.
# Каждый id здесь есть и в en.ftl, с теми же подстановками (это проверяет тест).

welcome = Добро пожаловать в <b>Atlas Secure VPN</b>, { $name }!
    Быстрые и приватные VPN-ключи для любых устройств. Выберите, что сделать.
menu = <b>Главное меню</b>
help = Кнопками можно купить подписку, получить ключ, пополнить баланс или вывести деньги.
    /start открывает меню, /cancel отменяет текущее действие.
reset-notice = Бот обновился, и незаконченный шаг был сброшен. Вот меню.
not-understood = Не понял. Пожалуйста, воспользуйтесь кнопками ниже.
unknown-command = Неизвестная команда. /start открывает меню.
send-text = Пожалуйста, отправьте ответ текстом.
stale-button = Эта кнопка больше не действует. Вот текущее меню.
try-later = Сервис сейчас перегружен. Ничего не списано. Попробуйте через минуту.
too-long-to-keep = Это слишком длинно, я не смогу это сохранить. Отправьте что-нибудь покороче.
rate-limited = Слишком много попыток. Попробуйте через { $minutes } { $minutes ->
        [one] минуту
        [few] минуты
       *[many] минут
    }.
failed = У нас что-то пошло не так. Ничего не списано. Попробуйте позже.
purchase-unconfirmed = Не удалось подтвердить покупку: у нас что-то пошло не так. Нажмите ту же кнопку ещё раз, чтобы завершить её: дважды она не спишет. Пожалуйста, не оплачивайте покупку другим способом.
purchase-confirm-first = Покупка с баланса ещё не подтверждена. Нажмите кнопку оплаты с баланса ещё раз, чтобы завершить её: дважды она не спишет. Другие способы оплаты откроются, когда она завершится.
purchase-paid-another-way = Этот заказ уже оплачен или открыт для оплаты другим способом или до ввода промокода, поэтому больше ничего не списано. Чтобы завершить его, нажмите способ оплаты, выбранный первым, или проверьте «Моя подписка» и баланс и начните новую покупку из меню.
cancelled-unconfirmed = Отменено. Покупка с баланса могла пройти до отмены: проверьте «Моя подписка», прежде чем покупать снова.
cancelled = Отменено.
banned = Ваш аккаунт заблокирован. Напишите в поддержку.

btn-buy = 🛒 Купить VPN
btn-subscription = 🔑 Моя подписка
btn-balance = 💰 Баланс
btn-top-up = ➕ Пополнить
btn-trial = 🎁 Пробный период
btn-promo = 🏷 Промокод
btn-referral = 👥 Пригласить друзей
btn-withdraw = 💸 Вывести
btn-support = 💬 Поддержка
btn-language = 🌐 Язык
btn-language-ru = 🇷🇺 Русский
btn-language-en = 🇬🇧 English
btn-admin = 🛠 Админка
btn-menu = ⬅️ Меню
btn-cancel = ✖️ Отмена
btn-confirm = ✅ Подтвердить
btn-check-payment = 🔄 Я оплатил, проверить
btn-pay-balance = С баланса ({ $balance } ₽)
btn-pay-crypto = Криптовалютой (CryptoBot)
btn-pay-stars = Telegram Stars ({ $stars } ⭐)
btn-enter-promo = 🏷 Ввести промокод
btn-reissue = 🔁 Новый ключ
btn-auto-renew = { $state ->
        [on] 🔁 Автопродление: вкл.
       *[off] ⏸ Автопродление: выкл.
    }
btn-tariff = { $title }
btn-period = { $days } { $days ->
        [one] день
        [few] дня
       *[many] дней
    } — { $price } ₽
btn-approve = ✅ Одобрить
btn-reject = ❌ Отклонить
btn-unit = { $unit ->
        [hours] Часы
        [days] Дни
       *[never] Бессрочно
    }
btn-unlimited = Без ограничений
btn-credit = ➕ Начислить
btn-debit = ➖ Списать
btn-send-broadcast = 📣 Отправить всем
btn-admin-withdrawals = 💸 Заявки на вывод
btn-admin-find = 🔎 Найти пользователя
btn-admin-credit = ➕ Начислить на баланс
btn-admin-debit = ➖ Списать с баланса
btn-admin-new-promo = 🏷 Новый промокод
btn-admin-disable-promo = 🚫 Отключить промокод
btn-admin-reissue = 🔁 Перевыпустить ключ
btn-admin-broadcast = 📣 Рассылка
btn-admin-stats = 📊 Статистика

amount-empty = Отправьте сумму, например <code>150</code> или <code>150.50</code>.
amount-not-number = Это не сумма. Отправьте только цифры, например <code>150</code> или <code>150.50</code>.
amount-zero = Сумма должна быть больше нуля.
amount-negative = Сумма не может быть отрицательной.
amount-too-large = Слишком большая сумма: не более { $max } ₽.
amount-too-precise = Не больше двух знаков после точки, например <code>150.50</code>.

trial-activated = 🎁 Пробный период включён на { $days } { $days ->
        [one] день
        [few] дня
       *[many] дней
    }, до { $until }. Ключ готовится: откройте «Моя подписка» через минуту.
trial-used = Вы уже использовали пробный период.
trial-not-for-subscribers = Пробный период — только для новых пользователей без подписки.

no-subscription = У вас пока нет подписки.
subscription-info = <b>Ваша подписка</b>
    Действует до: { $until }{ $trial ->
        [yes] {" "}(пробная)
       *[no] {""}
    }
    Автопродление с баланса: { $auto_renew ->
        [on] включено
       *[off] выключено
    }
subscription-ended = Подписка закончилась { $until }. Купите новый период, чтобы вернуть ключ.
key-shown = Ваш ключ (нажмите, чтобы скопировать):
    <code>{ $uri }</code>
key-pending = Ключ готовится. Он будет готов через минуту.
key-failed = Не удалось создать ключ. Мы уже знаем и скоро исправим.
auto-renew-set = { $state ->
        [on] Автопродление включено: подписка будет продлеваться с баланса.
       *[off] Автопродление выключено.
    }
reissued = Ваш новый ключ (старый больше не работает):
    <code>{ $uri }</code>
reissued-by-support = Поддержка заменила ваш VPN-ключ; старый больше не работает. Ваш новый ключ:
    <code>{ $uri }</code>
reissue-busy = Новый ключ уже создаётся. Подождите немного.
reissue-fenced = Одновременно произошла другая замена ключа. Откройте «Моя подписка», чтобы увидеть ключ.

balance = Ваш баланс: <b>{ $balance } ₽</b>
top-up-ask-amount = На какую сумму пополнить? Отправьте сумму от { $min } до { $max } ₽.
top-up-too-small = Минимальное пополнение — { $min } ₽.
top-up-choose-method = Пополнение на { $amount } ₽. Как оплатить?
invoice-crypto = Оплатите { $amount } ₽ криптовалютой здесь:
    { $url }
    Затем нажмите «Я оплатил, проверить».
invoice-stars = Мы отправили счёт на { $stars } ⭐. Оплатите его прямо в Telegram.
invoice-title = Atlas Secure VPN
invoice-purchase = VPN-подписка на { $days } { $days ->
        [one] день
        [few] дня
       *[many] дней
    }
invoice-top-up = Пополнение баланса на { $amount } ₽
payment-pending = Оплата ещё не поступила. Если вы только что оплатили, проверьте через минуту.
payment-unavailable = Этот способ оплаты сейчас недоступен. Выберите другой.
invoice-expired = Срок счёта истёк. Начните заново, если хотите оплатить.
order-already-paid = Этот заказ уже оплачен.
invoice-cancelled = Этот заказ отменён, и оплата по счёту больше не ожидается. Если вы всё же оплатите его, нажмите «Я оплатил, проверить»: деньги поступят на баланс.
top-up-credited = ✅ Зачислено { $amount } ₽. Ваш баланс: <b>{ $balance } ₽</b>

choose-tariff = Выберите тариф:
nothing-on-sale = Сейчас ничего не продаётся. Загляните позже.
choose-period = <b>{ $title }</b>: выберите срок:
choose-method = <b>{ $title }</b>, { $days } { $days ->
        [one] день
        [few] дня
       *[many] дней
    }: <b>{ $price } ₽</b>. Как оплатить?
choose-method-promo = <b>{ $title }</b>, { $days } { $days ->
        [one] день
        [few] дня
       *[many] дней
    }: <b>{ $price } ₽</b> вместо { $full } ₽ по коду <code>{ $code }</code> (−{ $percent }%). Как оплатить?
promo-ask = Отправьте промокод.
promo-applied = ✅ Код <code>{ $code }</code> даёт скидку { $percent }%. Выберите тариф:
promo-not-found = Такого промокода нет.
promo-disabled = Этот промокод больше не действует.
promo-expired = Срок действия промокода истёк.
promo-exhausted = Этот промокод уже исчерпан.
promo-used = Вы уже использовали этот промокод.
promo-invalid = Промокод — от 3 до 32 латинских букв, цифр, «_» или «-».
purchased = ✅ Оплачено { $amount } ₽. Подписка действует до { $until }. Баланс: { $balance } ₽.
    Ключ — в разделе «Моя подписка».
insufficient-balance = Недостаточно средств: цена { $price } ₽, на балансе { $balance } ₽. Пополните баланс или выберите другой способ.
free-use-balance = С этим кодом период бесплатный: выберите «С баланса».
purchase-unavailable = Этот тариф больше не продаётся. Выберите другой.
paid = ✅ Оплата получена. Подписка действует до { $until }. Ключ — в разделе «Моя подписка».
paid-to-balance = Мы получили оплату { $amount } ₽, но этот заказ уже был закрыт, поэтому деньги зачислены на баланс.
payment-unmatched = Мы получили платёж, который не удалось сопоставить с заказом. Напишите в поддержку: ничего не потеряно.
pre-checkout-refused = Этот счёт больше нельзя оплатить. Начните покупку заново.

withdraw-balance-too-low = На балансе { $balance } ₽. Минимальная сумма вывода — { $min } ₽.
withdraw-ask-amount = На балансе { $balance } ₽. Сколько вывести? Не меньше { $min } ₽.
withdraw-below-min = Минимальная сумма вывода — { $min } ₽.
withdraw-above-balance = Можно вывести не больше баланса: { $balance } ₽.
withdraw-confirm-amount = Вывести <b>{ $amount } ₽</b>?
withdraw-ask-requisites = Отправьте номер карты или кошелька для получения денег.
requisites-length = Реквизиты должны быть длиной от { $min } до { $max } символов.
requisites-control = В реквизитах есть недопустимые символы. Отправьте их одной строкой.
withdraw-final-confirm = Проверьте:
    Сумма: <b>{ $amount } ₽</b>
    Куда: <code>{ $requisites }</code>
    Отправить заявку?
withdraw-created = ✅ Заявка на вывод №{ $id } на { $amount } ₽ создана. Ваш баланс: { $balance } ₽. Мы сообщим, когда она будет обработана.
withdraw-decided = { $verdict ->
        [approved] ✅ Вывод №{ $id } на { $amount } ₽ выплачен.
       *[rejected] ❌ Вывод №{ $id } отклонён; { $amount } ₽ вернулись на баланс.
    }

referral = <b>Приглашайте друзей</b> и получайте { $percent }% с каждой их покупки.
    Ваша ссылка: { $link }
    Приглашено: { $invited }. Заработано: { $earned } ₽.
support = Есть вопросы? Пишите { $contact }.
language-choose = Выберите язык:
language-set = Язык: русский.

admin-only = Это действие доступно только администраторам.
admin-menu = <b>Админка</b>
admin-no-withdrawals = Заявок на вывод нет.
admin-withdrawal = Заявка на вывод №{ $id } от пользователя { $user }
    Сумма: <b>{ $amount } ₽</b>
    Куда: <code>{ $requisites }</code>
    Создана: { $created }
admin-decided = Заявка №{ $id } { $verdict ->
        [approved] одобрена.
       *[rejected] отклонена; деньги вернулись пользователю.
    }
admin-already-decided = Заявка №{ $id } уже { $verdict ->
        [approved] одобрена
       *[rejected] отклонена
    } другим администратором.
admin-unknown-withdrawal = Такой заявки нет.
admin-ask-user = Отправьте Telegram id или @username пользователя.
admin-user-not-found = Пользователь не найден (по id или по username, который был при /start).
admin-user-info = Пользователь <code>{ $id }</code> { $username }
    Баланс: { $balance } ₽
    Подписка до: { $until }
    Заблокирован: { $banned ->
        [yes] да
       *[no] нет
    }
admin-ask-amount = Отправьте сумму для пользователя { $user }.
admin-confirm-adjust = { $direction ->
        [credit] Начислить
       *[debit] Списать
    } { $amount } ₽ { $direction ->
        [credit] пользователю
       *[debit] у пользователя
    } { $user }?
admin-adjusted = ✅ { $direction ->
        [credit] Начислено
       *[debit] Списано
    } { $amount } ₽. Баланс пользователя { $user }: { $balance } ₽.
admin-adjust-insufficient = У пользователя только { $balance } ₽.
admin-promo-ask-code = Отправьте новый промокод (от 3 до 32 латинских букв, цифр, «_» или «-»).
admin-promo-code-invalid = Промокод — от 3 до 32 латинских букв, цифр, «_» или «-». Отправьте другой.
admin-promo-ask-unit = Сколько действует код?
admin-promo-ask-value = Сколько { $unit ->
        [hours] часов
       *[days] дней
    }? Отправьте целое число от 1 до 3650.
admin-promo-value-invalid = Отправьте целое число от 1 до 3650.
admin-promo-ask-max-uses = Сколько раз его можно использовать всего? Отправьте число или нажмите «Без ограничений».
admin-promo-max-uses-invalid = Отправьте целое число от 1 до 1000000 или нажмите «Без ограничений».
admin-promo-ask-percent = Какая скидка в процентах (от 1 до 100)?
admin-promo-percent-invalid = Отправьте целое число от 1 до 100.
admin-promo-confirm = Создать код <code>{ $code }</code>: −{ $percent }%, использований: { $uses }, действует до: { $expires }?
admin-promo-created = ✅ Промокод <code>{ $code }</code> создан.
admin-promo-exists = Промокод <code>{ $code }</code> уже существует.
admin-promo-ask-disable = Отправьте промокод, который нужно отключить.
admin-promo-disabled = ✅ Промокод <code>{ $code }</code> отключён.
admin-promo-already-off = Промокод <code>{ $code }</code> уже был отключён.
admin-promo-unknown = Промокода <code>{ $code }</code> нет.
admin-reissued = ✅ Пользователю { $user } выпущен новый ключ.
admin-no-subscription = У пользователя { $user } нет подписки.
admin-broadcast-ask = Отправьте текст рассылки (до { $max } символов).
admin-broadcast-empty = В рассылке должен быть текст. Отправьте текст рассылки.
admin-broadcast-too-long = В этом тексте { $length } символов, а в рассылке может быть не больше { $max }. Отправьте текст короче.
admin-broadcast-confirm = Текст рассылки:
    { $text }
    Отправить всем пользователям?
admin-broadcast-queued = ✅ Рассылка №{ $id } поставлена в очередь и отправляется.
admin-stats = <b>Статистика</b>
    Пользователей: { $users }
    Активных подписок: { $active } (пробных: { $trials })
    Заявок на вывод: { $pending }
    За 24 часа: покупок { $purchases }, на { $revenue } ₽
unlimited = без ограничений
no-expiry = бессрочно
no-username = (без username)

# Sent by the background workers.
reminder-before = ⏳ Ваша подписка закончится через { $hours } ч, { $until }. Продлите её в разделе «Купить», чтобы ключ продолжал работать.
trial-ends-soon = ⏳ Пробный период закончится через { $hours } ч, { $until }. Выберите тариф в разделе «Купить», чтобы VPN продолжал работать.
trial-ended = Пробный период закончился. Выберите тариф в разделе «Купить», чтобы VPN продолжал работать.
key-ready = 🔑 Ваш ключ готов (нажмите, чтобы скопировать):
    <code>{ $uri }</code>
key-activation-failed = Не удалось создать ваш ключ. Мы уже знаем и скоро всё исправим; дни подписки сохранены.
admin-activation-failed = ⚠️ Не удалось создать ключ пользователю { $user } (подписка { $subscription }) ни с одной попытки: { $error }
renewed = ✅ Подписка продлена с баланса ({ $amount } ₽). Действует до { $until }.
renewal-short = Не удалось продлить подписку: на балансе недостаточно средств. Пополните баланс и купите период в разделе «Купить».
renewal-unavailable = Ваш тариф больше не продаётся, поэтому продлить его не удалось. Выберите другой тариф в разделе «Купить».
broadcast = { $text }
payment-refunded = Мы не смогли сопоставить ваш платёж с заказом, поэтому звёзды возвращены вам. Ничего не списано.
