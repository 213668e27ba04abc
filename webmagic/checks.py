"""System checks that keep a production deployment from running unsafely."""

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security)
def webhook_secret_configured(app_configs, **kwargs):
    """Without a secret every webhook is rejected; in production that silently loses payments."""
    if settings.PRODUCTION and not settings.RECURRENTE_WEBHOOK_SECRETS:
        return [
            checks.Error(
                "RECURRENTE_WEBHOOK_SECRETS is empty: every Recurrente webhook will be rejected.",
                hint="Set it to the whsec_… signing secret(s) from Recurrente's dashboard.",
                id="webmagic.E001",
            )
        ]
    return []


@checks.register(checks.Tags.security)
def recurrente_key_configured(app_configs, **kwargs):
    if settings.PRODUCTION and not settings.RECURRENTE_SECRET_KEY:
        return [checks.Error("RECURRENTE_SECRET_KEY is empty in production.", id="webmagic.E002")]
    return []


@checks.register(checks.Tags.security)
def anymail_webhook_secret_configured(app_configs, **kwargs):
    """Brevo's tracking webhook is refused without a secret (webmagic.tracking), so sending
    through Brevo without one silently loses delivered/opened/clicked/bounced reports."""
    secret = (getattr(settings, "ANYMAIL", {}) or {}).get("WEBHOOK_SECRET")
    if settings.PRODUCTION and settings.BREVO_API_KEY and not secret:
        return [
            checks.Error(
                "ANYMAIL_WEBHOOK_SECRET is empty while sending through Brevo: its tracking webhook is refused.",
                hint="Set ANYMAIL_WEBHOOK_SECRET to a random 'user:password' and give Brevo the URL "
                     "https://user:password@<host>/anymail/brevo/tracking/.",
                id="webmagic.E003",
            )
        ]
    return []
