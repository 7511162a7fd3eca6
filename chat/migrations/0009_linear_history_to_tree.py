"""Every existing conversation's linear history becomes a chain: each message's parent is the
message before it (by ``created_at``, then id), and the conversation's current leaf is its last
message. Members see exactly what they saw: the branch shown is the whole history, in order,
blocked, failed and stopped messages included (the prompt still leaves those out).
"""

from django.db import migrations

BATCH = 1000
CONVERSATIONS_PER_BATCH = 200


def chain(apps, schema_editor):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    db = schema_editor.connection.alias
    conversation_ids = list(Conversation.objects.using(db).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(conversation_ids), CONVERSATIONS_PER_BATCH):
        batch = conversation_ids[start : start + CONVERSATIONS_PER_BATCH]
        rows = list(
            Message.objects.using(db)
            .filter(conversation_id__in=batch)
            .order_by("conversation_id", "created_at", "id")
            .values_list("id", "conversation_id")
        )
        linked, leaves = [], {}
        previous_conversation, previous_id = None, None
        for message_id, conversation_id in rows:
            if conversation_id == previous_conversation:
                linked.append(Message(id=message_id, parent_id=previous_id))
            previous_conversation, previous_id = conversation_id, message_id
            leaves[conversation_id] = message_id
        Message.objects.using(db).bulk_update(linked, ["parent"], batch_size=BATCH)
        updates = [Conversation(id=cid, current_leaf_id=leaf) for cid, leaf in leaves.items()]
        Conversation.objects.using(db).bulk_update(updates, ["current_leaf"], batch_size=BATCH)


def unchain(apps, schema_editor):
    # Going back to a linear history keeps every message (the older schema has no tree).
    pass


class Migration(migrations.Migration):
    dependencies = [("chat", "0008_message_tree")]

    operations = [migrations.RunPython(chain, unchain)]
