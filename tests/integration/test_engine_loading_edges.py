"""Loading: one options path for both models, a Hub that fails fast and says why, no noise.

The Hub cases run in a fresh interpreter (offline mode and the endpoint are read from the
environment at import) against nothing but loopback: a closed port, or a server started there.
"""

from __future__ import annotations

import json
import logging
import shutil
import textwrap
import warnings
from pathlib import Path

import pytest

from qwen3_vl_rag import ModelLoadError, PretrainedOptions, Qwen3VLEmbedder, Qwen3VLReranker
from tests.bounded import run_bounded

# Before: 25-28 s of "Retrying in 8s" lines ending in an error about connecting; now one request.
FAST = 10.0
CACHED_ID = "tiny-org/tiny-embedding"


def _hub_cache(root: Path, checkpoint: Path) -> Path:
    """A Hugging Face cache holding ``checkpoint`` as the Hub model ``CACHED_ID``."""
    commit = "0" * 40
    repo = root / ("models--" + CACHED_ID.replace("/", "--"))
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


_CASES = """
import json, logging, time
from qwen3_vl_rag import ModelLoadError, Qwen3VLEmbedder
logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
Qwen3VLEmbedder.from_pretrained(WARM, device="cpu")  # imports and first load, not timed
found = {}
for name in MODELS:
    start = time.monotonic()
    try:
        Qwen3VLEmbedder.from_pretrained(name, device="cpu")
        found[name] = {"loaded": True}
    except ModelLoadError as exc:
        found[name] = {"error": str(exc)}
    found[name]["seconds"] = time.monotonic() - start
print(json.dumps(found))
"""


def _run(
    prelude: str, models: list[str], env: dict[str, str], warm: Path
) -> dict[str, dict[str, object]]:
    code = textwrap.dedent(prelude) + f"\nMODELS = {models!r}\nWARM = {str(warm)!r}\n" + _CASES
    done = run_bounded(code, seconds=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, dict[str, object]] = done.json()  # type: ignore[assignment]
    found["stderr"] = {"text": done.stderr}
    return found


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_embedding_path: Path) -> Path:
    return _hub_cache(tmp_path_factory.mktemp("hf-cache"), tiny_embedding_path)


def test_offline_mode_says_not_in_the_cache_and_loads_what_is(
    hub_cache: Path, tiny_embedding_path: Path
) -> None:
    found = _run(
        "",
        ["Qwen/Qwen3-VL-Embedding-2B", CACHED_ID],
        {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)},
        tiny_embedding_path,
    )
    missing = found["Qwen/Qwen3-VL-Embedding-2B"]
    error = str(missing["error"])
    assert "not in the local Hugging Face cache" in error
    assert "HF_HUB_OFFLINE=1 is set" in error and "unset HF_HUB_OFFLINE" in error
    assert "hf download Qwen/Qwen3-VL-Embedding-2B" in error
    assert "connect" not in error  # it never tried to
    assert float(missing["seconds"]) < FAST, found
    assert found[CACHED_ID]["loaded"] is True


_CLOSED_PORT = """
import os, socket
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()  # nothing listens there: every connection is refused at once
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
"""


def test_an_unreachable_hub_fails_fast_or_falls_back_to_the_cache(
    hub_cache: Path, tiny_embedding_path: Path
) -> None:
    found = _run(
        _CLOSED_PORT,
        ["Qwen/Qwen3-VL-Embedding-2B", CACHED_ID],
        {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HUB_CACHE": str(hub_cache)},
        tiny_embedding_path,
    )
    missing = found["Qwen/Qwen3-VL-Embedding-2B"]
    error = str(missing["error"])
    assert "cannot be reached" in error and "http://127.0.0.1:" in error
    assert "not in the local cache" in error
    assert "HF_HUB_OFFLINE=1" in error and "local directory" in error
    assert float(missing["seconds"]) < FAST, found
    cached = found[CACHED_ID]
    assert cached["loaded"] is True and float(cached["seconds"]) < FAST, found
    stderr = str(found["stderr"]["text"])
    assert "using the cached copy of 'tiny-org/tiny-embedding'" in stderr
    assert "Retrying" not in stderr


_NO_SUCH_MODEL = """
import os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Hub(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        body = b'{"error": "Repository not found"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_HEAD = do_GET
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=server.serve_forever, daemon=True).start()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
"""


def test_a_model_the_hub_does_not_have_is_named_as_such(
    tmp_path: Path, tiny_embedding_path: Path
) -> None:
    found = _run(
        _NO_SUCH_MODEL,
        ["nobody/no-such-model"],
        {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path)},
        tiny_embedding_path,
    )
    missing = found["nobody/no-such-model"]
    error = str(missing["error"])
    assert "no model 'nobody/no-such-model' on the Hub" in error
    assert "no such local directory" in error
    assert float(missing["seconds"]) < FAST, found


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_blocked_sockets_fail_fast_as_an_unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from huggingface_hub import constants

    # offline mode off in this process: the one request meets pytest-socket's refusal
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="cannot be reached") as info:
        Qwen3VLEmbedder.from_pretrained("nobody/not-cached-anywhere", device="cpu")
    assert time.monotonic() - start < FAST
    assert "HF_HUB_OFFLINE=1" in str(info.value)


