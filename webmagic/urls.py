from django.contrib import admin
from django.urls import include, path

from checkout.admin_views import funnel_view
from customers import views as customer_views
from sites import views as site_views
from webhooks.admin_views import payments_health_view
from webmagic import admin_views as webmagic_admin_views
from webmagic import legal, tracking, views

urlpatterns = [
    path("", site_views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    path("livez/", views.livez, name="livez"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("terms/", legal.legal_page, {"page": "terms"}, name="terms"),
    path("privacy/", legal.legal_page, {"page": "privacy"}, name="privacy"),
    path("refunds/", legal.legal_page, {"page": "refunds"}, name="refunds"),
    path("admin/login/", customer_views.admin_login),  # rate-limited like the portal's login
    path("admin/funnel/", admin.site.admin_view(funnel_view), name="admin_funnel"),
    path("admin/payments-health/", admin.site.admin_view(payments_health_view), name="admin_payments_health"),
    # The emails laptop mode wrote to files (404 unless DEBUG).
    path("admin/sent-emails/", admin.site.admin_view(webmagic_admin_views.sent_emails_view), name="admin_sent_emails"),
    path("admin/sent-emails/<str:email_id>/", admin.site.admin_view(webmagic_admin_views.sent_email_view), name="admin_sent_email"),
    path("admin/sent-emails/<str:email_id>/html/", admin.site.admin_view(webmagic_admin_views.sent_email_html_view),
         name="admin_sent_email_html"),
    path("admin/", admin.site.urls),
    path("sites/", include("sites.urls")),
    path("", include("checkout.urls")),  # /sites/<slug>/purchase/ and /checkout/…
    path("portal/sites/<slug:slug>/hosting/", include("checkout.hosting_urls")),
    path("portal/sites/<slug:slug>/", include("portal.site_urls")),
    path("portal/", include("portal.urls")),
    path("portal/", include("customers.urls")),
    path("webhooks/", include("webhooks.urls")),
    # Brevo's delivery/open/click reports (basic auth; refused when ANYMAIL_WEBHOOK_SECRET is unset).
    # Only this anymail view is routed: its other (inbound) endpoints are not used here.
    path("anymail/brevo/tracking/", tracking.brevo_tracking_webhook, name="anymail_brevo_tracking"),
    # Imitation of Recurrente's hosted checkout; every view answers 404 unless sandbox mode is on.
    path("sandbox/recurrente/", include("checkout.sandbox_urls")),
]
