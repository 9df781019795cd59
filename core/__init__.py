"""kb's core: configuration, ingestion, retrieval and answers. Never prints, prompts or exits."""
