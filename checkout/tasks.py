import logging

import requests
from celery import shared_task

logger = logging.getLogger(__name__)


class DeliveryRefused(Exception):
    pass


@shared_task(bind=True, max_retries=7, acks_late=True)
def sandbox_deliver(self, checkout_id: str, event_type: str, sequence: int = 0) -> None:
    """Send one sandbox webhook delivery; retry like Svix when our endpoint does not answer 2xx."""
    from .sandbox import sandbox_deliver_now

    try:
        status = sandbox_deliver_now(checkout_id=checkout_id, event_type=event_type, sequence=sequence)
        if not 200 <= status < 300:
            raise DeliveryRefused(f"webhook endpoint answered {status}")
    except (requests.RequestException, DeliveryRefused) as exc:
        logger.warning("sandbox delivery %s/%s failed: %s", checkout_id, event_type, exc)
        raise self.retry(exc=exc, countdown=5 * 3**self.request.retries) from exc
