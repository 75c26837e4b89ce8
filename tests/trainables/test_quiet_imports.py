"""mace's import-time cuequivariance notice is dropped; whatever else an import prints still shows."""

import subprocess
import sys
from pathlib import Path

from trainables import quiet_imports

REPO = Path(__file__).resolve().parents[2]


def test_the_model_stack_imports_without_the_cuequivariance_notice():
    probe = "import trainables, mace.modules; print('imported')"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stdout) == (0, "imported\n"), result.stderr


def test_only_the_notice_is_dropped(tmp_path, monkeypatch, capsys):
    (tmp_path / "noisy_module.py").write_text("print('the notice')\nprint('a line that matters')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(quiet_imports.NOTICES, "noisy_module", "the notice")
    monkeypatch.delitem(sys.modules, "noisy_module", raising=False)
    import noisy_module  # noqa: F401

    assert capsys.readouterr().out == "a line that matters\n"
