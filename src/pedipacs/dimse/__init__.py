"""The DICOM door: thin pynetdicom handlers over the services."""
