"""The FHIR R4 door (`/fhir/r4`): Patient, ServiceRequest, ImagingStudy and DiagnosticReport."""
