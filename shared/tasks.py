"""Task names: the API and the worker meet here, never by importing each other."""

APPLY_STRIPE_EVENT = "inkflow.apply_stripe_event"
SEND_NOTIFICATION = "inkflow.send_notification"
EXPIRE_HOLDS = "inkflow.expire_holds"
SWEEP_INBOX = "inkflow.sweep_inbox"
SWEEP_OUTBOX = "inkflow.sweep_outbox"
PURGE_IDEMPOTENCY_KEYS = "inkflow.purge_idempotency_keys"
