"""Offline token counting with OpenAI's real encodings (the ``bpe-openai`` package).

Counting goes straight to the package's Rust extension. The package's Python layer (its
``__init__``) parses the rank files of three encodings into Python dictionaries at import,
and its tiktoken-compatible ``Encoding`` copies them again: about 70 MB and 0.8 s of start-up
that counting never uses (docs/performance.md, idle memory).

Counts follow OpenAI's cookbook "How to count tokens with tiktoken": every chat message
costs its content, its role and ``TOKENS_PER_MESSAGE`` framing tokens, and every reply is
primed with ``REPLY_PRIMING`` more. The roles Parley sends ("system", "user", "assistant")
are one token each in both encodings, which ``ROLE_TOKENS`` records.

Text is always counted as plain text: a member who types ``<|endoftext|>`` gets the tokens
of those characters, never the special token and never an exception.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import threading
from pathlib import Path

O200K = "o200k_base"
CL100K = "cl100k_base"

# From the cookbook's num_tokens_from_messages() for gpt-3.5-turbo-0613 and every later
# chat model: <|start|>{role}<|message|>{content}<|end|> costs 3 tokens besides the role
# and the content, and the reply is primed with <|start|>assistant<|message|>.
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
ROLE_TOKENS = 1

# bpe-openai refuses a single call over 200,000 tokens or 1,000,000 characters. A UTF-8
# character is at most 4 bytes and a byte-level BPE token covers at least one byte, so a
# piece of 50,000 characters can never exceed the token limit.
_PIECE_CHARS = 50_000

# Model id families. Matching is on the bare id, after dropping a routing prefix such as
# "openai/" and the "ft:" prefix of fine-tuned models ("ft:gpt-4o-mini:org::id").
_CL100K_MODELS = re.compile(r"^(gpt-3\.5|gpt-35|gpt-4(?:$|-(?!o)))")
_O200K_MODELS = re.compile(r"^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4)")

_encodings: dict[str, object] = {}  # name -> the extension's tokenizer (it has ``count``)
_encodings_lock = threading.Lock()
_bindings = None


def _bare_id(model_id: str) -> str:
    return (model_id or "").strip().lower().removeprefix("ft:").rsplit("/", 1)[-1]


def encoding_name_for_model(model_id: str) -> str:
    """The encoding a model tokenizes with.

    ``o200k_base`` for the gpt-4o, gpt-4.1, gpt-4.5, gpt-5 and o-series families,
    ``cl100k_base`` for gpt-3.5 and gpt-4 (including gpt-4-turbo, excluding gpt-4o and
    gpt-4.1). Any other model (a local Llama, a provider's own family) gets ``o200k_base``
    as an estimate: its real tokenizer is unknown offline, and o200k's counts for English
    and code sit close to those of current open-weight tokenizers.
    """
    name = _bare_id(model_id)
    if _O200K_MODELS.match(name):
        return O200K
    if _CL100K_MODELS.match(name):
        return CL100K
    return O200K


def _load_bindings():
    """``bpe_openai._bindings``, loaded from its file without running the package's __init__."""
    spec = importlib.util.find_spec("bpe_openai")  # finds the package; does not import it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("bpe-openai is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"_bindings{suffix}"
        if path.exists():
            loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
            module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
            loader.exec_module(module)
            return module
    raise ImportError(f"bpe-openai's extension is missing from {folder}")


def _encoding(encoding_name: str):
    # Building an encoding's tables takes about 0.2 s and 60 MB, so each is built once per
    # process. The lock keeps two threads from building the same one twice.
    global _bindings
    encoding = _encodings.get(encoding_name)
    if encoding is None:
        with _encodings_lock:
            encoding = _encodings.get(encoding_name)
            if encoding is None:
                if _bindings is None:
                    _bindings = _load_bindings()
                encoding = _bindings.tokenizer_for_encoding(encoding_name)
                _encodings[encoding_name] = encoding
    return encoding


def _plain(text: str) -> str:
    # The extension takes UTF-8 only: a lone surrogate (possible in JSON input) becomes U+FFFD.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _pieces(text: str):
    """Split long text into pieces under the tokenizer's per-call limits.

    Cuts fall after a newline where possible, where a BPE merge across the cut is least
    likely, so the sum of the pieces' counts stays within a token or two of the whole's.
    """
    start = 0
    length = len(text)
    while length - start > _PIECE_CHARS:
        end = start + _PIECE_CHARS
        newline = text.rfind("\n", start + _PIECE_CHARS // 2, end)
        if newline != -1:
            end = newline + 1
        yield text[start:end]
        start = end
    yield text[start:]


def count_tokens(text: str, encoding_name: str) -> int:
    """How many tokens ``text`` is under ``encoding_name``, counting special-token text as text."""
    if not text:
        return 0
    encoding = _encoding(encoding_name)
    text = _plain(text)
    if len(text) <= _PIECE_CHARS:
        return encoding.count(text)
    return sum(encoding.count(piece) for piece in _pieces(text))


def truncate(text: str, limit: int, encoding_name: str) -> str:
    """The longest prefix of ``text`` of at most ``limit`` tokens (whole characters only)."""
    encoding = _encoding(encoding_name)
    ids = encoding.encode(_plain(text))
    if len(ids) <= limit:
        return text
    for end in range(max(limit, 0), max(limit - 4, -1), -1):
        # A UTF-8 character spans at most 4 byte-level tokens: a cut inside one decodes after
        # at most 3 steps back.
        try:
            return encoding.decode(ids[:end])
        except ValueError:
            continue
    return ""


class ReplyCap:
    """Ends a streamed reply at ``limit`` tokens, however long the upstream goes on (issue 20).

    Counting at every delta would tokenize the reply once per token. A byte-level BPE token
    covers at least one byte, so text of no more bytes than the tokens still allowed cannot
    have reached the limit: only text past that bound is counted, in the pieces that came
    since the last count, and the whole text only when the pieces' sum says the limit is
    reached (cutting text into pieces costs, in practice, a token more at a cut, never
    fewer). So a reply is tokenized about once, whatever its length.
    """

    def __init__(self, limit: int, encoding_name: str):
        self.limit = max(int(limit), 0)
        self.encoding_name = encoding_name
        self.reached = False
        self._kept: list[str] = []  # the text let through so far
        self._mark = 0  # _kept[:_mark] is the text counted so far...
        self._counted = 0  # ...in this many tokens (an upper bound)
        self._pending_bytes = 0  # UTF-8 bytes of _kept[_mark:]

    def take(self, delta: str) -> str:
        """The part of ``delta`` that fits; once the limit is reached, ``reached`` is True."""
        if self.reached:
            return ""
        self._pending_bytes += len(delta.encode("utf-8", "surrogatepass"))
        if self._pending_bytes <= self.limit - self._counted:
            self._kept.append(delta)
            return delta
        counted = self._counted + count_tokens("".join(self._kept[self._mark :]) + delta, self.encoding_name)
        if counted > self.limit:
            # The pieces' sum says the limit is reached: count the whole text to be sure.
            before = "".join(self._kept)
            self._kept = [before]
            counted = count_tokens(before + delta, self.encoding_name)
            if counted > self.limit:
                self.reached = True
                fits = truncate(before + delta, self.limit, self.encoding_name)
                delta = fits[len(before) :] if len(fits) > len(before) else ""
        self._kept.append(delta)
        self._mark, self._counted, self._pending_bytes = len(self._kept), counted, 0
        return delta
