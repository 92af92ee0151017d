"""Build the Origin of a DIMSE request from its association."""

from __future__ import annotations

from typing import Any

from pedipacs.model.origin import Origin


def origin_from_event(event: Any) -> Origin:
    assoc = event.assoc
    return Origin.dimse(
        remote_ae=str(assoc.requestor.ae_title).strip(),
        called_ae=str(assoc.acceptor.ae_title).strip(),
        remote_host=str(assoc.requestor.address),
    )
