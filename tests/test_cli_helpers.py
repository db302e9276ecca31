"""``invoke_cli`` (the CLI's entry point in this process) against the real ``recozoo`` console script.

Most CLI tests use ``invoke_cli`` to skip a fresh interpreter per command; what they assert (exit
code, stdout, the one-line error on stderr, a traceback for an unexpected exception) is only worth
something if it is what a user of the installed script sees. These tests hold the two to the same
answers on an error path and on an unexpected exception.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from cli_helpers import assert_one_line_error, invoke_cli, run_cli


def test_a_one_line_error_is_the_console_scripts_own(tmp_path):
    args = ("fit", "nosuchmodel", "--dataset", "synthetic")
    env = {"RECOZOO_DATA": str(tmp_path / "home")}
    real = run_cli(*args, env=env, check=False)
    here = invoke_cli(*args, env=env, check=False)
    assert_one_line_error(real, "unknown model", "nosuchmodel")
    assert (here.returncode, here.stdout, here.stderr) == (real.returncode, real.stdout, real.stderr)


_BOOM = """
import sys
import recozoo.registry
def boom(name):
    raise ValueError("boom: a bug, not bad input")
recozoo.registry.get_model = boom
from recozoo.cli.main import main
sys.argv = ["recozoo", "models", "bias"]
main()
"""


def test_an_unexpected_exception_shows_as_the_interpreter_shows_it(monkeypatch):
    """A bug (not a RecozooError) is a traceback and exit 1 in a real process; in process the test
    sees the same, so ``assert_one_line_error`` cannot pass on it."""
    real = subprocess.run([sys.executable, "-c", _BOOM], capture_output=True, text=True, timeout=120)
    import recozoo.registry

    def boom(name):
        raise ValueError("boom: a bug, not bad input")
    monkeypatch.setattr(recozoo.registry, "get_model", boom)
    here = invoke_cli("models", "bias", check=False)
    for p in (real, here):
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and p.stdout == "", p
        assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom: a bug, not bad input"
        with pytest.raises(AssertionError, match="Traceback"):
            assert_one_line_error(p)


def test_what_a_command_does_to_the_environment_ends_with_it(monkeypatch):
    """A child's environment dies with it; in process, a variable the command sets or removes (a thread
    count pinned by a fan-out, say) is undone after the call, and the call's own env too."""
    import os

    import recozoo.registry
    monkeypatch.setenv("RECOZOO_TEST_KEPT", "before")

    def meddle(name):
        os.environ["RECOZOO_TEST_SET"] = "by the command"
        os.environ.pop("RECOZOO_TEST_KEPT")
        assert os.environ["RECOZOO_TEST_CALL"] == "for the call"
        raise recozoo.registry.RegistryError("meddled")
    monkeypatch.setattr(recozoo.registry, "get_model", meddle)
    before = dict(os.environ)
    assert_one_line_error(invoke_cli("models", "bias", env={"RECOZOO_TEST_CALL": "for the call"}, check=False),
                          "meddled")
    assert dict(os.environ) == before
