from django.urls import path

from chat.web import api, api_keys, documents, images, library, media, views, voice

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("new/", views.new_chat, name="new"),
    path("c/<uuid:conversation_id>/", views.conversation, name="conversation"),
    path("usage/", views.usage, name="usage"),
    path("api-keys/", api_keys.api_keys, name="api_keys"),
    path("api-keys/<int:token_id>/revoke/", api_keys.api_key_revoke, name="api_key_revoke"),
    path("media/<uuid:media_id>/", media.media_file, name="media"),
    path("api/conversations/", api.conversation_list, name="api_conversations"),
    path("api/conversations/<uuid:conversation_id>/", api.conversation_detail, name="api_conversation"),
    path("api/conversations/<uuid:conversation_id>/fork/", api.conversation_fork, name="api_fork"),
    path("api/conversations/<uuid:conversation_id>/training/", api.conversation_training, name="api_training"),
    path(
        "api/conversations/<uuid:conversation_id>/export.md",
        api.conversation_export,
        {"fmt": "md"},
        name="api_export_md",
    ),
    path(
        "api/conversations/<uuid:conversation_id>/export.json",
        api.conversation_export,
        {"fmt": "json"},
        name="api_export_json",
    ),
    path("api/conversations/<uuid:conversation_id>/share/", library.conversation_share, name="api_share"),
    path("api/shares/", library.share_list, name="api_shares"),
    path("api/shares/<int:share_id>/", library.share_detail, name="api_share_detail"),
    path("api/library-text/", library.library_text, name="api_library_text"),
    path("api/presets/", library.preset_list, name="api_presets"),
    path("api/presets/<int:preset_id>/", library.preset_detail, name="api_preset"),
    path("api/prompts/", library.prompt_list, name="api_prompts"),
    path("api/prompts/<int:prompt_id>/", library.prompt_detail, name="api_prompt"),
    path("api/prompts/<int:prompt_id>/fill/", library.prompt_fill, name="api_prompt_fill"),
    path("api/folders/", library.folder_list, name="api_folders"),
    path("api/folders/<int:folder_id>/", library.folder_detail, name="api_folder"),
    path("s/<str:token>/", library.shared, name="shared"),
    path("api/models/", api.model_list, name="api_models"),
    path("api/defaults/", api.chat_defaults, name="api_defaults"),
    path("api/budget/", api.budget, name="api_budget"),
    path("api/documents/", documents.document_create, name="api_documents"),
    path("api/documents/<uuid:document_id>/", documents.document_detail, name="api_document"),
    path("api/images/", images.image_create, name="api_images"),
    path("api/images/models/", images.image_models, name="api_image_models"),
    path("sources/<uuid:message_id>/<int:number>/", documents.passage, name="passage"),
    path("api/voice/transcriptions/", voice.transcription_create, name="api_voice_transcriptions"),
    path("api/voice/settings/", voice.voice_settings, name="api_voice_settings"),
    path("api/messages/<uuid:message_id>/speech/", voice.message_speech, name="api_message_speech"),
]
