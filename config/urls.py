from django.contrib import admin
from django.urls import include, path
from django.views.i18n import set_language

from accounts.views import AdminSignInView
from config import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("i18n/setlang/", set_language, name="set_language"),
    # Before the admin's own: the admin sign-in follows the sign-in policy and second factor.
    path("admin/login/", AdminSignInView.as_view(), name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    # The member API, in the OpenAI API's shapes (docs/api.md).
    path("v1/", include("chat.v1.urls")),
    path("", include("chat.web.urls")),
]
