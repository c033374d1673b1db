#!/usr/bin/env python3
"""Per-document validation time of Signpost's referral fixtures with two Python
validators, for comparison with Signpost's own `cargo bench --bench validation`:

* `jsonschema` (PyPI), with the same official FHIR R4 JSON Schema Signpost
  uses (`schemas/fhir/fhir.schema.json`, draft-06), applied the way Signpost
  applies it: the schema's root pointed at the document's own resource type
  (the published root is a `oneOf` over all 146 resource types; `--whole-schema`
  times that too). Every error is collected (`list(iter_errors(doc))`), as
  Signpost collects every issue.
* `fhir.resources` (PyPI), whose pydantic models parse and validate the
  ServiceRequest or Bundle (`Model.model_validate(dict)`, and
  `Model.model_validate_json(text)` for the "from JSON text" rows). 8.x has no
  R4 (4.0.1) package, only R5 (default), R4B (4.3.0) and STU3, so R4B is used:
  the resources in a referral did not change between R4 and R4B. The newest
  release with R4 itself, 6.4.0 (2022, pydantic 1), coerces wrong JSON types
  (it accepts `"status": 123` as "123"), so it fails the checks below.

Documents: the two the Rust bench uses (`--all` for every valid fixture).
Before timing, the script checks that each library accepts every document and
rejects it with `status` set to 123, and reports which of the structurally
invalid (400) fixtures in tests/fixtures/referrals/invalid/ each one rejects.

Reproduce, from the repository root:

    python3 -m venv /tmp/compare-venv
    /tmp/compare-venv/bin/pip install -r benches/compare/requirements.txt
    nice cargo bench --bench validation | tee /tmp/signpost-validation.txt
    nice /tmp/compare-venv/bin/python benches/compare/validate.py \\
        --signpost /tmp/signpost-validation.txt \\
        --json benches/results/compare-validation.json

`--signpost` reads divan's output so the table shows Signpost's medians next to
the Python figures (divan reports fastest/slowest/median/mean, not p99). Run the
two one after the other, not at the same time.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import jsonschema
import pydantic
from jsonschema import validators

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas/fhir/fhir.schema.json"
VALID = REPO / "tests/fixtures/referrals/valid"
INVALID = REPO / "tests/fixtures/referrals/invalid"

# The documents `benches/validation.rs` uses, and its bench names for them.
BENCH_DOCUMENTS = {
    "activelives-exercise.json": {
        "object": ("structure_only_bare_service_request", "bare_service_request"),
        "text": (None, "parse_and_validate_bare_service_request"),
    },
    "community-connect-debt-housing.bundle.json": {
        "object": ("structure_only_transaction_bundle", "transaction_bundle"),
    },
}


def fhir_models():
    """The fhir.resources model classes for R4 documents, and the release used."""
    import fhir.resources as root

    if root.__fhir_version__.startswith("4.0"):  # 6.4.0 and older: R4 at the root
        from fhir.resources.bundle import Bundle
        from fhir.resources.servicerequest import ServiceRequest

        release = root.__fhir_version__
    else:  # 7.x and 8.x: R5 at the root, R4B (4.3.0) as a sub-package
        from fhir.resources.R4B import __fhir_version__ as release
        from fhir.resources.R4B.bundle import Bundle
        from fhir.resources.R4B.servicerequest import ServiceRequest
    return {"ServiceRequest": ServiceRequest, "Bundle": Bundle}, release


MODELS, FHIR_RELEASE = fhir_models()
PYDANTIC_V2 = hasattr(MODELS["Bundle"], "model_validate")


def fhir_from_object(doc):
    model = MODELS[doc["resourceType"]]
    return model.model_validate(doc) if PYDANTIC_V2 else model.parse_obj(doc)


def fhir_from_text(resource_type, text):
    model = MODELS[resource_type]
    return model.model_validate_json(text) if PYDANTIC_V2 else model.parse_raw(text)


def fhir_errors(call, *args):
    """The number of errors fhir.resources reports (0: accepted)."""
    try:
        call(*args)
        return 0
    except pydantic.ValidationError as error:
        return len(error.errors())


class JsonSchema:
    """The FHIR schema compiled per resource type, as Signpost compiles it."""

    def __init__(self, schema):
        self.schema = schema
        self.cls = validators.validator_for(schema)  # draft-06, from "$schema"
        self.cls.check_schema(schema)
        self.by_type = {}

    def validator(self, resource_type):
        if resource_type not in self.by_type:
            root = dict(self.schema)
            root.pop("oneOf")
            root.pop("discriminator")
            root["$ref"] = f"#/definitions/{resource_type}"
            self.by_type[resource_type] = self.cls(root)
        return self.by_type[resource_type]

    def whole(self):
        return self.cls(self.schema)

    def errors(self, doc):
        return list(self.validator(doc["resourceType"]).iter_errors(doc))


def with_bad_status(doc):
    bad = copy.deepcopy(doc)
    target = bad["entry"][0]["resource"] if bad["resourceType"] == "Bundle" else bad
    assert target["resourceType"] == "ServiceRequest"
    target["status"] = 123
    return bad


def measure(call, arg, args):
    """Per-call wall time in ns: warm-up, then up to --iterations samples or
    --seconds, whichever comes first (at least --min-iterations)."""
    for _ in range(args.warmup):
        call(arg)
    gc.collect()
    samples = []
    deadline = time.perf_counter_ns() + int(args.seconds * 1e9)
    while len(samples) < args.iterations and (
        len(samples) < args.min_iterations or time.perf_counter_ns() < deadline
    ):
        start = time.perf_counter_ns()
        call(arg)
        samples.append(time.perf_counter_ns() - start)
    return summarise(samples)


def summarise(samples):
    ordered = sorted(samples)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    return {
        "samples": len(ordered),
        "median_us": statistics.median(ordered) / 1e3,
        "p99_us": p99 / 1e3,
        "min_us": ordered[0] / 1e3,
        "mean_us": statistics.fmean(ordered) / 1e3,
    }


UNITS = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}
TIME = r"([\d.]+)\s*(ns|µs|us|ms|s)\b"


def read_divan(path):
    """Medians and means (µs) from `cargo bench --bench validation` output."""
    rows = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = re.match(r"^[├╰└│─\s]*([a-z_]+)\s+(.*)$", line)
        if not match:
            continue
        times = re.findall(TIME, match.group(2))
        if len(times) >= 4:
            fastest, slowest, median, mean = (float(v) * UNITS[u] for v, u in times[:4])
            rows[match.group(1)] = {
                "fastest_us": fastest,
                "slowest_us": slowest,
                "median_us": median,
                "mean_us": mean,
            }
    return rows


def machine():
    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return ""

    model = next(
        (line.split(":", 1)[1].strip() for line in run("lscpu").splitlines() if line.startswith("Model name")),
        platform.processor(),
    )
    mem_kb = next(
        (int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")),
        0,
    )
    return {
        "cpu": model,
        "nproc": int(run("nproc").strip() or os.cpu_count() or 0),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions():
    names = ["jsonschema", "referencing", "fhir.resources", "fhir-core", "pydantic", "pydantic-core"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["fhir.resources release used"] = FHIR_RELEASE
    return out


def check_documents(js, docs):
    """Each library accepts each document and rejects it with status = 123."""
    checks = []
    for name, doc in docs.items():
        bad = with_bad_status(doc)
        row = {
            "document": name,
            "jsonschema_accepts_valid": not js.errors(doc),
            "jsonschema_rejects_status_123": bool(js.errors(bad)),
            "fhir_resources_accepts_valid": fhir_errors(fhir_from_object, doc) == 0,
            "fhir_resources_rejects_status_123": fhir_errors(fhir_from_object, bad) > 0,
        }
        checks.append(row)
        failed = [k for k, ok in row.items() if ok is False]
        if failed:
            sys.exit(f"{name}: check failed: {', '.join(failed)}; the comparison would be unfair")
    return checks


def check_invalid_fixtures(js):
    """Which structurally invalid (400) fixtures each library rejects; the 422
    ones break only the profile, which neither library knows."""
    cases = json.loads((INVALID / "cases.json").read_text())
    out = {"structural_400": {}, "profile_422_rejected": {"jsonschema": [], "fhir.resources": []}}
    for case in cases:
        doc = json.loads((INVALID / case["file"]).read_text())
        rejected = {
            "jsonschema": bool(js.errors(doc)),
            "fhir.resources": fhir_errors(fhir_from_object, doc) > 0,
        }
        if case["status"] == 400:
            out["structural_400"][case["file"]] = rejected
        else:
            for lib, yes in rejected.items():
                if yes:
                    out["profile_422_rejected"][lib].append(case["file"])
    return out


def fmt(us):
    if us is None:
        return "—"
    if us >= 1e6:
        return f"{us / 1e6:,.1f} s"
    if us >= 1000:
        return f"{us / 1000:,.1f} ms"
    return f"{us:,.0f} µs" if us >= 10 else f"{us:.1f} µs"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every valid fixture, not only the Rust bench's two")
    parser.add_argument("--iterations", type=int, default=5000, help="most samples per case (default 5000)")
    parser.add_argument("--min-iterations", type=int, default=50, help="fewest samples per case (default 50)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time budget per case (default 15)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    parser.add_argument("--whole-schema", type=int, default=0, metavar="N",
                        help="also time N validations against the schema's root oneOf (slow: ~20 s each)")
    parser.add_argument("--signpost", metavar="FILE", help="output of `cargo bench --bench validation`")
    parser.add_argument("--json", metavar="FILE", help="write the results here")
    args = parser.parse_args()

    info = {"machine": machine(), "versions": versions()}
    js = JsonSchema(json.loads(SCHEMA.read_text()))
    names = sorted(p.name for p in VALID.glob("*.json")) if args.all else list(BENCH_DOCUMENTS)
    texts = {n: (VALID / n).read_text() for n in names}
    docs = {n: json.loads(t) for n, t in texts.items()}

    checks = check_documents(js, docs)
    invalid = check_invalid_fixtures(js)
    signpost = read_divan(args.signpost) if args.signpost else {}

    results = []
    for name, doc in docs.items():
        resource_type = doc["resourceType"]
        validator = js.validator(resource_type)
        text = texts[name]
        inputs = [("object", doc)]
        if resource_type == "ServiceRequest":
            inputs.append(("text", text))
        for kind, arg in inputs:
            if kind == "object":
                js_call = lambda d: list(validator.iter_errors(d))  # noqa: E731
                fr_call = fhir_from_object
            else:
                js_call = lambda t: list(validator.iter_errors(json.loads(t)))  # noqa: E731
                fr_call = lambda t: fhir_from_text(resource_type, t)  # noqa: E731
            print(f"timing {name} ({kind}) ...", file=sys.stderr, flush=True)
            row = {
                "document": name,
                "resource_type": resource_type,
                "input": "parsed JSON" if kind == "object" else "JSON text",
                "bytes": len(text.encode()),
                "jsonschema": measure(js_call, arg, args),
                "fhir.resources": measure(fr_call, arg, args),
            }
            structural, full = BENCH_DOCUMENTS.get(name, {}).get(kind, (None, None))
            row["signpost_bench"] = {"structure_only": structural, "all_layers": full}
            row["signpost"] = {
                "structure_only": signpost.get(structural),
                "all_layers": signpost.get(full),
            }
            results.append(row)

    whole = None
    if args.whole_schema:
        name = names[0]
        print(f"timing {name} against the whole schema ...", file=sys.stderr, flush=True)
        v = js.whole()
        samples = []
        for _ in range(args.whole_schema):
            start = time.perf_counter_ns()
            assert not list(v.iter_errors(docs[name]))
            samples.append(time.perf_counter_ns() - start)
        whole = {"document": name, **summarise(samples)}

    info["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print_table(results, info, checks, invalid, whole)
    if args.json:
        report = {
            "what": "Per-document validation time of referral fixtures: Signpost (divan, "
            "benches/validation.rs) vs Python jsonschema (same FHIR R4 schema, per resource type, "
            "all errors) vs fhir.resources (pydantic models, R4B). Times in microseconds.",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **info,
            "settings": {k: getattr(args, k) for k in ("iterations", "min_iterations", "seconds", "warmup")},
            "checks": checks,
            "invalid_fixtures": invalid,
            "results": results,
            "whole_schema_jsonschema": whole,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def print_table(results, info, checks, invalid, whole):
    v = info["versions"]
    m = info["machine"]
    print(f"\nMachine: {m['cpu']}, {m['nproc']} CPUs, {m['memory_gib']} GiB; Python {m['python']}; "
          f"load average {m['load_average_at_start'][0]} → {m['load_average_at_end'][0]}")
    print(f"jsonschema {v.get('jsonschema')} (referencing {v.get('referencing')}); "
          f"fhir.resources {v.get('fhir.resources')} (FHIR {v['fhir.resources release used']}, "
          f"fhir-core {v.get('fhir-core')}, pydantic {v.get('pydantic')})\n")
    print("| document | input | Signpost structure (median) | Signpost all layers (median) "
          "| jsonschema median / p99 | fhir.resources median / p99 |")
    print("|---|---|---|---|---|---|")
    for r in results:
        sp = r["signpost"]
        base = (sp["structure_only"] or sp["all_layers"] or {}).get("median_us")

        def cell(lib):
            s = r[lib]
            ratio = f" (×{s['median_us'] / base:,.0f})" if base else ""
            return f"{fmt(s['median_us'])} / {fmt(s['p99_us'])}{ratio}"

        print(f"| {r['document']} | {r['input']} "
              f"| {fmt((sp['structure_only'] or {}).get('median_us'))} "
              f"| {fmt((sp['all_layers'] or {}).get('median_us'))} "
              f"| {cell('jsonschema')} | {cell('fhir.resources')} |")
    print("\n(×N: median relative to Signpost's structural layer, or all layers where that is the only figure)")
    print("\nChecks: every document accepted and its status=123 variant rejected by both libraries: "
          + ("yes" if checks else "no documents"))
    s400 = invalid["structural_400"]
    for lib in ("jsonschema", "fhir.resources"):
        missed = [f for f, r in s400.items() if not r[lib]]
        print(f"  {lib}: rejects {len(s400) - len(missed)}/{len(s400)} structurally invalid fixtures"
              + (f" (accepts {', '.join(missed)})" if missed else "")
              + f"; rejects {len(invalid['profile_422_rejected'][lib])} profile-only (422) fixtures")
    if whole:
        print(f"\njsonschema against the schema's root oneOf (as published), {whole['document']}: "
              f"median {fmt(whole['median_us'])} over {whole['samples']} runs")


if __name__ == "__main__":
    main()
