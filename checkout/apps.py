from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "checkout"
    verbose_name = "Checkout"

    def ready(self):
        from sites.services import site_transfer_check_register
        from webmagic.alerts import alert_rule_register

        from .alerts import alert_low_conversion
        from .services.subscriptions import subscription_transfer_objection

        # Registered here so the lower apps (webmagic, sites) never import checkout.
        alert_rule_register(alert_low_conversion)
        site_transfer_check_register(subscription_transfer_objection)