def test_a_path_that_is_not_there_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such directory") as info:
        Qwen3VLEmbedder.from_pretrained(tmp_path / "nowhere" / "model", device="cpu")
    assert "Hub" not in str(info.value).replace("Hub id such as", "")


def test_both_models_take_the_same_typed_options(
    tiny_embedding_path: Path, tiny_reranker_path: Path
) -> None:
    options: PretrainedOptions = {
        "device": "cpu",
        "max_pixels": 64 * 32 * 32,
        "batch_tokens": 256,
        "decode_workers": 0,
        "local_files_only": True,
    }
    embedder = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, max_length=96, **options)
    reranker = Qwen3VLReranker.from_pretrained(tiny_reranker_path, max_length=128, **options)
    for engine in (embedder, reranker):
        backbone = engine.backbone
        assert (backbone.batch_tokens, backbone.decode_workers) == (256, 0)
        assert backbone.loaded.vision.max_pixels == 64 * 32 * 32
        assert backbone.loaded.hub.local_files_only is True
    assert (embedder.max_length, reranker.max_length) == (96, 128)


@pytest.mark.parametrize("cls", [Qwen3VLEmbedder, Qwen3VLReranker])
def test_a_misspelt_option_is_refused_before_loading(
    cls: type[Qwen3VLEmbedder] | type[Qwen3VLReranker], tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*max_pixel\b"):
        cls.from_pretrained(tmp_path / "never-read", max_pixel=100)  # type: ignore[call-arg]


def test_loading_shows_no_weight_bars(
    tiny_embedding_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers.utils import logging as hf_logging

    before = hf_logging.set_tqdm_hook(None)
    hf_logging.set_tqdm_hook(before)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu")
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out
    assert [str(w.message) for w in caught] == []
    # the hook is put back: other code's bars are left as they were
    assert hf_logging.set_tqdm_hook(before) is before
    assert json.dumps(hf_logging.is_progress_bar_enabled()) == "true"


def test_a_text_we_cut_raises_no_sequence_length_warning(tiny_embedding_path: Path) -> None:
    # a fresh tokenizer: transformers says it once per tokenizer, so no earlier test hides it
    embedder = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu")
    emoji = "\U0001f9ec" * 70_000  # 4 tokens each: over the tokenizer's 262144 before the cut
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    transformers_logger = logging.getLogger("transformers")  # transformers' own root logger
    transformers_logger.addHandler(handler)
    try:
        whole, head = embedder.embed([emoji, emoji[:8000]])
    finally:
        transformers_logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == []
    assert float(whole @ head) > 0.999  # the long text is embedded as its kept head


def test_cached_passes_hide_only_the_past_key_values_future_warning(
    reranker: Qwen3VLReranker, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = reranker.backbone.loaded.model
    forward = model.forward
    seen: list[str] = []

    def warning_forward(*args: object, **kwargs: object) -> object:
        # what transformers 5.24 does when given a cache; other FutureWarnings must still show
        if kwargs.get("use_cache"):
            seen.append("cached")
            warnings.warn("`past_key_values` will change.", FutureWarning, stacklevel=2)
        warnings.warn("something else is deprecated.", FutureWarning, stacklevel=2)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", warning_forward)
    query = "a question about revenue " * 4  # a long shared prefix: the cached path runs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reranker.score(query, ["revenue grew", "cats sleep", "a table of numbers"])
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert "cached" in seen
    assert not [m for m in messages if "past_key_values" in m]
    assert "something else is deprecated." in messages
