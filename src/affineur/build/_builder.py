"""Stage 2: build one locked package from its sdist into the cache.

The steps are the design's, in order, each failing with its own stage so reports
can classify it: verify the sdist hash, unpack safely, apply patches, take an
environment holding exactly the locked build-environment wheels (from our own
cache, through ``installer``: no resolver, no index, no network; shared read-only
by every build with the same wheels), re-run the
``get_requires`` hooks and fail on drift from the lock, build with
``SOURCE_DATE_EPOCH``, a filtered environment and network isolation, check the
wheel's Requires-Dist against the lock, write the build record and the SBOM into
the wheel (normalizing the archive), and move the result into the cache
atomically, with a provenance statement beside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

from affineur import graph as g
from affineur.build._cache import BuildCache, CacheEntry
from affineur.build._drift import check_build_requirements, check_requires_dist
from affineur.build._key import BuildKey
from affineur.build._provenance import (
    PROVENANCE_SUFFIX,
    BuildFacts,
    provenance_statement,
    statement_bytes,
)
from affineur.build._sbom import SBOM_MEMBER, BuiltFrom, EnvWheel, sbom_document
from affineur.build._verify import check_wheel_record, verify_wheel
from affineur.build._wheel import BUILD_RECORD, canonical_json, finish_wheel
from affineur.config import (
    DEFAULT_BUILD_TIMEOUT,
    Evidence,
    SandboxSetting,
    Settings,
    source_env,
)
from affineur.errors import AffineurError
from affineur.hooks import BuildRequest as PluginBuild
from affineur.hooks import PrepareRequest, load_hooks
from affineur.index import SdistStore, requires_dist, sha256_file
from affineur.pep517 import (
    SOURCE_DATE_EPOCH_FLOOR,
    CrateStore,
    EnvironmentStore,
    HookCaller,
    Interpreter,
    Runner,
    confine,
    effective_build_system,
    hook_environment,
    is_empty,
    running_interpreter,
    rust_build,
    unpack_limits,
    unpack_sdist,
    write_build_system,
)

__all__ = [
    "PARALLEL_JOB_VARIABLES",
    "BuildRequest",
    "Builder",
    "parallel_jobs_env",
    "patch_name",
    "source_date_epoch",
]


@dataclass(frozen=True)
class BuildRequest:
    """Everything one build needs, resolved by the task generator from the lock."""

    node: g.Node
    key: BuildKey
    variant: str
    target: Mapping[str, str]
    settings: Settings
    patches: Sequence[Path]
    env_wheels: Sequence[Path]  # cached wheels of every build-environment member
    network_isolation: bool = True
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    host_tools: Mapping[str, str] = field(default_factory=dict)
    """The host tools in the build key, recorded with the result."""
    sandbox: SandboxSetting = field(default_factory=SandboxSetting)
    evidence: Evidence = field(default_factory=Evidence)
    env_keys: Sequence[BuildKey] = ()  # the build keys of env_wheels, in the same order
    source_attestation: Mapping[str, Any] | None = None  # the sdist's, as the lock has it
    jobs: int | None = None
    """The cpus the build holds (its resource request): how many compilers it may run."""
    interpreter: Interpreter | None = None
    """The variant's Python, which makes the build environment; None: the running one."""


def patch_name(patch: Path) -> str:
    """A patch's path below ``overrides/patches/``, as the build key names it."""
    parts = patch.parts
    if "patches" in parts:
        at = len(parts) - 1 - parts[::-1].index("patches")
        return "/".join(parts[at + 1 :])
    return patch.name


PARALLEL_JOB_VARIABLES = ("MAKEFLAGS", "CMAKE_BUILD_PARALLEL_LEVEL", "CARGO_BUILD_JOBS")
"""How make, cmake and cargo are told how many jobs to run: each defaults to every core
(cargo, ninja through cmake) or to one (make), neither of which is what the scheduler
granted the build."""


