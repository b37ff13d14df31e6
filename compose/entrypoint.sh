#!/bin/sh
# Entrypoint of the one MySpinBot image: the gateway and every function run the
# same package, so the role is an argument rather than a separate image.
#
#   myspinbot-entrypoint gateway
#   myspinbot-entrypoint function NAME      (runs /app/functions/NAME/function.yaml)
#
# FUNCTION_HTTP_PORT: port of the function's http trigger (only functions with one).
# DEBUGPY_PORT (set by the dev overlay) starts the process under debugpy.
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
    *)
        echo "usage: myspinbot-entrypoint gateway | function NAME" >&2
        exit 2
        ;;
esac
