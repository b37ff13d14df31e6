"""What the generate function can do right now, as the gateway enforces and the UI shows it.

Guided mode depends on an LLM server that may start after the function (or stop), so
its availability is checked again every REFRESH_S; the replica republishes the result
at its next registration.
"""

from __future__ import annotations

import threading
from typing import Any

from myspinbot.generation.pipeline import default_portrait
from myspinbot.script import guided_status
from myspinbot.settings import Settings

REFRESH_S = 10.0


def speech_status(settings: Settings) -> dict[str, Any]:
    """The configured speech engine, built now so a bad configuration (an unknown engine,
    a missing or broken voice file) is found when the function starts, not by a job."""
    from myspinbot.speech import SpeechError, get_engine

    try:
        engine = get_engine(settings)
    except SpeechError as exc:
        return {"available": False, "engine": settings.tts_engine, "reason": str(exc)}
    voice = getattr(engine, "voice", None)
    name = getattr(voice, "name", voice)  # a Piper voice's name, a flite voice's own
    return {"available": True, "engine": engine.name, **({"voice": name} if name else {})}


def generate_capabilities(settings: Settings) -> dict[str, Any]:
    guided, reason = guided_status(settings)
    speech = speech_status(settings)
    render: dict[str, Any] = {"available": True}
    if not settings.triton_url:
        render = {"available": False, "reason": "No Triton server is configured."}
    return {
        "generate": {
            "available": True,
            "modes": {
                "direct": {"available": True},
                "guided": {"available": guided, **({"reason": reason} if reason else {})},
            },
            "portraits": {
                "photo": {"available": True},
                "upload": {"available": True},
                "render": render,
            },
            # Text to speech; an uploaded narration recording needs no engine.
            "speech": speech,
            **(
                {"note": f"speech is unavailable: {speech['reason']}"}
                if not speech["available"]
                else {}
            ),
            "defaultPortrait": default_portrait(settings),
            "narrationMaxSeconds": settings.narration_max_seconds,
        }
    }


def keep_fresh(user_data: Any, settings: Settings) -> threading.Thread | None:
    """Recompute `user_data.capabilities` every REFRESH_S in a daemon thread.

    Nothing to watch without an LLM configured: the answer cannot change then.
    """
    if not settings.ollama_url:
        return None

    def refresh() -> None:
        tick = threading.Event()  # never set: the daemon thread ends with its process
        while not tick.wait(REFRESH_S):
            user_data.capabilities = generate_capabilities(settings)

    thread = threading.Thread(target=refresh, name="generate-capabilities", daemon=True)
    thread.start()
    return thread
