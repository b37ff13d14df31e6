#!/bin/sh
# Entrypoint of the one MySpinBot image: the gateway and every function run the
# same package, so the role is an argument rather than a separate image.
#
#   myspinbot-entrypoint gateway
#   myspinbot-entrypoint function NAME      (runs /app/functions/NAME/function.yaml)
#   myspinbot-entrypoint export             (MYSPINBOT_BASE_MODEL -> ONNX for Triton)
#
# FUNCTION_HTTP_PORT: port of the function's http trigger (only functions with one).
# DEBUGPY_PORT (set by the dev overlay) starts the process under debugpy.
# MYSPINBOT_TRITON_REPOSITORY: the model repository `export` writes (compose: /models).
# EXPORT_FORCE=1: export even when the repository is up to date.
set -eu

run_python() {
    if [ -n "${DEBUGPY_PORT:-}" ]; then
        exec python -m debugpy --listen "0.0.0.0:${DEBUGPY_PORT}" "$@"
    fi
    exec python "$@"
}

# Each replica needs its own stream-consumer name. Compose does not number the
# containers of a scaled service, so unless MYSPINBOT_REPLICA is set we derive a
# stable number from the container's hostname (its id): it survives a restart,
# and a different container gets a different consumer.
replica_index() {
    if [ -n "${MYSPINBOT_REPLICA:-}" ]; then
        echo "$MYSPINBOT_REPLICA"
        return
    fi
    python -c 'import socket, zlib; print(zlib.crc32(socket.gethostname().encode()) % 1000000)'
}

# `python -c` program: exit 0 if the repository $1 already holds an export of the
# configured base model made on this kind of device (fp16 on a GPU, fp32 on a CPU), after
# refreshing its committed configs and model code (the image may have new ones); exit 1
# if it must be exported. The checks are `myspinbot up`'s (myspinbot/triton/export_check.py).
EXPORT_IS_CURRENT='
import shutil, sys
from pathlib import Path
import torch
from myspinbot.models.loading import resolve_base_model
from myspinbot.settings import Settings
from myspinbot.triton import repository as repo
target, settings = Path(sys.argv[1]), Settings()
info = repo.read_export_info(target)
base = resolve_base_model(settings.base_model, settings.models_dir)
device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
if info is None or info.model_hash != base.model_hash or info.raw.get("exported_on") != device.type:
    sys.exit(1)
for model in repo.MODELS:
    shutil.copyfile(repo.CHECKOUT_REPOSITORY / model / "config.pbtxt", target / model / "config.pbtxt")
    shutil.copyfile(repo.model_code(), target / model / "1" / repo.MODEL_CODE)
print(f"{target} is up to date: {info.base_model} ({info.dtype}); configs and model code refreshed")
'

role="${1:-}"
case "$role" in
    gateway)
        run_python -m myspinbot gateway --host 0.0.0.0 --port "${GATEWAY_PORT:-8080}"
        ;;
    function)
        name="${2:?usage: myspinbot-entrypoint function NAME}"
        dir="${MYSPINBOT_FUNCTIONS_ROOT:-/app/functions}/$name"
        [ -f "$dir/function.yaml" ] || { echo "no function.yaml in $dir" >&2; exit 2; }
        set -- -m myspinbot function run "$dir" --replica "$(replica_index)"
        # Only functions with an http trigger get a port (the status function).
        if [ -n "${FUNCTION_HTTP_PORT:-}" ]; then
            set -- "$@" --http-port "$FUNCTION_HTTP_PORT"
        fi
        run_python "$@"
        ;;
    export)
        # One-shot (compose's `export` service, which Triton waits for). Exporting takes
        # minutes for SD 1.5, so an up-to-date repository is kept: a base model or device
        # change re-exports, a restart of the stack does not.
        repo="${MYSPINBOT_TRITON_REPOSITORY:?set MYSPINBOT_TRITON_REPOSITORY to the Triton model repository}"
        if [ "${EXPORT_FORCE:-0}" != 1 ] && python -c "$EXPORT_IS_CURRENT" "$repo"; then
            exit 0
        fi
        run_python -m myspinbot export --output "$repo"
        ;;
    *)
        echo "usage: myspinbot-entrypoint gateway | function NAME | export" >&2
        exit 2
        ;;
esac
