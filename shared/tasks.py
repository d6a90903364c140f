"""Task names: the API and the worker meet here, never by importing each other."""

APPLY_STRIPE_EVENT = "inkflow.apply_stripe_event"
SEND_NOTIFICATION = "inkflow.send_notification"
EXPIRE_HOLDS = "inkflow.expire_holds"
SWEEP_INBOX = "inkflow.sweep_inbox"
SWEEP_OUTBOX = "inkflow.sweep_outbox"
PURGE_IDEMPOTENCY_KEYS = "inkflow.purge_idempotency_keys"
PROCESS_REFUND = "inkflow.process_refund"
SWEEP_REFUNDS = "inkflow.sweep_refunds"
RECONCILE_DEPOSIT_INTENTS = "inkflow.reconcile_deposit_intents"
SWEEP_REMINDERS = "inkflow.sweep_reminders"
SEND_SIGNIN_LINK = "inkflow.send_signin_link"
PURGE_STRIPE_EVENTS = "inkflow.purge_stripe_events"
PURGE_NOTIFICATIONS = "inkflow.purge_notifications"

# Order of work when the queue backs up: the Redis transport keeps one list per priority
# step and its BRPOP takes from the first non-empty one, 0 first. Booking e-mails (the
# outbox) wait behind everything else: a webhook burst confirms its bookings first, their
# mails follow (each mail costs the worker more CPU than applying the event that caused
# it). The sign-in link, which someone is waiting for, keeps the default.
LOW_PRIORITY = 9
TASK_PRIORITY: dict[str, int] = {SEND_NOTIFICATION: LOW_PRIORITY}
