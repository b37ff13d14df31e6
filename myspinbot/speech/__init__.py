"""Text to speech: the engine interface, the built-in espeak-ng engine, and engine choice."""

from myspinbot.speech.engine import SpeechEngine, get_engine
from myspinbot.speech.espeak import EspeakEngine
from myspinbot.speech.models import PhonemeTiming, Speech, SpeechError, WordTiming

__all__ = [
    "EspeakEngine",
    "PhonemeTiming",
    "Speech",
    "SpeechEngine",
    "SpeechError",
    "WordTiming",
    "get_engine",
]
