"""Sending stored instances over C-GET/C-MOVE: the stored bytes when the peer accepts their
transfer syntax, otherwise a conversion to one it accepted."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable
from pathlib import Path
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


class StoredFile(Dataset):
    """What a C-GET/C-MOVE handler yields for an instance sent unchanged.

    pynetdicom's retrieve loops only take Datasets and would re-encode them; this stand-in
    carries the stored file's path, and `send_stored_files_unchanged` makes the association
    stream that file's dataset bytes as they are on disk.
    """

    def __init__(self, location: InstanceLocation, path: Path) -> None:
        super().__init__()
        self.SOPClassUID = location.sop_class_uid
        self.SOPInstanceUID = location.sop_instance_uid
        self.stored_path = path


def send_stored_files_unchanged(assoc: Any) -> None:
    """Route StoredFile stand-ins through pynetdicom's file-streaming C-STORE on `assoc`."""
    original = assoc.send_c_store
    is_requestor = bool(assoc.is_requestor)

    def send_c_store(dataset: Any, *args: Any, **kwargs: Any) -> Any:
        if is_requestor:
            pause_reactor(assoc)
        if isinstance(dataset, StoredFile):
            return original(dataset.stored_path, *args, **kwargs)
        return original(dataset, *args, **kwargs)

    assoc.send_c_store = send_c_store


PAUSE_TIMEOUT = 5.0


def pause_reactor(assoc: Any) -> None:
    """Make sure the association's own reactor thread is parked before a C-STORE is sent.

    pynetdicom (3.0.4) pauses it by clearing a checkpoint and waiting for `_is_paused`, but that
    flag can still be True from the reactor's previous loop: the reactor then takes the
    C-STORE response off the queue itself ("unexpected C-STORE service message") and the
    sender waits for the network timeout. Here the flag is reset first, so only a reactor that
    has really reached the checkpoint sets it again.
    """
    assoc._reactor_checkpoint.clear()
    assoc._is_paused = False
    deadline = time.monotonic() + PAUSE_TIMEOUT
    while not assoc._is_paused and time.monotonic() < deadline and not assoc.is_released:
        if assoc.is_aborted:
            return
        time.sleep(0.0001)


def dataset_for_peer(
    location: InstanceLocation, retrieve: RetrieveService, accepted: list[str]
) -> Dataset:
    """The instance ready to send: the stored bytes if the peer accepted their syntax, else a
    conversion to one it accepted."""
    path = retrieve.local_path(location)
    if location.transfer_syntax_uid in accepted and path is not None:
        return StoredFile(location, path)
    with retrieve.local_file(location) as local:
        dataset = dcmread(local)
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
