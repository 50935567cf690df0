"""PEP 740 source attestations: who published a file, as the index vouches for it.

An index that supports PEP 740 links each file to a provenance object: bundles
of attestations, each bundle under the trusted publisher (a CI workflow) that
made it. Each attestation is a DSSE envelope around an in-toto statement whose
subject is the file's name and sha256.

What is checked here, with no network beyond the index: the object's shape, and
that every statement names exactly this file and these bytes (an attestation
for other bytes is an attack or a mistake, never noise). The publishers are
recorded in the lock, and a later download must find the same ones. The
Sigstore signatures themselves (a certificate chain to the Sigstore roots and a
transparency-log entry) need Sigstore's trust root, which this offline check
does not fetch; they are kept for a Sigstore verifier to read.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any, Protocol

from affineur.config import validate
from affineur.errors import AffineurError
from affineur.graph import FileRef, Publisher
from affineur.limits import TOO_DEEP, too_deep

if TYPE_CHECKING:
    from affineur.index._distfile import DistFile

__all__ = ["AttestationSource", "attested_by", "check_attestation", "parse_provenance"]


class AttestationSource(Protocol):
    """What reading attestations needs of an index client (``IndexClient`` is one)."""

    def find_file(self, project: str, filename: str) -> DistFile: ...

    def provenance(self, file: DistFile) -> bytes | None: ...


_PUBLISHER_CLAIMS = ("repository", "workflow", "environment", "project", "workflow_filepath")


def _publisher(raw: dict[str, Any]) -> Publisher:
    claims = tuple(
        sorted((k, str(v)) for k, v in raw.items() if k in _PUBLISHER_CLAIMS and v is not None)
    )
    return Publisher(str(raw["kind"]), claims)


def parse_provenance(
    raw: bytes, *, filename: str, sha256: str, where: str, package: str | None = None
) -> tuple[Publisher, ...]:
    """The publishers that attest to ``filename`` with ``sha256``; raise on anything else."""

    def fail(message: str) -> AffineurError:
        return AffineurError(
            f"{filename}: {message}",
            file=where,
            package=package,
            stage="hash",
            hint="the index's attestation does not match the file: do not trust this source",
        )

    try:
        data = json.loads(raw)
        if too_deep(data):
            raise RecursionError
    except RecursionError:
        raise fail(f"the provenance is {TOO_DEEP}") from None
    except ValueError as exc:
        raise fail(f"the provenance is not JSON ({exc})") from None
    validate(data, "pep740-provenance", file=where)
    publishers: list[Publisher] = []
    for bundle in data["attestation_bundles"]:
        for attestation in bundle["attestations"]:
            try:
                statement = json.loads(base64.b64decode(attestation["envelope"]["statement"]))
                subjects = statement["subject"]
                named = {(s["name"], s["digest"]["sha256"].lower()) for s in subjects}
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                raise fail("an attestation's statement cannot be read") from None
            if (filename, sha256.lower()) not in named:
                shown = ", ".join(f"{n} sha256 {d}" for n, d in sorted(named))
                raise fail(f"an attestation names {shown or 'nothing'}, not these bytes")
        publisher = _publisher(bundle["publisher"])
        if publisher not in publishers:
            publishers.append(publisher)
    return tuple(sorted(publishers, key=lambda p: (p.kind, p.claims)))


def attested_by(source: AttestationSource, file: DistFile, sha256: str) -> tuple[Publisher, ...]:
    """The publishers the index's provenance for ``file`` names (none without provenance)."""
    raw = source.provenance(file)
    if raw is None:
        return ()
    from affineur.index._urls import redact_url

    return parse_provenance(
        raw,
        filename=file.filename,
        sha256=sha256,
        where=redact_url(file.provenance or file.url),
        package=file.project,
    )


def check_attestation(source: AttestationSource, project: str, ref: FileRef) -> str | None:
    """Check a locked file's attestation against the index again, at download.

    Raises when the index now attests other bytes or names other publishers
    than the lock recorded; returns a warning when it serves no provenance at
    all (a mirror without PEP 740 support is common, and the sha256 in the lock
    still holds the file to the attested bytes); None when all is as recorded.
    """
    if not ref.attested_by:
        return None
    now = attested_by(source, source.find_file(project, ref.filename), ref.sha256)
    if not now:
        recorded = ", ".join(p.describe() for p in ref.attested_by)
        return (
            f"{ref.filename}: the index serves no attestation now; the lock recorded one "
            f"by {recorded} (the sha256 still holds the file to those bytes)"
        )
    if set(now) != set(ref.attested_by):
        raise AffineurError(
            f"{ref.filename}: published by {', '.join(p.describe() for p in now)}, "
            f"but the lock recorded {', '.join(p.describe() for p in ref.attested_by)}",
            package=project,
            stage="hash",
            hint="the file's publisher changed since the lock; re-lock only if that is expected",
        )
    return None