def parallel_jobs_env(jobs: int | None) -> dict[str, str]:
    """The variables that hold a build's compilers to the cpus it was granted.

    Without them two builds granted 2 cpus each on a 2-core machine run 4 (or, with
    cargo, 2 x every core) compilers at once. A package's own ``env`` still wins.
    """
    if jobs is None:
        return {}
    n = str(max(1, jobs))
    return {"MAKEFLAGS": f"-j{n}", "CMAKE_BUILD_PARALLEL_LEVEL": n, "CARGO_BUILD_JOBS": n}


def _env_wheels(request: BuildRequest) -> list[EnvWheel]:
    keys: Sequence[BuildKey | None] = request.env_keys or [None] * len(request.env_wheels)
    found = []
    for path, key in zip(request.env_wheels, keys, strict=True):
        name, version, _, _ = parse_wheel_filename(path.name)
        found.append(EnvWheel(name, str(version), path.name, sha256_file(path), key))
    return sorted(found, key=lambda w: w.filename)


def source_date_epoch(archive: Path) -> int:
    """The newest member time of the sdist: a fixed, meaningful date for this source."""
    newest = 0
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                newest = max(newest, int(time.mktime((*info.date_time, 0, 0, -1))))
    else:
        with tarfile.open(archive) as tf:
            for member in tf:
                newest = max(newest, int(member.mtime))
    return max(newest, SOURCE_DATE_EPOCH_FLOOR)


