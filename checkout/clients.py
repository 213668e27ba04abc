"""Which Recurrente the app talks to: the real API, or the built-in sandbox on a laptop.

Kept apart from recurrente.py (the HTTP client) and sandbox.py (the imitation) so that neither
imports the other: this factory is the only module that knows both.
"""

import os
import threading

from django.conf import settings

from .recurrente import RecurrenteClient
from .sandbox import SandboxClient

_per_thread = threading.local()


def _forget_clients_after_fork() -> None:
    # A forked child (a Celery pool process) must not share the parent's kept-alive sockets.
    global _per_thread
    _per_thread = threading.local()


os.register_at_fork(after_in_child=_forget_clients_after_fork)

# What recurrente_client() answers: the two offer the same calls.
RecurrenteApi = RecurrenteClient | SandboxClient


def recurrente_client() -> RecurrenteApi:
    if settings.RECURRENTE_SANDBOX:
        return SandboxClient()
    config = (
        settings.RECURRENTE_API_URL, settings.RECURRENTE_SECRET_KEY, settings.RECURRENTE_PUBLIC_KEY,
        tuple(settings.RECURRENTE_TIMEOUT),
    )
    # One client (so one requests.Session and its kept-alive connections) per thread: a Session
    # is not safe to share between the threads of a gunicorn worker.
    cached = getattr(_per_thread, "client", None)
    if cached is None or cached[0] != config:
        base_url, secret_key, public_key, timeout = config
        client = RecurrenteClient(base_url=base_url, secret_key=secret_key, public_key=public_key, timeout=timeout)
        _per_thread.client = cached = (config, client)
    return cached[1]
