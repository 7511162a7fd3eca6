from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import security_views, views

urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("login/verify/", views.two_factor_verify, name="two_factor_verify"),
    # POST only; signs out at the identity provider too when the member came from one.
    path("logout/", views.sign_out, name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("signup/", views.signup, name="signup"),
    path("join/<str:code>/", views.signup, name="join"),
    path("oidc/<slug:slug>/start/", views.oidc_start, name="oidc_start"),
    path("oidc/<slug:slug>/callback/", views.oidc_callback, name="oidc_callback"),
    path("two-factor/", security_views.two_factor, name="two_factor"),
    path("two-factor/setup/", security_views.two_factor_setup, name="two_factor_setup"),
    path("two-factor/recovery-codes/", security_views.recovery_codes_new, name="recovery_codes_new"),
    path("two-factor/off/", security_views.two_factor_off, name="two_factor_off"),
    path("sessions/", security_views.member_sessions, name="member_sessions"),
    path("sessions/<int:session_id>/end/", security_views.member_session_end, name="member_session_end"),
    path("sessions/end-others/", security_views.member_sessions_end_others, name="member_sessions_end_others"),
]
