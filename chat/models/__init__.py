"""Parley's chat data, one module per subject; every model is importable from ``chat.models``."""

from chat.models.api import TOKEN_PREFIX, ApiPolicy, ApiToken, token_hash
from chat.models.catalog import ChatModel, ModelKind, Provider
from chat.models.conversations import Conversation, Message
from chat.models.documents import Chunk, Citation, Collection, Document
from chat.models.media import MediaFile
from chat.models.moderation import BlocklistEntry, ModerationEvent
from chat.models.usage import Reservation, UsageKind, UsageMonth, UsageRecord
from chat.models.voice import SpeechClip, VoicePreference

__all__ = [
    "TOKEN_PREFIX",
    "ApiPolicy",
    "ApiToken",
    "BlocklistEntry",
    "ChatModel",
    "Chunk",
    "Citation",
    "Conversation",
    "Collection",
    "Document",
    "MediaFile",
    "Message",
    "ModelKind",
    "ModerationEvent",
    "Provider",
    "Reservation",
    "SpeechClip",
    "UsageKind",
    "UsageMonth",
    "UsageRecord",
    "VoicePreference",
    "token_hash",
]
