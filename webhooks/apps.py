from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from webmagic.alerts import alert_rule_register

        from .alerts import alert_failed_webhooks

        # Registered here so the base app (webmagic) never imports webhooks.
        alert_rule_register(alert_failed_webhooks)
