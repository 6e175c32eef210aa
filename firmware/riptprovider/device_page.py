"""The verification page's HTML (RFC 8628 section 3.3): three small pages, no JavaScript.

1. :func:`sign_in_page` — the code (prefilled from ``/D/{CODE}``), the
   account id and its password, and at most one sentence saying what was
   wrong with the last try;
2. :func:`consent_page` — the device's name and the account, with Approve
   and Deny buttons carrying the sign-in's one-time token;
3. :func:`result_page` — approved or denied.

Everything interpolated is HTML-escaped.  The pages work on a phone's
browser (viewport meta, one column, large controls) and carry their CSS
inline: the page loads nothing else, so the Content-Security-Policy of
:data:`PAGE_HEADERS` can forbid everything but inline style and same-origin
form posts.
"""

from __future__ import annotations

from html import escape

PAGE_HEADERS = (
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
)
"""Headers of every page: no framing (click-jacking), no caching (one-time tokens), no leaks."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:1.5rem;max-width:26rem;margin:auto;
line-height:1.4;color:#222}
h1{font-size:1.4rem}
label{display:block;margin-top:1rem;font-weight:600}
input{box-sizing:border-box;width:100%;font-size:1.2rem;padding:.5rem;margin-top:.25rem}
input.code{text-transform:uppercase;letter-spacing:.15em;font-family:monospace}
button{font-size:1.1rem;padding:.7rem 1.2rem;margin:1.2rem .5rem 0 0;border-radius:.4rem;
border:1px solid #555;background:#eee}
button.yes{background:#1b6e2e;color:#fff;border-color:#1b6e2e}
p.error{color:#a00;font-weight:600}
p.device{font-size:1.3rem}
""".strip()


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    ).encode()


def sign_in_page(code: str = "", account: str = "", error: str | None = None) -> bytes:
    """The first page: code, account id, password (the password is never refilled)."""
    problem = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    return _page(
        "Log in a phone",
        "<h1>Log in a phone</h1>"
        "<p>Enter the code your phone shows, then your account and password.</p>"
        f"{problem}"
        '<form method="post" action="/device">'
        '<input type="hidden" name="step" value="sign-in">'
        '<label for="user_code">Code</label>'
        f'<input class="code" id="user_code" name="user_code" value="{escape(code)}" '
        'autocomplete="off" autocapitalize="characters" spellcheck="false" required>'
        '<label for="account">Account</label>'
        f'<input id="account" name="account" value="{escape(account)}" '
        'autocomplete="username" autocapitalize="none" spellcheck="false" required>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<button class="yes" id="sign-in" type="submit">Sign in</button>'
        "</form>",
    )


def consent_page(code: str, device_name: str | None, account: str, token: str) -> bytes:
    """The second page: which device asks for which account; Approve or Deny."""
    device = escape(device_name) if device_name else "a phone"
    hidden = (
        '<input type="hidden" name="step" value="decide">'
        f'<input type="hidden" name="user_code" value="{escape(code)}">'
        f'<input type="hidden" name="csrf" value="{escape(token)}">'
    )
    return _page(
        "Let this phone in?",
        "<h1>Let this phone in?</h1>"
        f'<p class="device" id="device">{device}</p>'
        f'<p>wants to use the account <strong id="account">{escape(account)}</strong> '
        f"(code {escape(code)}).</p>"
        '<form method="post" action="/device">'
        f"{hidden}"
        '<button class="yes" id="approve" name="decision" value="approve" type="submit">'
        "Approve</button>"
        '<button id="deny" name="decision" value="deny" type="submit">Deny</button>'
        "</form>",
    )


def result_page(approved: bool) -> bytes:
    """The last page."""
    if approved:
        return _page(
            "Approved",
            '<h1 id="result">Approved</h1><p>You can put your phone down — it is logging in.</p>',
        )
    return _page(
        "Denied",
        '<h1 id="result">Denied</h1><p>The phone was not let in. You can close this page.</p>',
    )
