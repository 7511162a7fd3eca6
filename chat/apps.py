from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self):
        # Blocklist edits made in any process reach every process's compiled copy.
        from chat.core.moderation import connect_signals

        connect_signals()
