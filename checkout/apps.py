from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "checkout"
    verbose_name = "Checkout"

    def ready(self):
        from sites.services import site_transfer_check_register
        from webmagic.alerts import alert_rule_register
        from webmagic.emails import context_builder_register
        from webmagic.models import EmailLog

        from .alerts import alert_low_conversion
        from .email_context_builders import recovery_reminder_context
        from .services.site_sold import refund_task_register
        from .services.subscriptions import subscription_transfer_objection
        from .tasks import refund_site_sold_payment

        # Registered here so the lower apps (webmagic, sites) never import checkout.
        alert_rule_register(alert_low_conversion)
        site_transfer_check_register(subscription_transfer_objection)
        refund_task_register(refund_site_sold_payment)
        # The recovery reminder's links carry tokens, made when it is sent.
        context_builder_register(EmailLog.Kind.RECOVERY_REMINDER, recovery_reminder_context)
