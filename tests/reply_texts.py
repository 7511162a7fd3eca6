"""Message texts as a client of docs/websocket-protocol.md assembles them, from server frames.

Pure (no socket): the consumer tests' ``Tab`` and the deploy tests' ``NetTab`` both feed every
frame they receive through ``apply_frame`` and differ only in what they make of a gap.
"""

from __future__ import annotations


def apply_frame(texts: dict[str, str], frame: dict) -> bool:
    """Fold one server frame into ``texts`` (message id -> text).

    Returns False, leaving ``texts`` as it was, for a ``reply.delta`` whose offset lies past the
    text held so far: the client missed a delta (the protocol's answer is to send ``sync``).
    """
    kind = frame["type"]
    if kind == "conversation.state":
        for message in [*frame["messages"], *frame.get("choices", [])]:
            texts[message["id"]] = message["content"]
    elif kind in ("message.created", "reply.done"):
        message = frame["message"]
        if kind == "reply.done" or message["id"] not in texts:
            texts[message["id"]] = message["content"]
    elif kind == "reply.snapshot":
        if len(frame["text"]) >= len(texts.get(frame["message_id"], "")):
            texts[frame["message_id"]] = frame["text"]
    elif kind == "reply.delta":
        have = texts.get(frame["message_id"], "")
        if frame["offset"] > len(have):
            return False
        texts[frame["message_id"]] = have[: frame["offset"]] + frame["text"]
    return True
