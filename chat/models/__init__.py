"""Parley's chat data, one module per subject; every model is importable from ``chat.models``."""

from chat.models.api import TOKEN_PREFIX, ApiPolicy, ApiToken, token_hash
from chat.models.catalog import ChatModel, ModelKind, Provider
from chat.models.conversations import Conversation, Message
from chat.models.documents import Chunk, Citation, Collection, Document
from chat.models.finetuning import (
    ACTIVE_JOB_STATUSES,
    FINAL_JOB_STATUSES,
    DatasetFormat,
    FileStatus,
    FineTuneApi,
    FineTuneDataset,
    FineTuneExample,
    FineTuneFile,
    FineTuneJob,
    JobStatus,
)
from chat.models.library import Folder, Preset, Prompt, ShareLink
from chat.models.media import MediaFile
from chat.models.moderation import BlocklistEntry, ModerationEvent
from chat.models.search import MessageChunk, MessageIndex
from chat.models.usage import Reservation, UsageKind, UsageMonth, UsageRecord
from chat.models.voice import SpeechClip, VoicePreference

__all__ = [
    "ACTIVE_JOB_STATUSES",
    "FINAL_JOB_STATUSES",
    "DatasetFormat",
    "FileStatus",
    "FineTuneApi",
    "FineTuneDataset",
    "FineTuneExample",
    "FineTuneFile",
    "FineTuneJob",
    "JobStatus",
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
    "Folder",
    "MediaFile",
    "Message",
    "MessageChunk",
    "MessageIndex",
    "ModelKind",
    "ModerationEvent",
    "Preset",
    "Prompt",
    "Provider",
    "Reservation",
    "SpeechClip",
    "ShareLink",
    "UsageKind",
    "UsageMonth",
    "UsageRecord",
    "VoicePreference",
    "token_hash",
]
