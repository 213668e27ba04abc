import logging

from celery import shared_task

logger = logging.getLogger(__name__)


# Beat: see migration 0002_domain_check_periodic_task.
@shared_task(acks_late=True)
def check_domains() -> dict:
    """Every 10 minutes: look up the TXT record of pending domains (and of verified ones once a
    day). Idempotent and safe when two ticks overlap: each check re-reads and locks its row before
    writing. One domain's failure does not stop the others."""
    from .services import domain_check, domains_check_due

    checked = failed = 0
    for record_id in domains_check_due():
        try:
            domain_check(record_id=record_id)
            checked += 1
        except Exception:
            failed += 1
            logger.exception("domain record %s: check failed", record_id)
    return {"checked": checked, "failed": failed}
