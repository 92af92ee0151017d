"""The HL7 v2 door: MLLP listener, message parsing, ADT and order handlers, acknowledgements."""
