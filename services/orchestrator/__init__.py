"""The session engine: owns each conversation and fans out to STT, LLM and TTS."""
