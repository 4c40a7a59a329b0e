"""The manual page: generated from the command tree, committed current, and rendered by
man(1) without a single warning."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

from ruripy import manpage

PAGE = os.path.join(REPO, "man", "ruripy.1")


def test_committed_page_is_current():
    with open(PAGE) as f:
        assert f.read() == manpage.render(), (
            "man/ruripy.1 is stale: run 'python -m ruripy.manpage --write' and commit it"
        )


def test_output_is_reproducible():
    pages = set()
    for seed in ("0", "1", "12345"):
        r = subprocess.run(
            [sys.executable, "-m", "ruripy.manpage"],
            env=dict(os.environ, PYTHONPATH=REPO, PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            check=True,
        )
        pages.add(r.stdout)
    assert len(pages) == 1


@pytest.fixture(scope="module")
def rendered():
    if not shutil.which("man") or not shutil.which("groff"):
        pytest.skip("man-db and groff are not installed (apt-get install man-db groff-base)")
    r = subprocess.run(
        ["man", "--warnings", "-l", PAGE],
        env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat", LANG="C.UTF-8"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    assert r.stderr == ""
    return r.stdout


def test_renders_in_80_columns(rendered):
    assert max(len(line) for line in rendered.splitlines()) <= 80
    for section in (
        "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "RUNTIME OPTIONS", "FILES",
        "ENVIRONMENT", "EXIT STATUS", "EXAMPLES", "SEE ALSO",
    ):  # fmt: skip
        assert f"\n{section}\n" in rendered


def test_every_command_argument_and_option_is_documented(rendered):
    import typer._click as click
    import typer.main

    from ruripy.cli import app

    group = typer.main.get_command(app)
    ctx = click.Context(group, info_name="ruripy", **group.context_settings)
    words = set(rendered.replace(",", " ").split())
    for name in group.list_commands(ctx):
        cmd = group.commands[name]
        assert f"\n   ruripy {name}" in rendered, name
        sub = click.Context(cmd, info_name=name, parent=ctx, **cmd.context_settings)
        for p in cmd.get_params(sub):
            if p.param_type_name == "argument":
                assert p.name.upper() in words, (name, p.name)
            else:
                for opt in p.opts + p.secondary_opts:
                    assert opt in words, (name, opt)


def test_files_environment_and_exit_status(rendered):
    for word in (
        "RURIPY_HOME", "RURIPY_LXC_MIRROR", "RURIPY_DEBUG", "XDG_DATA_HOME",
        "/var/lib/ruripy", "~/.local/share/ruripy", "/etc/subuid",
    ):  # fmt: skip
        assert word in rendered
    for status in ("125", "126", "127", "128+N"):
        assert f"\n       {status} " in rendered
