"""Stripe API emulator for tests and local runs: no network, standard library + ``stripe``.

A real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1 in a background thread) speaking
Stripe's v1 form-encoded API, so the unmodified ``stripe`` SDK works against it::

    with StripeEmulator() as emu:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": emu.url}, max_network_retries=0
        )
        pi = client.v1.payment_intents.create({"amount": 5000, "currency": "eur"})
        emu.succeed_payment_intent(pi.id)

Modelled: PaymentIntents (create/retrieve/update/confirm/cancel), Refunds (create/retrieve/list;
several per charge; ``reverse_transfer`` and ``refund_application_fee`` on destination
charges), Charges (retrieve), connected Accounts (create with ``type`` or ``controller``
properties, retrieve, Express login links; unknown ``acct_`` ids are auto-created, enabled),
Account Links and Events (list/retrieve). What Stripe does later is a method call:
a customer pays (``succeed_payment_intent``), a refund is made in the Dashboard
(``refund_payment_intent``), pending refunds fail or succeed (``fail_next_refunds`` /
``pend_next_refunds`` then ``settle_refunds``, ``fail_refund``), the user completes an
onboarding link (``complete_onboarding``). Refund events can also be
built on demand (``charge_refunded_event``, ``refund_event``), shaped as for API version
2026-10-28.

- Paying works as in test mode: ``confirm`` with a test PaymentMethod (``pm_card_visa``,
  ``pm_card_chargeDeclined`` …) or a raw test card number (``payment_method_data[card]
  [number]=4000000000009995``), with the secret key or, as Stripe.js does from a browser,
  a publishable key (``pk_test_…``) and the intent's ``client_secret`` (``cards.py``).
- Every state change emits its Stripe events (``payment_intent.succeeded``,
  ``payment_intent.payment_failed``, ``charge.refunded``, ``account.updated`` …), which are
  logged and, with a webhook endpoint configured, delivered signed in the background with
  Stripe's retries and backoff (``delivery.py``; what ``stripe listen`` does).
- Connect onboarding works offline: an Account Link's URL opens a page of the emulator
  with a "Complete onboarding" button (``pages.py``) that enables the account, sends
  ``account.updated`` and redirects to the link's ``return_url``; events on connected
  accounts carry ``account`` and go to the Connect endpoint when one is configured.
- ``state_path`` keeps objects, events, idempotency keys and deliveries still due across
  restarts (``state.py``); ``latency_ms`` slows every API call (benchmarks).
- Allowed parameters (also nested ones) come from the SDK's typed params
  (``stripe.params.*Params``): anything else -> 400 ``parameter_unknown`` like Stripe. Parameters
  the SDK knows but the emulator does not model -> 400 ``emulator_unsupported_parameter``.
- ``Idempotency-Key`` per API key: same request -> stored answer replayed with
  ``Idempotent-Replayed: true``; other endpoint/parameters -> 400 ``idempotency_error``;
  concurrent use -> 409. Validation errors are not stored (as at Stripe).
- Failure injection: ``fail_next``/``fail_always`` answer before the API runs (nothing stored,
  so a retry with the same key succeeds); ``delay_next`` sleeps after processing by default (the
  answer is "lost", as in a client timeout) or before it with ``phase="before"``.
- JSON control API under ``/_emulator/`` (see ``control.py``), no auth; browser pages under
  ``/connect/setup/`` and ``/express/`` (``pages.py``).
- Standalone: ``python -m devtools.stripe_emulator --port 12111 --webhook-url URL
  --webhook-secret whsec_… [--connect-webhook-url URL --connect-webhook-secret whsec_…]
  --state FILE`` (``--help``; stops on SIGTERM/SIGINT).

Modules: ``emulator`` (state, request pipeline, the methods tests call), one module per
resource (``payment_intents``, ``refunds``, ``charges``, ``accounts``, ``account_links``,
``events``: handlers and their ``ROUTES``; ``refunds`` also builds the refund events),
``pages`` (the onboarding and Express Dashboard pages), ``cards`` (test cards),
``delivery`` (webhooks), ``state`` (on disk), ``control`` (``/_emulator/``),
``idempotency``, ``faults`` (failure injection), ``params`` (validation from the SDK's
typed params), ``wire`` (form decoding, headers, recorded requests), ``store``, ``errors``,
``server`` (HTTP), ``__main__`` (the command line). A new resource is a module with
handlers and ``ROUTES``
(``routing.route(method, path, handler, sdk_params_typeddict)``), listed in
``emulator.ROUTES``; its out-of-band actions become ``StripeEmulator`` methods and
``control.ROUTES`` entries.
"""

from devtools.stripe_emulator.emulator import StripeEmulator
from devtools.stripe_emulator.errors import ApiError
from devtools.stripe_emulator.wire import API_VERSION, Headers, RecordedRequest, decode_form

__all__ = ["API_VERSION", "ApiError", "Headers", "RecordedRequest", "StripeEmulator", "decode_form"]
