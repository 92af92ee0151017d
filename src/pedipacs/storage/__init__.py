"""Bytes only: blob stores know nothing of DICOM, HTTP or the database."""
