"""The dashboard's sign-in rules: how long a magic link lasts, how many an address may
be sent, and the operator's token check. Pure: the use case (`shared.usecases.signin`)
reads the counts and the clock and asks here."""

from __future__ import annotations

import hmac
from datetime import timedelta

# A magic link opens one session, within this long of being asked for.
LINK_LIFETIME = timedelta(minutes=15)
# At most LINKS_PER_WINDOW links per artist in any RATE_WINDOW: a form anyone can post
# must not turn into a way to fill an artist's mailbox.
RATE_WINDOW = timedelta(minutes=15)
LINKS_PER_WINDOW = 3
# Links older than this are deleted when the artist asks for a new one (used or not,
# nothing reads them any more; the rate limit looks back RATE_WINDOW).
KEEP_LINKS = timedelta(days=1)


def may_send_link(sent_in_window: int) -> bool:
    """True while the artist has had fewer than LINKS_PER_WINDOW links in RATE_WINDOW."""
    return sent_in_window < LINKS_PER_WINDOW


def is_operator_token(expected: str, given: str) -> bool:
    """`given` is the operator's token; compared in constant time (it is a shared secret,
    and the sign-in form is public)."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
