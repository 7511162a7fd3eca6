"""Parley settings: one file, every knob from the environment.

Defaults make `make run` and `make test` work with no environment at all (SQLite under
``data/``, the in-memory channel layer). Production is this same file with other values;
see the configuration table in README.md and `.env.example`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# An empty value means the default too: never write secrets into the working directory.
DATA_DIR = Path(env("PARLEY_DATA_DIR", default="") or BASE_DIR / "data")
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _generated_secret(name: str, factory) -> str:
    """Read a secret generated once into the data folder (embedded default only).

    Sessions and encrypted keys must survive restarts, so the value is written on first use
    with owner-only permissions and read back afterwards.
    """
    path = DATA_DIR / name
    if not path.exists():
        path.write_text(factory())
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env.bool("DJANGO_DEBUG", default=False)
PRODUCTION = env.bool("PARLEY_PRODUCTION", default=False)

if PRODUCTION:
    # No working default in production: a missing secret is a start-up error.
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "PARLEY_PRODUCTION is on but DJANGO_SECRET_KEY is not set. Set it to a long random value, "
            'for example: python -c "import secrets; print(secrets.token_urlsafe(64))"'
        )
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default=None) or _generated_secret(
        "secret_key", lambda: secrets.token_urlsafe(64)
    )

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
if PRODUCTION and "*" in ALLOWED_HOSTS:
    # "*" would accept any Host, and with it any page that names itself as Host (DNS rebinding).
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must name Parley's hosts in production, not '*'.")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "accounts",
    "chat",
    "django_tasks",
    "django_tasks_db",
]

MIDDLEWARE = [
    # config.middleware's are Django's (and django-csp's) own, with their hooks called in the
    # event loop where they do no I/O: the same hooks, without a hop to a thread for each.
    # Security, CSRF and clickjacking keep Django's names, which `check --deploy` looks for;
    # config.asgi's handler loads them as config.middleware's inline subclasses.
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.WhiteNoiseMiddleware",  # whitenoise's, usable in async mode
    "config.middleware.SessionMiddleware",
    "config.middleware.LocaleMiddleware",
    "config.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.middleware.AuthenticationMiddleware",
    "config.middleware.MessageMiddleware",
    "accounts.middleware.SessionSeenMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.CSPMiddleware",
    "config.middleware.PrivateCacheMiddleware",
    # AxesMiddleware must be last: it turns lockouts into a readable response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "csp.context_processors.nonce",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite needs WAL, a busy timeout and IMMEDIATE write transactions to serve hundreds of
# concurrent replies without "database is locked" (see docs/performance.md).
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'parley.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": ("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"),
        }
    )
    # Keep a thread's connection between calls: a reply's database calls all run on one thread,
    # and closing the last connection to a WAL file checkpoints it; reopening per call cost a
    # sixth of a reply's CPU and doubled the wait for a first token under load (docs/performance.md).
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    # Tests that use real threads (concurrent sign-ups, concurrent replies) need a file: SQLite's
    # shared in-memory test database answers "database table is locked" instead of waiting.
    # One file per test process, so several test runs on one machine never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"parley-test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Channel layer and cache ----------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 gives connections a 5 s read timeout, as long as the 5 s blocking
                # BZPOPMIN with which channels-redis waits for messages: an idle socket's read
                # then timed out and its consumer died (close 1011). Reads may take longer.
                # redis-py 8 also caps a pool at 100 connections and then fails instead of
                # waiting: a worker streaming 200 replies sends on more at once (issue 21's
                # two-workers bench: "Too many connections", deltas lost, sockets closed 1011).
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 30,
                        "socket_connect_timeout": 5,
                        "max_connections": env.int("PARLEY_REDIS_MAX_CONNECTIONS", default=2000),
                    }
                ],
                "capacity": env.int("PARLEY_LAYER_CAPACITY", default=1000),
                # channels-redis keeps the messages of all of a process's sockets in one Redis
                # key, checked against the capacity of their channel names: with the default
                # above, a worker streaming 20 replies on a busy machine fell 1,000 messages
                # behind and deltas and the end of replies were dropped silently (issue 21's
                # two-workers bench). The bound per socket stays PARLEY_LAYER_CAPACITY (the
                # process's buffer per channel, T42); this one bounds a worker's backlog.
                "channel_capacity": {"specific.*": env.int("PARLEY_LAYER_PROCESS_CAPACITY", default=100_000)},
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.transport.layers.InMemoryChannelLayer",  # the stock one, minus O(N) scans
            "CONFIG": {"capacity": env.int("PARLEY_LAYER_CAPACITY", default=1000)},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

PARLEY_SIGNUP_MODE = env.str("PARLEY_SIGNUP_MODE", default="closed")  # closed | invite | open
PARLEY_SIGNUP_RATE_PER_HOUR = env.int("PARLEY_SIGNUP_RATE_PER_HOUR", default=10)  # per address; 0: no limit

# Failed sign-ins are throttled per account and address (django-axes).
AXES_FAILURE_LIMIT = env.int("PARLEY_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("PARLEY_LOGIN_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Our own lockout page for every client (axes' AJAX answer would add a wildcard CORS header).
AXES_LOCKOUT_CALLABLE = "accounts.views.lockout"
# Only trust X-Forwarded-For when a trusted proxy sets it (T33). django-ipware is not
# installed, so axes' AXES_IPWARE_* settings would do nothing; accounts/throttle.py reads
# the client address from the right-most hops instead.
PARLEY_TRUSTED_PROXY_COUNT = env.int("PARLEY_TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "accounts.throttle.client_ip_address"
# And per address across accounts, so one guess at each of many accounts (password spraying) is
# refused too; counted from axes' records by accounts.throttle.SignInHandler. 0: no such limit.
PARLEY_LOGIN_ADDRESS_FAILURE_LIMIT = env.int("PARLEY_LOGIN_ADDRESS_FAILURE_LIMIT", default=20)
AXES_HANDLER = "accounts.throttle.SignInHandler"

# Two-factor sign-in (django-otp, TOTP and one-time recovery codes). Wrong codes count as
# failed sign-ins in axes above, so django-otp's own back-off is off.
OTP_TOTP_ISSUER = "Parley"
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_STATIC_THROTTLE_FACTOR = 0

# Single sign-on: one OpenID Connect provider from the environment (more in the admin).
# The redirect URI to register with it is shown on the sign-in page: /accounts/oidc/sso/callback/.
PARLEY_OIDC_ISSUER = env.str("PARLEY_OIDC_ISSUER", default="")
PARLEY_OIDC_CLIENT_ID = env.str("PARLEY_OIDC_CLIENT_ID", default="")
PARLEY_OIDC_CLIENT_SECRET = env.str("PARLEY_OIDC_CLIENT_SECRET", default="")
PARLEY_OIDC_NAME = env.str("PARLEY_OIDC_NAME", default="single sign-on")  # the button says "Sign in with …"
PARLEY_OIDC_SCOPES = env.str("PARLEY_OIDC_SCOPES", default="openid email profile")
PARLEY_OIDC_GROUPS_CLAIM = env.str("PARLEY_OIDC_GROUPS_CLAIM", default="")  # e.g. groups; empty: no mapping
PARLEY_OIDC_ALLOWED_DOMAINS = env.list("PARLEY_OIDC_ALLOWED_DOMAINS", default=[])  # empty: any domain
PARLEY_OIDC_CREATE_MEMBERS = env.bool("PARLEY_OIDC_CREATE_MEMBERS", default=True)
PARLEY_OIDC_ADMIN_VALUES = env.list("PARLEY_OIDC_ADMIN_VALUES", default=[])
# Whether a claim value may make someone an admin at all (any provider); off, nobody becomes
# an admin by signing in.
PARLEY_OIDC_ALLOW_ADMIN_MAPPING = env.bool("PARLEY_OIDC_ALLOW_ADMIN_MAPPING", default=False)
PARLEY_OIDC_TIMEOUT = env.float("PARLEY_OIDC_TIMEOUT", default=10.0)  # seconds per call to the provider

# --- I18N -----------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env("PARLEY_STATIC_ROOT", default=str(DATA_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "config.storage.StaticFilesStorage"},
}
WHITENOISE_MAX_AGE = 31536000 if not DEBUG else 0

# --- Media: what members upload and models produce --------------------------------------------
# Private files, served only through chat.web.media after an ownership check (T10): the
# filesystem under the data folder by default, never under STATIC_ROOT and with no MEDIA_URL
# route; or an S3-compatible bucket (django-storages) for a team on several machines.
PARLEY_MEDIA_BACKEND = env.str("PARLEY_MEDIA_BACKEND", default="filesystem")  # filesystem | s3
PARLEY_MEDIA_ROOT = Path(env("PARLEY_MEDIA_ROOT", default="") or DATA_DIR / "media")
PARLEY_MEDIA_MAX_FILE_BYTES = env.int("PARLEY_MEDIA_MAX_FILE_BYTES", default=25 * 1024 * 1024)
PARLEY_MEDIA_QUOTA_BYTES = env.int("PARLEY_MEDIA_QUOTA_BYTES", default=1024 * 1024 * 1024)  # per member; 0: none
PARLEY_MEDIA_S3_BUCKET = env.str("PARLEY_MEDIA_S3_BUCKET", default="")
PARLEY_MEDIA_S3_ENDPOINT_URL = env.str("PARLEY_MEDIA_S3_ENDPOINT_URL", default="")  # empty: AWS itself
PARLEY_MEDIA_S3_REGION = env.str("PARLEY_MEDIA_S3_REGION", default="")
# Empty keys: boto3's own chain (an instance role, AWS_* variables, ~/.aws).
PARLEY_MEDIA_S3_ACCESS_KEY_ID = env.str("PARLEY_MEDIA_S3_ACCESS_KEY_ID", default="")
PARLEY_MEDIA_S3_SECRET_ACCESS_KEY = env.str("PARLEY_MEDIA_S3_SECRET_ACCESS_KEY", default="")
PARLEY_MEDIA_S3_ADDRESSING_STYLE = env.str("PARLEY_MEDIA_S3_ADDRESSING_STYLE", default="auto")  # auto | path | virtual
PARLEY_MEDIA_S3_PREFIX = env.str("PARLEY_MEDIA_S3_PREFIX", default="media")
PARLEY_MEDIA_S3_VERIFY = env.bool("PARLEY_MEDIA_S3_VERIFY", default=True)  # TLS certificate check


def media_storage(backend: str, *, root: Path, s3: dict) -> dict:
    """The STORAGES entry of the private media store; the tests build both kinds with it."""
    if backend == "filesystem":
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {
                "location": str(root),
                # No URL: files are only ever served by the view that checks who is asking.
                "base_url": None,
                "file_permissions_mode": 0o600,
                "directory_permissions_mode": 0o700,
            },
        }
    if backend == "s3":
        if not s3["bucket"]:
            raise ImproperlyConfigured("PARLEY_MEDIA_BACKEND is s3 but PARLEY_MEDIA_S3_BUCKET is not set.")
        if s3["addressing_style"] not in ("auto", "path", "virtual"):
            raise ImproperlyConfigured("PARLEY_MEDIA_S3_ADDRESSING_STYLE must be auto, path or virtual.")
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": s3["bucket"],
                "endpoint_url": s3["endpoint_url"] or None,
                "region_name": s3["region"] or None,
                "access_key": s3["access_key_id"] or None,
                "secret_key": s3["secret_access_key"] or None,
                "addressing_style": None if s3["addressing_style"] == "auto" else s3["addressing_style"],
                "location": s3["prefix"],
                "verify": s3["verify"],
                "signature_version": "s3v4",
                # The bucket's own policy decides (keep it private); no object is made public.
                "default_acl": None,
                "querystring_auth": True,
                # Names are random and never reused: no existence check before each upload.
                "file_overwrite": True,
            },
        }
    raise ImproperlyConfigured(f"PARLEY_MEDIA_BACKEND must be filesystem or s3, not {backend!r}.")


STORAGES["media"] = media_storage(
    PARLEY_MEDIA_BACKEND,
    root=PARLEY_MEDIA_ROOT,
    s3={
        "bucket": PARLEY_MEDIA_S3_BUCKET,
        "endpoint_url": PARLEY_MEDIA_S3_ENDPOINT_URL,
        "region": PARLEY_MEDIA_S3_REGION,
        "access_key_id": PARLEY_MEDIA_S3_ACCESS_KEY_ID,
        "secret_access_key": PARLEY_MEDIA_S3_SECRET_ACCESS_KEY,
        "addressing_style": PARLEY_MEDIA_S3_ADDRESSING_STYLE,
        "prefix": PARLEY_MEDIA_S3_PREFIX,
        "verify": PARLEY_MEDIA_S3_VERIFY,
    },
)

# --- Security headers -----------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Django's database sessions, the row's read composed once (accounts/session_store.py).
SESSION_ENGINE = "accounts.session_store"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=PRODUCTION)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=PRODUCTION)
if env.bool("DJANGO_TRUST_X_FORWARDED_PROTO", default=PRODUCTION):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /healthz is probed over plain HTTP by container health checks.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SILENCED_SYSTEM_CHECKS = env.list("DJANGO_SILENCED_SYSTEM_CHECKS", default=[])

# Content-Security-Policy (django-csp 4): no inline script, no third-party origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        # Replies read aloud and recordings played back: Parley's own audio URLs only.
        "media-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)

# --- Parley ---------------------------------------------------------------------------------
# Provider API keys are encrypted with MultiFernet under this list, newest first.
PARLEY_ENCRYPTION_KEYS = env.list("PARLEY_ENCRYPTION_KEYS", default=[])
if not PARLEY_ENCRYPTION_KEYS and not PRODUCTION:
    from cryptography.fernet import Fernet

    PARLEY_ENCRYPTION_KEYS = [_generated_secret("encryption_key", lambda: Fernet.generate_key().decode())]
elif not PARLEY_ENCRYPTION_KEYS:
    # Without a key no provider can be saved or used: refuse to start rather than fail later.
    raise ImproperlyConfigured(
        "PARLEY_PRODUCTION is on but PARLEY_ENCRYPTION_KEYS is not set. Set it to a Fernet key, for example: "
        'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    )

OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="https://api.openai.com/v1")
OPENAI_ORGANIZATION = env.str("OPENAI_ORGANIZATION", default="")

PARLEY_DEFAULT_CONTEXT_WINDOW = env.int("PARLEY_DEFAULT_CONTEXT_WINDOW", default=8192)
PARLEY_UPSTREAM_CONNECT_TIMEOUT = env.float("PARLEY_UPSTREAM_CONNECT_TIMEOUT", default=10.0)
PARLEY_UPSTREAM_READ_TIMEOUT = env.float("PARLEY_UPSTREAM_READ_TIMEOUT", default=120.0)
PARLEY_UPSTREAM_MAX_RETRIES = env.int("PARLEY_UPSTREAM_MAX_RETRIES", default=2)
# The transport under the upstream client's httpx API: httpx's own (httpcore) or aiohttp's
# (httpx-aiohttp); chat/upstream/client.py, docs/performance.md.
PARLEY_UPSTREAM_TRANSPORT = env.str("PARLEY_UPSTREAM_TRANSPORT", default="aiohttp")
if PARLEY_UPSTREAM_TRANSPORT not in ("httpx", "aiohttp"):
    raise ImproperlyConfigured(
        f"PARLEY_UPSTREAM_TRANSPORT must be httpx or aiohttp, not {PARLEY_UPSTREAM_TRANSPORT!r}."
    )
PARLEY_RETRY_AFTER_MAX = env.float("PARLEY_RETRY_AFTER_MAX", default=60.0)
PARLEY_MODERATION_FAIL_OPEN = env.bool("PARLEY_MODERATION_FAIL_OPEN", default=False)
PARLEY_MAX_MESSAGE_CHARS = env.int("PARLEY_MAX_MESSAGE_CHARS", default=100_000)
PARLEY_MAX_CONCURRENT_REPLIES = env.int("PARLEY_MAX_CONCURRENT_REPLIES", default=3)
PARLEY_RATE_LIMIT_PER_MINUTE = env.int("PARLEY_RATE_LIMIT_PER_MINUTE", default=20)
# Bytes (UTF-8) of message text one member may add to the database a minute; 0 turns it off.
PARLEY_MESSAGE_BYTES_PER_MINUTE = env.int("PARLEY_MESSAGE_BYTES_PER_MINUTE", default=2_000_000)
PARLEY_SAVE_INTERVAL = env.float("PARLEY_SAVE_INTERVAL", default=1.0)
PARLEY_DELTA_COALESCE_MS = env.float("PARLEY_DELTA_COALESCE_MS", default=30.0)
PARLEY_DELTA_FRAMES_PER_SECOND = env.float("PARLEY_DELTA_FRAMES_PER_SECOND", default=500.0)
PARLEY_STALE_REPLY_SECONDS = env.float("PARLEY_STALE_REPLY_SECONDS", default=30.0)
PARLEY_SWEEP_INTERVAL = env.float("PARLEY_SWEEP_INTERVAL", default=15.0)
# A reservation of a call that is not a streaming reply, still held after this long, belongs to
# a process that died mid-call: the sweep settles it at its worst case (chat.core.calls).
PARLEY_STALE_CALL_SECONDS = env.float("PARLEY_STALE_CALL_SECONDS", default=7200.0)
PARLEY_MODEL_SYNC_INTERVAL = env.float("PARLEY_MODEL_SYNC_INTERVAL", default=3600.0)
PARLEY_DEFAULT_MONTHLY_TOKEN_BUDGET = env.int("PARLEY_DEFAULT_MONTHLY_TOKEN_BUDGET", default=None)
PARLEY_DEFAULT_MONTHLY_COST_BUDGET = env.str("PARLEY_DEFAULT_MONTHLY_COST_BUDGET", default="")
PARLEY_ADMIN_CAN_READ_CONVERSATIONS = env.bool("PARLEY_ADMIN_CAN_READ_CONVERSATIONS", default=False)
PARLEY_LOCAL_MODEL = env.str("PARLEY_LOCAL_MODEL", default="")
PARLEY_LOCAL_PORT = env.int("PARLEY_LOCAL_PORT", default=8088)
# The local model server's embedding model (documents offline): a GGUF path, "off", or empty for
# all-MiniLM-L6-v2 converted at install time (chat/local/minilm.py, docs/local-models.md).
PARLEY_LOCAL_EMBEDDING_MODEL = env.str("PARLEY_LOCAL_EMBEDDING_MODEL", default="")
PARLEY_BACKGROUND_TASKS = env.bool("PARLEY_BACKGROUND_TASKS", default=True)
# Documents (chat/services/documents.py): limits, chunking, the embedding model, the job lease.
PARLEY_DOCUMENT_MAX_BYTES = env.int("PARLEY_DOCUMENT_MAX_BYTES", default=20 * 1024 * 1024)
PARLEY_DOCUMENT_MAX_PAGES = env.int("PARLEY_DOCUMENT_MAX_PAGES", default=500)
PARLEY_DOCUMENT_MAX_FILES_PER_MESSAGE = env.int("PARLEY_DOCUMENT_MAX_FILES_PER_MESSAGE", default=10)
PARLEY_COLLECTIONS_PER_MEMBER = env.int("PARLEY_COLLECTIONS_PER_MEMBER", default=50)
PARLEY_COLLECTION_MAX_DOCUMENTS = env.int("PARLEY_COLLECTION_MAX_DOCUMENTS", default=500)
PARLEY_COLLECTIONS_PER_CONVERSATION = env.int("PARLEY_COLLECTIONS_PER_CONVERSATION", default=5)
PARLEY_DOCUMENT_MAX_TEXT_CHARS = env.int("PARLEY_DOCUMENT_MAX_TEXT_CHARS", default=5_000_000)
PARLEY_DOCUMENT_CHUNK_TOKENS = env.int("PARLEY_DOCUMENT_CHUNK_TOKENS", default=300)
PARLEY_DOCUMENT_CONTEXT_TOKENS = env.int("PARLEY_DOCUMENT_CONTEXT_TOKENS", default=3000)
PARLEY_DOCUMENT_LEASE_SECONDS = env.float("PARLEY_DOCUMENT_LEASE_SECONDS", default=300.0)
PARLEY_EMBEDDING_MODEL = env.str("PARLEY_EMBEDDING_MODEL", default="")
# Images (chat/services/images.py): how many a call may ask for, what an uploaded image may be,
# and the size of a provider's answer Parley reads (base64 images are large).
PARLEY_IMAGE_MAX_N = env.int("PARLEY_IMAGE_MAX_N", default=4)
PARLEY_IMAGE_PROMPT_MAX_CHARS = env.int("PARLEY_IMAGE_PROMPT_MAX_CHARS", default=4000)
PARLEY_IMAGE_UPLOAD_MAX_BYTES = env.int("PARLEY_IMAGE_UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)
PARLEY_IMAGE_MAX_PIXELS = env.int("PARLEY_IMAGE_MAX_PIXELS", default=40_000_000)
PARLEY_IMAGE_EDIT_MAX_SIDE = env.int("PARLEY_IMAGE_EDIT_MAX_SIDE", default=1024)
PARLEY_IMAGE_MAX_RESPONSE_BYTES = env.int("PARLEY_IMAGE_MAX_RESPONSE_BYTES", default=64 * 1024 * 1024)
PARLEY_EMBEDDING_DIMENSIONS = env.int("PARLEY_EMBEDDING_DIMENSIONS", default=256)
PARLEY_EMBEDDING_BATCH = env.int("PARLEY_EMBEDDING_BATCH", default=64)
# Search by meaning in the sidebar (chat/services/search.py): a conversation is found by meaning
# when one of its passages is at least this close to the question (cosine similarity).
PARLEY_SEARCH_MIN_SIMILARITY = env.float("PARLEY_SEARCH_MIN_SIMILARITY", default=0.3)
# Images attached to a message, for vision models (chat/services/vision.py).
PARLEY_VISION_IMAGE_MAX_BYTES = env.int("PARLEY_VISION_IMAGE_MAX_BYTES", default=10 * 1024 * 1024)
PARLEY_VISION_IMAGES_PER_MESSAGE = env.int("PARLEY_VISION_IMAGES_PER_MESSAGE", default=4)
# Send the document passages a turn's prompt carries to the moderation gate too (default off).
PARLEY_MODERATE_DOCUMENTS = env.bool("PARLEY_MODERATE_DOCUMENTS", default=False)
# Memory each process may keep documents' vectors in for the SQLite vector scan (chat/services/retrieval.py).
PARLEY_RETRIEVAL_CACHE_MB = env.int("PARLEY_RETRIEVAL_CACHE_MB", default=256)
# Voice (chat/services/voice.py): dictation and audio files in, replies read aloud out. The
# models are the admin's choice (docs/admin.md): these ids, else the first granted of the kind.
PARLEY_TRANSCRIPTION_MODEL = env.str("PARLEY_TRANSCRIPTION_MODEL", default="")
PARLEY_SPEECH_MODEL = env.str("PARLEY_SPEECH_MODEL", default="")
# A dictation's length and size; an audio file attached as a document may be longer (its size
# limit is PARLEY_DOCUMENT_MAX_BYTES: keep it within the provider's 25 MB).
PARLEY_VOICE_MAX_RECORDING_SECONDS = env.int("PARLEY_VOICE_MAX_RECORDING_SECONDS", default=300)
PARLEY_VOICE_MAX_UPLOAD_BYTES = env.int("PARLEY_VOICE_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
PARLEY_AUDIO_DOCUMENT_MAX_SECONDS = env.int("PARLEY_AUDIO_DOCUMENT_MAX_SECONDS", default=3 * 3600)
# A reply read aloud: at most this many characters (OpenAI's /audio/speech takes 4,096).
PARLEY_SPEECH_MAX_CHARACTERS = env.int("PARLEY_SPEECH_MAX_CHARACTERS", default=4096)
# Presets, prompts, folders and share links (chat/services/library.py): per-member limits, and
# whether a share link opens for anyone with it (off: only signed-in members of this deployment).
PARLEY_MAX_PRESETS = env.int("PARLEY_MAX_PRESETS", default=50)
PARLEY_MAX_PROMPTS = env.int("PARLEY_MAX_PROMPTS", default=200)
PARLEY_MAX_FOLDERS = env.int("PARLEY_MAX_FOLDERS", default=100)
PARLEY_MAX_SHARE_LINKS = env.int("PARLEY_MAX_SHARE_LINKS", default=200)
PARLEY_PUBLIC_SHARE_LINKS = env.bool("PARLEY_PUBLIC_SHARE_LINKS", default=False)
# Fine-tuning (docs/fine-tuning.md): the fewest examples a dataset may have, the largest training
# file, and how often the background job asks a provider about running jobs (seconds).
PARLEY_FINETUNE_MIN_EXAMPLES = env.int("PARLEY_FINETUNE_MIN_EXAMPLES", default=10)
PARLEY_FINETUNE_MAX_FILE_BYTES = env.int("PARLEY_FINETUNE_MAX_FILE_BYTES", default=100 * 1024 * 1024)
PARLEY_FINETUNE_POLL_INTERVAL = env.float("PARLEY_FINETUNE_POLL_INTERVAL", default=60.0)
# Ingestion jobs: django-tasks with its database backend; the worker is `manage.py db_worker`.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

# After the first reply the model writes a short title (one small extra completion call).
PARLEY_AUTO_TITLE = env.bool("PARLEY_AUTO_TITLE", default=True)

# The member API under /v1/ (docs/api.md): off turns it off for everyone, whatever the admin's policy.
PARLEY_API_ENABLED = env.bool("PARLEY_API_ENABLED", default=True)
PARLEY_API_MAX_BODY_BYTES = env.int("PARLEY_API_MAX_BODY_BYTES", default=1_048_576)
PARLEY_API_AUTH_FAILURE_LIMIT = env.int("PARLEY_API_AUTH_FAILURE_LIMIT", default=20)  # per address a minute; 0: off
PARLEY_API_TOKENS_PER_MEMBER = env.int("PARLEY_API_TOKENS_PER_MEMBER", default=20)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("PARLEY_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # httpx logs every upstream request at INFO: one line per reply is noise, not news.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
