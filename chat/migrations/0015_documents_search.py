import django.db.models.deletion
import django.utils.timezone
import uuid
from django.conf import settings
from django.db import migrations, models


# SQLite: an fts5vocab table over the passages' full-text index, so retrieval can leave out of
# its keyword query the words found in most passages (chat/services/retrieval.py, _uncommon).
def vocabulary(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("CREATE VIRTUAL TABLE chat_chunk_fts_vocab USING fts5vocab(chat_chunk_fts, 'row')")


def vocabulary_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TABLE IF EXISTS chat_chunk_fts_vocab")


def vision_from_families(apps, schema_editor):
    """Models already in the catalog get the flag their family implies (admins correct it)."""
    from chat.catalog.families import has_vision

    ChatModel = apps.get_model("chat", "ChatModel")
    ids = [pk for pk, model_id in ChatModel.objects.filter(kind="chat").values_list("pk", "model_id") if has_vision(model_id)]
    ChatModel.objects.filter(pk__in=ids).update(vision=True)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("chat", "0014_finetuning"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(vocabulary, vocabulary_drop),
        migrations.CreateModel(
            name='Collection',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=120, verbose_name='name')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('conversations', models.ManyToManyField(blank=True, related_name='collections', to='chat.conversation')),
                ('groups', models.ManyToManyField(blank=True, help_text="Members of these groups can read the collection's documents and use it in their conversations.", related_name='document_collections', to='auth.group', verbose_name='shared with groups')),
                ('owner', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='collections', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'collection',
                'verbose_name_plural': 'collections',
                'ordering': ['name'],
            },
        ),
        migrations.AddField(
            model_name='document',
            name='collection',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='documents', to='chat.collection'),
        ),
        migrations.AddIndex(
            model_name='document',
            index=models.Index(fields=['collection', 'status'], name='doc_collection_status'),
        ),
        migrations.AddConstraint(
            model_name='collection',
            constraint=models.UniqueConstraint(fields=('owner', 'name'), name='collection_owner_name'),
        ),
        migrations.AddField(
            model_name='chatmodel',
            name='vision',
            field=models.BooleanField(default=False, help_text='The model reads images attached to a message.', verbose_name='accepts images'),
        ),
        migrations.RunPython(vision_from_families, migrations.RunPython.noop),
    ]
