"""Staff pages inside Django admin that are not a model's changelist."""

from django.contrib import admin
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from . import sent_emails

# An email's HTML is shown as its own document in a sandboxed frame: an opaque origin (no
# access to our cookies or pages), no scripts, no forms; its links open in a new tab, outside the
# sandbox, as they would from the customer's mail client. Inline styles are how emails are
# styled; images may come from anywhere, as in a mail client. The frame carries the same flags.
SANDBOX_FLAGS = "allow-popups allow-popups-to-escape-sandbox"
EMAIL_DOCUMENT_CSP = (
    f"sandbox {SANDBOX_FLAGS}; default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:; "
    "font-src data: http: https:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)


def _sent_email_or_404(email_id: str) -> sent_emails.SentEmail:
    if not sent_emails.sent_emails_page_enabled():
        raise Http404("Sent emails are shown in DEBUG only")
    sent = sent_emails.sent_email_get(email_id=email_id)
    if sent is None:
        raise Http404("No such email")
    return sent


@require_GET
def sent_emails_view(request):
    """The emails laptop mode wrote to files, newest first. Routed through admin.site.admin_view
    (staff only) in webmagic/urls.py, like every view here."""
    if not sent_emails.sent_emails_page_enabled():
        raise Http404("Sent emails are shown in DEBUG only")
    context = {
        **admin.site.each_context(request), "title": "Sent emails",
        "emails": sent_emails.sent_emails_list(), "folder": sent_emails.sent_emails_folder(),
        "written_to_files": sent_emails.sent_emails_written_to_files(), "files_limit": sent_emails.LIST_FILES_LIMIT,
    }
    return TemplateResponse(request, "admin/webmagic/sent_emails.html", context)


@require_GET
def sent_email_view(request, email_id):
    sent = _sent_email_or_404(email_id)
    context = {**admin.site.each_context(request), "title": sent.subject or "(no subject)", "email": sent,
               "sandbox_flags": SANDBOX_FLAGS}
    return TemplateResponse(request, "admin/webmagic/sent_email.html", context)


@require_GET
@xframe_options_sameorigin
def sent_email_html_view(request, email_id):
    """The email's HTML part, framed by sent_email_view only."""
    sent = _sent_email_or_404(email_id)
    if not sent.html:
        raise Http404("This email has no HTML part")
    response = HttpResponse(sent_emails.html_for_frame(sent.html), content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = EMAIL_DOCUMENT_CSP
    # Its links carry tokens (set your password, recovery): the page they open learns nothing of ours.
    response["Referrer-Policy"] = "no-referrer"
    return response
