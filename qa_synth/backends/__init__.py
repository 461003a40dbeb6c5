"""Model backends: an OpenAI-compatible HTTP client and an in-process transformers model."""
