import chat.models.documents
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


# PostgreSQL: an HNSW index for cosine distance over the messages' passages, as for documents'
# (0010_documents). SQLite scans a member's vectors in memory (chat/services/search.py).
def search_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX msgchunk_embedding_hnsw ON chat_messagechunk USING hnsw (embedding vector_cosine_ops)"
        )


def search_index_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS msgchunk_embedding_hnsw")


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0016_preset_collections"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="MessageIndex",
            fields=[
                (
                    "message",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="search_index",
                        serialize=False,
                        to="chat.message",
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[("queued", "queued"), ("ready", "ready"), ("failed", "failed")],
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("attempt", models.PositiveIntegerField(default=0)),
                ("claim", models.UUIDField(blank=True, null=True)),
                ("claimed_at", models.DateTimeField(blank=True, null=True)),
                ("tries", models.PositiveSmallIntegerField(default=0)),
                ("error_code", models.CharField(blank=True, default="", max_length=64)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "conversation",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="chat.conversation"
                    ),
                ),
                (
                    "owner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["conversation", "status"], name="msgindex_conv_status"),
                    models.Index(fields=["status", "claimed_at"], name="msgindex_status_claim"),
                ],
            },
        ),
        migrations.CreateModel(
            name="MessageChunk",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("ordinal", models.PositiveIntegerField()),
                ("text", models.TextField()),
                ("tokens", models.PositiveIntegerField(default=0)),
                ("embedding", chat.models.documents.EmbeddingField(dimensions=settings.PARLEY_EMBEDDING_DIMENSIONS)),
                (
                    "conversation",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="chat.conversation"
                    ),
                ),
                (
                    "message",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="search_chunks", to="chat.message"
                    ),
                ),
                (
                    "owner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={
                "ordering": ["message", "ordinal"],
                "indexes": [models.Index(fields=["owner", "conversation"], name="msgchunk_owner_conv")],
                "constraints": [models.UniqueConstraint(fields=("message", "ordinal"), name="msgchunk_msg_ordinal")],
            },
        ),
        migrations.RunPython(search_index, search_index_drop),
    ]
