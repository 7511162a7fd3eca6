from django.db import migrations


# SQLite: an fts5vocab table over the passages' full-text index, so retrieval can leave out of
# its keyword query the words found in most passages (chat/services/retrieval.py, _uncommon).
def vocabulary(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("CREATE VIRTUAL TABLE chat_chunk_fts_vocab USING fts5vocab(chat_chunk_fts, 'row')")


def vocabulary_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TABLE IF EXISTS chat_chunk_fts_vocab")


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0010_documents"),
    ]

    operations = [
        migrations.RunPython(vocabulary, vocabulary_drop),
    ]
