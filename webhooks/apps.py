from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from webmagic.alerts import alert_rule_register

        from .alerts import alert_failed_webhooks, alert_payments_without_webhook
        from .rejections import alert_rejected_deliveries, alert_rejections_without_accepted

        # Registered here so the base app (webmagic) never imports webhooks.
        alert_rule_register(alert_failed_webhooks)
        alert_rule_register(alert_payments_without_webhook)
        alert_rule_register(alert_rejected_deliveries)
        alert_rule_register(alert_rejections_without_accepted)
