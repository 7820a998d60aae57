"""HTTP on the shared port: health, the backend API and the WebSocket endpoint."""
