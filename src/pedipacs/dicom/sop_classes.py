"""Storage SOP classes, taken from the standard's UID registry as pydicom ships it (PS3.6 A).

Nobody types this list by hand: it is every registered SOP Class whose name ends in "Storage",
plus the ones pynetdicom knows, less the Media Storage Directory (a DICOMDIR, not an image).
"""

from __future__ import annotations

from pydicom._uid_dict import UID_dictionary

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def storage_sop_classes(extra: set[str] | None = None) -> list[str]:
    """Every storage SOP Class UID, sorted (retired ones included: old modalities send them)."""
    registered = {
        uid
        for uid, (name, uid_type, *_rest) in UID_dictionary.items()
        if uid_type == "SOP Class" and name.endswith("Storage")
    }
    return sorted((registered | (extra or set())) - {MEDIA_STORAGE_DIRECTORY})
