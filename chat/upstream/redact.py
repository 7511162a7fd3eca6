"""The one redaction of provider keys in text that came from upstream (T27).

Every path that carries an upstream's words keeps them only after :func:`clean`: the error
a member sees in a reply, ``Message.error_text``, moderation events, the log (the model sync's
included) and the admin's connection test and sync messages. The rule, in one place so two
copies cannot drift apart:

- any run of 8 or more characters that also occurs in the key is masked, whatever the case:
  an upstream that echoes the key without its first characters, cut short, lowercased, or a
  key without the ``sk-`` prefix (``gsk_…``, hex keys) leaves nothing usable behind. The
  whole key becomes its usual mask (``sk-…abcd``), so an admin can tell which key was meant;
  any other part of it becomes ``…``;
- a shorter key (a local server's "secret") is masked wherever it occurs whole;
- other keys that merely look like keys (``sk-…``, ``gsk_…``, a ``Bearer`` token, a long hex
  string) are masked too: an error may quote another provider's key, or a proxy's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chat import crypto

FRAGMENT = 8  # the shortest part of a key that is masked wherever it appears
SHORT_KEY = 6  # a key shorter than FRAGMENT is masked whole from this length on
MASK = "…"

_KEY_LIKE = re.compile(
    r"\b(?:sk|gsk|xai|pplx|hf|r8)[-_][A-Za-z0-9_\-*]{8,}"  # prefixed API keys of common providers
    r"|\b[0-9a-fA-F]{32,}\b",  # hex keys (and hashes, which lose nothing by being masked)
)
_BEARER = re.compile(r"\bBearer\s+\S+", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every part of 8 or more characters of each secret masked (see the module)."""
    for secret in secrets:
        if secret:
            text = _redact_one(text, secret)
    return _BEARER.sub(f"Bearer {MASK}", _KEY_LIKE.sub(lambda match: crypto.mask(match.group(0)), text))


def clean(text, secrets: Iterable[str] = (), *, limit: int = 300) -> str:
    """Upstream text made safe to keep: one printable line, at most ``limit`` characters, no key in it.

    Redaction comes before the cut, so a key at the cut cannot be left half-masked.
    """
    text = "".join(c if c.isprintable() else " " for c in str(text or ""))
    text = " ".join(redact(text, secrets).split())
    return text if len(text) <= limit else text[: limit - 1] + MASK


def _redact_one(text: str, secret: str) -> str:
    lowered, key = text.lower(), secret.lower()
    if len(key) < FRAGMENT:
        if len(key) < SHORT_KEY:
            return text
        return re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    grams = {key[i : i + FRAGMENT] for i in range(len(key) - FRAGMENT + 1)}
    # Mark every character covered by an 8-character window that occurs in the key: the runs
    # of marked characters are exactly the parts of the text of 8 or more characters that
    # occur in the key (or join two such parts). Linear in the text; a key has few windows.
    covered = bytearray(len(text))
    found = False
    for i in range(len(lowered) - FRAGMENT + 1):
        if lowered[i : i + FRAGMENT] in grams:
            covered[i : i + FRAGMENT] = b"\x01" * FRAGMENT
            found = True
    if not found:
        return text
    out, i = [], 0
    while i < len(text):
        if not covered[i]:
            j = covered.find(1, i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
        else:
            j = covered.find(0, i)
            j = len(text) if j < 0 else j
            out.append(crypto.mask(secret) if text[i:j].lower() == key else MASK)
        i = j
    return "".join(out)
