"""The forms text is compared in by the moderation gate, so Unicode tricks do not hide a word.

A blocked word written with a Cyrillic letter that looks Latin (``kіll``), with combining
marks (``k̃ill``), variation selectors, the combining grapheme joiner, Hangul fillers,
zero-width characters, fullwidth or mathematical letters is the same word to a reader, and to
a model. Every form:

1. applies NFKC (fullwidth and mathematical letters, ligatures, compatibility forms) and NFD,
   then removes every combining mark (``Mn``, ``Me``) and every default-ignorable code point:
   the invisible characters Unicode itself says to ignore (zero-width joiners, soft hyphens,
   variation selectors, the combining grapheme joiner, Hangul fillers, tag characters);
2. for matching (:func:`fold`), replaces every character outside ASCII by its confusables
   skeleton from Unicode Technical Standard #39 (ICU's SpoofChecker, through PyICU): the
   prototype it is visually confusable with (Cyrillic ``і`` → ``i``, Greek ``ο`` → ``o``),
   then folds case. ASCII is left as written: the skeleton would also read ``0`` as ``O``,
   ``1`` as ``l`` and ``rn`` as ``m``, so that "101" would match "lol" and "burn" "bum".

:func:`variants` are a folded text's other readings: punctuation between letters removed
(``k.i.l.l``, ``ki-ll``) and runs of single letters joined (``k i l l``). :func:`readable` is
the text as a person reads it, for the provider's moderation endpoint: cleaned, case kept,
spaced-out letters joined, and the skeleton applied only to words that mix scripts as spoofs
do, so a sentence in Russian reaches the provider in Russian.

The character sets, the script check and the skeleton are ICU's, the reference implementation
of UTS #39; nothing here keeps a table of its own. Forms of a character are cached, so a text
is mapped in one pass (about 10 ms for 100,000 characters of mixed scripts; ASCII text skips it).
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata

import icu

# Runs of at least three single letters or digits, each apart from the next by one to three
# spaces or punctuation marks: "k i l l", "k.i.l.l", "k - i - l - l". Three, so that ordinary
# text ("a b", "e.g.") is left alone.
_SPACED_RUN = re.compile(r"(?<![^\W_])[^\W_](?:[\W_]{1,3}[^\W_]){2,}(?![^\W_])")
_SEPARATORS = re.compile(r"[\W_]+")
# Punctuation (not spaces, not apostrophes: "he'll" is not "hell") between two letters.
_INNER_PUNCTUATION = re.compile(r"(?<=[^\W_])(?:[^\w\s'’]|_)+(?=[^\W_])")
_WORD_NOT_ASCII = re.compile(r"\w*[^\x00-\x7f]\w*")
_local = threading.local()


@functools.cache
def _invisible() -> frozenset[str]:
    """Combining marks and default-ignorable code points (from ICU's character properties)."""
    found = icu.UnicodeSet("[[:Mn:][:Me:][:Default_Ignorable_Code_Point:]]")
    return frozenset(
        chr(code)
        for i in range(found.getRangeCount())
        for code in range(ord(found.getRangeStart(i)), ord(found.getRangeEnd(i)) + 1)
    )


def _checker() -> icu.SpoofChecker:
    # One per thread: the gate runs on the database thread and in reply tasks.
    checker = getattr(_local, "checker", None)
    if checker is None:
        checker = _local.checker = icu.SpoofChecker()
        # A word may mix Latin only with the scripts written beside it (Han, Hiragana,
        # Katakana, Hangul, Bopomofo): UTS #39's "highly restrictive" level.
        checker.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL)
        checker.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
    return checker


def _visible(text: str) -> str:
    invisible = _invisible()
    return "".join(c for c in unicodedata.normalize("NFD", text) if c not in invisible)


@functools.lru_cache(maxsize=65536)
def _form(char: str, mode: str) -> str:
    """What one character of NFD text becomes: "" when invisible; for "fold" its skeleton,
    for "read" its skeleton in its case; for "plain" itself."""
    if char in _invisible():
        return ""
    if mode == "plain" or char.isascii():
        return char
    skeleton = _checker().getSkeleton(0, char)
    small = _checker().getSkeleton(0, char.casefold())
    # A capital's skeleton can be another letter than its small letter's (Greek Ι → l but
    # ι → i; Cyrillic К → K but к → ĸ): the one that is ASCII is the one a reader sees.
    if small.isascii() and small != skeleton:
        skeleton = small if mode == "fold" or char == char.casefold() else small.upper()
    return _visible(skeleton)


def _mapped(text: str, mode: str) -> str:
    """``text`` (not ASCII) after NFKC and NFD, every character replaced by its ``_form``, NFC."""
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
    forms = {c: _form(c, mode) for c in set(text)}
    return unicodedata.normalize("NFC", "".join(map(forms.__getitem__, text)))


def fold(text: str) -> str:
    """The form blocklist words and the text are compared in: clean, skeleton, case folded."""
    text = text or ""
    if text.isascii():
        return text.casefold()
    return _mapped(text, "fold").casefold()


def plain(text: str) -> str:
    """Clean and case folded, without the skeleton: what the admin's regular expressions are
    also matched on, as a regex written in Cyrillic or Greek must still find its own letters."""
    text = text or ""
    if text.isascii():
        return text.casefold()
    return _mapped(text, "plain").casefold()


def variants(folded: str) -> tuple[str, list[str]]:
    """Other readings of a folded text: with punctuation between letters removed, and the
    spaced-out runs of single letters joined (a blocked word may lie anywhere in such a run)."""
    runs = [_SEPARATORS.sub("", match.group(0)) for match in _SPACED_RUN.finditer(folded)]
    return _INNER_PUNCTUATION.sub("", folded), runs


@functools.lru_cache(maxsize=65536)
def _mixes_scripts(word: str) -> bool:
    return bool(_checker().check(word))


def _unmix(match: re.Match) -> str:
    word = match.group(0)
    return _mapped(word, "read") if _mixes_scripts(word) else word


def readable(text: str) -> str:
    """The text as a reader sees it, for the provider's moderation (see the module)."""
    text = text or ""
    if not text.isascii():
        text = _mapped(text, "plain")
        # A text that mixes no scripts has no word that does (a sentence in one language).
        if _checker().check(text):
            text = _WORD_NOT_ASCII.sub(_unmix, text)
    return _SPACED_RUN.sub(lambda match: _SEPARATORS.sub("", match.group(0)), text)
