"""Providers and their model catalog: the provider from the environment, and model syncs.

The catalog lives in the database and is refreshed in the background, by an admin action and
by ``manage.py setup_providers``; never while a page waits on a provider (docs/architecture.md, promise 9).
A sync adds models a provider newly lists and never deletes or disables one: admins decide.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat import crypto
from chat.catalog import families
from chat.errors import UpstreamError
from chat.models import ChatModel, Provider
from chat.upstream import client

logger = logging.getLogger(__name__)

ENV_PROVIDER_NAME = "OpenAI"
OPENAI_HOST = "api.openai.com"


def provider_sync_from_env() -> Provider | None:
    """Create or update the provider described by ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` /
    ``OPENAI_ORGANIZATION``; idempotent (an unchanged environment writes nothing).

    Nothing happens when neither a key nor a non-default base URL is set (a keyless local
    gateway is a valid setup). An invalid base URL is a configuration error.
    """
    key = settings.OPENAI_API_KEY.strip()
    organization = settings.OPENAI_ORGANIZATION.strip()
    # Checked first, key or not: a malformed URL is a configuration error, never a traceback.
    # The value is not echoed: it may carry a password (refused, but then shown in a log).
    try:
        base_url = client.validate_base_url(settings.OPENAI_BASE_URL.strip() or "https://api.openai.com/v1")
    except client.InvalidEndpoint as exc:
        raise ImproperlyConfigured(f"OPENAI_BASE_URL: {exc}") from None
    if not key and urlsplit(base_url).hostname == OPENAI_HOST:
        return None
    try:
        endpoint = client.Endpoint(base_url=base_url, api_key=key, organization=organization)
    except client.InvalidEndpoint as exc:
        raise ImproperlyConfigured(f"OPENAI_API_KEY or OPENAI_ORGANIZATION: {exc}") from None

    with transaction.atomic():
        provider = Provider.objects.select_for_update().filter(from_environment=True).order_by("pk").first()
        if provider is None:
            name = ENV_PROVIDER_NAME
            if Provider.objects.filter(name=name).exists():
                name = f"{ENV_PROVIDER_NAME} (environment)"
            provider = Provider(
                name=name,
                from_environment=True,
                timeout=settings.PARLEY_UPSTREAM_READ_TIMEOUT,
                # /moderations is OpenAI's; other compatible servers rarely have it.
                use_moderation=urlsplit(endpoint.base_url).hostname == OPENAI_HOST,
            )
        changed = provider.pk is None
        if provider.base_url != endpoint.base_url:
            provider.base_url, changed = endpoint.base_url, True
        if provider.organization != organization:
            provider.organization, changed = organization, True
        if _key_differs(provider, key):
            provider.api_key, changed = key, True
        if changed:
            provider.save()
            logger.info("provider %s updated from the environment", provider.name)
    return provider


def _key_differs(provider: Provider, key: str) -> bool:
    if not crypto.is_current(provider.api_key_encrypted):
        return True  # written under an older encryption key: re-save re-encrypts it
    try:
        return provider.api_key != key
    except crypto.KeyDecryptionError:
        return True


# --- model sync ---------------------------------------------------------------------------
def _store_models(provider: Provider, model_ids: list[str]) -> dict:
    kinds = {m: kind for m in model_ids if (kind := families.kind_of(m)) is not None}
    with transaction.atomic():
        known = set(ChatModel.objects.filter(provider=provider).values_list("model_id", flat=True))
        new = [_new_model(provider, m, kind) for m, kind in kinds.items() if m not in known]
        # ignore_conflicts: two workers syncing at once must not fail on the unique constraint.
        ChatModel.objects.bulk_create(new, ignore_conflicts=True)
        default = _ensure_default(provider)
        provider.models_synced_at = timezone.now()
        provider.save(update_fields=["models_synced_at"])
    result = {"listed": len(model_ids), "added": len(new), "skipped": len(model_ids) - len(kinds)}
    if default:
        result["default"] = default
    logger.info("provider %s models synced: %s", provider.name, result)
    return result


def _new_model(provider: Provider, model_id: str, kind: str = "chat") -> ChatModel:
    found = families.family_of(model_id)
    model = ChatModel(
        provider=provider,
        model_id=model_id,
        kind=kind,
        display_name=families.display_name(model_id),
        context_window=settings.PARLEY_DEFAULT_CONTEXT_WINDOW,
        max_output_tokens=min(4096, settings.PARLEY_DEFAULT_CONTEXT_WINDOW // 2),
        vision=kind == "chat" and families.has_vision(model_id),
    )
    if found is not None:
        family = found[1]
        model.context_window = family.context_window
        model.max_output_tokens = family.max_output_tokens
        if not model_id.startswith("ft:"):  # fine-tuned models are priced differently
            model.input_price_per_million = family.input_price
            model.output_price_per_million = family.output_price
    tuning = families.fine_tuning_of(model_id)
    if model_id.startswith("ft:"):
        # A fine-tuned model learned from the team's conversations: nobody uses it until an
        # admin grants it to groups and enables it (docs/fine-tuning.md).
        model.enabled = False
        if tuning is not None:
            model.input_price_per_million = tuning.input_price
            model.output_price_per_million = tuning.output_price
    elif tuning is not None:
        model.training_price_per_million = tuning.training
    for field, value in families.KIND_PRICES.get(model_id, {}).items():
        setattr(model, field, value if isinstance(value, dict) else Decimal(value))
    return model


def _ensure_default(provider: Provider) -> str | None:
    """Make one of ``provider``'s models the default when no usable default exists."""
    usable = Q(enabled=True, provider__enabled=True, kind="chat")
    if ChatModel.objects.filter(usable, is_default=True).exists():
        return None
    candidates = list(ChatModel.objects.filter(usable, provider=provider).only("pk", "model_id", "is_default"))
    if not candidates:
        return None

    preference = families.DEFAULT_PREFERENCE

    def rank(model):
        model_id = model.model_id
        found = families.family_of(model_id)
        if found is not None and found[0] in preference:
            # The family's own alias before its dated snapshots.
            return (preference.index(found[0]), model_id != found[0], model_id)
        return (len(preference), True, model_id)

    chosen = min(candidates, key=rank)
    chosen.is_default = True  # save() takes the flag from a default that is not usable
    chosen.save(update_fields=["is_default", "updated_at"])
    return chosen.model_id


async def aprovider_sync_models(
    provider: Provider, *, timeout: float | None = None, max_retries: int | None = None
) -> dict:
    """Fetch ``GET /models`` and add the chat models not yet known; raises UpstreamError."""
    endpoint = await sync_to_async(client.Endpoint.for_provider)(provider)
    if timeout is not None:
        endpoint = dataclasses.replace(
            endpoint, read_timeout=timeout, connect_timeout=min(endpoint.connect_timeout, timeout)
        )
    model_ids = await client.list_models(endpoint, max_retries=max_retries)
    return await sync_to_async(_store_models)(provider, model_ids)


def provider_sync_models(provider: Provider, *, timeout: float | None = None, max_retries: int | None = None) -> dict:
    """:func:`aprovider_sync_models` for synchronous callers (admin action, commands, threads).

    Returns ``{"listed": n, "added": n, "skipped": n}`` plus ``"default"`` when it chose one.
    """
    return async_to_sync(aprovider_sync_models)(provider, timeout=timeout, max_retries=max_retries)


def providers_due() -> list[Provider]:
    cutoff = timezone.now() - timedelta(seconds=settings.PARLEY_MODEL_SYNC_INTERVAL)
    due = Q(models_synced_at__isnull=True) | Q(models_synced_at__lt=cutoff)
    return list(Provider.objects.filter(due, enabled=True).order_by("name"))


def provider_sync_due() -> dict[str, dict | str]:
    """Sync every enabled provider whose catalog is older than ``PARLEY_MODEL_SYNC_INTERVAL``.

    For the periodic background job: a provider that fails is logged and retried next round;
    the others are synced regardless. Returns ``{provider name: result or error code}``.
    """
    results: dict[str, dict | str] = {}
    for provider in providers_due():
        try:
            results[provider.name] = provider_sync_models(provider)
        except UpstreamError as exc:
            logger.warning("provider %s: model sync failed (%s): %s", provider.name, exc.code, exc.message)
            results[provider.name] = exc.code
    return results
