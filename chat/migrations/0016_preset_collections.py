from django.db import migrations, models


class Migration(migrations.Migration):
    """Presets carry document collections: a real relation replaces the placeholder list,
    which was always empty (issue 18), so nothing is carried over."""

    dependencies = [
        ("chat", "0015_documents_search"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="preset",
            name="collection_ids",
        ),
        migrations.AddField(
            model_name="preset",
            name="collections",
            field=models.ManyToManyField(
                blank=True,
                help_text="Collections a chat started from this preset searches.",
                related_name="presets",
                to="chat.collection",
                verbose_name="collections",
            ),
        ),
    ]
