# syntax=docker/dockerfile:1
#
# Triton for MySpinBot: NVIDIA's image plus what the models in triton-models/ import.
# Every model there is a python-backend model that runs an exported ONNX graph in ONNX
# Runtime (triton-models/unet/1/model.py), so the backend's Python needs onnxruntime-gpu,
# onnx and safetensors (a profile's LoRA is fused into the graph with them) and numpy 1.x.
#
# 24.10 is Triton 2.51.0 (the server in the nvidia-pytriton wheel that tests/infra runs),
# on Ubuntu 22.04 with Python 3.10, CUDA 12.6 and cuDNN 9.5.
#
# Build context: compose/ (docker-compose.yml); nothing is copied from it.

FROM nvcr.io/nvidia/tritonserver:24.10-py3

# onnxruntime-gpu 1.20 is PyPI's build for CUDA 12.x with cuDNN 9.x (the default since
# 1.19) and uses the CUDA libraries of this image; its CPU provider is the fallback where
# no GPU is visible. numpy stays 1.x, as the platform pins it (pyproject.toml).
RUN python3 -m pip install --no-cache-dir \
        "onnxruntime-gpu==1.20.1" \
        "onnx==1.17.0" \
        "safetensors==0.4.5" \
        "numpy==1.26.4" \
    && python3 -c "import numpy, onnx, onnxruntime, safetensors.numpy; \
assert numpy.__version__.startswith('1.'), numpy.__version__; \
assert 'CUDAExecutionProvider' in onnxruntime.get_available_providers()"

# Without its CUDA libraries ONNX Runtime does not fail: it warns and runs on the CPU,
# which for a UNet means minutes per image. Fail the build instead. (libcuda.so.1 is the
# driver's, mounted by the NVIDIA Container Toolkit when the container starts.)
RUN lib="$(python3 -c 'import onnxruntime, pathlib; print(pathlib.Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so")')" \
    && missing="$(ldd "$lib" | grep 'not found' | grep -v 'libcuda\.so' || true)" \
    && if [ -n "$missing" ]; then \
        echo "ONNX Runtime's CUDA provider cannot find: $missing" >&2; exit 1; \
    fi

# Mount point of the model repository (a named volume, see docker-compose.yml), owned by
# the MySpinBot image's user (uid 10001): Docker gives an empty named volume the owner of
# the directory it is first mounted on, and the `export` service writes it as that user.
RUN mkdir -p /models && chown 10001:10001 /models

# Triton does not need root: NVIDIA's image has the unprivileged `triton-server` user
# (uid 1000) for this. It reads the repository (read-only, world-readable files the
# export writes), writes LoRA overrides under /tmp and tensors in /dev/shm.
USER triton-server

# The server is ready once every model is loaded (SD 1.5's three sessions take minutes);
# docker-compose.yml's healthcheck is the same probe.
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=6 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=3)"]
