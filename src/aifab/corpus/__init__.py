"""RAG corpus management: load, normalise, chunk, embed and keep collections in sync with their sources."""
