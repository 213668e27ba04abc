from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "checkout"
    verbose_name = "Checkout"

    def ready(self):
        from webmagic.alerts import alert_rule_register

        from .alerts import alert_low_conversion

        # Registered here so the base app (webmagic) never imports checkout.
        alert_rule_register(alert_low_conversion)
