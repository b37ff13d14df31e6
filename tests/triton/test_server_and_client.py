"""The embedded tritonserver and the client's retry policy, against the real binary."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from myspinbot.triton.client import TritonClient, TritonUnavailable
from myspinbot.triton.server import EmbeddedTriton, pytriton_root, triton_env
from tests.triton_support import Exported

IDS = np.zeros((1, 77), dtype=np.int64)


def test_stub_environment_is_set_in_code(exported: Exported) -> None:
    """The python backend stub needs this venv's Python: its libpython and packages."""
    import sysconfig

    env = triton_env(pytriton_root(), exported.repository)
    assert str(sysconfig.get_config_var("LIBDIR")) in env["LD_LIBRARY_PATH"].split(":")
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    sites = env["PYTHONPATH"].split(":")
    assert {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]} <= set(sites)
    for var in ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH"):
        assert "" not in env[var].split(":"), var  # an empty entry is the current directory
    assert env["MYSPINBOT_TRITON_REPOSITORY"] == str(exported.repository)


def test_down_server_fails_readably_after_bounded_retries_then_recovers(
    exported: Exported, tmp_path: Path
) -> None:
    server = EmbeddedTriton(exported.repository, tmp_path)
    server.start()
    port = server.http_port
    client = TritonClient(server.url, retry_s=2.0)
    assert client.infer("text_encoder", {"input_ids": IDS}, ["last_hidden_state"])
    server.stop()

    started = time.monotonic()
    with pytest.raises(TritonUnavailable) as info:
        client.infer("text_encoder", {"input_ids": IDS}, ["last_hidden_state"])
    assert time.monotonic() - started >= 1.5  # it retried rather than failing at once
    message = str(info.value)
    assert "Triton" in message and "unavailable" in message and "tritonserver" in message

    again = EmbeddedTriton(exported.repository, tmp_path, http_port=port)
    with again:
        out = client.infer("text_encoder", {"input_ids": IDS}, ["last_hidden_state"])
        assert out["last_hidden_state"].shape[0] == 1
    client.close()


def test_triton_metrics_count_the_requests(triton: EmbeddedTriton) -> None:
    """Acceptance 5: Triton's own metrics, on its metrics port, show our requests."""

    families = (
        "nv_inference_request_success",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
    )

    def read() -> dict[str, float]:
        text = httpx.get(triton.metrics_url, timeout=10).text
        values = {}
        for family in families:
            found = re.search(family + r'\{model="text_encoder",version="1"\} (\S+)', text)
            values[family] = float(found.group(1)) if found else 0.0
        return values

    before = read()
    client = TritonClient(triton.url)
    for _ in range(3):
        client.infer("text_encoder", {"input_ids": IDS}, ["last_hidden_state"])
    client.close()
    after = read()
    assert after["nv_inference_request_success"] == before["nv_inference_request_success"] + 3
    for family in families[1:]:  # the time those requests spent queued and computing
        assert after[family] > before[family], family
