"""pydicom know-how shared by every door; no database, no protocol."""
