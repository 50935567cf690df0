"""Provenance beside every wheel: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

A build writes the statement into its cache entry when it finishes (it holds
the build's start and end times, so it cannot live inside a reproducible
wheel); publishing copies it beside the wheel as ``<wheel>.provenance.json``,
signed into a DSSE envelope when the user gives an ed25519 key. Checking a
published file reads either form, verifies the signatures when keys are given,
and compares every subject's sha256 with the file it names.

Signing uses securesystemslib's DSSE implementation, which needs
``cryptography``: both come with the ``affineur[sign]`` extra.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from affineur.build._sbom import EnvWheel, tool_versions
from affineur.config import validate
from affineur.errors import AffineurError

__all__ = [
    "PROVENANCE_SUFFIX",
    "BuildFacts",
    "SignedBy",
    "check_published",
    "host_tools",
    "load_public_keys",
    "provenance_statement",
    "read_provenance",
    "sign_statement",
    "signing_key_id",
    "statement_bytes",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
# What "built by affineur" means is this module: a URN names it without a web host.
BUILD_TYPE = "urn:affineur:build-type:wheel-from-sdist:v1"
DEFAULT_BUILDER = "urn:affineur:builder:local"
PROVENANCE_SUFFIX = ".provenance.json"


def host_tools(fingerprints: Mapping[str, str] = {}) -> dict[str, str]:
    """The builder's own versions: affineur and its format libraries, the interpreter,
    the platform, and the host tools the build key holds (``fingerprints``, see
    :mod:`affineur.build._hosttools`: one probe of each tool, shared with the key)."""
    tools = dict(tool_versions())
    tools["python"] = f"{platform.python_implementation()} {sys.version.split()[0]}"
    tools["platform"] = f"{platform.system()} {platform.machine()}"
    tools.update(sorted((fingerprints or {}).items()))
    return tools


@dataclass(frozen=True)
class BuildFacts:
    """What one build was, as the builder knows it."""

    lock_node: Mapping[str, Any]  # the node as graph.json holds it
    variant: str
    target: Mapping[str, str]
    settings: Mapping[str, Any]
    patches: Sequence[tuple[str, str]]  # (path under overrides/patches/, sha256)
    build_env: Sequence[EnvWheel]
    build_key: str
    source_date_epoch: int
    network_isolation: bool
    builder_id: str | None
    started: float
    finished: float
    source_attestation: Mapping[str, Any] | None = None
    host_tools: Mapping[str, str] = field(default_factory=dict)
    """Tool name -> version line, as in the build key."""
    python: str = ""
    """The interpreter that built (``CPython 3.12.1``), when it is not the one running."""


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _purl(name: str, version: str, filename: str) -> str:
    from packageurl import PackageURL

    return str(PackageURL("pypi", None, name, version, {"file_name": filename}))


def provenance_statement(wheel: str, sha256: str, facts: BuildFacts) -> dict[str, Any]:
    """The statement for the wheel file ``wheel`` whose bytes hash to ``sha256``."""
    node = facts.lock_node
    sdist = node["sdist"]
    source: dict[str, Any] = {
        "name": sdist["filename"],
        "uri": _purl(node["name"], node["version"], sdist["filename"]),
        "digest": {"sha256": sdist["sha256"]},
        "annotations": {"role": "source"},
    }
    if facts.source_attestation:
        source["annotations"]["publisher_attestation"] = dict(facts.source_attestation)
    resolved: list[dict[str, Any]] = [source]
    git = node.get("git")
    if git:
        # The archive is made from this commit: the repository is where it can be
        # checked, by its commit hash (in-toto's "gitCommit" digest).
        resolved.append(
            {
                "name": f"{git['url']}@{git['ref']}",
                "uri": f"git+{git['url']}@{git['commit']}",
                "digest": {"gitCommit": git["commit"]},
                "annotations": {"role": "source-repository"},
            }
        )
    resolved += [
        {
            "name": f"overrides/patches/{path}",
            "digest": {"sha256": digest},
            "annotations": {"role": "patch"},
        }
        for path, digest in facts.patches
    ]
    resolved += [
        {
            "name": w.filename,
            "uri": _purl(w.name, w.version, w.filename),
            "digest": {"sha256": w.sha256},
            "annotations": {"role": "build-environment"}
            | ({"build_key": w.build_key} if w.build_key else {}),
        }
        for w in facts.build_env
    ]
    # Vendored crates are compiled into the wheel: each by the checksum Cargo.lock
    # records, which cargo checked when it vendored them.
    resolved += [
        {
            "name": f"{c['name']}-{c['version']}.crate",
            "uri": f"pkg:cargo/{c['name']}@{c['version']}",
            "annotations": {"role": "vendored-crate"},
        }
        | ({"digest": {"sha256": c["sha256"]}} if c.get("sha256") else {})
        for c in node.get("crates", {}).get("packages", ())
    ]
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": wheel, "digest": {"sha256": sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "package": f"{node['name']}=={node['version']}",
                    "variant": facts.variant,
                    "lock": dict(node),
                    "settings": dict(facts.settings),
                },
                "internalParameters": {
                    "build_key": facts.build_key,
                    "source_date_epoch": facts.source_date_epoch,
                    "network_isolation": facts.network_isolation,
                    "target": dict(sorted(facts.target.items())),
                },
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": {
                    "id": facts.builder_id or DEFAULT_BUILDER,
                    "version": {
                        **host_tools(facts.host_tools),
                        **({"python": facts.python} if facts.python else {}),
                    },
                },
                "metadata": {
                    "invocationId": f"{facts.build_key}@{_time(facts.started)}",
                    "startedOn": _time(facts.started),
                    "finishedOn": _time(facts.finished),
                },
            },
        },
    }
    validate(statement, "provenance", file=f"{wheel}{PROVENANCE_SUFFIX}")
    return statement


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    return (json.dumps(statement, indent=2, sort_keys=True) + "\n").encode()


# --- signing ----------------------------------------------------------------------------


def _sign_imports() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from securesystemslib.dsse import Envelope
        from securesystemslib.signer import CryptoSigner, SSlibKey
    except ImportError:
        raise AffineurError(
            "signing provenance needs the 'sign' extra",
            hint="pip install 'affineur[sign]'",
        ) from None
    return serialization, Envelope, CryptoSigner, SSlibKey


def _private_key(path: Path) -> Any:
    serialization, *_ = _sign_imports()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise AffineurError(
            f"cannot read the signing key: {exc.strerror}", file=str(path)
        ) from None
    except (ValueError, TypeError) as exc:
        raise AffineurError(
            f"not an unencrypted PEM private key ({exc})",
            file=str(path),
            hint="make one with: openssl genpkey -algorithm ed25519 -out key.pem",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AffineurError(
            "the signing key is not an ed25519 key",
            file=str(path),
            hint="make one with: openssl genpkey -algorithm ed25519 -out key.pem",
        )
    return key


def signing_key_id(path: Path) -> str:
    """The DSSE key id of the key in ``path`` (a hash of its public half)."""
    _, _, _, SSlibKey = _sign_imports()
    return str(SSlibKey.from_crypto(_private_key(path).public_key()).keyid)


def sign_statement(statement: Mapping[str, Any], key: Path) -> dict[str, Any]:
    """A DSSE envelope of ``statement`` signed with the ed25519 private key in ``key``."""
    _, Envelope, CryptoSigner, _ = _sign_imports()
    envelope = Envelope(
        payload=statement_bytes(statement), payload_type=PAYLOAD_TYPE, signatures={}
    )
    envelope.sign(CryptoSigner(_private_key(key)))
    data: dict[str, Any] = envelope.to_dict()
    return data


def load_public_keys(paths: Sequence[Path]) -> list[Any]:
    """ed25519 public keys (PEM) to check envelopes against."""
    if not paths:
        return []
    serialization, _, _, SSlibKey = _sign_imports()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = []
    for path in paths:
        try:
            public = serialization.load_pem_public_key(path.read_bytes())
        except OSError as exc:
            raise AffineurError(f"cannot read the key: {exc.strerror}", file=str(path)) from None
        except (ValueError, TypeError) as exc:
            raise AffineurError(
                f"not a PEM public key ({exc})",
                file=str(path),
                hint="export it with: openssl pkey -in key.pem -pubout -out key.pub",
            ) from None
        if not isinstance(public, Ed25519PublicKey):
            raise AffineurError("not an ed25519 public key", file=str(path))
        keys.append(SSlibKey.from_crypto(public))
    return keys


# --- reading and checking ---------------------------------------------------------------


@dataclass(frozen=True)
class SignedBy:
    """The key ids whose signatures were checked, empty for an unsigned statement."""

    key_ids: tuple[str, ...]


def read_provenance(
    path: Path, keys: Sequence[Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(statement, envelope or None) from ``path``, schema-checked, payload included."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise AffineurError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except ValueError as exc:
        raise AffineurError(f"not valid JSON ({exc})", file=str(path)) from None
    validate(data, "provenance", file=str(path))
    if "payload" not in data:
        return data, None
    try:
        statement = json.loads(base64.b64decode(data["payload"], validate=True))
    except ValueError as exc:
        raise AffineurError(f"the envelope's payload is not JSON ({exc})", file=str(path)) from None
    validate(statement, "provenance", file=f"{path} (payload)")
    if "payload" in statement:
        raise AffineurError("an envelope inside an envelope", file=str(path))
    return statement, data


def _verify_envelope(envelope: Mapping[str, Any], keys: Sequence[Any]) -> tuple[str, ...]:
    _, Envelope, _, _ = _sign_imports()
    from securesystemslib.exceptions import VerificationError

    try:
        # from_dict consumes its argument.
        accepted = Envelope.from_dict(copy.deepcopy(dict(envelope))).verify(list(keys), 1)
    except VerificationError as exc:
        raise AffineurError(f"no valid signature by a given key ({exc})") from None
    return tuple(sorted(accepted))


def check_published(
    provenance: Path, files: Path, keys: Sequence[Any], *, require_signature: bool
) -> tuple[dict[str, Any], SignedBy]:
    """Check one published statement; raise with every problem found.

    Every subject must name a file in ``files`` whose sha256 is the subject's. With
    ``keys``, the file must be an envelope signed by one of them; an envelope
    checked against no key proves nothing, so it fails too when signatures are
    required.
    """
    statement, envelope = read_provenance(provenance)
    problems: list[str] = []
    signed = SignedBy(())
    if envelope is not None and keys:
        try:
            signed = SignedBy(_verify_envelope(envelope, keys))
        except AffineurError as exc:
            problems.append(exc.message)
    elif require_signature:
        problems.append(
            "not signed" if envelope is None else "signed, but no public key was given to check it"
        )
    for subject in statement["subject"]:
        target = files / subject["name"]
        if not target.is_file():
            problems.append(f"names {subject['name']}, which is not published here")
            continue
        actual = hashlib.sha256(target.read_bytes()).hexdigest()
        if actual != subject["digest"]["sha256"]:
            problems.append(
                f"{subject['name']}: the statement says sha256 {subject['digest']['sha256']}, "
                f"the published file has {actual}"
            )
    if problems:
        raise AffineurError(
            "provenance does not match", file=str(provenance), causes=tuple(problems)
        )
    return statement, signed
