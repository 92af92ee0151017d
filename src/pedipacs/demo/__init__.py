"""Deterministic synthetic paediatric DICOM data for demos, tests and benchmarks."""
