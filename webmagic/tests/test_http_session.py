"""The per-thread HTTP session for outgoing calls (webmagic.http.thread_session)."""

import os
import threading

import pytest
import requests
import responses as responses_lib

from webmagic.http import thread_session


def test_one_thread_gets_the_same_session_every_time():
    assert isinstance(thread_session(), requests.Session)
    assert thread_session() is thread_session()


def test_each_thread_gets_its_own_session():
    seen = {}

    def remember(name):
        seen[name] = thread_session()

    threads = [threading.Thread(target=remember, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["first"] is not seen["second"]
    assert thread_session() not in (seen["first"], seen["second"])


@responses_lib.activate
def test_the_session_keeps_no_cookies_between_calls():
    responses_lib.get("https://svc.example.test/first", headers={"Set-Cookie": "visitor=customer-1; Path=/"})
    responses_lib.get("https://svc.example.test/second")
    session = thread_session()
    session.get("https://svc.example.test/first", timeout=1)
    session.get("https://svc.example.test/second", timeout=1)
    assert "Cookie" not in responses_lib.calls[1].request.headers
    assert not session.cookies


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_session():
    parent_session = thread_session()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, and leave without running any cleanup
        os._exit(0 if thread_session() is not parent_session else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert thread_session() is parent_session
