"""The cookbooks run top to bottom on the tiny checkpoints (in a kernel of this environment).

The notebook runs in a subprocess: its kernel talks to the client over local TCP, which
pytest-socket blocks in this process. The notebooks build tiny checkpoints and never reach the
network (HF offline).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COOKBOOKS = Path(__file__).resolve().parents[2] / "cookbooks"

RUNNER = """
import sys
import nbformat
from nbclient import NotebookClient

notebook = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
images = sum("image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", []))
print("errors", len(errors), "images", images)
"""


@pytest.mark.parametrize(
    "name",
    [
        "langchain_visual_pdf_rag.ipynb",
        "llamaindex_multimodal_rag.ipynb",
        "finetune_and_evaluate.ipynb",
    ],
)
def test_cookbook_runs_top_to_bottom(name: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(COOKBOOKS / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    counts = dict(zip(*[iter(done.stdout.split())] * 2, strict=True))
    assert counts["errors"] == "0"
    assert int(counts["images"]) >= 1  # pages were shown inline
