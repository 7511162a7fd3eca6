"""The streaming path: reply tasks, their channel-layer groups, and the sweep of dead replies."""


def conversation_group(conversation_id) -> str:
    """Every socket that has the conversation open: receives deltas and message events."""
    return f"conv.{_hex(conversation_id)}"


def control_group(conversation_id) -> str:
    """The reply task writing in this conversation (on whichever worker): stop and sync requests."""
    return f"ctl.{_hex(conversation_id)}"


def user_group(user_id) -> str:
    """Every socket of one member: conversation updates and session revocation."""
    return f"user.{int(user_id)}"


def _hex(value) -> str:
    import uuid

    return uuid.UUID(str(value)).hex


# Reply id -> an event the first socket of this process to write the reply's first delta sets.
# A fast upstream fills our socket buffer faster than the reply task reads it, so the task
# reads on without pause and the first token would reach the browser with the last; the task
# waits (bounded) for this event before reading on. Process-local, like the task itself.
first_delta_written: dict[str, object] = {}
