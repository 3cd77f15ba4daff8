#!/usr/bin/env bash
# Regenerate tests/parity/goldens/reference_outputs.json from the official reference.
#
#   tests/parity/regenerate.sh REFERENCE_CHECKOUT [TRANSFORMERS_VERSION]
#
# REFERENCE_CHECKOUT: a checkout of https://github.com/QwenLM/Qwen3-VL-Embedding (commit 8ce3aab was
# used). TRANSFORMERS_VERSION defaults to 4.57.3, the version the reference locks and the released
# models were built with. Needs uv and network access to the package registry (not to the Hub).
set -euo pipefail
ref=${1:?usage: regenerate.sh REFERENCE_CHECKOUT [TRANSFORMERS_VERSION]}
tf=${2:-4.57.3}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
find_links=${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}
[ -n "$find_links" ] && export UV_FIND_LINKS="$find_links"

# 1. the tiny checkpoints, built by this project's own builder in the project's environment
"$root/.venv/bin/python" - "$work" <<'PY'
import sys
from qwen3_vl_rag.testing import build_tiny_checkpoint
build_tiny_checkpoint(f"{sys.argv[1]}/embedding", kind="embedding")
build_tiny_checkpoint(f"{sys.argv[1]}/reranker", kind="reranker")
PY

# 2. the reference's environment: its locked transformers, qwen-vl-utils and decord; CPU torch with
#    the registry's torchvision pinned so nothing pulls CUDA builds
uv venv -q "$work/ref" --python python3.11
printf 'torch==2.13.0\ntorchvision==0.28.0\n' > "$work/constraints.txt"
uv pip install -q --python "$work/ref/bin/python" -c "$work/constraints.txt" \
    torch==2.13.0 torchvision==0.28.0 "transformers==$tf" qwen-vl-utils==0.0.14 decord==0.6.0 \
    scipy av pillow numpy safetensors

# 3. run it
"$work/ref/bin/python" "$root/tests/parity/generate_goldens.py" --reference-src "$ref" \
    --embedding-ckpt "$work/embedding" --reranker-ckpt "$work/reranker" \
    --out "$root/tests/parity/goldens/reference_outputs.json"
