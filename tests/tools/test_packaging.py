"""A built wheel ships the config catalog, the tool scripts and the demo assets inside
``xtuner/``, and an installed copy finds them there (not in a checkout)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import xtuner

REPO = Path(xtuner.__file__).resolve().parent.parent
REQUIRED = [
    "xtuner/configs/demo/demo_tiny_full_colorist_e40.py",
    "xtuner/configs/deepspeed/deepspeed_zero2.json",
    "xtuner/tools/train.py",
    "xtuner/demo/tiny_llm/model.safetensors",
    "xtuner/demo/data/colorist.jsonl",
]
IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "work_dirs", "__pycache__",
                                "*.pyc", ".ruff_cache", ".pytest_cache", ".venv", "tests")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (REPO / "setup.py").is_file():
        pytest.skip("xtuner is not imported from a source checkout")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    # Build from a copy so the working tree gets no build/ or *.egg-info.
    shutil.copytree(REPO, src, ignore=IGNORE)
    out = root / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheels = list(out.glob("xtuner-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_catalog_tools_and_demo(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in REQUIRED if name not in names]
    assert missing == []
    # Every shipped config and tool script, not just the ones named above.
    for folder, inside in (("configs", "xtuner/configs"), ("tools", "xtuner/tools")):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                assert f"{inside}/{path.relative_to(REPO / folder).as_posix()}" in names, path
    assert not any(name.startswith(("tests/", "configs/", "tools/")) for name in names)
    assert not any("__pycache__" in name for name in names)


def test_wheel_declares_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as zf:
        entry_points = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = zf.read(entry_points).decode()
    assert "[console_scripts]" in text
    assert "xtuner = xtuner.entry_point:cli" in text


def test_installed_wheel_uses_its_own_catalog(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import xtuner, xtuner.utils.paths as p\n"
        "print(xtuner.__file__)\n"
        "print(p.configs_dir())\n"
        "print(p.tools_dir())\n"
        "from xtuner.entry_point import main\n"
        "raise SystemExit(main(['list-cfg', '-p', 'deepspeed_zero2']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == [str(site / "xtuner" / "__init__.py"), str(site / "xtuner" / "configs"),
                         str(site / "xtuner" / "tools")]
    assert lines[3:] == ["deepspeed_zero2", "deepspeed_zero2_offload"]
