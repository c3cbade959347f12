"""Analysis: what the relay learns from the picture itself, decoding as little as it can."""
