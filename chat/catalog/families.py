"""What Parley knows about OpenAI's model families without asking: context windows, output
limits and list prices (USD per million tokens), from OpenAI's model and pricing pages.

A model id matches the longest family prefix, so dated snapshots (``gpt-4o-2024-08-06``)
inherit their family's numbers; a snapshot whose numbers differ has its own row. Everything
here is only the starting value of a ChatModel row: admins can edit it in the console.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Family:
    label: str
    context_window: int
    max_output_tokens: int
    input_price: Decimal | None
    output_price: Decimal | None


def _f(label, context, output, price_in, price_out) -> Family:
    return Family(label, context, output, Decimal(price_in), Decimal(price_out))


FAMILIES: dict[str, Family] = {
    "gpt-5": _f("GPT-5", 400_000, 128_000, "1.25", "10.00"),
    "gpt-5-mini": _f("GPT-5 mini", 400_000, 128_000, "0.25", "2.00"),
    "gpt-5-nano": _f("GPT-5 nano", 400_000, 128_000, "0.05", "0.40"),
    "gpt-5-chat-latest": _f("GPT-5 Chat", 128_000, 16_384, "1.25", "10.00"),
    "gpt-4.1": _f("GPT-4.1", 1_047_576, 32_768, "2.00", "8.00"),
    "gpt-4.1-mini": _f("GPT-4.1 mini", 1_047_576, 32_768, "0.40", "1.60"),
    "gpt-4.1-nano": _f("GPT-4.1 nano", 1_047_576, 32_768, "0.10", "0.40"),
    "gpt-4.5-preview": _f("GPT-4.5 preview", 128_000, 16_384, "75.00", "150.00"),
    "gpt-4o": _f("GPT-4o", 128_000, 16_384, "2.50", "10.00"),
    "gpt-4o-2024-05-13": _f("GPT-4o", 128_000, 4_096, "5.00", "15.00"),
    "gpt-4o-mini": _f("GPT-4o mini", 128_000, 16_384, "0.15", "0.60"),
    "chatgpt-4o-latest": _f("ChatGPT-4o", 128_000, 16_384, "5.00", "15.00"),
    "o1": _f("o1", 200_000, 100_000, "15.00", "60.00"),
    "o1-preview": _f("o1 preview", 128_000, 32_768, "15.00", "60.00"),
    "o1-mini": _f("o1-mini", 128_000, 65_536, "1.10", "4.40"),
    "o3": _f("o3", 200_000, 100_000, "2.00", "8.00"),
    "o3-mini": _f("o3-mini", 200_000, 100_000, "1.10", "4.40"),
    "o4-mini": _f("o4-mini", 200_000, 100_000, "1.10", "4.40"),
    "gpt-4-turbo": _f("GPT-4 Turbo", 128_000, 4_096, "10.00", "30.00"),
    "gpt-4-1106-preview": _f("GPT-4 Turbo preview", 128_000, 4_096, "10.00", "30.00"),
    "gpt-4-0125-preview": _f("GPT-4 Turbo preview", 128_000, 4_096, "10.00", "30.00"),
    "gpt-4-vision-preview": _f("GPT-4 Turbo vision preview", 128_000, 4_096, "10.00", "30.00"),
    "gpt-4-32k": _f("GPT-4 32k", 32_768, 8_192, "60.00", "120.00"),
    "gpt-4": _f("GPT-4", 8_192, 8_192, "30.00", "60.00"),
    "gpt-3.5-turbo": _f("GPT-3.5 Turbo", 16_385, 4_096, "0.50", "1.50"),
    "gpt-3.5-turbo-16k": _f("GPT-3.5 Turbo 16k", 16_385, 4_096, "3.00", "4.00"),
}
_BY_LENGTH = sorted(FAMILIES, key=len, reverse=True)

# Ids that /models lists but /chat/completions refuses: other modalities, legacy completion
# models, and models served only by the Responses API.
_NOT_CHAT = (
    "embedding",
    "whisper",
    "tts",
    "dall-e",
    "moderation",
    "transcribe",
    "realtime",
    "audio",
    "image",
    "sora",
    "gpt-3.5-turbo-instruct",
    "davinci",
    "babbage",
    "computer-use",
    "deep-research",
    "codex",
)
_NOT_CHAT_PREFIXES = ("o1-pro", "o3-pro", "text-", "omni-", "gpt-image", "tts-")

# Families whose /chat/completions refuses ``max_tokens`` and takes ``max_completion_tokens``
# (OpenAI's reasoning models; the limit there also covers the hidden reasoning tokens).
# Every other model, OpenAI's older ones and every compatible server (llama.cpp, vLLM,
# Ollama), takes ``max_tokens``.
_COMPLETION_LIMIT_FAMILIES = frozenset(
    ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-chat-latest")
    + ("o1", "o1-preview", "o1-mini", "o3", "o3-mini", "o4-mini")
)

# Which model becomes the default when none is: cheap and capable first.
DEFAULT_PREFERENCE = ("gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini", "gpt-4o", "gpt-4.1", "gpt-5", "gpt-3.5-turbo")


# Families that read images in a message (OpenAI's vision-capable chat models). An id outside
# them starts without vision; an admin turns it on in the catalog for a server that has it.
_VISION_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4-turbo", "gpt-4-vision", "gpt-5", "o1", "o3", "o4-mini")
_NO_VISION_PARTS = ("audio", "realtime", "search", "o1-mini", "o1-preview", "o3-mini", "transcribe", "tts")


def has_vision(model_id: str) -> bool:
    low = model_id.lower().removeprefix("ft:")
    return low.startswith(_VISION_PREFIXES) and not any(part in low for part in _NO_VISION_PARTS)


def is_chat_model(model_id: str) -> bool:
    low = model_id.lower().removeprefix("ft:")
    return not low.startswith(_NOT_CHAT_PREFIXES) and not any(part in low for part in _NOT_CHAT)


# Model kinds by id, most specific first: (kind, prefixes, parts found anywhere in the id).
_KINDS = (
    ("moderation", ("omni-moderation", "text-moderation"), ("moderation",)),
    ("embedding", ("text-embedding",), ("embedding", "embed-")),
    ("image", ("dall-e", "gpt-image"), ("-image-", "stable-diffusion", "flux")),
    ("transcription", ("whisper",), ("transcribe", "whisper")),
    ("speech", ("tts-",), ("-tts",)),
)


def kind_of(model_id: str) -> str | None:
    """The kind of model ``model_id`` names, by its family; None for one Parley cannot call
    (realtime, computer-use, legacy completions...). Unknown ids are taken for chat models,
    as most servers that speak the API (vLLM, llama.cpp, Ollama) serve chat under any name;
    an admin corrects a wrong guess in the catalog."""
    low = model_id.lower().removeprefix("ft:")
    for kind, prefixes, parts in _KINDS:
        if low.startswith(prefixes) or any(part in low for part in parts):
            return kind
    return "chat" if is_chat_model(model_id) else None


# List prices of OpenAI's non-chat families in their own units (USD): the starting values of
# a synced model, which admins may change. Per image by "size/quality"; per minute of audio;
# per million characters of speech; per million input tokens of embeddings.
KIND_PRICES = {
    "text-embedding-3-small": {"input_price_per_million": "0.02"},
    "text-embedding-3-large": {"input_price_per_million": "0.13"},
    "text-embedding-ada-002": {"input_price_per_million": "0.10"},
    "whisper-1": {"audio_price_per_minute": "0.006"},
    "tts-1": {"speech_price_per_million_characters": "15"},
    "tts-1-hd": {"speech_price_per_million_characters": "30"},
    "dall-e-3": {
        "image_prices": {
            "1024x1024": "0.04",
            "1024x1024/hd": "0.08",
            "1024x1792": "0.08",
            "1792x1024": "0.08",
            "1024x1792/hd": "0.12",
            "1792x1024/hd": "0.12",
        }
    },
    "dall-e-2": {"image_prices": {"1024x1024": "0.02", "512x512": "0.018", "256x256": "0.016"}},
}


def family_of(model_id: str) -> tuple[str, Family] | None:
    """The longest known family prefix of ``model_id`` that ends at a separator, with its data."""
    base = model_id.removeprefix("ft:").split(":", 1)[0]
    for prefix in _BY_LENGTH:
        if base == prefix or (base.startswith(prefix) and base[len(prefix)] in "-:"):
            return prefix, FAMILIES[prefix]
    return None


def display_name(model_id: str) -> str:
    found = family_of(model_id)
    if found is None or model_id.startswith("ft:"):
        return model_id
    prefix, family = found
    rest = model_id[len(prefix) :].lstrip("-")
    return f"{family.label} ({rest})" if rest else family.label


def output_limit_field(model_id: str) -> str:
    """The request field that limits a reply's length for ``model_id``."""
    found = family_of(model_id)
    if found is not None and found[0] in _COMPLETION_LIMIT_FAMILIES:
        return "max_completion_tokens"
    return "max_tokens"


