"""The sites app's emails: an owner's change request moving on (received, in progress, done,
declined). What they say is in `templates/emails/edit_request.*`, each status in its own words."""

from django.urls import reverse

from webmagic.emails import absolute_url, email_queue
from webmagic.models import EmailLog

from .models import EditRequest


def edit_request_email_queue(edit_request: EditRequest) -> EmailLog | None:
    """One email per request and status: the dedupe key makes a repeated transition (a double
    click, a retried request) send nothing twice."""
    owner = edit_request.requested_by
    site = edit_request.site
    return email_queue(
        kind=EmailLog.Kind.EDIT_REQUEST,
        to_email=owner.email,
        context={
            "customer_name": owner.full_name,
            "site_name": site.business_name,
            "request_id": edit_request.pk,
            "status": edit_request.status,
            "status_label": edit_request.get_status_display(),
            "description": edit_request.description,
            "staff_note": edit_request.staff_note,
            "edits_url": absolute_url(reverse("site_portal:edits", kwargs={"slug": site.slug})),
        },
        dedupe_key=f"edit_request:{edit_request.pk}:{edit_request.status}",
        user=owner,
    )
