from django.conf import settings

from .sent_emails import sent_emails_page_enabled


def site_settings(request):
    return {
        "SITE_URL": settings.SITE_URL,
        "COMPANY_POSTAL_ADDRESS": settings.COMPANY_POSTAL_ADDRESS,
        "SUPPORT_EMAIL": settings.SUPPORT_EMAIL,
        "SUPPORT_PHONE": settings.SUPPORT_PHONE,
        "SUPPORT_WHATSAPP": settings.SUPPORT_WHATSAPP,
        "RECURRENTE_SANDBOX": settings.RECURRENTE_SANDBOX,
        "SENT_EMAILS_PAGE": sent_emails_page_enabled(),  # linked from the admin index
    }
