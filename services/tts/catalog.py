"""The voices of every loaded engine: which engine speaks a voice, and the default."""

from __future__ import annotations

from dataclasses import dataclass

from services.tts.engines import EngineUnavailable, TtsEngine, VoiceInfo


@dataclass(frozen=True)
class Voice:
    """A voice and the engine that speaks it."""

    info: VoiceInfo
    engine: TtsEngine

    @property
    def id(self) -> str:
        """The voice id."""
        return self.info.id


class VoiceCatalog:
    """Voice ids are unique across engines, so a voice id alone picks the engine."""

    def __init__(self, engines: list[TtsEngine], default_voice: str = "") -> None:
        """Index the voices of loaded engines.

        Args:
            engines: Loaded engines, in configured order.
            default_voice: Voice id for clients that name none; empty = the first engine's.

        Raises:
            EngineUnavailable: Two engines share a voice id, or ``default_voice`` is unknown.
        """
        self.engines = engines
        self._voices: dict[str, Voice] = {}
        for engine in engines:
            for info in engine.voices():
                if info.id in self._voices:
                    other = self._voices[info.id].engine.name
                    raise EngineUnavailable(
                        f"voice {info.id!r} is offered by both {other} and {engine.name}"
                    )
                self._voices[info.id] = Voice(info, engine)
        self.default = default_voice or engines[0].default_voice
        if self.default not in self._voices:
            raise EngineUnavailable(
                f"VOXMESH_TTS_DEFAULT_VOICE: unknown voice {self.default!r} "
                f"(installed: {self.installed()})"
            )

    def get(self, voice_id: str) -> Voice | None:
        """The voice with this id, or None."""
        return self._voices.get(voice_id)

    def all(self) -> list[Voice]:
        """Every voice, grouped by engine in configured order."""
        return list(self._voices.values())

    def installed(self) -> str:
        """Comma-separated voice ids, for error messages."""
        return ", ".join(self._voices)
