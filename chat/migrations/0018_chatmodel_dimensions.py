from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0017_message_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatmodel",
            name="dimensions",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Embedding models with a fixed vector length only; leave empty for a model that takes a length (PARLEY_EMBEDDING_DIMENSIONS).",
                null=True,
                verbose_name="vector length",
            ),
        ),
    ]
