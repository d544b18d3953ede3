"""Task definitions: the `@task` decorator, the registry, and the payload check."""

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ConfigDict, ValidationError, create_model

from taskbox.errors import PayloadMismatch, UnknownTaskName

DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_BACKOFF_BASE_S = 1.0
DEFAULT_BACKOFF_CAP_S = 3600.0

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class TaskDef:
    """What `@task` registers: the function and how it runs, keyed by task name."""

    name: str
    fn: Callable[..., Any]
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout_s: float = DEFAULT_TIMEOUT_S
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def check_payload(self, payload: dict[str, Any]) -> None:
        """Raise PayloadMismatch unless the payload fits the function's signature."""
        signature = _signature(self.fn)
        try:
            signature.bind(**payload)
        except TypeError as err:
            params = ", ".join(signature.parameters) or "none"
            raise PayloadMismatch(
                f"payload does not fit task '{self.name}': {err}; "
                f"its keyword arguments are: {params}"
            ) from err

        try:
            _payload_model(self.fn).model_validate(payload)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in err.errors()
            )
            raise PayloadMismatch(
                f"payload does not fit task '{self.name}': {problems}"
            ) from err


# Built once per function: making a signature or a pydantic model costs far more
# than checking a payload against it, and every submission checks one.
@functools.cache
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


@functools.cache
def _payload_model(fn: Callable[..., Any]) -> Any:
    """A pydantic model of the function's typed keyword arguments."""
    fields: dict[str, Any] = {}
    for param in _signature(fn).parameters.values():
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    # Strict, because the function gets the payload exactly as sent: a "12" that
    # lax checking would pass for an int would reach the function as a string.
    config = ConfigDict(
        extra="allow" if _takes_var_keyword(fn) else "ignore",
        arbitrary_types_allowed=True,
        strict=True,
    )
    return create_model(
        f"{fn.__name__}_payload",
        __config__=config,
        **fields,
    )


def _takes_var_keyword(fn: Callable[..., Any]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in _signature(fn).parameters.values())


class Registry:
    """Task definitions by name."""

    def __init__(self) -> None:
        self._defs: dict[str, TaskDef] = {}

    def add(self, definition: TaskDef) -> None:
        self._defs[definition.name] = definition

    def get(self, name: str) -> TaskDef:
        """Return the definition of a task name, or raise UnknownTaskName."""
        try:
            return self._defs[name]
        except KeyError:
            known = ", ".join(sorted(self._defs)) or "none"
            raise UnknownTaskName(
                f"unknown task name '{name}'; known: {known} "
                "(add its module to TASKBOX_TASK_MODULES)"
            ) from None

    def find(self, name: str) -> TaskDef | None:
        return self._defs.get(name)

    def names(self) -> list[str]:
        return sorted(self._defs)


default_registry = Registry()


def task(
    name: str | None = None,
    *,
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout: float = DEFAULT_TIMEOUT_S,
    backoff_base: float = DEFAULT_BACKOFF_BASE_S,
    backoff_cap: float = DEFAULT_BACKOFF_CAP_S,
) -> Callable[[F], F]:
    """Register a function as a task; its keyword arguments make the payload."""
    if not 0 <= max_retries <= 100:
        raise ValueError(f"max_retries must be within 0..100, not {max_retries}")
    if not 0 < timeout <= 86400:
        raise ValueError(f"timeout must be within (0, 86400] seconds, not {timeout}")
    if backoff_base < 0 or backoff_cap < backoff_base:
        raise ValueError("backoff_base must be >= 0 and backoff_cap >= backoff_base")

    def register(fn: F) -> F:
        definition = TaskDef(
            name=name or fn.__name__,
            fn=fn,
            max_retries=max_retries,
            timeout_s=timeout,
            backoff_base_s=backoff_base,
            backoff_cap_s=backoff_cap,
        )
        default_registry.add(definition)
        return fn

    return register


def load_registry(module_names: list[str]) -> Registry:
    """Import the built-in tasks and the modules named in TASKBOX_TASK_MODULES.

    The working directory is searched too, as `python -m` would, so a project's
    own modules are found when taskbox runs from the project's directory.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    importlib.import_module("taskbox.builtin_tasks")
    for module_name in module_names:
        try:
            importlib.import_module(module_name)
        except ImportError as err:
            raise ImportError(
                f"cannot import task module '{module_name}' named in "
                f"TASKBOX_TASK_MODULES ({err}); check the name and that it is on "
                "the Python path"
            ) from err
    return default_registry
