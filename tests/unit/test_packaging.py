"""What ships: the Apache-2.0 LICENSE in the sdist and the wheel; installs that compile bytecode."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed: it builds the distributions")
    return found


def test_license_is_the_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


def test_the_sdist_and_the_wheel_carry_the_license(tmp_path: Path) -> None:
    done = subprocess.run(
        [_uv(), "build", "--quiet", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 and "network" in done.stderr.lower():
        pytest.skip(f"the build backend cannot be fetched: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    license_bytes = (ROOT / "LICENSE").read_bytes()

    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (shipped,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(shipped) == license_bytes
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode()
    assert "License-Expression: Apache-2.0" in headers
    assert "License-File: LICENSE" in headers

    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/LICENSE"))
        handle = archive.extractfile(member)
        assert handle is not None
        assert member.name.count("/") == 1  # at the sdist's root
        assert handle.read() == license_bytes


def test_every_install_compiles_bytecode() -> None:
    """A fresh install otherwise costs 15-20 s of compiling at each first CLI start."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    installs = [
        line
        for line in makefile.splitlines()
        if re.search(r"uv\S* pip install", line, re.IGNORECASE)
    ]
    assert len(installs) == 3  # the test, benchmark and vLLM environments
    assert all("--compile-bytecode" in line for line in installs)
    assert "export UV_COMPILE_BYTECODE=1" in (ROOT / ".ci" / "run").read_text()
