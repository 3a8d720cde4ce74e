"""Speech-to-text service (voxmesh.v1.SpeechToText): faster-whisper behind Silero VAD."""
