"""The browser-facing gateway: the web page and the WebSocket protocol v1 at ``/v1/realtime``.

Each WebSocket is relayed 1:1 onto one ``voxmesh.v1.Orchestrator/Session`` gRPC stream;
the gateway keeps no session state of its own.
"""
