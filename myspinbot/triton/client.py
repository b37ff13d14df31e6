"""Talking to Triton through `tritonclient`, with the retry policy of the platform.

A Triton that is briefly away (restarting, a model reloading) is waited for: requests
are retried with backoff for `retry_s`. When it stays away the caller gets
TritonUnavailable, a PermanentError whose message says what to check, so the job fails
with it instead of being redelivered for minutes.

`tritonclient.http` runs on gevent and is not thread-safe: one TritonClient per thread.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import tritonclient.http as httpclient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from myspinbot.errors import PermanentError
from myspinbot.triton.repository import admin_headers

T = TypeVar("T")

_NP_TO_TRITON = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


class TritonUnavailable(PermanentError):
    """Triton did not answer (or not ready) for longer than the retry window."""


class TritonError(PermanentError):
    """Triton answered with an error that retrying will not fix."""


class ModelNotLoaded(RuntimeError):
    """The model is not in Triton (e.g. a LoRA model after a Triton restart)."""


def host_port(url: str) -> str:
    """tritonclient wants `host:port`; accept a URL too."""
    return url.split("://", 1)[-1].rstrip("/")


class TritonClient:
    def __init__(
        self,
        url: str,
        *,
        retry_s: float = 20.0,
        timeout_s: float = 300.0,
        admin_key: str | None = None,
    ) -> None:
        self.url = host_port(url)
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self._admin = admin_headers(admin_key)
        self._client = self._connect()

    def _connect(self) -> httpclient.InferenceServerClient:
        return httpclient.InferenceServerClient(
            self.url, connection_timeout=5.0, network_timeout=self.timeout_s
        )

    def close(self) -> None:
        self._client.close()

    # --- health -----------------------------------------------------------------------
    def server_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except (InferenceServerException, OSError):
            return False

    def model_ready(self, name: str) -> bool:
        return bool(self._retrying(lambda: self._client.is_model_ready(name), f"checking {name}"))

    # --- inference --------------------------------------------------------------------
    def infer(
        self, model: str, inputs: Mapping[str, NDArray[Any]], outputs: list[str]
    ) -> dict[str, NDArray[Any]]:
        def call() -> dict[str, NDArray[Any]]:
            request = []
            for name, array in inputs.items():
                tensor = httpclient.InferInput(name, list(array.shape), _NP_TO_TRITON[array.dtype])
                tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
                request.append(tensor)
            wanted = [httpclient.InferRequestedOutput(n, binary_data=True) for n in outputs]
            result = self._client.infer(model, request, outputs=wanted)
            return {name: result.as_numpy(name) for name in outputs}

        return self._retrying(call, f"running {model}")

    # --- model control ----------------------------------------------------------------
    def model_config(self, name: str) -> dict[str, Any]:
        return dict(self._retrying(lambda: self._client.get_model_config(name), f"reading {name}"))

    def load_model(self, name: str, config: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
        self._retrying(
            lambda: self._client.load_model(
                name, headers=self._admin, config=json.dumps(config), files=dict(files)
            ),
            f"loading {name}",
        )

    def unload_model(self, name: str) -> None:
        self._retrying(
            lambda: self._client.unload_model(name, headers=self._admin), f"unloading {name}"
        )

    # --- the retry policy -------------------------------------------------------------
    def _retrying(self, call: Callable[[], T], what: str) -> T:
        deadline = time.monotonic() + self.retry_s
        delay = 0.25
        while True:
            try:
                return call()
            except (TimeoutError, OSError, InferenceServerException) as exc:
                if isinstance(exc, InferenceServerException) and not _transient(exc):
                    if str(exc.status() or "") == "403":
                        raise TritonError(
                            f"Triton refused {what}: {exc.message()} (the platform's admin "
                            "key, MYSPINBOT_TRITON_ADMIN_KEY, is missing or wrong)"
                        ) from exc
                    if _not_found(exc):
                        raise ModelNotLoaded(str(exc.message())) from exc
                    raise TritonError(f"Triton failed {what}: {exc.message()}") from exc
                if time.monotonic() + delay > deadline:
                    raise TritonUnavailable(
                        f"The inference server (Triton at {self.url}) is unavailable: {what} "
                        f"failed for {self.retry_s:.0f} s ({_describe(exc)}). Check that "
                        "tritonserver is running and its models are loaded (GET /health)."
                    ) from exc
            self._reconnect()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _reconnect(self) -> None:
        # A connection that died mid-request leaves geventhttpclient's pool unusable.
        self._client.close()
        self._client = self._connect()


def _transient(exc: InferenceServerException) -> bool:
    status = str(exc.status() or "")
    message = str(exc.message() or "").lower()
    # 503 and "not ready" while Triton starts or a model (re)loads.
    return (
        status in {"503", "StatusCode.UNAVAILABLE"}
        or "not ready" in message
        or ("unavailable" in message)
    )


def _not_found(exc: InferenceServerException) -> bool:
    message = str(exc.message() or "").lower()
    return "unknown model" in message or "is not found" in message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException):
        return str(exc.message())
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
