from django.apps import AppConfig


class WebmagicConfig(AppConfig):
    name = "webmagic"
    verbose_name = "WebMagic"

    def ready(self):
        from anymail.signals import tracking

        from . import checks  # noqa: F401  (registers system checks)
        from .tracking import tracking_received

        # Brevo's delivery/open/click/bounce reports update the email log (webmagic/tracking.py).
        tracking.connect(tracking_received, dispatch_uid="webmagic.tracking_received")
