"""STT errors: the shared VoxMesh service errors (see voxmesh.errors)."""

from voxmesh.errors import InvalidArgument, ResourceExhausted, Unavailable
from voxmesh.errors import ServiceError as SttError

__all__ = ["InvalidArgument", "ResourceExhausted", "SttError", "Unavailable"]
