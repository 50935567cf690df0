"""``affineur verify`` and the ``verify`` doit tasks: rebuild, compare, report.

Each selected package that is built in the cache is built again from its sdist
by a separate builder — its own cache and work folders, a hook runner that
changes umask, clock and source dates, an environment in another order with
another locale (see :mod:`affineur.build._reproduce`) — and the two wheels are
compared byte for byte. The rebuild is thrown away; the verdict is reported and
written to ``build/reports/verify.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from affineur import graph as g
from affineur.build import (
    BuildCache,
    Builder,
    BuildKey,
    MemberDiff,
    VariedRunner,
    compare_wheels,
    diffoscope_report,
    varied_environment,
)
from affineur.config import did_you_mean, validate
from affineur.errors import AffineurError
from affineur.progress import Notice
from affineur.run._checkout import Checkout, LockedVariant

__all__ = ["Verdict", "VerifyReport", "select_for_verify", "verify_packages", "verify_task"]

REPORT = "verify.json"


@dataclass(frozen=True)
class Verdict:
    name: str
    version: str
    variant: str
    key: BuildKey
    wheel: str
    reproducible: bool
    differences: tuple[MemberDiff, ...] = ()
    diffoscope: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "build_key": self.key,
            "wheel": self.wheel,
            "reproducible": self.reproducible,
            "differences": [
                {"member": d.member, "kind": d.kind, "first": d.first, "second": d.second}
                for d in self.differences
            ],
            "diffoscope": self.diffoscope,
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        state = "reproducible" if self.reproducible else "NOT reproducible"
        out = [f"{state:17} {self.variant}:{self.name}-{self.version}  {self.wheel}"]
        out += [f"    {d.describe()}" for d in self.differences]
        if self.diffoscope:
            out.append(f"    diffoscope report: {self.diffoscope}")
        return out


@dataclass(frozen=True)
class VerifyReport:
    verdicts: tuple[Verdict, ...]
    conditions: tuple[str, ...]

    @property
    def reproducible(self) -> int:
        return sum(v.reproducible for v in self.verdicts)

    @property
    def percent(self) -> float:
        return 100.0 * self.reproducible / len(self.verdicts) if self.verdicts else 100.0

    @property
    def ok(self) -> bool:
        return self.reproducible == len(self.verdicts)

    def summary(self) -> str:
        total = len(self.verdicts)
        return (
            f"{self.reproducible} of {total} reproducible ({self.percent:.1f}%); "
            f"rebuilt with {', '.join(self.conditions)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "conditions": list(self.conditions),
            "total": len(self.verdicts),
            "reproducible": self.reproducible,
            "percent": round(self.percent, 1),
            "packages": [v.to_json() for v in self.verdicts],
        }


def select_for_verify(
    engine: Checkout,
    names: Sequence[str] = (),
    *,
    variants: Sequence[str] = (),
    collections: Sequence[str] = (),
) -> list[tuple[LockedVariant, g.NodeKey]]:
    """The locked packages to rebuild, one per build key; all names are checked first."""
    wanted = {canonicalize_name(n) for n in names}
    known_variants = {lv.variant.name for lv in engine.locked}
    unknown = [v for v in variants if v not in known_variants]
    if unknown:
        raise AffineurError(
            f"no lock for variant {unknown[0]!r}",
            hint=did_you_mean(unknown[0], known_variants)
            or f"locked variants: {', '.join(sorted(known_variants)) or 'none'}",
        )
    chosen: list[tuple[LockedVariant, g.NodeKey]] = []
    seen: set[BuildKey] = set()
    found: set[str] = set()
    for lv in engine.locked:
        if variants and lv.variant.name not in variants:
            continue
        if collections and lv.collection.name not in collections:
            continue
        for key in sorted(lv.graph.nodes):
            node = lv.graph.nodes[key]
            if wanted and node.name not in wanted:
                continue
            found.add(node.name)
            if node.prebuilt or lv.keys[key] in seen:
                continue
            seen.add(lv.keys[key])
            chosen.append((lv, key))
    missing = sorted(wanted - found)
    if missing:
        every = {n.name for lv in engine.locked for n in lv.graph.nodes.values()}
        raise AffineurError(
            f"not in any selected lock: {', '.join(missing)}",
            hint=did_you_mean(missing[0], every) or "names are those of 'affineur tree'",
        )
    return chosen


def _rebuild_root(engine: Checkout) -> Path:
    root = engine.build_dir / "verify"
    root.mkdir(parents=True, exist_ok=True)
    return root


def verify_one(
    engine: Checkout, lv: LockedVariant, node_key: g.NodeKey, runner: VariedRunner
) -> Verdict:
    """Rebuild one cached package under varied conditions and compare the wheels."""
    node = lv.graph.nodes[node_key]
    key = lv.keys[node_key]
    entry = engine.cache.get(key)
    if entry is None:
        raise AffineurError(
            "not built yet, so there is nothing to compare with",
            package=node.name,
            version=node.version,
            hint="run doit (or doit build) first",
        )
    started = time.monotonic()
    # Another path, another depth, another name: nothing of the first build's layout.
    scratch = Path(tempfile.mkdtemp(prefix=f"{node.name}-", dir=_rebuild_root(engine)))
    try:
        builder = Builder(
            cache=BuildCache(scratch / "other-cache"),
            store=engine.store,
            workdir=scratch / "elsewhere" / "rebuild.d",
            runner=runner,
        )
        request = engine.build_request(lv, node_key)
        varied = replace(request, base_env=varied_environment(request.base_env))
        rebuilt = builder.build(varied, lv.graph).wheel
        differences = tuple(compare_wheels(entry.wheel, rebuilt))
        report = None
        if differences:
            out = engine.build_dir / "reports" / "verify" / f"{rebuilt.name}.diffoscope.txt"
            found = diffoscope_report(entry.wheel, rebuilt, out)
            report = str(found.relative_to(engine.root)) if found else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Verdict(
        name=node.name,
        version=node.version,
        variant=lv.variant.name,
        key=key,
        wheel=entry.wheel.name,
        reproducible=not differences,
        differences=differences,
        diffoscope=report,
        seconds=time.monotonic() - started,
    )


def _write_report(engine: Checkout, report: VerifyReport) -> Path:
    data = report.to_json()
    path = engine.build_dir / "reports" / REPORT
    validate(data, "verify", file=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def verify_packages(
    engine: Checkout, targets: Iterable[tuple[LockedVariant, g.NodeKey]]
) -> VerifyReport:
    """Verify every target, report each as it finishes, and write verify.json."""
    runner = VariedRunner()
    verdicts = []
    for lv, key in targets:
        node = lv.graph.nodes[key]
        engine.reporter.report(Notice(f"rebuild {node.name}=={node.version} ({lv.variant.name})"))
        verdict = verify_one(engine, lv, key, runner)
        verdicts.append(verdict)
    report = VerifyReport(tuple(verdicts), tuple(runner.conditions))
    _write_report(engine, report)
    return report


def verify_task(engine: Checkout, lv: LockedVariant, node_key: g.NodeKey) -> None:
    """The action of one ``verify:`` doit task: fail unless the rebuild is identical."""
    verdict = verify_one(engine, lv, node_key, VariedRunner())
    for line in verdict.lines():
        engine.reporter.report(Notice(line))
    if not verdict.reproducible:
        raise AffineurError(
            f"not reproducible: {len(verdict.differences)} difference(s)",
            package=verdict.name,
            version=verdict.version,
            stage="build",
            causes=tuple(d.describe() for d in verdict.differences),
            hint="'affineur verify NAME' rebuilds it again and writes a report",
        )
