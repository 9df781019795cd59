"""Vector stores behind LlamaIndex's BasePydanticVectorStore. A leaf: imports neither cli nor core."""
