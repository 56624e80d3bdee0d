"""The distribution: what ``python -m build`` makes of the project, sdist and wheel.

The sdist is for installing cachedcall and leaves the tests out (MANIFEST.in says why);
the wheel is built from it, as pip does. The build runs without isolation (offline), on a
copy of the project, so that it neither reads nor writes the egg-info of the work tree.
One build for the whole module: it takes seconds of both cores.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import cachedcall

ROOT = Path(__file__).resolve().parent.parent
VERSION = cachedcall.__version__


def _release_tools_missing() -> str:
    """Why the dev extra's release tools cannot build here, or "" when they can."""
    missing = [name for name in ("build", "twine") if importlib.util.find_spec(name) is None]
    try:
        setuptools = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        setuptools = "0"
    if int(setuptools.split(".")[0]) < 77:
        missing.append(f"setuptools>=77 (have {setuptools})")
    return ", ".join(missing)


@pytest.fixture(scope="module", autouse=True)
def _release_tools():
    # The test extra has them; a missing one is a broken install, not a reason to skip.
    missing = _release_tools_missing()
    assert not missing, f"install the test extra: pip install -e '.[test]' (missing: {missing})"


def test_the_distribution_builds_without_warnings_and_holds_what_it_should(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".nox", ".hypothesis", ".*_cache", "__pycache__", "*.egg-info", "build", "dist", "results"
        ),
    )
    # A set PYTHONDONTWRITEBYTECODE makes setuptools warn that it skips byte-compiling.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    warnings = [line for line in output.splitlines() if "warn" in line.lower() or "no previously" in line]
    assert warnings == []
    wheel = tmp_path / "dist" / f"cachedcall-{VERSION}-py3-none-any.whl"
    sdist = tmp_path / "dist" / f"cachedcall-{VERSION}.tar.gz"
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == sorted([sdist.name, wheel.name])

    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    modules = sorted(str(p.relative_to(source)) for p in (source / "cachedcall").rglob("*.py"))
    assert "cachedcall/management/commands/cachedcall.py" in modules

    # The wheel: the package with its typing marker, the licence, PEP 639 metadata, no tests.
    dist_info = f"cachedcall-{VERSION}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
    assert {"cachedcall/py.typed", f"{dist_info}/licenses/LICENSE", *modules} <= set(names)
    assert {name.split("/")[0] for name in names} == {"cachedcall", dist_info}
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["License"] is None
    assert not [c for c in metadata.get_all("Classifier", []) if c.startswith("License ::")]
    assert {url.split(",")[0] for url in metadata.get_all("Project-URL", [])} == {
        "Homepage",
        "Documentation",
        "Changelog",
        "Issues",
    }

    # The sdist: the package, README, CHANGELOG, LICENSE and pyproject.toml; not the tests,
    # the example project, the benchmarks, CI or nox.
    top = f"cachedcall-{VERSION}"
    with tarfile.open(sdist) as archive:
        files = [m.name.removeprefix(f"{top}/") for m in archive.getmembers() if m.isfile()]
        member = archive.extractfile(f"{top}/PKG-INFO")
        assert member is not None
        pkg_info = email.parser.Parser().parsestr(member.read().decode())
    roots = {name.split("/")[0] for name in files}
    assert roots == {
        "CHANGELOG.rst",
        "LICENSE",
        "PKG-INFO",
        "README.rst",
        "cachedcall",
        "cachedcall.egg-info",
        "pyproject.toml",
        "setup.cfg",
    }
    assert {"cachedcall/py.typed", *modules} <= set(files)
    assert pkg_info["Version"] == VERSION
