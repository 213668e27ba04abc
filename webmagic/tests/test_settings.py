"""Production mode must refuse unsafe configuration; the deploy check must pass when configured."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.test import override_settings

from webmagic.checks import webhook_secret_configured

ROOT = Path(__file__).resolve().parents[2]
GOOD_PRODUCTION_ENV = {
    "DEBUG": "False",
    "SECRET_KEY": "x" * 20 + "production-secret-key-that-is-long-enough-to-pass-1234",
    "RECURRENTE_SECRET_KEY": "sk_live_abc",
    "RECURRENTE_LIVE_MODE": "True",
    "RECURRENTE_WEBHOOK_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "ALLOWED_HOSTS": "webmagic.example",
    "SITE_URL": "https://webmagic.example",
    "TRUSTED_PROXY_COUNT": "1",
}


def run_manage(env_overrides, *args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RECURRENTE_", "DEBUG", "SECRET_KEY", "REDIS_URL", "TRUSTED_PROXY_COUNT"))}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "missing, message",
    [
        ("SECRET_KEY", "SECRET_KEY"),
        ("RECURRENTE_SECRET_KEY", "RECURRENTE_SECRET_KEY"),
        ("RECURRENTE_WEBHOOK_SECRETS", "RECURRENTE_WEBHOOK_SECRETS"),
        ("REDIS_URL", "REDIS_URL"),
        ("TRUSTED_PROXY_COUNT", "TRUSTED_PROXY_COUNT"),
    ],
)
def test_production_refuses_to_start_without_each_secret(missing, message):
    env = {k: v for k, v in GOOD_PRODUCTION_ENV.items() if k != missing}
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert "Refusing to start in production" in result.stderr
    assert message in result.stderr


def test_production_refuses_the_development_secret_key():
    result = run_manage({**GOOD_PRODUCTION_ENV, "SECRET_KEY": "dev-insecure-key-change-me"}, "check")
    assert result.returncode != 0
    assert "SECRET_KEY must be a real random value" in result.stderr


@pytest.mark.parametrize(
    "key, live_mode, expected",
    [
        ("sk_live_abc", "False", "RECURRENTE_LIVE_MODE=False disagrees with RECURRENTE_SECRET_KEY (sk_live_…)"),
        ("sk_live_abc", None, "RECURRENTE_LIVE_MODE=False disagrees with RECURRENTE_SECRET_KEY (sk_live_…)"),
        ("sk_test_abc", "True", "RECURRENTE_LIVE_MODE=True disagrees with RECURRENTE_SECRET_KEY (sk_test_…)"),
    ],
)
def test_production_refuses_a_live_mode_that_disagrees_with_the_key(key, live_mode, expected):
    env = {**GOOD_PRODUCTION_ENV, "RECURRENTE_SECRET_KEY": key}
    env.pop("RECURRENTE_LIVE_MODE")
    if live_mode is not None:
        env["RECURRENTE_LIVE_MODE"] = live_mode
    result = run_manage(env, "check")
    assert result.returncode != 0
    assert "Refusing to start in production" in result.stderr and expected in result.stderr
    assert key not in result.stderr  # the message names the prefix, never the key


@pytest.mark.parametrize("key", ["pk_live_abc", "abc123", "SK_LIVE_abc", "live_abc"])
def test_production_refuses_a_key_without_a_known_prefix(key):
    result = run_manage({**GOOD_PRODUCTION_ENV, "RECURRENTE_SECRET_KEY": key}, "check")
    assert result.returncode != 0
    assert "RECURRENTE_SECRET_KEY must start with sk_live_ or sk_test_" in result.stderr
    assert key not in result.stderr


@pytest.mark.parametrize("key, live_mode", [("sk_live_abc", "True"), ("sk_test_abc", "False"), ("sk_test_ci_only", None)])
def test_production_accepts_a_live_mode_that_matches_the_key(key, live_mode):
    # The last case is .ci/run's deploy check: a test key with RECURRENTE_LIVE_MODE unset.
    env = {**GOOD_PRODUCTION_ENV, "RECURRENTE_SECRET_KEY": key}
    env.pop("RECURRENTE_LIVE_MODE")
    if live_mode is not None:
        env["RECURRENTE_LIVE_MODE"] = live_mode
    result = run_manage(env, "check")
    assert result.returncode == 0, result.stderr


def test_configured_production_passes_the_deploy_check_at_warning_level():
    result = run_manage(GOOD_PRODUCTION_ENV, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_missing_webhook_secret_fails_the_system_check_in_production():
    with override_settings(PRODUCTION=True, RECURRENTE_WEBHOOK_SECRETS=[]):
        errors = webhook_secret_configured(None)
    assert [e.id for e in errors] == ["webmagic.E001"]
    assert errors[0].level == checks.ERROR
    with override_settings(PRODUCTION=True, RECURRENTE_WEBHOOK_SECRETS=["whsec_abc"]):
        assert webhook_secret_configured(None) == []


def test_argon2_is_the_password_hasher(django_user_model):
    user = django_user_model.objects.create_user("hash@example.com", "a-long-enough-password")
    assert user.password.startswith("argon2")
