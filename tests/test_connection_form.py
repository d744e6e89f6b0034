"""The connection form as Airflow 3.3's API server hands it to the UI: no extra is marked required.

Airflow's React form (``FlexibleForm``) puts a required "*" on a field whose schema has a ``type`` that is
not a list holding ``"null"``; every Volteras extra is optional, so every one must admit null.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_volteras._core.extras import STRING_EXTRAS


def served_fields() -> dict[str, Any]:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "volteras"]
    assert meta.extra_fields
    return dict(meta.extra_fields)


def required_in_the_form(schema: dict[str, Any]) -> bool:
    """The UI's rule (Airflow 3.3.2 ``ui/dist``: ``!!type && (!Array.isArray(type) || !type.includes("null"))``)."""
    kind = schema.get("type")
    return bool(kind) and (not isinstance(kind, list) or "null" not in kind)


def test_no_extra_is_required_and_each_keeps_its_kind_of_field():
    fields = served_fields()
    required = sorted(name for name, spec in fields.items() if required_in_the_form(spec["schema"]))
    assert required == []
    kinds = {name: [t for t in spec["schema"]["type"] if t != "null"] for name, spec in fields.items()}
    # The form picks the widget from the first non-null type: numbers stay number fields, flags switches.
    assert {name for name, kind in kinds.items() if kind == ["boolean"]} == {
        "allow_insecure_http",
        "verify_ssl",
        "shared_cache",
    }
    assert all(len(kind) == 1 for kind in kinds.values()), kinds
    # Each starts at its default, so an untouched form saves no null.
    assert all(spec["value"] is not None for spec in fields.values())


def test_a_text_extra_says_one_thing_about_being_empty():
    fields = served_fields()
    for name in STRING_EXTRAS:
        assert "Empty: not used" not in fields[name]["description"], name
    cache_dir = fields["shared_cache_dir"]["description"]
    assert cache_dir.count("Empty:") == 1 and "~/.cache/airflow-provider-volteras" in cache_dir.split("Empty:")[1]
    assert "default" not in cache_dir.lower()
