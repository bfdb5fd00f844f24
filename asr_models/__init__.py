"""On-premises speech recognition (Vosk): models by language, recognizers, audio decoding."""

from asr_models.audio import AudioError, decode_audio, resample
from asr_models.models import Heard, ModelMissing, Recognizer, SpeechModels, model_problem

__all__ = [
    "AudioError",
    "Heard",
    "ModelMissing",
    "Recognizer",
    "SpeechModels",
    "decode_audio",
    "model_problem",
    "resample",
]
