"""The headers every answer carries for the browser's sake, in one place.

- `X-Content-Type-Options: nosniff`: a JSON answer is never run as a script or page.
- `Referrer-Policy: no-referrer`: URLs here carry what should stay here (booking ids,
  calendar feed tokens, sign-in links), and nothing of ours needs the Referer header —
  Stripe.js authenticates with the publishable key, not the page's origin.
- `X-Frame-Options: DENY` (and `frame-ancestors 'none'` in the CSP): no page of ours may be
  framed, so none can be clickjacked.
- `Cache-Control: no-store` on answers that hold a secret or someone's data: one that
  names a `clientSecret` (booking create and get) and one to a request that carried
  credentials (a bearer token, a cookie) or set a cookie. A shared cache or the browser's
  disk must not keep them.
- A Content-Security-Policy on HTML pages: `content_security_policy(settings)` for the
  app's pages (scripts and styles from our origin and Stripe.js only: no inline script or
  style), and `docs_content_security_policy(page)` for the Swagger UI at /docs, whose page
  has one inline script of the package's own (allowed by its hash) and inline styles.
- CORS (CORS_ORIGINS set): `Vary: Origin` on every answer, since flask-cors adds it only to
  answers to a cross-origin request; without it a cache could hand a same-origin answer
  (no Access-Control-Allow-Origin) to a cross-origin page, or the reverse.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from urllib.parse import urlsplit

from flask import Flask, Response, request

from shared.config import Settings

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STRIPE_JS = "https://js.stripe.com"
STRIPE_HOOKS = "https://hooks.stripe.com"
STRIPE_API = "https://api.stripe.com"
DOCS_PREFIX = "/docs"
# How an answer gives a Stripe client secret away (JSON field name).
_CLIENT_SECRET = b'"clientSecret"'
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def _origin(url: str | None) -> str | None:
    """scheme://host[:port] of a URL, None when it has none."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def content_security_policy(settings: Settings) -> str:
    """The policy of the app's HTML pages. STRIPE_API_BASE (the emulator in development)
    is where the pages' scripts call Stripe and where its test card form posts."""
    stripe_base = _origin(settings.stripe_api_base)
    extra = f" {stripe_base}" if stripe_base else ""
    directives = [
        "default-src 'self'",
        f"script-src 'self' {STRIPE_JS}",
        f"frame-src {STRIPE_JS} {STRIPE_HOOKS}",
        f"connect-src 'self' {STRIPE_API}{extra}",
        "img-src 'self' data:",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        f"form-action 'self'{extra}",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


@lru_cache(maxsize=8)
def docs_content_security_policy(page: bytes) -> str:
    """The policy of the Swagger UI page: its assets from our origin, its one inline
    script allowed by hash (whatever version of the package renders it), inline styles
    (Swagger UI's components set `style` attributes) and data: images (its icons)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    directives = [
        "default-src 'self'",
        f"script-src 'self' {hashes}".rstrip(),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


def _holds_a_client_secret(response: Response) -> bool:
    if response.direct_passthrough or response.mimetype != "application/json":
        return False
    return _CLIENT_SECRET in response.get_data()


def _private(response: Response) -> bool:
    """An answer for someone in particular, or one that holds a secret."""
    return (
        "Authorization" in request.headers
        or "Cookie" in request.headers
        or "Set-Cookie" in response.headers
        or _holds_a_client_secret(response)
    )


def install(app: Flask, settings: Settings) -> None:
    """Add the headers to every answer of `app` (error answers included)."""
    page_policy = content_security_policy(settings)
    cors = bool(settings.cors_origins)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in BASE_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "text/html" and "Content-Security-Policy" not in response.headers:
            if request.path == DOCS_PREFIX or request.path.startswith(DOCS_PREFIX + "/"):
                policy = docs_content_security_policy(response.get_data())
            else:
                policy = page_policy
            response.headers["Content-Security-Policy"] = policy
        if _private(response):
            response.headers["Cache-Control"] = "no-store"
        if cors:
            response.vary.add("Origin")
        return response
