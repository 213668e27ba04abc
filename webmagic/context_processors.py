from django.conf import settings


def site_settings(request):
    return {
        "SITE_URL": settings.SITE_URL,
        "COMPANY_POSTAL_ADDRESS": settings.COMPANY_POSTAL_ADDRESS,
        "RECURRENTE_SANDBOX": settings.RECURRENTE_SANDBOX,
    }
