"""TTS errors: the shared VoxMesh service errors (see voxmesh.errors)."""

from voxmesh.errors import Internal as SynthesisFailed
from voxmesh.errors import InvalidArgument, Unavailable
from voxmesh.errors import ServiceError as TtsError

__all__ = ["InvalidArgument", "SynthesisFailed", "TtsError", "Unavailable"]
