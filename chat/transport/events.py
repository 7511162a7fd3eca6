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

