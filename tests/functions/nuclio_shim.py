"""Test harness, not product code: one Python worker the way Nuclio's processor runs it.

Nuclio's wrapper is not on any package registry, so this is our own program that
keeps its contract, as read in Nuclio's source (pkg/processor/runtime/python/
runtime.go and py/_nuclio_wrapper.py, pkg/processor/runtime/rpc/encoder; nothing
copied): the processor starts `python -u <wrapper> --handler module:entry
--event-socket-path P --control-socket-path P --platform-kind kube --namespace N
--worker-id 0 --trigger-kind http --trigger-name default-http
--decode-event-strings` with NUCLIO_FUNCTION_NAME/_HANDLER in the environment and
the handler's directory on PYTHONPATH; the wrapper imports the module with
`__import__`, builds a `nuclio_sdk.Context` whose worker id is that *string*,
calls `init_context`, then reads events as big-endian length + msgpack frames,
deserialised by the SDK (`Event.deserialize(..., kind=msgpack)`), and answers
each with `r` + the JSON of `Response.from_entrypoint_output`; a handler
exception answers 500 text/plain. SIGUSR1 is the processor's termination signal:
the platform's termination callback runs, then the worker exits.

The test (the "processor") listens on the event socket; a control socket is not
needed by anything a handler does here and is left out.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import struct
import sys
import traceback
from typing import Any

import msgpack
import nuclio_sdk
import nuclio_sdk.json_encoder


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--handler", required=True)
    ap.add_argument("--event-socket-path", required=True)
    ap.add_argument("--platform-kind", default="kube")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--worker-id")
    ap.add_argument("--trigger-kind")
    ap.add_argument("--trigger-name")
    args = ap.parse_args()

    logger = nuclio_sdk.Logger(logging.INFO)
    logger.set_handler("default", sys.stdout, nuclio_sdk.logger.JSONFormatter())
    module_name, entry_name = args.handler.split(":")
    module = __import__(module_name)
    entry = getattr(module, entry_name)
    platform = nuclio_sdk.Platform(args.platform_kind, namespace=args.namespace)
    context = nuclio_sdk.Context(
        logger,
        platform,
        args.worker_id,
        nuclio_sdk.TriggerInfo(args.trigger_kind, args.trigger_name),
    )
    init = getattr(module, "init_context", None)
    if init is not None:
        init(context)

    def terminate(*_: Any) -> None:
        platform._on_signal(callback_type="termination")
        raise SystemExit(0)

    signal.signal(signal.SIGUSR1, terminate)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args.event_socket_path)
    rfile = sock.makefile("rb")
    sock.sendall(b"s\n")  # ready, as the wrapper tells the processor
    encoder = nuclio_sdk.json_encoder.Encoder()
    while True:
        head = rfile.read(4)
        if len(head) != 4:
            return 0  # the processor went away
        (length,) = struct.unpack(">i", head)
        message = msgpack.unpackb(rfile.read(length), raw=False)
        event = nuclio_sdk.Event.deserialize(
            message, kind=nuclio_sdk.event.EventDeserializerKinds.msgpack
        )
        try:
            output = entry(context, event)
            response = encoder.encode(
                nuclio_sdk.Response.from_entrypoint_output(encoder.encode, output)
            )
        except Exception as exc:
            response = encoder.encode(
                {
                    "body": f'Exception caught in handler - "{exc}": {traceback.format_exc()}',
                    "body_encoding": "text",
                    "content_type": "text/plain",
                    "status_code": 500,
                }
            )
        sock.sendall(b"r" + response.encode() + b"\n")


if __name__ == "__main__":
    sys.exit(main())
