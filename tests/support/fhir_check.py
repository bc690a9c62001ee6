"""Validate what the workers sent against FHIR R4 (4.0.1), for the integration tests.

usage: fhir_check.py FILE    FILE: a JSON array of FHIR resources (e.g. transaction Bundles)

Each resource is parsed by fhir.resources 6.1.0 (the R4 4.0.1 models: types, cardinalities,
required elements). Three rules that library does not enforce are checked here:
  - `code` elements with a required binding (status, severity ...) hold one of its codes;
  - every Coding with a code has a system that is an absolute URI, and not a DICOM coding
    scheme designator (SCT, LN, CPT4 ...): R4 Coding.system is "the identification of the
    code system", a URI;
  - every dateTime and instant with a time carries a zone (R4 dateTime: "If hours and minutes
    are specified, a time zone SHALL be populated"), checked on the text as sent.
Prints one JSON line {"fhir_version", "checked", "errors": [...]}; exit status 1 on errors.
"""
import datetime
import json
import re
import sys

import fhir.resources
from fhir.resources import construct_fhir_element, fhirtypes
from fhir.resources.coding import Coding
from fhir.resources.fhirabstractmodel import FHIRAbstractModel

# R4 dateTime (http://hl7.org/fhir/R4/datatypes.html#dateTime): a time requires a zone.
DATETIME = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
    r"(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
DESIGNATORS = {"SCT", "SRT", "LN", "CPT4", "C4", "C5", "DCM", "UCUM", "RADLEX", "RXNORM",
               "NCIT", "UMLS", "I10", "I9C", "I10P", "99SDM"}


def walk(obj, raw, path, errors):
    """`obj` the parsed element, `raw` the JSON it came from."""
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            walk(item, raw[i] if isinstance(raw, list) and i < len(raw) else None,
                 f"{path}[{i}]", errors)
        return
    if not isinstance(obj, FHIRAbstractModel):
        return
    if isinstance(obj, Coding) and obj.code is not None:
        system = obj.system
        if system is None:
            errors.append(f"{path}: code {obj.code!r} without a system")
        elif not URI.match(system) or system.upper() in DESIGNATORS:
            errors.append(f"{path}: system {system!r} is not a FHIR code system URI")
    for name, field in obj.__fields__.items():
        value = getattr(obj, name, None)
        if value is None:
            continue
        key = field.alias or name
        sub = raw.get(key) if isinstance(raw, dict) else None
        # Required-binding codes (status, severity ...): the models list them, not check them.
        allowed = field.field_info.extra.get("enum_values")
        if allowed:
            for v in value if isinstance(value, list) else [value]:
                if v not in allowed:
                    errors.append(f"{path}.{key}: {v!r} is not one of {allowed}")
        if field.type_ in (fhirtypes.DateTime, fhirtypes.Instant):
            texts = sub if isinstance(sub, list) else [sub]
            for t in texts:
                if not isinstance(t, str) or not DATETIME.fullmatch(t):
                    errors.append(f"{path}.{key}: {t!r} is not an R4 dateTime with a zone")
            if isinstance(value, datetime.datetime) and value.tzinfo is None:
                errors.append(f"{path}.{key}: {value} has a time without a zone")
        walk(value, sub, f"{path}.{key}", errors)


def main():
    resources = json.load(open(sys.argv[1]))
    errors = []
    version = getattr(fhir.resources, "__fhir_version__", "?")
    if version != "4.0.1":
        errors.append(f"fhir.resources {fhir.resources.__version__} models FHIR {version}, not R4 4.0.1")
    for n, r in enumerate(resources):
        label = f"#{n} {r.get('resourceType', '?')}"
        try:
            parsed = construct_fhir_element(r["resourceType"], r)
        except Exception as e:  # noqa: BLE001 - every validation failure is reported
            errors.append(f"{label}: {e}")
            continue
        walk(parsed, r, label, errors)
    print(json.dumps({"fhir_version": version, "checked": len(resources), "errors": errors}))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
