"""Sending stored instances over C-GET/C-MOVE: the stored bytes when the peer accepts their
transfer syntax, otherwise a conversion to one it accepted."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.presentation import PresentationContext, build_context

from pedipacs.archive.retrieve import RetrieveService
from pedipacs.dicom.transfer_syntax import FALLBACK_ORDER, transcode
from pedipacs.errors import TranscodingError
from pedipacs.model.records import InstanceLocation

MAX_CONTEXTS = 128


def accepted_syntaxes(contexts: Iterable[PresentationContext], sop_class: str) -> list[str]:
    return [
        str(cx.transfer_syntax[0])
        for cx in contexts
        if cx.abstract_syntax == sop_class and cx.transfer_syntax
    ]


def dataset_for_peer(
    location: InstanceLocation, retrieve: RetrieveService, accepted: list[str]
) -> Dataset:
    """The instance ready to send: unchanged if its syntax is accepted, else converted."""
    with retrieve.local_file(location) as path:
        dataset = dcmread(path)
    if location.transfer_syntax_uid in accepted:
        return dataset
    for candidate in (*FALLBACK_ORDER, *accepted):
        if candidate in accepted:
            return transcode(dataset, candidate)
    raise TranscodingError(f"the peer accepted no transfer syntax for {location.sop_class_uid}")


def contexts_for(locations: Iterable[InstanceLocation]) -> list[PresentationContext]:
    """Contexts to propose to a C-MOVE destination: the stored syntax alone first (so a peer
    that accepts it gets the bytes unchanged), then the uncompressed fallbacks."""
    contexts: list[PresentationContext] = []
    seen: set[tuple[str, str]] = set()
    fallback = [str(FALLBACK_ORDER[0]), str(FALLBACK_ORDER[1])]
    for location in locations:
        for syntaxes in ([location.transfer_syntax_uid], fallback):
            key = (location.sop_class_uid, syntaxes[0])
            if key in seen or len(contexts) >= MAX_CONTEXTS:
                continue
            seen.add(key)
            contexts.append(build_context(location.sop_class_uid, syntaxes))
    return contexts


def unsendable_dataset(location: InstanceLocation) -> Dataset:
    """A stand-in with no acceptable context: pynetdicom counts its C-STORE as failed."""
    dataset = Dataset()
    dataset.SOPClassUID = location.sop_class_uid
    dataset.SOPInstanceUID = location.sop_instance_uid
    return dataset


def nodelay_handler(event: Any) -> None:
    """Nagle's algorithm delays every DIMSE round trip ~40 ms; turn it off on each socket."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
