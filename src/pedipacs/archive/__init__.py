"""Services for images: ingest, query, retrieve."""