# --- images: what each family's endpoints accept (OpenAI's API reference, images) ------------


@dataclass(frozen=True)
class ImageOptions:
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]  # empty: the model has no quality setting
    max_n: int
    edits: bool  # /images/edits
    variations: bool  # /images/variations
    square_inputs: bool  # edits and variations take square images only


_IMAGE_OPTIONS = {
    "dall-e-2": ImageOptions(("256x256", "512x512", "1024x1024"), (), 10, True, True, True),
    "dall-e-3": ImageOptions(("1024x1024", "1792x1024", "1024x1792"), ("standard", "hd"), 1, False, False, True),
    "gpt-image": ImageOptions(
        ("1024x1024", "1536x1024", "1024x1536"), ("low", "medium", "high"), 10, True, False, False
    ),
}
# A model Parley does not know (a compatible server's diffusion model): square 1024 images,
# no quality, and every operation offered (the provider's refusal is shown if it has none).
_OTHER_IMAGES = ImageOptions(("1024x1024",), (), 10, True, True, True)


def image_options(model_id: str, prices: dict | None = None) -> ImageOptions:
    """What ``model_id`` can be asked for; the sizes and qualities an admin priced count too
    (``ChatModel.image_prices`` keys are "size" or "size/quality")."""
    low = model_id.lower().removeprefix("ft:")
    known = next((o for prefix, o in _IMAGE_OPTIONS.items() if low.startswith(prefix)), _OTHER_IMAGES)
    sizes, qualities = list(known.sizes), list(known.qualities)
    for key in prices or {}:
        size, _, quality = str(key).partition("/")
        if size and size != "default" and size not in sizes and _is_size(size):
            sizes.append(size)
        if quality and quality not in qualities and quality.isalnum():
            qualities.append(quality)
    return ImageOptions(tuple(sizes), tuple(qualities), known.max_n, known.edits, known.variations, known.square_inputs)


