"""The domain's exception tree.

Services raise these; each door (DIMSE, HTTP, HL7) translates them once, in its own table.
Subclasses are named after the rule that was broken.
"""


class PedipacsError(Exception):
    """Base of every error pedipacs raises on purpose."""


class InvalidInput(PedipacsError):
    """The caller sent something that breaks the standard or our rules."""


class NotDicomError(InvalidInput):
    """The payload is not a readable DICOM object."""


class MissingAttributeError(InvalidInput):
    """A required attribute is absent or empty."""


class InvalidUidError(InvalidInput):
    """A UID breaks PS3.5 section 9.1."""


class InconsistentIdentityError(InvalidInput):
    """The object contradicts what is already known (series under another study, ...)."""


class StudyMismatchError(InvalidInput):
    """The object belongs to another study than the one the request named (STOW-RS URL)."""


class ObjectTooLargeError(InvalidInput):
    """The object is larger than the configured maximum."""


class DecodedSizeTooLargeError(InvalidInput):
    """Decoding the object would take more memory than the limit: its header or codestream
    states a huge image (a decompression bomb), or a rendering was asked at a huge size."""


class UnsafeArchiveError(InvalidInput):
    """A zip file or one of its entries is refused: too many entries, a suspicious compression
    ratio, a size its header misstates, an unsafe name, or a zip inside a zip."""


class InvalidQueryError(InvalidInput):
    """A query identifier or its matching keys are invalid."""


class QueryTooBroadError(InvalidInput):
    """A query that cannot be paged matches more entities than one answer may hold."""


class UnsupportedActionTypeError(InvalidInput):
    """Storage Commitment knows one action, Request Storage Commitment (Action Type ID 1)."""


class NotFound(PedipacsError):
    """The thing asked for does not exist."""


class FrameNotFoundError(NotFound):
    """A frame number outside 1..NumberOfFrames, or an object without pixel data."""


class BulkDataNotFoundError(NotFound):
    """The object has no bulk data element at the requested tag path."""


class UnknownPeerError(NotFound):
    """No peer with that name or AE title is registered."""


class UnknownMoveDestinationError(UnknownPeerError):
    """A C-MOVE named a destination AE that is not in the peer registry."""


class NotTheWellKnownInstanceError(NotFound):
    """A Storage Commitment N-ACTION named another SOP Instance than the well-known one."""


class Conflict(PedipacsError):
    """The request conflicts with the current state."""


class DuplicateInstanceRejected(Conflict):
    """The same SOP Instance UID arrived with different content and the policy is to reject."""


class PeerExistsError(Conflict):
    """A peer with that name already exists."""


class PermissionDenied(PedipacsError):
    """The caller may not do this."""


class UnknownCallingAeError(PermissionDenied):
    """An association from a calling AE title the peer registry does not know."""


class OperationNotPermittedError(PermissionDenied):
    """The peer registry does not grant this peer the operation it asked for."""


class PatientNotInCareError(PermissionDenied):
    """A referring clinician asked for a patient outside their care (break-the-glass opens it)."""


class StorageUnavailable(PedipacsError):
    """The blob store or the database cannot take the write now (disk full, I/O error)."""


class NotRenderableError(InvalidInput):
    """The object holds no image that can be rendered (an SR, a waveform, a PDF, ...)."""


class TranscodingError(PedipacsError):
    """The object cannot be converted to a transfer syntax the peer accepts."""


class TlsConfigurationError(InvalidInput):
    """A TLS certificate, private key or authority file is missing, unreadable, malformed or
    does not match its partner."""
