from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"
    verbose_name = "Customers"

    def ready(self):
        from webmagic.emails import context_builder_register
        from webmagic.models import EmailLog

        from . import emails

        # Registered here so the base app (webmagic) never imports customers: these emails' links
        # carry tokens, made when each one is sent.
        context_builder_register(EmailLog.Kind.WELCOME, emails.welcome_context)
        context_builder_register(EmailLog.Kind.PASSWORD_RESET, emails.password_reset_context)
        context_builder_register(EmailLog.Kind.VERIFY_EMAIL, emails.verify_email_context)
