"""Token routes (admin): create (the plain token is returned once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from service import crud
from service.api.auth import Admin
from service.api.deps import ReadSession, WriteSession
from service.api.schemas import IdPath, TokenRequest
from service.models import ApiTokenCreated, ApiTokenPublic, ApiTokensPublic

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=ApiTokenCreated)
def create_token(token_in: TokenRequest, _: Admin, session: WriteSession) -> ApiTokenCreated:
    """Create a token; the response is the only place the plain token ever appears."""
    plain, row = crud.create_token(
        session=session, name=token_in.name, scopes=token_in.scopes, expires_at=token_in.expires_at
    )
    return ApiTokenCreated.model_validate(row, update={"token": plain})


@router.get("", response_model=ApiTokensPublic)
def list_tokens(_: Admin, session: ReadSession) -> ApiTokensPublic:
    """List all tokens (revoked and expired ones too); never their secrets."""
    rows = crud.list_tokens(session=session)
    return ApiTokensPublic(data=[ApiTokenPublic.model_validate(r) for r in rows], count=len(rows))


@router.delete("/{token_id}", response_model=ApiTokenPublic)
def revoke_token(token_id: IdPath, _: Admin, session: WriteSession) -> ApiTokenPublic:
    """Revoke a token; it stops authenticating at once."""
    return ApiTokenPublic.model_validate(crud.revoke_token(session=session, token_id=token_id))
