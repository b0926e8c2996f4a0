"""Live progress for browsers and clients: the WebSocket consumer, the SSE stream and the REST
progress endpoints, with their authentication and connection limits."""
