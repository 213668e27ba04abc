from celery import shared_task

from . import services


@shared_task(acks_late=True)
def password_reset_emails_send(email: str, request_id: str) -> int:
    """Queue the reset emails for one request of the reset form (customers.services.
    password_reset_request); idempotent per request_id. Returns how many were queued."""
    return len(services.password_reset_emails_queue(email=email, request_id=request_id))
