"""``affineur verify``: does each build reproduce, and does the published provenance hold?

Thin: it selects, calls the run stage (rebuild and compare) or the build stage
(provenance checks), and prints; errors go to ``cli.main`` as AffineurError.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from affineur.cli._select import open_names, package_in, unknown
from affineur.errors import AffineurError

__all__ = ["register"]

EXIT_OK = 0
EXIT_FAILED = 1


def _built_here(wheel: Path) -> bool:
    """Whether the wheel carries our build record (every wheel built here does)."""
    from affineur.build import BUILD_RECORD
    from affineur.index import dist_info_dir, open_wheel

    try:
        with open_wheel(wheel) as archive:
            return f"{dist_info_dir(archive, wheel)}/{BUILD_RECORD}" in archive.namelist()
    except AffineurError:
        return True  # unreadable: certainly not a wheel to publish without a statement


def _check_provenance(args: argparse.Namespace, root: Path) -> int:
    from packaging.utils import canonicalize_name, parse_wheel_filename

    from affineur.build import PROVENANCE_SUFFIX, check_published, load_public_keys

    keys = load_public_keys([Path(p) for p in args.public_key])
    dist = root / "dist"
    folders = sorted(
        f
        for f in dist.glob("*/*/files")
        if args.collection in (None, f.parent.parent.name) and args.variant in (None, f.parent.name)
    )
    if not folders:
        raise AffineurError(
            "nothing published to check",
            hint="'doit' (or 'doit publish') writes dist/<collection>/<variant>/",
        )
    wanted = {canonicalize_name(n) for n in args.names}
    checked = failed = 0
    seen: set[str] = set()
    for files in folders:
        where = f"{files.parent.parent.name}/{files.parent.name}"
        for wheel in sorted(files.glob("*.whl")):
            name = parse_wheel_filename(wheel.name)[0]
            if wanted and name not in wanted:
                continue
            seen.add(name)
            statement = files / f"{wheel.name}{PROVENANCE_SUFFIX}"
            if not statement.exists():
                if _built_here(wheel):
                    # Built here, so published with a statement: someone removed it.
                    checked += 1
                    failed += 1
                    print(f"FAILED         {where}  {wheel.name}")
                    print(f"    no {statement.name} beside it")
                else:
                    print(f"no provenance  {where}  {wheel.name} (an upstream wheel, prebuilt)")
                continue
            checked += 1
            try:
                _, signed = check_published(
                    statement, files, keys, require_signature=bool(keys) or args.require_signature
                )
            except AffineurError as exc:
                failed += 1
                print(f"FAILED         {where}  {wheel.name}")
                for cause in exc.causes:
                    print(f"    {cause}")
                continue
            how = (
                f"signed by {', '.join(k[:16] for k in signed.key_ids)}"
                if signed.key_ids
                else "unsigned"
            )
            print(f"ok             {where}  {wheel.name} (sha256 matches, {how})")
    missing = sorted(wanted - seen)
    if missing:
        published = {parse_wheel_filename(w.name)[0] for f in folders for w in f.glob("*.whl")}
        raise unknown("package", missing[0], published, where=" among the published wheels")
    print(f"{checked - failed} of {checked} provenance statements hold")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from affineur.progress import StreamReporter
    from affineur.run import open_checkout, select_for_verify, verify_packages

    root, known = open_names(getattr(args, "root", None))
    if args.provenance:
        known.check_collection(args.collection)
        known.check_variant(args.variant)
        return _check_provenance(args, root)
    locks = known.select(args.collection, args.variant)
    graphs = known.graphs(locks)
    names = [package_in(name, graphs) for name in args.names]
    engine = open_checkout(root, reporter=StreamReporter(verbose=getattr(args, "verbose", False)))
    targets = select_for_verify(
        engine,
        names,
        variants=sorted({v for _, v in locks}),
        collections=sorted({c for c, _ in locks}),
    )
    if not targets:
        raise AffineurError("nothing to verify: every selected package is prebuilt")
    report = verify_packages(engine, targets)
    for verdict in report.verdicts:
        for line in verdict.lines():
            print(line)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(
        "verify",
        "rebuild packages differently and compare wheels; or check published provenance",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Rebuild each selected package (default: all built ones) in a second,\n"
            "differently arranged environment: another build folder, umask 0077, old\n"
            "source file dates, the clock moved (with faketime, where installed),\n"
            "environment variables in reverse order, another locale and time zone.\n"
            "Compare the wheels byte for byte and list each member that differs\n"
            "(and write a diffoscope report where diffoscope is installed).\n"
            "The report is also written to build/reports/verify.json.\n\n"
            "With --provenance, check dist/*/*/files/<wheel>.provenance.json instead:\n"
            "schema, signatures (with --public-key) and that every subject's sha256 is\n"
            "the published file's.\n\n"
            "exit status: 0 all reproducible (or all provenance holds), 1 not, 2 error"
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these packages")
    p.add_argument("--variant", metavar="NAME", help="only this variant (default: each)")
    p.add_argument("--collection", metavar="NAME", help="only this collection (default: each)")
    p.add_argument(
        "--provenance", action="store_true", help="check published provenance, do not rebuild"
    )
    p.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="PEM",
        help="an ed25519 public key whose signature each statement must carry",
    )
    p.add_argument(
        "--require-signature",
        action="store_true",
        help="fail on unsigned statements even without --public-key",
    )
    p.set_defaults(func=cmd_verify)
