"""The index database: SQLAlchemy tables, the query compiler and migrations. No business rules."""
