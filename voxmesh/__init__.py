"""VoxMesh shared library: configuration, logging, telemetry, audio and gRPC helpers.

Generated API stubs live in :mod:`voxmesh.v1` (see scripts/gen_protos.py).
"""

__version__ = "0.1.0"
