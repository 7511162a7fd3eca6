from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self):
        # Blocklist edits made in any process reach every process's compiled copy.
        from chat.core.moderation import connect_signals

        connect_signals()

        # A stored file goes with its row, whatever deletes the row.
        from chat.media.signals import connect_signals as connect_media_signals

        connect_media_signals()
