"""Text-to-speech service (voxmesh.v1.TextToSpeech): hibari and Kokoro-82M ONNX, streamed."""
