"""DICOMweb (PS3.18): QIDO-RS, WADO-RS, STOW-RS and WADO-URI, a thin door over the archive services."""
