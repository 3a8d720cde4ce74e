"""The dialogue service (voxmesh.v1.Dialogue): agents, history and an OpenAI-compatible upstream."""
