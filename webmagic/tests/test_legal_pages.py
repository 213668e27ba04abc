"""Terms, privacy and refund policy: public pages whose words are templates the business edits
(templates/legal/), each with a way to reach a person; linked from every page's footer."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.template.loader import render_to_string
from django.test import RequestFactory

from webmagic.context_processors import site_settings

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

PAGES = [("/terms/", "Terms of sale"), ("/privacy/", "Privacy policy"), ("/refunds/", "Refund policy")]


@pytest.fixture
def support(settings):
    settings.SUPPORT_EMAIL = "ayuda@negocio.example"
    settings.SUPPORT_PHONE = "+502 5555 0101"
    settings.SUPPORT_WHATSAPP = "50255550101"
    return settings


@pytest.mark.parametrize(("path", "heading"), PAGES)
def test_each_legal_page_shows_its_template_text_and_how_to_reach_a_person(client, support, path, heading):
    response = client.get(path)
    body = response.content.decode()
    assert response.status_code == 200
    assert f"<h1>{heading}</h1>" in body and f"<title>{heading} — WebMagic</title>" in body
    assert 'href="mailto:ayuda@negocio.example"' in body
    assert 'href="tel:+50255550101">+502 5555 0101</a>' in body
    assert 'href="https://wa.me/50255550101"' in body
    for other in ("/terms/", "/privacy/", "/refunds/"):
        assert f'href="{other}"' in body


def test_the_refund_page_states_the_promise_the_purchase_page_repeats(client):
    body = client.get("/refunds/").content.decode()
    promise = render_to_string("legal/_refund_promise.html").strip()
    assert "14 days" in promise and promise in body


def test_the_pages_words_come_from_the_templates_the_business_edits(client, tmp_path, settings):
    # A business that edits templates/legal/terms.html sees its own words at /terms/.
    (tmp_path / "legal").mkdir()
    (tmp_path / "legal" / "terms.html").write_text(
        '{% extends "legal/_base.html" %}{% block heading %}Our terms{% endblock %}'
        '{% block text %}<p>Edited by the owner.</p>{% endblock %}'
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    body = client.get("/terms/").content.decode()
    assert "<h1>Our terms</h1>" in body and "Edited by the owner." in body


def test_legal_pages_answer_get_only(client):
    assert client.post("/terms/").status_code == 405


def test_without_a_whatsapp_number_no_whatsapp_link_is_shown(client, support):
    support.SUPPORT_WHATSAPP = ""
    body = client.get("/terms/").content.decode()
    assert "wa.me" not in body and "ayuda@negocio.example" in body


def test_every_page_footer_links_the_legal_pages_and_the_support_email(client, support):
    body = client.get("/").content.decode()
    footer = body[body.index('<footer class="footer">'):]
    for path in ("/terms/", "/privacy/", "/refunds/"):
        assert f'href="{path}"' in footer
    assert 'href="mailto:ayuda@negocio.example"' in footer


def test_the_context_processor_gives_templates_the_support_contacts(support):
    context = site_settings(RequestFactory().get("/"))
    assert context["SUPPORT_EMAIL"] == "ayuda@negocio.example"
    assert context["SUPPORT_PHONE"] == "+502 5555 0101"
    assert context["SUPPORT_WHATSAPP"] == "50255550101"


def settings_seen_with(env: dict) -> list[str]:
    code = "from webmagic import settings as s; print(s.SUPPORT_EMAIL, s.SUPPORT_PHONE, s.SUPPORT_WHATSAPP, s.TIME_ZONE, sep=chr(10))"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORT_", "TIME_ZONE"))}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_support_settings_and_the_customer_time_zone_have_working_defaults():
    email, phone, whatsapp, zone = settings_seen_with({})
    assert "@" in email and phone and whatsapp.isdigit() and zone == "America/Guatemala"


def test_a_whatsapp_number_is_kept_as_digits_for_its_link():
    assert settings_seen_with({"SUPPORT_WHATSAPP": "+502 5555-0101"})[2] == "50255550101"
