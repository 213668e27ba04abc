"""Every word of a customer email is in its templates, subjects included.

The subjects below are the exact words each kind said when they were Python f-strings at the call
sites, pinned with a business name that has an HTML-special character and a newline in it.
"""

import pytest
from django.core import mail
from django.template.loader import get_template

from webmagic.emails import email_queue, email_subject_render
from webmagic.models import EmailLog

K = EmailLog.Kind
# Only staff receive these (refund_needed is an old kind no longer sent; it has no templates).
STAFF_ONLY_KINDS = {K.STAFF_ALERT, K.REFUND_NEEDED}
CUSTOMER_KINDS = sorted(set(K.values) - STAFF_ONLY_KINDS)

NAME = "Tom & Jerry's\nCafé"

# (kind, context, subject): every subject of every customer kind, each branch of each template.
SUBJECTS = [
    (K.WELCOME, {"site_name": NAME, "site_url": "http://testserver/sites/tom/"}, "Tom & Jerry's Café is yours — set your password"),
    (K.WELCOME, {"resent_by_staff": True}, "Set your WebMagic password"),
    (K.WELCOME, {}, "Welcome to WebMagic — set your password"),
    (K.RECEIPT, {"site_name": NAME, "amount": "$495"}, "Your receipt: Tom & Jerry's Café — $495"),
    (K.VERIFY_EMAIL, {}, "Confirm your email address for WebMagic"),
    (K.PASSWORD_RESET, {}, "Reset your WebMagic password"),
    (K.HOSTING_ACTIVATED, {"site_name": NAME, "reactivated": False}, "Tom & Jerry's Café is live"),
    (K.HOSTING_ACTIVATED, {"site_name": NAME, "reactivated": True}, "Tom & Jerry's Café is live again"),
    (K.PAYMENT_PROBLEM, {"site_name": NAME, "amount": "$95"},
     "Action needed: your hosting payment for Tom & Jerry's Café did not go through"),
    (K.HOSTING_SUSPENDED, {"site_name": NAME, "reason": "cancel_scheduled", "live_until": "December 21, 2026"},
     "Hosting for Tom & Jerry's Café is cancelled"),
    (K.HOSTING_SUSPENDED, {"site_name": NAME, "reason": "paused"}, "Tom & Jerry's Café is offline"),
    (K.HOSTING_SUSPENDED, {"site_name": NAME, "reason": "cancelled"}, "Tom & Jerry's Café is offline"),
    (K.HOSTING_SUSPENDED, {"site_name": NAME, "reason": "ended"}, "Tom & Jerry's Café is offline"),
    (K.HOSTING_NUDGE, {"site_name": NAME}, "Tom & Jerry's Café is ready to go live"),
    (K.RECOVERY_REMINDER, {"site_name": NAME, "discount_percent": 10, "window_hours": 48},
     "Tom & Jerry's Café is still waiting for you — 10% off for 48 hours"),
    (K.REFUND, {"site_name": NAME, "amount": "$495"}, "Your refund for Tom & Jerry's Café: $495"),
    (K.SITE_SOLD_REFUND, {"site_name": NAME, "amount": "$495"},
     "Tom & Jerry's Café was sold just before your payment — your $495 is being refunded"),
    (K.EDIT_REQUEST, {"site_name": NAME, "status": "pending"}, "We received your change request for Tom & Jerry's Café"),
    (K.EDIT_REQUEST, {"site_name": NAME, "status": "in_progress"},
     "We're working on your change request for Tom & Jerry's Café"),
    (K.EDIT_REQUEST, {"site_name": NAME, "status": "done"}, "Your change request for Tom & Jerry's Café is done"),
    (K.EDIT_REQUEST, {"site_name": NAME, "status": "rejected"}, "About your change request for Tom & Jerry's Café"),
    (K.STAFF_ALERT, {"subject": "Refund needed: <pa_1>\n& more", "body": "x"}, "Refund needed: <pa_1> & more"),
]


@pytest.mark.parametrize("kind", CUSTOMER_KINDS)
def test_every_customer_email_kind_has_its_three_templates_and_a_one_line_subject(kind):
    for suffix in ("subject.txt", "txt", "html"):
        get_template(f"emails/{kind}.{suffix}")  # raises TemplateDoesNotExist
    contexts = [context for subject_kind, context, _ in SUBJECTS if subject_kind == kind]
    assert contexts, f"pin the subject(s) of {kind} in SUBJECTS"
    for context in contexts:
        subject = email_subject_render(kind=kind, context=context)
        assert subject.strip() and "\n" not in subject and "\r" not in subject


@pytest.mark.parametrize(("kind", "context", "expected"), SUBJECTS)
def test_subjects_say_exactly_what_they_said_before_on_one_line_and_unescaped(kind, context, expected):
    assert email_subject_render(kind=kind, context=context) == expected


def test_a_long_subject_is_cut_to_fit_the_email_log_as_before():
    subject = email_subject_render(kind=K.HOSTING_NUDGE, context={"site_name": "Café " * 60})
    assert len(subject) == 255 and subject.startswith("Café Café")


def test_a_subject_that_renders_empty_is_refused():
    with pytest.raises(ValueError, match="edit_request.subject.txt rendered an empty subject"):
        email_subject_render(kind=K.EDIT_REQUEST, context={"site_name": "Joe's", "status": "unheard-of"})


@pytest.mark.django_db
def test_the_queued_subject_is_stored_and_sent_as_rendered(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        log = email_queue(kind=K.RECEIPT, to_email="tom@example.com", context={"site_name": NAME, "amount": "$495"})
    log.refresh_from_db()
    assert log.subject == "Your receipt: Tom & Jerry's Café — $495"
    [message] = mail.outbox
    assert message.subject == log.subject and "\n" not in message.message()["Subject"]
    html = message.alternatives[0][0]
    # The HTML body escapes the name as it always did; the subject (plain text) does not.
    assert "<title>Your receipt: Tom &amp; Jerry&#x27;s Café — $495</title>" in html
