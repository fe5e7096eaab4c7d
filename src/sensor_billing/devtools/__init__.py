"""Developer tools: embedded servers and local stand-ins used by tests and demos."""
