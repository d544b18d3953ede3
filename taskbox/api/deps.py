"""What routes get injected: the store, the queue, the registry, the settings."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from taskbox.api.submitter import Submitter
from taskbox.services import Services


# Dependencies are coroutines, though nothing in them blocks: FastAPI would run a
# plain function in its thread pool, a hand-off that costs more than the work.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_submitter(request: Request) -> Submitter:
    submitter: Submitter = request.app.state.submitter
    return submitter


SubmitterDep = Annotated[Submitter, Depends(get_submitter)]


async def require_api_key(request: Request) -> None:
    """Refuse a request without `Authorization: Bearer KEY` when TASKBOX_API_KEY is set."""
    expected = (await get_services(request)).settings.api_key
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong API key; send 'Authorization: Bearer <TASKBOX_API_KEY>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
