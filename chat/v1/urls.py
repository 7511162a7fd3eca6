from django.urls import path

from chat.v1 import views

app_name = "v1"

urlpatterns = [
    path("models", views.models_index, name="models"),
    path("models/<path:model>", views.model_detail, name="model"),
    path("chat/completions", views.chat_completions, name="chat_completions"),
    path("completions", views.completions, name="completions"),
    path("edits", views.edits, name="edits"),
    path("embeddings", views.embeddings, name="embeddings"),
    path("moderations", views.moderations, name="moderations"),
    path("", views.unknown, name="root"),
    path("<path:rest>", views.unknown, name="unknown"),
]
