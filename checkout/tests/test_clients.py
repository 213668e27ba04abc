"""Which Recurrente client the app gets (checkout/clients.py)."""

import os
import threading

import pytest

from checkout.clients import recurrente_client
from checkout.recurrente import RecurrenteClient
from checkout.sandbox import SandboxClient


@pytest.fixture
def real_keys(settings):
    settings.RECURRENTE_SANDBOX = False
    settings.RECURRENTE_SECRET_KEY = "sk_test_clients"


def test_no_secret_key_means_the_sandbox(settings):
    settings.RECURRENTE_SANDBOX = True
    assert isinstance(recurrente_client(), SandboxClient)


def test_one_client_per_thread_and_a_new_one_when_the_settings_change(real_keys, settings):
    first = recurrente_client()
    assert isinstance(first, RecurrenteClient) and recurrente_client() is first
    other = []
    thread = threading.Thread(target=lambda: other.append(recurrente_client()))
    thread.start()
    thread.join()
    assert other[0] is not first  # a requests.Session is not shared between threads
    settings.RECURRENTE_SECRET_KEY = "sk_test_rotated"
    assert recurrente_client() is not first and recurrente_client().headers["X-SECRET-KEY"] == "sk_test_rotated"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_client(real_keys):
    parent_client = recurrente_client()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, and leave without running any cleanup
        os._exit(0 if recurrente_client() is not parent_client else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert recurrente_client() is parent_client
