from django.db import migrations, models


def keep_one_default(apps, schema_editor):
    """Before the constraint: where several models are marked default, the most recently
    changed one stays the default."""
    ChatModel = apps.get_model("chat", "ChatModel")
    defaults = list(
        ChatModel.objects.filter(is_default=True).order_by("-updated_at", "-pk").values_list("pk", flat=True)
    )
    if len(defaults) > 1:
        ChatModel.objects.filter(pk__in=defaults[1:]).update(is_default=False)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("chat", "0002_message_history_index"),
    ]

    operations = [
        migrations.RunPython(keep_one_default, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="chatmodel",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_default", True)), fields=("is_default",), name="chatmodel_one_default"
            ),
        ),
    ]
