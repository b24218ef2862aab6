"""An OpenLineage receiver on a loopback port (it records every event POSTed to /api/v1/lineage, as Marquez
takes them), and a check of an event against the OpenLineage model openlineage-python generates from the
specification's JSON schema (its ``generated`` classes: one attrs class per schema definition and facet)."""

from __future__ import annotations

import inspect
import json
import sys
import threading
import types
import typing
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attr


class LineageReceiver:
    """``with LineageReceiver() as receiver``: ``receiver.url`` for OPENLINEAGE_URL, ``receiver.events``."""

    def __init__(self):
        self.events: list[dict] = []
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                events.append({"path": self.path, "event": json.loads(body)})
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "LineageReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def facet_classes() -> dict[str, type]:
    """{schema URL: facet class} of every facet the client generates from the specification."""
    from openlineage.client import facet_v2  # noqa: F401 - imports every generated facet module
    from openlineage.client.generated.base import BaseFacet

    found = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("openlineage.client.generated."):
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseFacet) and cls.__module__ == name:
                    found[cls._get_schema()] = cls
    return found


def check_event(raw: dict):
    """``raw`` built into the client's RunEvent (every object through its generated class: required fields
    present, no field the specification does not define, each facet the class its ``_schemaURL`` names, the
    validators run: UUID run id, ISO time), and the client's serialization of that is ``raw`` again."""
    from openlineage.client.event_v2 import RunEvent
    from openlineage.client.serde import Serde

    event = build(RunEvent, raw, "event", facet_classes())
    assert Serde.to_dict(event) == raw, "the event does not survive the client's own model"
    return event


def build(kind, raw, where: str, facets: dict[str, type]):
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if raw is None:
            return None
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return build(kind, raw, where, facets)
    if origin is list:
        assert isinstance(raw, list), f"{where}: not a list"
        return [build(typing.get_args(kind)[0], item, f"{where}[{i}]", facets) for i, item in enumerate(raw)]
    if origin is dict:
        assert isinstance(raw, dict), f"{where}: not an object"
        return {key: build(typing.get_args(kind)[1], value, f"{where}.{key}", facets) for key, value in raw.items()}
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(raw)
    if isinstance(kind, type) and attr.has(kind):
        return build_object(kind, raw, where, facets)
    if kind is typing.Any:
        return raw
    assert isinstance(raw, kind), f"{where}: {raw!r} is not {kind.__name__}"
    return raw


def build_object(kind, raw, where, facets):
    from openlineage.client.generated.base import BaseFacet

    assert isinstance(raw, dict), f"{where}: not an object"
    if issubclass(kind, BaseFacet):
        assert raw.get("_schemaURL") in facets, f"{where}: facet schema {raw.get('_schemaURL')} is not the specification's"
        kind = facets[raw["_schemaURL"]]
    hints = typing.get_type_hints(kind)
    fields = attr.fields(kind)
    unknown = set(raw) - {f.name for f in fields}
    assert not unknown, f"{where}: {sorted(unknown)} not in {kind.__name__}"
    arguments = {}
    for field in fields:
        if field.name not in raw:
            assert field.default is not attr.NOTHING, f"{where}: required field {field.name} missing"
        elif field.init:
            arguments[field.alias] = build(hints[field.name], raw[field.name], f"{where}.{field.name}", facets)
    return kind(**arguments)
