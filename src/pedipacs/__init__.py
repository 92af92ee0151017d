"""pedipacs: an open-source PACS with the RIS functions a children's hospital needs."""

__version__ = "0.1.0"
