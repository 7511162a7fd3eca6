# Voice (issue 15): the member's voice for replies read aloud, and the clips kept per reply.

import uuid
from decimal import Decimal

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0011_message_attachments"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="VoicePreference",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="voice_preference",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("voice", models.CharField(default="alloy", max_length=32, verbose_name="voice")),
                (
                    "speed",
                    models.DecimalField(
                        decimal_places=2,
                        default=Decimal("1.00"),
                        max_digits=4,
                        validators=[
                            django.core.validators.MinValueValidator(Decimal("0.25")),
                            django.core.validators.MaxValueValidator(Decimal("4.00")),
                        ],
                        verbose_name="speed",
                    ),
                ),
            ],
            options={"verbose_name": "voice preference", "verbose_name_plural": "voice preferences"},
        ),
        migrations.CreateModel(
            name="SpeechClip",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("model_name", models.CharField(max_length=200)),
                ("voice", models.CharField(max_length=32)),
                ("speed", models.DecimalField(decimal_places=2, max_digits=4)),
                ("characters", models.PositiveIntegerField(default=0)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "media",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE, related_name="speech_clip", to="chat.mediafile"
                    ),
                ),
                (
                    "message",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="speech_clips", to="chat.message"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("message", "model_name", "voice", "speed"), name="speechclip_one_per_key"
                    )
                ],
            },
        ),
    ]
