"""Sessions: publishers and viewers as WebRTC peer connections, and the registry of live streams."""
