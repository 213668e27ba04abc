from decimal import Decimal

import pytest
from django.test import RequestFactory, override_settings

from webmagic.http import client_ip
from webmagic.money import discounted, format_money, format_usd, from_cents, to_cents


def test_cents_round_trip():
    assert to_cents(Decimal("495.00")) == 49500
    assert to_cents(Decimal("95")) == 9500
    assert from_cents(49500) == Decimal("495.00")
    assert to_cents(from_cents(44550)) == 44550


def test_floats_are_refused():
    with pytest.raises(TypeError):
        to_cents(495.0)
    with pytest.raises(TypeError):
        from_cents(495.0)


def test_discount_rounds_to_the_cent():
    assert discounted(Decimal("495.00"), 10) == Decimal("445.50")
    assert discounted(Decimal("99.99"), 10) == Decimal("89.99")


def test_format_usd():
    assert format_usd(Decimal("495.00")) == "$495"
    assert format_usd(Decimal("445.50")) == "$445.50"
    assert format_usd(Decimal("1495")) == "$1,495"


def test_format_money_names_other_currencies():
    assert format_money(Decimal("495.00"), "USD") == "$495"
    assert format_money(Decimal("1250"), "gtq") == "1,250.00 GTQ"


def test_client_ip_ignores_forwarded_header_without_trusted_proxies():
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4")
    with override_settings(TRUSTED_PROXY_COUNT=0):
        assert client_ip(request) == "10.0.0.5"


def test_client_ip_takes_the_address_our_proxy_saw_not_the_forged_first_value():
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    with override_settings(TRUSTED_PROXY_COUNT=1):
        assert client_ip(request) == "203.0.113.9"


def test_client_ip_falls_back_when_header_is_shorter_than_the_proxy_chain():
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9")
    with override_settings(TRUSTED_PROXY_COUNT=2):
        assert client_ip(request) == "10.0.0.5"


@pytest.mark.parametrize(
    "forwarded, expected",
    [("203.0.113.9:5678", "203.0.113.9"), ("[2001:db8::1]:443", "2001:db8::1"), ("2001:db8::2", "2001:db8::2"),
     ("not-an-ip", "10.0.0.5"), ("", "10.0.0.5")],
)
def test_client_ip_accepts_ports_and_ignores_junk(forwarded, expected):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=forwarded)
    with override_settings(TRUSTED_PROXY_COUNT=1):
        assert client_ip(request) == expected


@pytest.mark.django_db
def test_a_junk_forwarded_header_does_not_break_a_rate_limited_form(client):
    with override_settings(TRUSTED_PROXY_COUNT=1):
        response = client.post("/portal/login/", {"username": "a@example.com", "password": "x"}, HTTP_X_FORWARDED_FOR="not-an-ip")
    assert response.status_code == 400
