"""WebMagic settings, read from the environment (and an optional `.env`) with django-environ.

Defaults are for a laptop: SQLite, an embedded Celery broker, email to files, sandbox Recurrente.
`DEBUG=False` is production mode: it refuses to start without real secrets (see `_refuse_unsafe_production`).
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
PRODUCTION = not DEBUG

# A development key is only acceptable in DEBUG; production refuses it below.
DEV_SECRET_KEY = "dev-insecure-key-change-me"
SECRET_KEY = env.str("SECRET_KEY", default="") or DEV_SECRET_KEY
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[]) or [SITE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # django.contrib.sites is deliberately absent: its label clashes with our `sites` app.
    "django_celery_beat",
    "anymail",
    "django_ratelimit",
    "webmagic",
    "customers",
    "sites",
    "checkout",
    "webhooks",
    "portal",
]

MIDDLEWARE = [
    "sites.middleware.CustomDomainMiddleware",  # first: answers verified custom domains before any Host check
    "django.middleware.security.SecurityMiddleware",
    "webmagic.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
]

ROOT_URLCONF = "webmagic.urls"
WSGI_APPLICATION = "webmagic.wsgi.application"

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
                "webmagic.context_processors.site_settings",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; a timeout lets web, worker and beat share the file in `make run`.
    # IMMEDIATE: every transaction takes the write lock when it begins, so a second writer waits
    # (up to the timeout) instead of deadlocking. With SQLite's default (DEFERRED) two workers
    # that both read and then write fail at once with "database is locked" (the legacy and unified
    # events of one payment do exactly that), and the buyer waits for a retry.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "customers.CustomerUser"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "customers:login"
LOGIN_REDIRECT_URL = "portal:dashboard"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = 60 * 60  # one hour, DESIGN §5

LANGUAGE_CODE = "en-us"
# Customer-facing times (emails, portal, receipts) are shown in this zone, with its name.
TIME_ZONE = env.str("TIME_ZONE", default="America/Guatemala")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Cache and rate limits -------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          # Parallel test processes share one Redis: each keeps to its own keys.
                          "KEY_PREFIX": env.str("PYTEST_XDIST_WORKER", default=""),
                          # A Redis that stops answering must fail a rate-limit count quickly (see
                          # webmagic/ratelimit.py), not hold the request for the OS's TCP timeout.
                          "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "webmagic"}}
RATELIMIT_USE_CACHE = "default"
RATELIMIT_VIEW = "webmagic.views.ratelimited"
# The client IP comes from our own trusted-proxy rule, never the first X-Forwarded-For value.
RATELIMIT_IP_META_KEY = "webmagic.http.client_ip"
# Production must say how many proxies stand in front of it (0 is a valid answer): behind a load
# balancer, a wrong 0 puts every visitor in the balancer's single rate-limit bucket.
TRUSTED_PROXY_COUNT_SET = "TRUSTED_PROXY_COUNT" in env.ENVIRON
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
SILENCED_SYSTEM_CHECKS = [
    # Django's own RedisCache increments atomically; django-ratelimit only lists third-party ones.
    "django_ratelimit.W001",
]
if not REDIS_URL:
    # Without Redis (laptop mode) limits are per process; production requires REDIS_URL below.
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.E003")

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_DIR = BASE_DIR / ".celery-broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: messages are files in one folder shared by web, worker and beat.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR),
        "data_folder_out": str(CELERY_BROKER_DIR),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "store_processed": False,
        # Its exchange tables; kombu's default is ./control/ in whatever folder a process started in.
        "control_folder": str(CELERY_BROKER_DIR / "control"),
    }
    # kombu's filesystem transport does not create its folder; web, worker and beat all need it.
    (CELERY_BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)
else:
    # Tasks may run up to CELERY_TASK_TIME_LIMIT; the broker must not redeliver before that.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 60 * 60}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # kombu's Redis transport, fixed so a worker with a task in hand survives Redis going away
    # (see webmagic/broker.py).
    CELERY_BROKER_TRANSPORT = "webmagic.broker:RedisTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        # A Redis that hangs (or a host that does not answer) fails an operation in seconds instead
        # of blocking forever: a web request enqueueing a task, beat sending one, the worker waiting.
        "socket_connect_timeout": 2,
        "socket_timeout": 3,
    }
# The worker and beat ride out broker outages of any length: reconnect forever (the default gives
# up after 100 attempts, about 45 minutes, and the worker exits).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Publishing (web requests, beat, tasks enqueueing tasks) tries twice, half a second apart, then gives
# up: a request waits under a second on a Redis that is down and about 10 on one that hangs (the
# socket timeouts above), and every enqueue is backed by a sweep that re-drives it later (stuck
# emails, unprocessed webhooks, beat's next tick).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 0.5}
# Running tasks finish when the broker connection drops (Celery 6's default kills them): killing a
# send_email mid-send leaves its outcome unknown for nothing. Only their acknowledgement is lost
# with the connection: the broker delivers them again after the visibility timeout, and our tasks
# are idempotent (an email already sent is not claimed again).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"  # schedules are written in UTC (webmagic/beat.py), whatever zone customers read
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Email -----------------------------------------------------------------------------------
BREVO_API_KEY = env.str("BREVO_API_KEY", default="")
if BREVO_API_KEY:
    EMAIL_BACKEND = "anymail.backends.brevo.EmailBackend"
    ANYMAIL = {
        "BREVO_API_KEY": BREVO_API_KEY,
        "WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default=""),
        # (connect, read) seconds: a send holds its email row locked, and a retry must come well
        # within Brevo's 15-minute memory of the idempotency key.
        "REQUESTS_TIMEOUT": (5, 25),
    }
    if env.str("BREVO_API_URL", default=""):
        ANYMAIL["BREVO_API_URL"] = env.str("BREVO_API_URL")  # a stand-in Brevo (fault tests); Brevo's own by default
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
    ANYMAIL = {"WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default="")}
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / "sent_emails"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="WebMagic <hello@webmagic.example>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ADMINS = [("Staff", addr) for addr in env.list("ADMINS", default=[])]
# Staff alerts are also POSTed here as JSON (Slack/Mattermost-style incoming webhook); a secret: never logged.
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
COMPANY_POSTAL_ADDRESS = env.str("COMPANY_POSTAL_ADDRESS", default="WebMagic, 1 Example Street, Austin, TX 78701, USA")
# How a buyer reaches a person: shown on the preview bar, the purchase page and the legal pages.
SUPPORT_EMAIL = env.str("SUPPORT_EMAIL", default="help@webmagic.example")
SUPPORT_PHONE = env.str("SUPPORT_PHONE", default="+502 2345 6789")
# Digits only with country code (wa.me/<number>); empty hides the WhatsApp link.
SUPPORT_WHATSAPP = "".join(ch for ch in env.str("SUPPORT_WHATSAPP", default="50223456789") if ch.isdigit())

# --- Recurrente ------------------------------------------------------------------------------
RECURRENTE_API_URL = env.str("RECURRENTE_API_URL", default="https://app.recurrente.com/api").rstrip("/")
RECURRENTE_SECRET_KEY = env.str("RECURRENTE_SECRET_KEY", default="")
RECURRENTE_PUBLIC_KEY = env.str("RECURRENTE_PUBLIC_KEY", default="")
RECURRENTE_WEBHOOK_SECRETS = env.list("RECURRENTE_WEBHOOK_SECRETS", default=[])
RECURRENTE_LIVE_MODE = env.bool("RECURRENTE_LIVE_MODE", default=False)
# Where Recurrente's hosted checkout pages live (our forms redirect there; see the CSP).
RECURRENTE_CHECKOUT_ORIGIN = env.str("RECURRENTE_CHECKOUT_ORIGIN", default="https://app.recurrente.com")
RECURRENTE_TIMEOUT = (env.float("RECURRENTE_CONNECT_TIMEOUT", default=3.05), env.float("RECURRENTE_READ_TIMEOUT", default=10))
# Sandbox: no Recurrente key means checkouts go to our built-in imitation (never in production).
RECURRENTE_SANDBOX = not RECURRENTE_SECRET_KEY and not PRODUCTION
if RECURRENTE_SANDBOX and not RECURRENTE_WEBHOOK_SECRETS:
    # The sandbox signs its deliveries like Svix; this laptop-only secret lets them verify.
    RECURRENTE_WEBHOOK_SECRETS = ["whsec_c2FuZGJveC1zZWNyZXQtZm9yLWRldmVsb3BtZW50"]
# The sandbox sends signed webhook deliveries unless this is off; off imitates Recurrente on test
# keys, which may send none (the reconciler then completes every flow).
SANDBOX_WEBHOOKS = env.bool("SANDBOX_WEBHOOKS", default=True)
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=256 * 1024)
WEBHOOK_TOLERANCE_SECONDS = 300

# --- Business rules --------------------------------------------------------------------------
ABANDONED_CART_DELAY_MINUTES = env.int("ABANDONED_CART_DELAY_MINUTES", default=15)
RECOVERY_DISCOUNT_PERCENT = env.int("RECOVERY_DISCOUNT_PERCENT", default=10)
RECOVERY_WINDOW_HOURS = env.int("RECOVERY_WINDOW_HOURS", default=48)
CHECKOUT_LIFETIME_HOURS = env.int("CHECKOUT_LIFETIME_HOURS", default=24)

# --- Security --------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_SSL_REDIRECT_EXEMPT = [r"^healthz/$", r"^livez/$"]  # load balancers probe over plain HTTP
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Error reports (the mails to ADMINS, the DEBUG error page) hide URL/broker/database settings,
# passwords inside URLs and token links too, not only Django's API/KEY/SECRET/PASS names.
DEFAULT_EXCEPTION_REPORTER_FILTER = "webmagic.errorreports.RedactingExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "webmagic.errorreports.RedactingExceptionReporter"

# LOG_FORMAT: "json" writes one JSON object per line (time, level, logger, message, exception) for a
# log collector; "text" one readable line. Default: json in production, text with DEBUG=True.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # Redacts every field it writes, tracebacks included (webmagic/logredact.py).
        "json": {"()": "webmagic.logredact.RedactingJsonFormatter"},
    },
    # Paths of token links (set password, recovery, …) are capabilities: never written to logs.
    "filters": {
        "redact_tokens": {"()": "webmagic.logredact.RedactTokensFilter"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact_tokens"]},
        # Django's error mails, without secrets or token links, and without a flood during an
        # outage: each distinct error once per 15 minutes, at most 20 mails an hour per process.
        "mail_admins": {"class": "webmagic.errorreports.ThrottledAdminEmailHandler", "level": "ERROR",
                        "filters": ["require_debug_false", "redact_tokens"],
                        "per_error_minutes": 15, "max_per_hour": 20},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Replaces Django's default handlers for its own logger (an unfiltered console in DEBUG):
        # our redacting console, and error mails to ADMINS as Django does in production.
        "django": {"handlers": ["console", "mail_admins"], "level": "INFO", "propagate": False},
    },
}
# The worker keeps this configuration: by default Celery replaces the root logger's handlers with its
# own, which would write its text lines, without redaction, instead of ours.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False


def _refuse_unsafe_production():
    """Production must never run on development secrets or skip webhook verification."""
    if not PRODUCTION:
        return
    problems = []
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50:
        problems.append("SECRET_KEY must be a real random value of at least 50 characters")
    if not RECURRENTE_SECRET_KEY:
        problems.append("RECURRENTE_SECRET_KEY is required")
    elif not RECURRENTE_SECRET_KEY.startswith(("sk_live_", "sk_test_")):
        problems.append("RECURRENTE_SECRET_KEY must start with sk_live_ or sk_test_ (a Recurrente secret key)")
    elif RECURRENTE_SECRET_KEY.startswith("sk_live_") != RECURRENTE_LIVE_MODE:
        # A mismatch stores every real event and then ignores it as the other mode: payments
        # would be taken and never applied. The key's prefix is the authority; the flag must agree.
        key_mode = "sk_live_" if RECURRENTE_SECRET_KEY.startswith("sk_live_") else "sk_test_"
        problems.append(
            f"RECURRENTE_LIVE_MODE={RECURRENTE_LIVE_MODE} disagrees with RECURRENTE_SECRET_KEY ({key_mode}…): "
            f"set RECURRENTE_LIVE_MODE={'True' if key_mode == 'sk_live_' else 'False'} for a {key_mode} key"
        )
    if not RECURRENTE_WEBHOOK_SECRETS:
        problems.append("RECURRENTE_WEBHOOK_SECRETS is required (webhooks are never accepted unverified)")
    if not REDIS_URL:
        problems.append("REDIS_URL is required (rate limits need a shared cache)")
    if not TRUSTED_PROXY_COUNT_SET:
        problems.append("TRUSTED_PROXY_COUNT is required (how many proxies add to X-Forwarded-For; 0 if none)")
    if problems:
        raise ImproperlyConfigured("Refusing to start in production (DEBUG=False): " + "; ".join(problems))


_refuse_unsafe_production()
