from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The signed-in owner's portal: what they bought, its hosting, receipts, edits and domains.

    It sits on top (beside webhooks) because it shows what the apps below own: customers'
    accounts, sites, and checkout's payments and subscriptions. Nothing imports it but the URLs.
    """

    name = "portal"
    verbose_name = "Customer portal"
