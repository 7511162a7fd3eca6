from django.urls import path

from chat.web import api, api_keys, collections, documents, images, media, views, vision, voice

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
    path("api/models/", api.model_list, name="api_models"),
    path("api/defaults/", api.chat_defaults, name="api_defaults"),
    path("api/budget/", api.budget, name="api_budget"),
    path("api/documents/", documents.document_create, name="api_documents"),
    path("api/documents/<uuid:document_id>/", documents.document_detail, name="api_document"),
    path("api/images/", images.image_create, name="api_images"),
    path("api/images/models/", images.image_models, name="api_image_models"),
    path("sources/<uuid:message_id>/<int:number>/", documents.passage, name="passage"),
    path("api/vision/images/", vision.vision_image_create, name="api_vision_images"),
    path("api/collections/", collections.collection_list, name="api_collections"),
    path("api/collections/<uuid:collection_id>/", collections.collection_detail, name="api_collection"),
    path(
        "api/collections/<uuid:collection_id>/documents/",
        collections.collection_document_create,
        name="api_collection_documents",
    ),
    path(
        "api/conversations/<uuid:conversation_id>/collections/<uuid:collection_id>/",
        collections.conversation_collection,
        name="api_conversation_collection",
    ),
    path("api/voice/transcriptions/", voice.transcription_create, name="api_voice_transcriptions"),
    path("api/voice/settings/", voice.voice_settings, name="api_voice_settings"),
    path("api/messages/<uuid:message_id>/speech/", voice.message_speech, name="api_message_speech"),
]
