"""genrify.core.extras: the pip command that adds an extra, as genrify was installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrify.core import extras


class Installed:
    """A stand-in for ``importlib.metadata.distribution("genrify")`` with this ``direct_url.json``."""

    def __init__(self, direct_url: dict | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return None if self.direct_url is None else json.dumps(self.direct_url)


@pytest.fixture
def installed(monkeypatch):
    from importlib import metadata

    def use(direct_url: dict | None) -> None:
        monkeypatch.setattr(metadata, "distribution", lambda name: Installed(direct_url))
        extras.installed_from.cache_clear()

    yield use
    extras.installed_from.cache_clear()


@pytest.fixture(autouse=True)
def active_environment(monkeypatch):
    """The tests below run as if genrify ran in an active virtual environment (the shell's ``pip``
    is then that environment's)."""
    import sys

    monkeypatch.setattr(sys, "base_prefix", "/usr/base-python")
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)


def test_pip_is_named_bare_only_inside_the_active_environment(installed, monkeypatch, tmp_path):
    import shlex
    import sys

    installed(None)
    assert extras.install_command("train") == "pip install 'genrify[train]'"  # an active environment: its pip
    this_python = f"{shlex.quote(sys.executable)} -m pip install 'genrify[train]'"
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "another-venv"))  # another environment is active
    assert extras.install_command("train") == this_python
    monkeypatch.delenv("VIRTUAL_ENV")  # .venv/bin/genrify run without activating it
    assert extras.install_command("train") == this_python
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)  # not a virtual environment: the system's Python
    assert extras.install_command("train") == this_python


def checkout(root: Path, *, constraints: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'genrify'\n")
    if constraints:
        (root / "constraints.txt").write_text("torch==2.13.0\n")
    return root


def test_an_install_from_an_index_names_the_extra_of_the_published_package(installed):
    installed(None)  # pip writes no direct_url.json for an index install
    assert extras.install_command("train") == "pip install 'genrify[train]'"


def test_an_install_from_git_or_an_archive_names_that_source_again(installed):
    installed({"url": "https://example.org/genrify-0.1.tar.gz", "archive_info": {"hashes": {}}})
    assert extras.install_command("learn") == "pip install 'genrify[learn] @ https://example.org/genrify-0.1.tar.gz'"
    installed({"url": "https://example.org/genrify.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}})
    assert extras.install_command("train") == (
        "pip install 'genrify[train] @ git+https://example.org/genrify.git@abc123'")


def test_an_editable_checkout_is_installed_again_with_its_constraints(installed, tmp_path):
    root = checkout(tmp_path / "my code", constraints=True)
    installed({"url": root.as_uri(), "dir_info": {"editable": True}})  # as_uri: the space is %20
    assert extras.install_command("train") == (
        f"pip install -c '{root}/constraints.txt' -e '{root}[train]'")


def test_a_folder_install_without_constraints_is_not_made_editable(installed, tmp_path):
    root = checkout(tmp_path, constraints=False)
    installed({"url": root.as_uri(), "dir_info": {}})
    assert extras.install_command("dask") == f"pip install '{root}[dask]'"


def test_a_folder_that_is_gone_falls_back_to_the_package_name(installed, tmp_path):
    installed({"url": (tmp_path / "deleted").as_uri(), "dir_info": {"editable": True}})
    assert extras.install_command("train") == "pip install 'genrify[train]'"
    installed({"url": "file:///x", "dir_info": {}})  # no pyproject.toml there: not a checkout
    assert extras.install_command("train") == "pip install 'genrify[train]'"
