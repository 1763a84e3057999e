"""flickd's OpenAPI description (tools/flickd/openapi.json) as a checker of responses: does a
status and body fit what the document says of that path and method? Shared by the flickd tests.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema

SPEC_FILE = Path(__file__).resolve().parents[2] / "tools" / "flickd" / "openapi.json"
SPEC = json.loads(SPEC_FILE.read_bytes())
ERROR_RESPONSE = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_VALIDATORS: dict[int, jsonschema.Draft4Validator] = {}  # by the id of a schema in SPEC (they live as long)


def spec_ref(ref: str) -> dict:
    """The object a local $ref ("#/components/schemas/Machine") names; KeyError if none."""
    if not ref.startswith("#/"):
        raise KeyError(f"not a local reference: {ref}")
    node = SPEC
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def json_schema(node, seen: tuple = ()):
    """An OpenAPI 3.0 schema as a JSON Schema (draft 4): $refs inlined, `nullable` as a null type."""
    if isinstance(node, list):
        return [json_schema(x, seen) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        if node["$ref"] in seen:
            raise ValueError(f"recursive schema: {node['$ref']}")
        return json_schema(spec_ref(node["$ref"]), seen + (node["$ref"],))
    out = {k: json_schema(v, seen) if k not in ("enum", "required") else copy.deepcopy(v) for k, v in node.items()}
    if out.pop("nullable", False):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"].append(None)
    return out


def _validator(schema: dict) -> jsonschema.Draft4Validator:
    v = _VALIDATORS.get(id(schema))
    if v is None:
        v = _VALIDATORS[id(schema)] = jsonschema.Draft4Validator(json_schema(schema))
    return v


def spec_operation(method: str, path: str):
    """(path template, operation) documenting a request; (template, None) for an undocumented
    method on a documented path; (None, None) for a path the document does not have."""
    segs = [s for s in path.split("?")[0].split("/") if s]
    best = None
    for template in SPEC["paths"]:
        want = [s for s in template.split("/") if s]
        if len(want) == len(segs) and all(w.startswith("{") or w == s for w, s in zip(want, segs)):
            literal = sum(not w.startswith("{") for w in want)
            if best is None or literal > best[0]:
                best = (literal, template)
    if best is None:
        return None, None
    return best[1], SPEC["paths"][best[1]].get(method.lower())


def response_problems(method: str, path: str, status: int, content_type: str, body: bytes,
                      operations: set | None = None) -> list[str]:
    """What is wrong with a response by the document: [] when it validates. The operationId
    of a documented request goes into `operations`."""
    where = f"{method} {path} -> {status}"
    template, op = spec_operation(method, path)
    if op is None:
        # Outside the document: only "no such route" (or the token check before it).
        allowed = {401, 404} if template is None else {401, 405}
        if status not in allowed:
            return [f"{where}: {'undocumented path' if template is None else 'undocumented method'}"]
        response = ERROR_RESPONSE
    else:
        response = op["responses"].get(str(status))
        if response is None:
            return [f"{where}: status not documented for {method} {template}"]
        if "$ref" in response:
            response = spec_ref(response["$ref"])
        if operations is not None:
            operations.add(op["operationId"])
    content = response.get("content")
    if not content:
        return [] if not body else [f"{where}: a body where the document has none: {body[:200]!r}"]
    if not body:
        return [f"{where}: no body where the document has one"]
    if content_type.split(";")[0].strip() not in content:
        return [f"{where}: Content-Type {content_type!r}, documented {list(content)}"]
    try:
        value = json.loads(body)
    except ValueError as e:
        return [f"{where}: not JSON ({e}): {body[:200]!r}"]
    validator = _validator(content["application/json"]["schema"])
    return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in validator.iter_errors(value)]
