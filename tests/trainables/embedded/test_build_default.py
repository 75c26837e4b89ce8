"""The prebuild command: builds the cache, reuses it, rebuilds on request, rejects unknown names."""

import subprocess
import sys

from trainables.build_default import main


def test_prebuild_then_reuse_then_rebuild(cache_root, smoke_files, capsys):
    assert main(["--system", "cu3au-emt", "--size", "smoke"]) == 0
    out = capsys.readouterr().out
    foundation = cache_root / "v1" / "cu3au-emt-smoke" / "foundation.pt"
    assert f"foundation: {foundation}" in out and foundation.is_file()
    built = foundation.stat().st_mtime_ns
    assert main(["--system", "cu3au-emt", "--size", "smoke"]) == 0
    assert "pretraining" not in capsys.readouterr().out
    assert foundation.stat().st_mtime_ns == built
    assert main(["--system", "cu3au-emt", "--size", "smoke", "--rebuild"]) == 0
    assert "pretraining foundation" in capsys.readouterr().out
    assert foundation.stat().st_mtime_ns != built


def test_unknown_system_is_one_line():
    run = subprocess.run([sys.executable, "-m", "trainables.build_default", "--system", "graphene"],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: unknown system 'graphene'; known systems:")
