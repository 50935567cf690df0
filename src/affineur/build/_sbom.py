"""The SBOM inside every wheel built here (PEP 770), as CycloneDX 1.6 JSON.

It says what the wheel was made from, with hashes: the package itself (its
purl, and the sdist it was built from as its pedigree's ancestor), the patches
applied (as pedigree patches, and as file components carrying their sha256),
and every wheel of its build environment (scope ``excluded``: present at build
time, never installed with the package).

The document is part of the wheel, so it must be as reproducible as the rest:
its timestamp is SOURCE_DATE_EPOCH, its serial number is derived from the
site's namespace and the build key (a hash of everything the SBOM says), and
the library writes sorted, stable JSON. Pure: callers pass hashes in.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import Any

from affineur.config import Evidence
from affineur.graph import Crate

__all__ = [
    "SBOM_FORMAT",
    "SBOM_MEMBER",
    "BuiltFrom",
    "EnvWheel",
    "sbom_document",
    "sbom_key_input",
    "tool_versions",
]

# Where the SBOM lives inside the .dist-info directory (PEP 770 reserves sboms/).
SBOM_MEMBER = "sboms/affineur.cdx.json"
# Raised whenever the document's content changes for the same inputs.
SBOM_FORMAT = 1
_SPEC = "1.6"
_DEFAULT_NAMESPACE = "urn:affineur:sbom"


@cache
def tool_versions() -> dict[str, str]:
    """The versions of the tools that write the document; they shape its bytes."""
    found = {}
    for name in ("affineur", "cyclonedx-python-lib"):
        try:
            found[name] = dist_version(name)
        except PackageNotFoundError:  # a source checkout run without installing
            found[name] = "unknown"
    return found


def sbom_key_input(evidence: Evidence) -> dict[str, Any]:
    """What of the SBOM belongs in the build key: everything that changes its bytes
    beyond the package's own inputs (already in the key)."""
    return {
        "format": SBOM_FORMAT,
        "spec": _SPEC,
        "tools": tool_versions(),
        "supplier": evidence.supplier,
        "supplier_url": evidence.supplier_url,
        "namespace": evidence.namespace,
    }


@dataclass(frozen=True)
class EnvWheel:
    """One wheel installed in a build environment."""

    name: str
    version: str
    filename: str
    sha256: str
    build_key: str | None = None


@dataclass(frozen=True)
class BuiltFrom:
    """Everything one wheel's SBOM states."""

    name: str
    version: str
    sdist_filename: str
    sdist_sha256: str
    patches: Sequence[tuple[str, str]]  # (path under overrides/patches/, sha256)
    build_env: Sequence[EnvWheel]
    build_key: str
    variant: str
    source_date_epoch: int
    crates: Sequence[Crate] = ()
    """Rust crates vendored into the build: compiled into the wheel, so shipped with it."""
    git: tuple[str, str] | None = None
    """(repository URL, commit) when the source archive was made from git."""


def _purl(name: str, version: str, qualifiers: Mapping[str, str] | None = None) -> Any:
    from packageurl import PackageURL

    return PackageURL(type="pypi", name=name, version=version, qualifiers=dict(qualifiers or {}))


def sbom_document(built: BuiltFrom, evidence: Evidence) -> bytes:
    """The CycloneDX JSON of one wheel (UTF-8 bytes, newline-terminated)."""
    # Imported here: only a build writes SBOMs, and a no-op doit must stay quick.
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import (
        Component,
        ComponentScope,
        ComponentType,
        Diff,
        Patch,
        PatchClassification,
        Pedigree,
    )
    from cyclonedx.model.contact import OrganizationalEntity
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6

    def sha256(value: str) -> list[HashType]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=value)]

    sdist = Component(
        type=ComponentType.LIBRARY,
        name=built.name,
        version=built.version,
        bom_ref=f"sdist:{built.sdist_filename}",
        purl=_purl(built.name, built.version, {"file_name": built.sdist_filename}),
        hashes=sha256(built.sdist_sha256),
        description=(
            "the source distribution this wheel was built from"
            if built.git is None
            else "an archive of the git commit this wheel was built from"
        ),
        external_references=(
            [
                ExternalReference(
                    type=ExternalReferenceType.VCS,
                    url=XsUri(f"git+{built.git[0]}@{built.git[1]}"),
                    comment=f"commit {built.git[1]}",
                )
            ]
            if built.git is not None
            else []
        ),
        properties=(
            [Property(name="affineur:git_commit", value=built.git[1])]
            if built.git is not None
            else []
        ),
    )
    patch_files = [
        Component(
            type=ComponentType.FILE,
            name=path,
            bom_ref=f"patch:{path}",
            hashes=sha256(digest),
            scope=ComponentScope.EXCLUDED,
            description="a patch applied to the source before the build",
        )
        for path, digest in built.patches
    ]
    package = Component(
        type=ComponentType.LIBRARY,
        name=built.name,
        version=built.version,
        bom_ref=str(_purl(built.name, built.version)),
        purl=_purl(built.name, built.version),
        pedigree=Pedigree(
            ancestors=[sdist],
            patches=[
                Patch(
                    type=PatchClassification.UNOFFICIAL,
                    diff=Diff(url=XsUri(f"overrides/patches/{path}")),
                )
                for path, _ in built.patches
            ],
        ),
        properties=[
            Property(name="affineur:build_key", value=built.build_key),
            Property(name="affineur:variant", value=built.variant),
        ],
    )
    env = [
        Component(
            type=ComponentType.LIBRARY,
            name=w.name,
            version=w.version,
            bom_ref=f"build-env:{w.filename}",
            purl=_purl(w.name, w.version, {"file_name": w.filename}),
            hashes=sha256(w.sha256),
            scope=ComponentScope.EXCLUDED,
            properties=[Property(name="affineur:role", value="build-environment")]
            + ([Property(name="affineur:build_key", value=w.build_key)] if w.build_key else []),
        )
        for w in built.build_env
    ]
    from packageurl import PackageURL

    crates = [
        Component(
            type=ComponentType.LIBRARY,
            name=c.name,
            version=c.version,
            bom_ref=f"crate:{c.name}@{c.version}",
            purl=PackageURL(type="cargo", name=c.name, version=c.version),
            hashes=sha256(c.sha256) if c.sha256 else None,
            scope=ComponentScope.REQUIRED,
            properties=[Property(name="affineur:role", value="vendored-crate")],
        )
        for c in sorted(built.crates)
    ]
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, evidence.namespace or _DEFAULT_NAMESPACE)
    versions = tool_versions()
    bom = Bom(
        serial_number=uuid.uuid5(namespace, built.build_key),
        metadata=BomMetaData(
            component=package,
            timestamp=datetime.fromtimestamp(built.source_date_epoch, UTC),
            supplier=(
                OrganizationalEntity(
                    name=evidence.supplier,
                    urls=[XsUri(evidence.supplier_url)] if evidence.supplier_url else None,
                )
                if evidence.supplier
                else None
            ),
            tools=ToolRepository(
                components=[
                    Component(type=ComponentType.APPLICATION, name=n, version=v)
                    for n, v in sorted(versions.items())
                ]
            ),
        ),
        components=[*env, *patch_files, *crates],
    )
    bom.register_dependency(package, [*env, *patch_files, *crates])
    text: str = JsonV1Dot6(bom).output_as_string(indent=2)
    return text.encode("utf-8") + b"\n"
