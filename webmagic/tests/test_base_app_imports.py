"""webmagic is the base app: it imports no other app of ours, not even by dotted string.

The apps above it register what webmagic needs from them (email context builders, alert rules)
from their AppConfig.ready(). Two modules are the project's, not the base app's: the root URLconf
(it mounts every app) and settings (INSTALLED_APPS). Tests and migrations are not scanned: tests
build the world they need from any app, and migrations are a fixed history.
"""

import ast
import re
from pathlib import Path

import pytest

WEBMAGIC = Path(__file__).resolve().parents[1]
OTHER_APPS = ("customers", "checkout", "sites", "webhooks", "portal")
PROJECT_MODULES = {"urls.py", "settings.py"}
SKIPPED_FOLDERS = {"tests", "migrations"}
# "checkout.emails.recovery_reminder_context", "customers.services", "sites.tasks.x" …
DOTTED_REFERENCE = re.compile(rf"\b(?:{'|'.join(OTHER_APPS)})\.[A-Za-z_]")


def base_app_modules() -> list[Path]:
    return sorted(
        path for path in WEBMAGIC.rglob("*.py")
        if not SKIPPED_FOLDERS & set(path.relative_to(WEBMAGIC).parts[:-1])
        and path.relative_to(WEBMAGIC).as_posix() not in PROJECT_MODULES
    )


def imported_modules(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(node for node in ast.walk(tree) if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))]
    return {id(node.body[0].value) for node in nodes if ast.get_docstring(node) is not None}


def model_relation_targets(tree: ast.AST) -> set[int]:
    """`models.ForeignKey("checkout.CheckoutSession", …)`: EmailLog records which checkout session
    and customer an email was about. A relation is resolved by Django's app registry, not imported,
    and the table's columns are part of the migrations."""
    return {
        id(node.args[0]) for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "ForeignKey" and node.args
    }


def dotted_references(tree: ast.AST) -> list[str]:
    allowed = docstrings(tree) | model_relation_targets(tree)
    return [
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed
        and DOTTED_REFERENCE.search(node.value)
    ]


def test_the_scan_covers_the_email_layer_and_skips_only_the_project_modules():
    scanned = {path.relative_to(WEBMAGIC).as_posix() for path in base_app_modules()}
    assert {"emails.py", "models.py", "apps.py", "alerts.py", "tasks.py"} <= scanned
    assert not scanned & PROJECT_MODULES and not any(name.startswith(("tests/", "migrations/")) for name in scanned)


@pytest.mark.parametrize("path", base_app_modules(), ids=lambda path: path.relative_to(WEBMAGIC).as_posix())
def test_the_base_app_imports_no_other_app(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    upward = [name for name in imported_modules(tree) if name.split(".")[0] in OTHER_APPS]
    assert upward == [], f"{path.name} imports {upward}: register it from that app's AppConfig.ready() instead"
    assert dotted_references(tree) == [], f"{path.name} names another app's code in a string"


def test_the_scan_finds_an_import_and_a_dotted_string():
    tree = ast.parse(
        '"""Docstrings may say checkout.emails."""\n'
        "from customers.emails import welcome_context\n"
        "import sites.services\n"
        'BUILDERS = {"welcome": "customers.emails.welcome_context"}\n'
        'user = models.ForeignKey("customers.CustomerUser", on_delete=models.SET_NULL)\n'
    )
    assert imported_modules(tree) == ["customers.emails", "sites.services"]
    assert dotted_references(tree) == ["customers.emails.welcome_context"]
