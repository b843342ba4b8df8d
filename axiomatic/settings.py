"""Axiomatic CRM settings: one module, every value from the environment.

Unset variables give the zero-setup demo (SQLite file, in-process tasks, local-memory cache).
With DEBUG off, missing secrets fail loudly at start-up.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from axiomatic.env import env_bool, env_float, env_int, env_list, env_required, env_str
from axiomatic.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

# DEBUG off means production: secrets below must then come from the environment.
DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_required("SECRET_KEY", fallback="insecure-dev-secret-key" if DEBUG else None)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "axiomatic.apps.AdminConfig",  # django.contrib.admin; each view inside the staff user's entities (RLS)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "axiomatic",
    "apikeys",
    "crm",
    "marketing",
    "webhooks",
]

MIDDLEWARE = [
    "axiomatic.middleware.RequestIdMiddleware",
    "axiomatic.ops.middleware.ProbeMiddleware",  # /livez /readyz /healthz /metrics: before hosts, sessions
    "axiomatic.ops.middleware.RequestObservabilityMiddleware",  # access log line, metrics, request id
    "axiomatic.ops.middleware.DatabaseUnavailableMiddleware",  # database away: 503 + Retry-After, never 500
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "axiomatic.changes.ChangeActorMiddleware",  # who acts, for the change feed (API keys: once authenticated)
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a sign-in lock-out into the sign-in page with 429
    "apikeys.middleware.ApiKeyLastUsedMiddleware",  # records a key's use after the view's transaction
    "axiomatic.replica.ReplicaPinMiddleware",  # read-your-writes with a replica (not loaded without one)
    "django_htmx.middleware.HtmxMiddleware",
    "axiomatic.middleware.ApiErrorMiddleware",
    "axiomatic.idempotency.IdempotencyMiddleware",  # innermost, still outside the view's transaction
]

ROOT_URLCONF = "axiomatic.urls"
WSGI_APPLICATION = "axiomatic.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# ATOMIC_REQUESTS: every request runs in one transaction, so the current entity can be set as a
# transaction-local PostgreSQL setting (app.entity_id) for row-level security.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
# Operations (docs/operations.md): connection reuse, connect and statement timeouts (PostgreSQL).
DB_POOL = env_bool("DB_POOL", False)  # False: persistent connections with health checks (measured)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 4, minimum=1)
DB_CONN_HEALTH_CHECKS = env_bool("DB_CONN_HEALTH_CHECKS", True)  # a broken connection is replaced, not used
DB_CONNECT_TIMEOUT_SECONDS = env_int("DB_CONNECT_TIMEOUT_SECONDS", 3, minimum=2)  # libpq's minimum is 2
DB_STATEMENT_TIMEOUT_MS = env_int("DB_STATEMENT_TIMEOUT_MS", 5000, minimum=0)  # web requests; 0: none
DB_TASK_STATEMENT_TIMEOUT_MS = env_int("DB_TASK_STATEMENT_TIMEOUT_MS", 60000, minimum=0)  # Celery tasks
DB_UNAVAILABLE_RETRY_AFTER_SECONDS = env_int("DB_UNAVAILABLE_RETRY_AFTER_SECONDS", 5, minimum=1)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    from axiomatic.ops.dbconfig import postgresql_database

    DATABASES["default"] = postgresql_database(
        DATABASES["default"],
        pool=DB_POOL,
        pool_max_size=DB_POOL_MAX_SIZE,
        health_checks=DB_CONN_HEALTH_CHECKS,
        connect_timeout=DB_CONNECT_TIMEOUT_SECONDS,
        statement_timeout_ms=DB_STATEMENT_TIMEOUT_MS,
    )
# A PostgreSQL streaming replica for the read paths (axiomatic/replica.py, docs/scaling.md): lists,
# details, the dashboard and the board read there; writes, and a caller's reads for
# REPLICA_PIN_SECONDS after its own write, stay on the primary; a replica that is down or lags more
# than REPLICA_MAX_LAG_SECONDS is skipped for REPLICA_RETRY_SECONDS.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "").strip()
REPLICA_PIN_SECONDS = env_float("REPLICA_PIN_SECONDS", 5.0)
REPLICA_MAX_LAG_SECONDS = env_float("REPLICA_MAX_LAG_SECONDS", 2.0)
REPLICA_RETRY_SECONDS = env_float("REPLICA_RETRY_SECONDS", 5.0)
DATABASE_ROUTERS = ["axiomatic.replica.ReplicaRouter"]
if DATABASE_REPLICA_URL:
    from axiomatic.ops.dbconfig import replica_database

    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs DATABASE_URL on PostgreSQL")
    DATABASES["replica"] = replica_database(dj_database_url.parse(DATABASE_REPLICA_URL), primary=DATABASES["default"])
# Row-level security (axiomatic/rls.py): PostgreSQL connections `SET ROLE` to this role, which owns
# no table and cannot bypass RLS. "" keeps the login user (RLS still applies unless it is a superuser).
DB_APP_ROLE = env_str("DB_APP_ROLE", "axiomatic_app").strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "axiomatic.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/crm/board"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Sign-in protection (django-axes; the rule and the design are in axiomatic/signin.py) -------
# Within 15 minutes, LOGIN_FAILURE_LIMIT failed sign-ins for one email from one client address lock
# that email from that address; LOGIN_EMAIL_FAILURE_LIMIT for one email from all addresses lock it
# everywhere; 5x LOGIN_FAILURE_LIMIT from one address (any emails) lock that address. Each lock
# lasts 15 minutes, the right password included. IPv6 clients are counted per /64.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_EMAIL_FAILURE_LIMIT = env_int("LOGIN_EMAIL_FAILURE_LIMIT", 10 * LOGIN_FAILURE_LIMIT, minimum=LOGIN_FAILURE_LIMIT)
AUTHENTICATION_BACKENDS = [
    "axiomatic.signin.SignInLockoutBackend",  # first: refuses a locked email/address before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axiomatic.signin.SignInAttemptHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_RESET_ON_SUCCESS = False
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "axiomatic.signin.signin_username"
AXES_CLIENT_IP_CALLABLE = "axiomatic.client_address.client_address"
AXES_LOCKOUT_CALLABLE = "axiomatic.signin.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # failures are kept (15 minutes); successful sign-ins are not logged
AXES_VERBOSE = False

# --- Cache and rate limits --------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "axiomatic"),
            # An unreachable Redis costs a request at most this long (then the cache is skipped).
            "OPTIONS": {
                "socket_connect_timeout": env_float("REDIS_SOCKET_TIMEOUT_SECONDS", 1.0),
                "socket_timeout": env_float("REDIS_SOCKET_TIMEOUT_SECONDS", 1.0),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 600, minimum=1)  # per user, all keys together
# Failed API authentications (unknown, revoked, malformed keys) per client address and minute;
# past it every Bearer request from that address is answered 429 until the minute ends.
API_AUTH_FAILURE_LIMIT_PER_MINUTE = env_int("API_AUTH_FAILURE_LIMIT_PER_MINUTE", 60, minimum=1)
# Reverse proxies in front of the app that append to X-Forwarded-For; 0 = clients connect directly.
# The per-address limits (sign-in, failed API auth) count the address this many hops from the right.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# --- Internationalisation ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (served by WhiteNoise, also with DEBUG off) ---------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# --- Security ---------------------------------------------------------------------------------
# Plain HTTP unless the deployment says it is HTTPS-only: SECURE_SSL_REDIRECT=1 (the app redirects
# http:// itself), or SESSION_COOKIE_SECURE=1 / CSRF_COOKIE_SECURE=1 when a proxy in front already
# redirects. Either way the cookies are Secure and HSTS is sent (on https requests, see
# SECURE_PROXY_SSL_HEADER). docs/operations.md lists the production settings; `manage.py check
# --deploy` is clean for them (tests/test_security_defaults.py runs it).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SECURE_SSL_REDIRECT)
_HTTPS_ONLY = SECURE_SSL_REDIRECT or (SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _HTTPS_ONLY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [
    # includeSubDomains and preload bind every subdomain of the host (preload: in browsers' built-in
    # lists, for good); that is the operator's decision about their domain, not the app's default.
    # They stay off until SECURE_HSTS_INCLUDE_SUBDOMAINS=1 / SECURE_HSTS_PRELOAD=1.
    "security.W005",
    "security.W021",
]
if _HTTPS_ONLY and not SECURE_SSL_REDIRECT:
    # Secure cookies without the app's redirect: the deployment has said its proxy redirects http://.
    SILENCED_SYSTEM_CHECKS.append("security.W008")
# Behind a TLS-terminating proxy: SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO trusts that header's
# "https" (only set it when the proxy always overwrites the header). Unset: no header is trusted.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "").strip()
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header, "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Bodies over 1 MB are refused with 413 (see axiomatic.api.parsers).
API_MAX_BODY_BYTES = 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

# Fernet keys for tokens at rest, newest first. With DEBUG on, one is derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", [])
if not FIELD_ENCRYPTION_KEYS:
    env_required("FIELD_ENCRYPTION_KEYS", fallback="derived" if DEBUG else None)

# --- REST framework and OpenAPI ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apikeys.authentication.ApiKeyAuthentication",
        "axiomatic.api.authentication.EntitySessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["axiomatic.api.parsers.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "axiomatic.api.parsers.JsonOnlyNegotiation",
    "DEFAULT_RENDERER_CLASSES": ["axiomatic.api.fast.OrjsonRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "axiomatic.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "axiomatic.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Axiomatic CRM API",
    "DESCRIPTION": (
        "Multi-tenant CRM and sales API. Authenticate with `Authorization: Bearer ak_...` and name "
        "the entity with `entityId` (query string or JSON body). Every error is "
        '`{"error": "..."}` JSON, optionally with `details` per field.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "WebhookEndpointStatusEnum": [("active", "Active"), ("disabled", "Disabled")],
        "WebhookDeliveryStatusEnum": "webhooks.models.DeliveryStatus",
        # Activities are described by two components (the list's and a lead's nested create).
        "ActivityTypeEnum": "crm.choices.ActivityType",
        "ActivityStatusEnum": "crm.choices.ActivityStatus",
    },
    "SCHEMA_PATH_PREFIX": r"/api/",
    # Enum components, then the API's conventions (closed request bodies, links, Retry-After, tags).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "axiomatic.api.openapi.postprocess_schema",
    ],
}

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
# Without a broker, tasks run in-process (the zero-setup demo).
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
# Every task's hard time limit stays under the visibility timeout, so a task still running is never
# handed to a second worker; a task's statement timeout is at most its soft limit.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
    # Publishing (after a commit) gives up at once when the broker is away (kombu would retry for
    # ~6 s per message, inside the request): the rows are the truth and the periodic checks
    # (webhook sweep, outbound_email_check) queue the work again. The worker's own connection
    # retries are governed by broker_connection_retry, not by this.
    "max_retries": env_int("CELERY_PUBLISH_MAX_RETRIES", 0, minimum=0),
}
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 90, minimum=1)
if not CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT < CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]:
    raise ImproperlyConfigured(
        "Need CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT < CELERY_VISIBILITY_TIMEOUT (seconds)"
    )
# The queue tasks go to (and a worker started with `-Q` of the same name reads): one per deployment.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- CSV imports (crm/services/imports.py, crm/bulk/; docs/api.md "Import and export") ----------
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
IMPORT_MAX_ROWS = env_int("IMPORT_MAX_ROWS", 1_000_000, minimum=1)
IMPORT_CHUNK_ROWS = env_int("IMPORT_CHUNK_ROWS", 1000, minimum=1)  # rows per committed chunk
IMPORT_RUN_SECONDS = env_float("IMPORT_RUN_SECONDS", 40.0)  # then the task hands over to its continuation
IMPORT_STALE_SECONDS = env_int("IMPORT_STALE_SECONDS", 60, minimum=1)  # a running job this quiet is resumed
IMPORT_CHUNK_PAUSE_SECONDS = env_float("IMPORT_CHUNK_PAUSE_SECONDS", 0.0)  # throttle: leave the database room

# --- Probes and metrics (axiomatic/health.py, axiomatic/metrics.py, docs/operations.md) ------------
# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is a 404 like any unknown path.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
PROBE_REDIS_TIMEOUT_SECONDS = env_float("PROBE_REDIS_TIMEOUT_SECONDS", 1.0)

# --- Outbound email providers ------------------------------------------------
# Public base URL (e.g. https://crm.example.com) for the mailbox OAuth callback; unset, it is
# built from the request (then behind a TLS proxy set SECURE_PROXY_SSL_HEADER so it says https).
OAUTH_REDIRECT_BASE_URL = env_str("OAUTH_REDIRECT_BASE_URL", "").strip().rstrip("/")
if OAUTH_REDIRECT_BASE_URL and not OAUTH_REDIRECT_BASE_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured(f"OAUTH_REDIRECT_BASE_URL must be an http(s):// URL, got {OAUTH_REDIRECT_BASE_URL!r}")
GOOGLE_OAUTH_CLIENT_ID = env_str("GOOGLE_OAUTH_CLIENT_ID", "")
GOOGLE_OAUTH_CLIENT_SECRET = env_str("GOOGLE_OAUTH_CLIENT_SECRET", "")
GOOGLE_OAUTH_AUTHORIZE_URL = env_str("GOOGLE_OAUTH_AUTHORIZE_URL", "https://accounts.google.com/o/oauth2/v2/auth")
GOOGLE_OAUTH_TOKEN_URL = env_str("GOOGLE_OAUTH_TOKEN_URL", "https://oauth2.googleapis.com/token")
GMAIL_API_BASE_URL = env_str("GMAIL_API_BASE_URL", "https://gmail.googleapis.com")
MICROSOFT_OAUTH_CLIENT_ID = env_str("MICROSOFT_OAUTH_CLIENT_ID", "")
MICROSOFT_OAUTH_CLIENT_SECRET = env_str("MICROSOFT_OAUTH_CLIENT_SECRET", "")
MICROSOFT_OAUTH_AUTHORIZE_URL = env_str(
    "MICROSOFT_OAUTH_AUTHORIZE_URL",
    "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
)
MICROSOFT_OAUTH_TOKEN_URL = env_str(
    "MICROSOFT_OAUTH_TOKEN_URL", "https://login.microsoftonline.com/common/oauth2/v2.0/token"
)
GRAPH_API_BASE_URL = env_str("GRAPH_API_BASE_URL", "https://graph.microsoft.com")
EMAIL_RETRY_BASE_SECONDS = env_float("EMAIL_RETRY_BASE_SECONDS", 2.0)
EMAIL_MAX_ATTEMPTS = env_int("EMAIL_MAX_ATTEMPTS", 6, minimum=1)
# At most this many emails per mailbox connection in any 24 hours (a 429 with Retry-After beyond).
EMAIL_DAILY_LIMIT_PER_CONNECTION = env_int("EMAIL_DAILY_LIMIT_PER_CONNECTION", 500, minimum=1)
PROVIDER_HTTP_TIMEOUT_SECONDS = env_float("PROVIDER_HTTP_TIMEOUT_SECONDS", 20.0)
# Inbound sync (replies and received mail; crm/email/inbound.py, docs/operations.md): how often each
# mailbox is read, how long and how many pages one sync may take, how many messages it fetches at once.
EMAIL_SYNC_INTERVAL_SECONDS = env_int("EMAIL_SYNC_INTERVAL_SECONDS", 120, minimum=5)
EMAIL_SYNC_MAX_SECONDS = env_int("EMAIL_SYNC_MAX_SECONDS", 45, minimum=1)
EMAIL_SYNC_MAX_PAGES = env_int("EMAIL_SYNC_MAX_PAGES", 20, minimum=1)
EMAIL_SYNC_FETCH_CONCURRENCY = env_int("EMAIL_SYNC_FETCH_CONCURRENCY", 8, minimum=1)
_email_sync_hard_limit = EMAIL_SYNC_MAX_SECONDS + 45
if _email_sync_hard_limit >= CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]:
    # The sync task's hard limit (EMAIL_SYNC_MAX_SECONDS + 45 s) must stay under the visibility timeout.
    raise ImproperlyConfigured("Need EMAIL_SYNC_MAX_SECONDS + 45 < CELERY_VISIBILITY_TIMEOUT (seconds)")

# --- Change feed and webhooks (docs/webhooks.md) ------------------------------------------
CHANGES_RETENTION_DAYS = env_float("CHANGES_RETENTION_DAYS", 35.0)
# Seconds between attempts after each failure (with jitter); past the last one the endpoint is disabled.
WEBHOOK_RETRY_SCHEDULE = env_str("WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000,50400,72000,86400")
try:
    _webhook_steps = [float(step) for step in WEBHOOK_RETRY_SCHEDULE.split(",") if step.strip()]
except ValueError:
    _webhook_steps = []
if not _webhook_steps or min(_webhook_steps) < 0:
    raise ImproperlyConfigured(f"WEBHOOK_RETRY_SCHEDULE must list seconds (5,300,...); got {WEBHOOK_RETRY_SCHEDULE!r}")
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0)  # a 2xx within this is success
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", False)  # plain http:// endpoints (development only)
WEBHOOK_ALLOW_LOOPBACK = env_bool("WEBHOOK_ALLOW_LOOPBACK", False)  # 127.0.0.1 / ::1 endpoints (development only)
WEBHOOK_CLAIM_LEASE_SECONDS = env_float("WEBHOOK_CLAIM_LEASE_SECONDS", 60.0)  # a dead worker's claim expires
WEBHOOK_BATCH_SECONDS = env_float("WEBHOOK_BATCH_SECONDS", 20.0)  # one task delivers this long, then requeues
WEBHOOK_SWEEP_SECONDS = env_float("WEBHOOK_SWEEP_SECONDS", 30.0)  # beat: endpoints with work and no task

# --- Logging ----------------------------------------------------------------------------------
# One JSON object per line in production (request id, route, status, duration; axiomatic.logging).
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json").strip().lower()
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, got {LOG_FORMAT!r}")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env_str("LOG_LEVEL", "INFO"))
