"""The local web dashboard: FastAPI app, WebSocket fan-out and static pages."""
