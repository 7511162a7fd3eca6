from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self):
        # Blocklist edits made in any process reach every process's compiled copy.
        from chat.core.moderation import connect_signals

        connect_signals()

        # Catalog and grant changes made in any process reach every process's copy.
        from chat.core.grants import connect_signals as connect_grant_signals

        connect_grant_signals()

        # A stored file goes with its row, whatever deletes the row.
        from chat.media.signals import connect_signals as connect_media_signals

        connect_media_signals()
