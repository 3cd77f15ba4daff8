"""The Ray run's settings and recipes, checked before any cluster is reached."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from qwen3_vl_rag import ClusterError, ConfigurationError
from qwen3_vl_rag.distributed import RayCluster, WorkerEngine
from qwen3_vl_rag.distributed._cluster import _probe


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("actors", 0),
        ("cpus_per_actor", -1.0),
        ("gpus_per_actor", -0.5),
        ("batch_size", 0),
        ("render_cpus", 0.0),
        ("render_memory", 0),
        ("render_batch", 0),
        ("window", 0),
    ],
)
def test_a_setting_that_cannot_work_is_refused_by_name(setting: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=f"RayCluster {setting}={value!r} cannot work"):
        RayCluster(**{setting: value})  # type: ignore[arg-type]


def test_the_defaults_are_left_for_the_cluster_to_settle() -> None:
    cluster = RayCluster()
    assert (cluster.address, cluster.actors, cluster.gpus_per_actor) == (None, None, None)
    assert (cluster.cpus_per_actor, cluster.batch_size, cluster.window) == (1.0, 32, 4096)


def test_a_worker_engine_needs_a_model_or_a_server_and_never_shows_a_token() -> None:
    with pytest.raises(ConfigurationError, match="needs the model"):
        WorkerEngine(None)
    with pytest.raises(ConfigurationError, match="needs the server's url"):
        WorkerEngine(None, source="server")
    with pytest.raises(ConfigurationError, match="must be 'pretrained' or 'server'"):
        WorkerEngine("m", source="elsewhere")  # type: ignore[arg-type]
    engine = WorkerEngine("org/model", options={"token": "hf_secret", "dtype": "float32"})
    assert "hf_secret" not in repr(engine) and "hf_secret" not in engine.describe()
    changed = engine.with_options(dtype="bfloat16")
    assert changed.options == {"token": "hf_secret", "dtype": "bfloat16"}
    assert engine.options["dtype"] == "float32"  # the recipe itself is unchanged


@pytest.mark.enable_socket
def test_an_address_where_nothing_listens_is_refused_before_ray_is_asked() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        # refused by the probe, before Ray (which would wait minutes for it) is involved
        with pytest.raises(ClusterError, match=f"nothing answers at the Ray address .*:{port}"):
            _probe(f"127.0.0.1:{port}")
    _probe("auto")  # Ray's own discovery: nothing to probe


def test_importing_the_package_loads_neither_torch_nor_ray() -> None:
    code = (
        "import sys, qwen3_vl_rag.distributed;"
        "print(','.join(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
