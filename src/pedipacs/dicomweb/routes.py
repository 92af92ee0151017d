"""The DICOMweb door assembled: one router for the PS3.18 root, one for WADO-URI; each part
requires its permission (search, retrieve, store)."""

from __future__ import annotations

from fastapi import APIRouter

from pedipacs.dicomweb import qido, stow, wado, wado_uri
from pedipacs.http.auth import requires
from pedipacs.security.permissions import Permission

DICOMWEB_ROOT = "/dicomweb"


def dicomweb_router() -> APIRouter:
    """QIDO-RS, WADO-RS and STOW-RS, to be mounted at `DICOMWEB_ROOT`."""
    router = APIRouter(tags=["DICOMweb"])
    router.include_router(qido.router, dependencies=[requires(Permission.SEARCH)])
    router.include_router(stow.router, dependencies=[requires(Permission.STORE)])
    router.include_router(wado.router, dependencies=[requires(Permission.RETRIEVE)])
    return router


def wado_uri_router() -> APIRouter:
    """WADO-URI at `/wado`."""
    router = APIRouter(tags=["DICOMweb"])
    router.include_router(wado_uri.router, dependencies=[requires(Permission.RETRIEVE)])
    return router