def _is_size(text: str) -> bool:
    width, x, height = text.partition("x")
    return bool(x) and width.isdigit() and height.isdigit() and 0 < int(width) <= 8192 and 0 < int(height) <= 8192


@dataclass(frozen=True)
class FineTuning:
    """OpenAI's list prices for fine-tuning a family (USD per million tokens): training, and
    using the fine-tuned model (input, output)."""

    training: Decimal
    input_price: Decimal
    output_price: Decimal


FINE_TUNING: dict[str, FineTuning] = {
    "gpt-4.1": FineTuning(Decimal("25.00"), Decimal("3.00"), Decimal("12.00")),
    "gpt-4.1-mini": FineTuning(Decimal("5.00"), Decimal("0.80"), Decimal("3.20")),
    "gpt-4.1-nano": FineTuning(Decimal("1.50"), Decimal("0.20"), Decimal("0.80")),
    "gpt-4o": FineTuning(Decimal("25.00"), Decimal("3.75"), Decimal("15.00")),
    "gpt-4o-mini": FineTuning(Decimal("3.00"), Decimal("0.30"), Decimal("1.20")),
    "gpt-3.5-turbo": FineTuning(Decimal("8.00"), Decimal("3.00"), Decimal("6.00")),
}


def fine_tuning_of(model_id: str) -> FineTuning | None:
    """The fine-tuning prices of ``model_id``'s family (a base model, or a model fine-tuned from one)."""
    found = family_of(model_id)
    return FINE_TUNING.get(found[0]) if found is not None else None
