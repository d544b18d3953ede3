"""Liveness and readiness probes; these two need no API key."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from taskbox.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Answer 200 while the API process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> JSONResponse:
    """Answer 200 when the store and Redis both answer, else 503 naming the one that did not."""
    checks: dict[str, str] = {}
    for name, ping in (("store", services.store.ping), ("redis", services.queue.ping)):
        try:
            ping()
            checks[name] = "ok"
        except Exception as err:  # any failure means not ready
            checks[name] = f"unreachable: {type(err).__name__}: {err}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        status_code=200 if ready else 503,
        content={"status": "ready" if ready else "not ready", **checks},
    )
