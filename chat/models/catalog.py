"""The catalog: providers (endpoint and encrypted key) and the models they serve."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.utils.translation import gettext_lazy as _

from chat import crypto


class Provider(models.Model):
    """An OpenAI-compatible endpoint and the key Parley uses for it.

    The base URL is set by admins only and is trusted; members can never point a request at
    another host (docs/security.md, "Policies").
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    base_url = models.URLField(_("base URL"), max_length=500, help_text=_("For example https://api.openai.com/v1"))
    api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    organization = models.CharField(_("organization id"), max_length=200, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    timeout = models.FloatField(
        _("read timeout (seconds)"), default=120.0, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    use_moderation = models.BooleanField(
        _("use this provider's /moderations"),
        default=False,
        help_text=_("Check every user message with POST /moderations before any model sees it."),
    )
    moderation_provider = models.ForeignKey(
        "self",
        verbose_name=_("moderation provider"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text=_("Another provider whose /moderations checks messages sent to this one."),
    )
    fine_tuning_api = models.CharField(
        _("fine-tuning API"),
        max_length=8,
        choices=[
            ("auto", _("automatic: /fine_tuning/jobs, then /fine-tunes if that answers 404")),
            ("current", _("/fine_tuning/jobs")),
            ("legacy", _("/fine-tunes (legacy)")),
        ],
        default="auto",
    )
    from_environment = models.BooleanField(default=False, editable=False)
    models_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("provider")
        verbose_name_plural = _("providers")

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # Rotation: a key stored under an older PARLEY_ENCRYPTION_KEYS entry is re-encrypted
        # under the newest one whenever the row is saved (decrypting fails loudly if no key opens it).
        if self.api_key_encrypted and not crypto.is_current(self.api_key_encrypted):
            self.api_key_encrypted = crypto.encrypt(crypto.decrypt(self.api_key_encrypted))
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "api_key_encrypted"}
        super().save(*args, **kwargs)

    @property
    def api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = crypto.encrypt(value or "")

    @property
    def api_key_masked(self) -> str:
        try:
            return crypto.mask(self.api_key)
        except crypto.KeyDecryptionError:
            return "(cannot decrypt)"


class ModelKind(models.TextChoices):
    """What a model does, and so which endpoint Parley calls it through and in which units it is priced."""

    CHAT = "chat", _("chat")
    EMBEDDING = "embedding", _("embedding")
    IMAGE = "image", _("image")
    TRANSCRIPTION = "transcription", _("transcription")
    SPEECH = "speech", _("speech")
    MODERATION = "moderation", _("moderation")


class ChatModel(models.Model):
    """A model of the catalog, of any kind (the name is historical: chat came first)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="chat_models")
    model_id = models.CharField(_("model id"), max_length=200)
    display_name = models.CharField(_("display name"), max_length=200, blank=True)
    context_window = models.PositiveIntegerField(_("context window (tokens)"), default=8192)
    max_output_tokens = models.PositiveIntegerField(_("maximum output tokens"), default=4096)
    input_price_per_million = models.DecimalField(
        _("input price per 1M tokens (USD)"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    output_price_per_million = models.DecimalField(
        _("output price per 1M tokens (USD)"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    kind = models.CharField(
        _("kind"),
        max_length=16,
        choices=ModelKind.choices,
        default=ModelKind.CHAT,
        help_text=_("Guessed from the model id when synced; correct it if the guess is wrong."),
    )
    # Prices in the kind's own units (USD). Tokens: the two fields above (embeddings use the input price).
    image_prices = models.JSONField(
        _("price per image (USD)"),
        default=dict,
        blank=True,
        help_text=_('By size and quality, for example {"1024x1024": "0.04", "1024x1024/hd": "0.08"}.'),
    )
    audio_price_per_minute = models.DecimalField(
        _("price per minute of audio (USD)"), max_digits=12, decimal_places=6, null=True, blank=True
    )
    speech_price_per_million_characters = models.DecimalField(
        _("price per 1M characters of speech (USD)"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    training_price_per_million = models.DecimalField(
        _("training price per 1M tokens (USD)"), max_digits=12, decimal_places=4, null=True, blank=True
    )
    # Whether the model reads image parts in a message (set from its family when synced, for ids
    # such as gpt-4o*, gpt-4.1*; an admin corrects it). A message with images to a model without
    # it is refused before any call (chat/services/vision.py).
    vision = models.BooleanField(
        _("accepts images"), default=False, help_text=_("The model reads images attached to a message.")
    )
    # Embedding models: the length of the vectors a model answers when it is fixed (a local
    # model: 384 for all-MiniLM-L6-v2). Empty for a model that is asked for
    # PARLEY_EMBEDDING_DIMENSIONS numbers (OpenAI's text-embedding-3 take a `dimensions` parameter).
    # chat/services/documents.py, embedding_dimensions; docs/local-models.md.
    dimensions = models.PositiveIntegerField(
        _("vector length"),
        null=True,
        blank=True,
        help_text=_(
            "Embedding models with a fixed vector length only; leave empty for a model that takes a "
            "length (PARLEY_EMBEDDING_DIMENSIONS)."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    is_default = models.BooleanField(_("default"), default=False)
    groups = models.ManyToManyField(
        Group,
        verbose_name=_("allowed groups"),
        blank=True,
        help_text=_("Leave empty to let every member use this model."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "model_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="chatmodel_unique_per_provider"),
            # One model is preselected for new chats: never two, whatever writes the rows.
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="chatmodel_one_default"
            ),
        ]
        verbose_name = _("model")
        verbose_name_plural = _("models")

    def __str__(self) -> str:
        return self.display_name or self.model_id

    def save(self, *args, **kwargs):
        if not self.is_default:
            return super().save(*args, **kwargs)
        # Becoming the default takes it from whichever model had it, in one transaction.
        with transaction.atomic():
            ChatModel.objects.filter(is_default=True).exclude(pk=self.pk).update(is_default=False)
            return super().save(*args, **kwargs)

    def validate_constraints(self, exclude=None):
        # A form may make this model the default while another has it: save() hands it over.
        exclude = {*(exclude or ()), "is_default"} if self.is_default else exclude
        super().validate_constraints(exclude=exclude)

    @property
    def label(self) -> str:
        return self.display_name or self.model_id

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        price_in = self.input_price_per_million or Decimal(0)
        price_out = self.output_price_per_million or Decimal(0)
        return (Decimal(prompt_tokens) * price_in + Decimal(completion_tokens) * price_out) / Decimal(1_000_000)

    def image_price(self, size: str = "", quality: str = "") -> Decimal:
        """The price of one image: the most specific of "size/quality", "size" and "default"
        that the admin priced, else the highest price listed (a reservation must never be short)."""
        prices = self.image_prices if isinstance(self.image_prices, dict) else {}
        for key in (f"{size}/{quality}", size, "default"):
            if key in prices:
                return Decimal(str(prices[key]))
        return max((Decimal(str(value)) for value in prices.values()), default=Decimal(0))
