"""Task definitions and the payload check done at submission."""

from typing import Any

import pytest

from taskbox.errors import PayloadMismatch, UnknownTaskName
from taskbox.registry import Registry, TaskDef, task


def greet(name: str, times: int = 1, loud: bool = False) -> str:
    return name * times


def anything(**payload: Any) -> dict[str, Any]:
    return payload


def definition(fn: Any = greet) -> TaskDef:
    return TaskDef(name=fn.__name__, fn=fn)


def test_payload_fitting_the_signature_passes() -> None:
    definition().check_payload({"name": "ada", "times": 2})


def test_missing_argument_is_named() -> None:
    with pytest.raises(PayloadMismatch, match="'name'"):
        definition().check_payload({"times": 2})


def test_unexpected_argument_is_named_with_the_known_ones() -> None:
    with pytest.raises(PayloadMismatch, match=r"'colour'.*name, times, loud"):
        definition().check_payload({"name": "ada", "colour": "red"})


def test_wrong_type_is_named_by_argument() -> None:
    with pytest.raises(PayloadMismatch, match="times"):
        definition().check_payload({"name": "ada", "times": "many"})


def test_var_keyword_function_takes_any_payload() -> None:
    definition(anything).check_payload({"x": 1, "y": [1, 2]})


def test_unknown_name_lists_the_known_ones_and_the_setting() -> None:
    registry = Registry()
    registry.add(definition())

    with pytest.raises(UnknownTaskName) as err:
        registry.get("greeet")
    assert "greet" in str(err.value)
    assert "TASKBOX_TASK_MODULES" in str(err.value)


def test_async_function_is_recognised() -> None:
    async def later() -> None:
        return None

    assert definition(later).is_async
    assert not definition(greet).is_async


@pytest.mark.parametrize(
    "options",
    [{"max_retries": -1}, {"max_retries": 101}, {"timeout": 0}, {"timeout": 86401}],
)
def test_decorator_refuses_out_of_range_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        task("bad", **options)


def test_payload_is_checked_strictly_because_it_reaches_the_function_as_sent() -> None:
    def invoice(customer_id: int, amount: float) -> None:
        return None

    check = definition(invoice).check_payload
    check({"customer_id": 12, "amount": 9})  # an int is a fine float

    for payload in (
        {"customer_id": "12", "amount": 9.5},
        {"customer_id": True, "amount": 1.0},
    ):
        with pytest.raises(PayloadMismatch, match="customer_id"):
            check(payload)


def test_webhook_errors_leave_out_credentials_and_query() -> None:
    from taskbox.builtin_tasks import _redacted

    url = "https://admin:pw@hooks.example/path?token=secret#frag"

    assert _redacted(url) == "https://hooks.example/path"
