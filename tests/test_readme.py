"""The README's two set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fenced_commands(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- test-command -->\s*```bash\n(.*?)\n```", readme, re.S)
    assert m, "README must mark its test command with <!-- test-command -->"
    cmd = m.group(1).strip()
    assert "pytest" in cmd
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert cmd in [ln.strip() for ln in ci], ".ci/run must call the README's test command verbatim"


def test_readme_install_command_installs_cpu_torch_first_and_runs_offline():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- install-command -->\s*```bash\n(.*?)\n```", readme, re.S)
    assert m, "README must mark its install command with <!-- install-command -->"
    cmd = m.group(1).strip()
    assert cmd.index("torch==2.13.0") < cmd.index("pip install -e")
    assert "--dataset synthetic" in cmd
