"""Server-sent events framing (WHATWG HTML "event stream interpretation"), without I/O.

Fed one line at a time (line terminators already removed: CRLF, LF and CR all end a line), it
returns a :class:`Message` when a blank line dispatches one. Comment lines (``: ping``) and the
``id``/``retry`` fields are ignored; several ``data:`` lines join with "\\n". What the data means
is the caller's business (chat/upstream/client.py).
"""

from __future__ import annotations

from typing import NamedTuple


class Message(NamedTuple):
    data: str
    event: str | None = None


class Decoder:
    __slots__ = ("_data", "_event", "_started")

    def __init__(self):
        self._data: list[str] = []
        self._event: str | None = None
        self._started = False

    def feed(self, line: str) -> Message | None:
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")  # a byte-order mark may open the stream
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value or None
        return None

    def feed_lines(self, lines: list[bytes]) -> list[Message]:
        """``feed`` for many lines of raw UTF-8 at once: the messages they dispatch.

        The same result as decoding each line and feeding it, with a fast path for the two
        lines an OpenAI-style stream is made of (``data: ...`` and the blank line that ends
        an event); any other line goes through ``feed``. Lines end at ASCII bytes, so a line
        decodes the same alone as within the stream.
        """
        out = []
        data = self._data
        for line in lines:
            if not line:
                self._started = True
                if data:
                    out.append(Message("\n".join(data), self._event))
                    data = self._data = []
                self._event = None
            elif line[:6] == b"data: " and self._started:
                data.append(line[6:].decode("utf-8", "replace"))
            else:
                message = self.feed(line.decode("utf-8", "replace"))
                data = self._data
                if message is not None:
                    out.append(message)
        return out

    def flush(self) -> Message | None:
        """What is pending at the end of the stream (a last event without its blank line)."""
        return self._dispatch()

    def _dispatch(self) -> Message | None:
        if not self._data:
            self._event = None
            return None
        message = Message("\n".join(self._data), self._event)
        self._data = []
        self._event = None
        return message
