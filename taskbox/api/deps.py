"""What routes get injected: the store, the queue, the registry, the settings."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from taskbox.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require_api_key(request: Request) -> None:
    """Refuse a request without `Authorization: Bearer KEY` when TASKBOX_API_KEY is set."""
    expected = get_services(request).settings.api_key
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
