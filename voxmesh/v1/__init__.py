"""Generated gRPC stubs for voxmesh.v1 (scripts/gen_protos.py)."""