class Builder:
    """Builds lock nodes into a :class:`BuildCache`."""

    def __init__(
        self,
        *,
        cache: BuildCache,
        store: SdistStore,
        workdir: Path,
        hidden: Sequence[Path] = (),
        runner: Runner | None = None,
        environments: EnvironmentStore | None = None,
    ) -> None:
        self.cache = cache
        self.store = store
        self.workdir = workdir
        self.hidden = tuple(hidden)
        """What no build may see even under a mounted directory (the checkout)."""
        # How hook processes are started; verification swaps in one that varies
        # the conditions of the build (umask, clock, source file dates).
        self.runner = runner
        # Shared across builds: packages built with the same tools share one
        # environment, made once from wheels unpacked once.
        self.environments = environments or EnvironmentStore(workdir)

    def build(self, request: BuildRequest, graph: g.Graph | None) -> CacheEntry:
        """Build into the cache; ``graph`` (the lock) is what the wheel's dependencies are
        checked against, skipped when None (a build made while locking)."""
        cached = self.cache.get(request.key)
        if cached is not None:
            return cached
        node = request.node
        if node.prebuilt:
            raise AffineurError(
                "prebuilt packages are fetched, not built",
                package=node.name,
                version=node.version,
                stage="internal",
            )
        assert node.sdist is not None
        started = time.time()
        with self.cache.staging(request.key) as staging:
            log = staging / "build.log"
            try:
                wheel, details, facts = self._build(request, graph, staging, log)
            except AffineurError as exc:
                kept = self._keep_failed_log(request, log)
                # The staging folder (and its log) is gone once this returns: point
                # at the copy that stays, and at the command that shows it.
                if exc.hint and str(log) in exc.hint:
                    exc.hint = exc.hint.replace(str(log), str(kept)) + (
                        f" ('affineur log {node.name} --variant {request.variant}' shows it)"
                    )
                if exc.package is None:
                    exc.package, exc.version = node.name, node.version
                raise
            statement = provenance_statement(wheel.name, sha256_file(wheel), facts)
            (staging / f"{wheel.name}{PROVENANCE_SUFFIX}").write_bytes(statement_bytes(statement))
            record = {
                "name": node.name,
                "version": node.version,
                "build_key": request.key,
                "variant": request.variant,
                "sdist": {"filename": node.sdist.filename, "sha256": node.sdist.sha256},
                "build_env": sorted(node.build_env),
                "settings": request.settings.to_json(),
                "patches": [p.name for p in request.patches],
                "target": dict(request.target),
                "host_tools": dict(request.host_tools),
                "wheel": wheel.name,
                "started": started,
                "seconds": round(time.time() - started, 3),
                **details,
            }
            return self.cache.commit(request.key, staging, record)

    def failed_log(self, request: BuildRequest) -> Path:
        return (
            self.workdir
            / "logs"
            / request.variant
            / f"{request.node.name}-{request.node.version}.log"
        )

    def _keep_failed_log(self, request: BuildRequest, log: Path) -> Path:
        target = self.failed_log(request)
        target.parent.mkdir(parents=True, exist_ok=True)
        if log.exists():
            shutil.copyfile(log, target)
        return target

    def _build(
        self, request: BuildRequest, graph: g.Graph | None, staging: Path, log: Path
    ) -> tuple[Path, dict[str, Any], BuildFacts]:
        started = time.time()
        node = request.node
        assert node.sdist is not None
        sdist = self.store.ensure(node.name, node.sdist.filename, node.sdist.sha256, None)
        # The pid in the name lets the next run remove what a killed run left; the
        # build itself cannot rename it (the work root is outside its sandbox).
        work = Path(
            tempfile.mkdtemp(
                prefix=f"{os.getpid()}.{node.name}-{node.version}-", dir=self._work_root()
            )
        )
        try:
            unpacked = unpack_sdist(sdist, work / "src", unpack_limits(request.settings))
            source_root = unpacked.root
            self._apply_patches(request.patches, source_root, log)
            hooks = load_hooks(request.settings.plugin) if request.settings.plugin else None
            if hooks is not None:
                hooks.prepare(PrepareRequest(node.name, node.version, source_root, log))
            source = (
                source_root / request.settings.build_dir
                if request.settings.build_dir
                else source_root
            )
            build_system = effective_build_system(source, request.settings.build_requires)
            if not is_empty(request.settings.build_requires):
                write_build_system(source, build_system)
            interpreter = request.interpreter or running_interpreter()
            try:
                env = self.environments.environment(
                    request.env_wheels, python=interpreter.executable
                )
            except AffineurError:
                raise
            except Exception as exc:  # installer raises plain exceptions on bad wheels
                raise AffineurError(
                    f"cannot install the build environment: {exc}", stage="build-env"
                ) from exc
            # What source_date_epoch(sdist) gives, from the members read while unpacking.
            epoch = max(unpacked.newest, SOURCE_DATE_EPOCH_FLOOR)
            home = work / "home"
            home.mkdir()
            tmp = work / "tmp"
            tmp.mkdir()
            variables = hook_environment(
                base=request.base_env,
                package_env={
                    **source_env(request.settings, node.name, node.version),
                    **parallel_jobs_env(request.jobs),
                    **request.settings.env,
                },
                name=node.name,
                version=node.version,
                source_date_epoch=epoch,
                home=home,
                tmpdir=tmp,
                pass_env=request.settings.pass_env,
            )
            # Cargo offline against the crates vendored at lock time, with the host's
            # toolchain mounted read-only (the build's HOME is empty).
            rust = rust_build(
                node.name,
                source,
                work,
                vendored=node.crates,
                crates=CrateStore(self.store.root / "crates"),
                path=variables.get("PATH", ""),
            )
            if rust is not None:
                variables.update(rust.env)
            confinement = confine(
                request.sandbox,
                writable=[work],
                # The venv's interpreter is a link into where that Python is installed.
                read_only=[
                    env.path,
                    *(Path(p) for p in interpreter.prefixes),
                    *(rust.read_only if rust else ()),
                ],
                hidden=[*self.hidden, self.workdir, self.cache.root],
            )
            timeout = request.settings.timeout or DEFAULT_BUILD_TIMEOUT
            caller = HookCaller(
                source,
                build_system,
                python=str(env.python),
                env=variables,
                log=log,
                network=not request.network_isolation,
                timeout=timeout,
                confinement=confinement,
                runner=self.runner,
            )
            config = dict(request.settings.config_settings) or None
            out = work / "out"
            out.mkdir()
            with caller.session():
                asked = caller.get_requires_for_build_wheel(config)
                check_build_requirements(asked, node, request.target, caller.host_tools())
                if hooks is None:
                    wheel = caller.build_wheel(out, config)
                else:
                    wheel = hooks.build(
                        PluginBuild(
                            node.name,
                            node.version,
                            source,
                            out,
                            variables,
                            log,
                            default=lambda: caller.build_wheel(out, config),
                        )
                    )
            verify_wheel(wheel, node, request.target)
            problems = (
                check_requires_dist(requires_dist(wheel), node, graph.nodes, request.target)
                if graph is not None
                else []
            )
            if problems:
                raise AffineurError(
                    "the built wheel's dependencies differ from the lock",
                    stage="metadata-drift",
                    causes=tuple(problems),
                    hint="re-lock ('doit lock'); if the metadata is dynamic the lock guessed wrong",
                )
            patches = [(patch_name(p), sha256_file(p)) for p in request.patches]
            env_wheels = _env_wheels(request)
            build_record = {
                "build_key": request.key,
                "sdist": {"filename": node.sdist.filename, "sha256": node.sdist.sha256},
                "build_env": sorted(node.build_env),
                "variant": request.variant,
                "source_date_epoch": epoch,
                **({"git": g.node_data(node)["git"]} if node.git else {}),
            }
            sbom = sbom_document(
                BuiltFrom(
                    name=node.name,
                    version=node.version,
                    sdist_filename=node.sdist.filename,
                    sdist_sha256=node.sdist.sha256,
                    patches=patches,
                    build_env=env_wheels,
                    build_key=request.key,
                    variant=request.variant,
                    source_date_epoch=epoch,
                    crates=node.crates.crates if node.crates else (),
                    git=(node.git.url, node.git.commit) if node.git else None,
                ),
                request.evidence,
            )
            build_number = len(request.settings.changelog)
            wheel = finish_wheel(
                wheel,
                {BUILD_RECORD: canonical_json(build_record), SBOM_MEMBER: sbom},
                build_number=build_number or None,
                source_date_epoch=epoch,
            )
            final = staging / wheel.name
            shutil.move(str(wheel), final)
            # Our own rewrites must leave a wheel whose RECORD still checks out.
            problems = check_wheel_record(final)
            if problems:
                raise AffineurError(
                    "the wheel's RECORD is wrong after adding the build record and the SBOM",
                    stage="verify",
                    causes=tuple(problems),
                )
            facts = BuildFacts(
                lock_node=g.node_data(node),
                variant=request.variant,
                target=request.target,
                settings=request.settings.to_json(),
                patches=patches,
                build_env=env_wheels,
                build_key=request.key,
                source_date_epoch=epoch,
                network_isolation=request.network_isolation,
                builder_id=request.evidence.builder_id,
                started=started,
                finished=time.time(),
                source_attestation=request.source_attestation,
                host_tools=request.host_tools,
                python=interpreter.describe(),
            )
            details = {
                "source_date_epoch": epoch,
                "build_number": build_number,
                "sandbox": confinement.kind,
                "network": not request.network_isolation,
                "timeout": timeout,
                "jobs": request.jobs,
                "python": interpreter.key(),
                "interpreter": interpreter.executable,
                **(rust.record if rust else {}),
            }
            return final, details, facts
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _work_root(self) -> Path:
        root = self.workdir / "work"
        root.mkdir(parents=True, exist_ok=True)
        return root

    @staticmethod
    def _apply_patches(patches: Sequence[Path], source: Path, log: Path) -> None:
        # No fuzz: a patch whose context no longer matches must fail loudly, not
        # land a few lines away in a new version of the source.
        for patch in patches:
            with log.open("a") as out:
                out.write(f"=== patch {patch.name}\n")
                out.flush()
                proc = subprocess.run(
                    [
                        "patch",
                        "-p1",
                        "--forward",
                        "--fuzz=0",
                        "--batch",
                        "--no-backup-if-mismatch",
                        "-i",
                        str(patch),
                    ],
                    cwd=source,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if proc.returncode != 0:
                tail = log.read_text(errors="replace").splitlines()[-15:]
                raise AffineurError(
                    f"patch {patch} does not apply",
                    stage="patch",
                    causes=tuple(tail),
                    hint="refresh the patch against this version, or limit it to a version range",
                )
