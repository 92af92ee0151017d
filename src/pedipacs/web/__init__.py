"""The HTTP door: FastAPI application built around a Node."""
