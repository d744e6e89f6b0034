"""The command catalogue against the public OpenAPI document (vendored in ``tests/data/volteras/openapi.json``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_volteras.catalogue import (
    CATALOGUE,
    CREATABLE_COMMANDS,
    VehicleCommand,
    build_payload,
    get_command_spec,
)
from airflow_provider_volteras.exceptions import VolterasInvalidInputError

OPENAPI = Path(__file__).resolve().parent / "data" / "volteras" / "openapi.json"
COMMAND_PATH = re.compile(r"^/v1/vehicles/\{vehicle_id\}/command-execution:([a-z0-9-]+)$")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    if not OPENAPI.is_file():
        pytest.fail(f"{OPENAPI} is missing: it is vendored in tests/data/volteras (see its README)", pytrace=False)
    return json.loads(OPENAPI.read_text())


def schema(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def command_paths(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """slug -> the POST operation of ``/v1/vehicles/{vehicle_id}/command-execution:<slug>``."""
    found = {}
    for path, item in doc["paths"].items():
        match = COMMAND_PATH.match(path)
        if match:
            assert set(item) == {"post"}, path
            found[match.group(1)] = item["post"]
    return found


def test_catalogue_has_every_enum_value(doc):
    enum = doc["components"]["schemas"]["VehicleCommandEnum"]["enum"]
    assert len(enum) == 21
    assert [c.value for c in VehicleCommand] == enum
    assert set(CATALOGUE) == set(VehicleCommand)
    for command, spec in CATALOGUE.items():
        assert spec.command is command and spec.description


def test_creatable_commands_are_exactly_the_documented_actions(doc):
    documented = command_paths(doc)
    assert len(documented) == 13
    slugs = {spec.slug for spec in CATALOGUE.values() if spec.creatable}
    assert slugs == set(documented)
    assert len(CREATABLE_COMMANDS) == 13
    for command in CREATABLE_COMMANDS:
        spec = CATALOGUE[command]
        assert spec.path_action == f"command-execution:{spec.slug}"
        assert spec.slug.upper().replace("-", "_") == command.value  # slug and enum value name one command
        assert spec.operator_name and spec.operator_name.endswith("Operator")


def test_not_creatable_commands_have_no_endpoint(doc):
    documented = set(command_paths(doc))
    for command, spec in CATALOGUE.items():
        if spec.creatable:
            continue
        assert command.value.lower().replace("_", "-") not in documented
        assert spec.operator_name is None
        with pytest.raises(VolterasInvalidInputError, match="no endpoint to create it"):
            spec.path_action  # noqa: B018
        with pytest.raises(VolterasInvalidInputError, match="no endpoint to create it"):
            get_command_spec(command)
        assert get_command_spec(command, creatable=False) is spec


def test_payload_fields_match_the_document(doc):
    for slug, operation in command_paths(doc).items():
        spec = next(s for s in CATALOGUE.values() if s.slug == slug)
        body = operation.get("requestBody")
        if body is None:
            assert spec.payload == (), slug
            assert build_payload(spec.command, None) is None
            continue
        assert body.get("required") is True
        payload = schema(doc, body["content"]["application/json"]["schema"]["$ref"])
        properties = payload["properties"]
        assert {f.api_name for f in spec.payload} == set(properties), slug
        assert set(payload.get("required", [])) == set(properties), slug  # the provider requires every field
        for f in spec.payload:
            assert properties[f.api_name]["type"] == ("integer" if f.integer else "number"), (slug, f.api_name)
            # Only bounds of physical sense: the document has none, and the API refuses what a vehicle can't do.
            assert ("minimum" in properties[f.api_name]) is False
            if f.minimum is not None and f.maximum is not None:
                assert (f.minimum, f.maximum, f.unit) == (0, 100, "%")


def test_payload_schemas_are_the_named_ones(doc):
    ops = command_paths(doc)
    refs = {
        slug: op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for slug, op in ops.items()
        if op.get("requestBody")
    }
    assert refs == {
        "set-temperature": "#/components/schemas/SetTemperaturePayload",
        "set-charge-limit": "#/components/schemas/SetChargeLimitPayload",
    }
    temperature = CATALOGUE[VehicleCommand.SET_TEMPERATURE].payload
    assert [(f.api_name, f.param_name) for f in temperature] == [
        ("driverTemperature", "driver_temperature"),
        ("passengerTemperature", "passenger_temperature"),
    ]
    assert [(f.api_name, f.integer) for f in CATALOGUE[VehicleCommand.SET_CHARGE_LIMIT].payload] == [("limit", True)]


def test_build_payload_normalises_numbers():
    assert build_payload("SET_CHARGE_LIMIT", {"limit": 80.0}) == {"limit": 80}
    assert type(build_payload("SET_CHARGE_LIMIT", {"limit": 80.0})["limit"]) is int
    body = build_payload("set_temperature", {"driverTemperature": 20, "passengerTemperature": 21.5})
    assert body == {"driverTemperature": 20.0, "passengerTemperature": 21.5}
    assert all(type(v) is float for v in body.values())
    assert build_payload(VehicleCommand.CLIMATE_OFF, {}) is None


@pytest.mark.parametrize("arguments", [[("limit", 80)], "limit", 80, {1: 2, "x": 3}])
def test_build_payload_refuses_non_mappings_cleanly(arguments):
    with pytest.raises(VolterasInvalidInputError, match="SET_CHARGE_LIMIT"):
        build_payload("SET_CHARGE_LIMIT", arguments)


def test_every_creatable_command_has_its_named_operator_written_out():
    """The named operators are explicit classes (greppable), one per creatable command, named as the catalogue says."""
    import inspect

    from airflow_provider_volteras.operators import commands

    assert set(commands.OPERATORS) == set(CREATABLE_COMMANDS)
    source = inspect.getsource(commands)
    for command, cls in commands.OPERATORS.items():
        assert cls.__name__ == CATALOGUE[command].operator_name
        assert cls.spec.command is command
        assert f"class {cls.__name__}(" in source
