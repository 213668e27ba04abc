"""Dependencies are declared and locked.

Every third-party package the code imports is declared in requirements.in (runtime) or
requirements-dev.in (tests and tools), so it is pinned on purpose rather than present only as
another package's dependency, which the next `make lock` may drop. Code that runs in production
imports runtime packages only: production installs requirements.txt alone. The locks are
compiled by `make lock`: every entry pinned with hashes (so `pip install --require-hashes` accepts
them), and in step with the .in files they come from.
"""

import ast
import functools
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file())
# Folders of scripts run by hand (with the dev venv); a script imports its siblings top-level.
SCRIPT_DIRS = ("benchmarks",)
FIRST_PARTY = frozenset({*PACKAGES, *(path.stem for path in ROOT.glob("*.py"))})
RUNTIME_IN, DEV_IN = "requirements.in", "requirements-dev.in"
LOCKS = {"requirements.txt": RUNTIME_IN, "requirements-dev.txt": DEV_IN}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*(?P<version>[^\s;\\]+)")


def normalized(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements_in: str) -> set[str]:
    names = set()
    for line in (ROOT / requirements_in).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):  # -c / -r lines name files, not packages
            names.add(normalized(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group()))
    return names


def pins(requirements_file: str) -> dict[str, str]:
    """name -> version for every `name==version` entry of a requirements file."""
    return {
        normalized(match["name"]): match["version"]
        for entry in lock_entries(requirements_file) if (match := PIN.match(entry))
    }


def lock_entries(requirements_file: str) -> list[str]:
    """The requirement entries of a pip requirements file, continuation lines joined, comments dropped."""
    text = (ROOT / requirements_file).read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@functools.cache
def distributions_providing() -> dict[str, list[str]]:
    """Import name -> installed distributions that provide it (reads every installed package once)."""
    return packages_distributions()


def source_files() -> list[Path]:
    files = [path for folder in (*PACKAGES, *SCRIPT_DIRS) for path in (ROOT / folder).rglob("*.py")]
    return sorted({*files, *ROOT.glob("*.py")})


def is_test_or_tool(path: Path) -> bool:
    relative = path.relative_to(ROOT)
    return (
        "tests" in relative.parts or relative.parts[0] in SCRIPT_DIRS
        or path.name == "conftest.py" or path.name.startswith("test_")
    )


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """Nodes inside `if TYPE_CHECKING:` blocks: read by type checkers, never run."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.body:
                skipped.update(ast.walk(statement))
    return skipped


def top_level_imports(source: str, *, runtime_only: bool = False) -> set[str]:
    """The top-level names of absolute imports (`import a.b`, `from a.b import c` -> "a")."""
    tree = ast.parse(source)
    skipped = _type_checking_only(tree) if runtime_only else set()
    names = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def undeclared_imports(path: Path, declared_names: set[str], *, runtime_only: bool = False) -> list[str]:
    """Imports in `path` that are neither the standard library nor ours, and that no declared
    distribution provides, as readable lines."""
    local = set(FIRST_PARTY)
    if not (path.parent / "__init__.py").exists():
        local |= {sibling.stem for sibling in path.parent.glob("*.py")}
    providers_of = distributions_providing()
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    problems = []
    for name in sorted(top_level_imports(path.read_text(), runtime_only=runtime_only)):
        if name in sys.stdlib_module_names or name in local:
            continue
        providers = providers_of.get(name, [])
        if not any(normalized(provider) in declared_names for provider in providers):
            problems.append(f"{shown} imports {name!r}, from {', '.join(providers) or 'no installed distribution'}")
    return problems


def test_every_imported_package_is_declared():
    everything = declared(RUNTIME_IN) | declared(DEV_IN)
    problems = [problem for path in source_files() for problem in undeclared_imports(path, everything)]
    assert problems == [], f"declare these in {RUNTIME_IN} or {DEV_IN}, then `make lock`"


def test_production_code_imports_only_runtime_packages():
    runtime = declared(RUNTIME_IN)
    problems = [
        problem for path in source_files() if not is_test_or_tool(path)
        for problem in undeclared_imports(path, runtime, runtime_only=True)
    ]
    assert problems == [], f"production installs requirements.txt only: declare these in {RUNTIME_IN}, then `make lock`"


def test_the_scan_covers_every_app_and_the_root_conftest():
    scanned = {path.relative_to(ROOT).parts[0] for path in source_files()}
    assert {"checkout", "customers", "sites", "webhooks", "webmagic", "benchmarks", "conftest.py"} <= scanned


def test_an_undeclared_import_is_reported(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "import json\nimport yaml\nfrom dateutil.relativedelta import relativedelta\nfrom webmagic import http\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pytest\n"
    )
    assert undeclared_imports(module, {"python-dateutil", "pytest"}) == ["module.py imports 'yaml', from PyYAML"]
    assert undeclared_imports(module, {"pyyaml"}) == [
        "module.py imports 'dateutil', from python-dateutil", "module.py imports 'pytest', from pytest",
    ]
    # A type-checking-only import never runs, so production does not need its package.
    assert undeclared_imports(module, {"pyyaml", "python-dateutil"}, runtime_only=True) == []


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_requirement_is_pinned_with_a_hash(lock):
    entries = [entry for entry in lock_entries(lock) if not entry.startswith("-")]
    assert len(entries) > 10  # the whole tree, not just the top-level packages
    unhashed = [entry.split()[0] for entry in entries if not PIN.match(entry) or "--hash=sha256:" not in entry]
    assert unhashed == [], f"{lock} is compiled by `make lock`, never edited by hand"


@pytest.mark.parametrize("lock, source", LOCKS.items())
def test_each_lock_holds_the_versions_its_in_file_pins(lock, source):
    wanted, locked = pins(source), pins(lock)
    assert wanted, f"{source} pins its packages with =="
    stale = {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version}
    assert stale == {}, f"{source} changed since {lock} was compiled: run `make lock`"


def test_the_two_locks_agree_on_every_package_they_share():
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert {name: (runtime[name], dev[name]) for name in runtime.keys() & dev.keys() if runtime[name] != dev[name]} == {}
