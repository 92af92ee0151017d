"""Test support code shared by the suites."""
