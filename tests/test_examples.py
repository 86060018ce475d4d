"""Every script in examples/ runs with its defaults (slow) and is a runnable script (fast).

Scripts run in a subprocess with ``MPLBACKEND=Agg`` from a temporary working directory; scripts
with an ``--out`` option write there. A file a script writes next to itself (no output option;
``examples/<stem>.<ext>``) is removed afterwards if it was not there before.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
# where each script's --out option points (a directory for aef_digits, else a file)
OUT = {
    "aef_digits.py": ".",
    "diffusion_late_start.py": "diffusion_late_start.png",
    "diffusion_spectra.py": "diffusion_spectra.png",
    "gp_co2.py": "gp_co2.png",
}
TIMEOUT_S = 3600


def test_examples_are_scripts():
    assert len(EXAMPLES) >= 5
    for path in EXAMPLES:
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name}: no module docstring (say how to run it)"
        guards = [
            n
            for n in tree.body
            if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)
        ]
        assert guards, f"{path.name}: no `if __name__ == '__main__':` guard"
        uses_out = "--out" in path.read_text()
        assert uses_out == (path.name in OUT), f"{path.name}: update OUT in this test"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_with_defaults(path, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, str(path)]
    if path.name in OUT:
        cmd += ["--out", str(tmp_path / OUT[path.name])]
    before = set((ROOT / "examples").iterdir())
    try:
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    finally:
        for new in set((ROOT / "examples").iterdir()) - before:
            if new.is_file() and new.stem == path.stem and new.suffix != ".py":
                new.unlink()  # e.g. coupling_network.png, written next to the script
    assert proc.returncode == 0, (
        f"{path.name} exited with {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
        f"--- stderr\n{proc.stderr[-3000:]}"
    )
