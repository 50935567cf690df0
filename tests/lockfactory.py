"""Small lock graphs and project trees for the workflow command tests.

``pkg("a==1", install=["b==2"], build=["flit-core==3.9"])`` reads like the lock
it builds: install edges, build-system edges, and a build environment made of
the build requirements plus their install closure (as the locker records it).
"""

from __future__ import annotations

import hashlib
import subprocess
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

from affineur.graph import Edge, FileRef, Graph, Node, NodeKey, dumps, install_closure

COLLECTION = """\
# what the web team ships
description = "web things"
variants = ["cpu"]
requirements = [
    "requests>=2",  # the client everyone uses
    "idna",
]
"""

VARIANT = """\
description: CPU-only builds
python: "3.11"
platform: {sys_platform: linux, platform_machine: x86_64}
indexes: ["http://127.0.0.1:9/simple"]
"""


def sha(text: str) -> str:
    """A stable, distinct, schema-valid sha256 per label."""
    return hashlib.sha256(text.encode()).hexdigest()


def pkg(
    key: str,
    *,
    install: Iterable[str] = (),
    build: Iterable[str] = (),
    build_env: Iterable[str] | None = None,
    sdist_sha: str | None = None,
    prebuilt: bool = False,
) -> Node:
    name, version = key.split("==")
    edges = [Edge(NodeKey(k), "install", k.split("==")[0]) for k in install]
    edges += [Edge(NodeKey(k), "build-system", k.split("==")[0]) for k in build]
    ref = FileRef(f"{name}-{version}.tar.gz", sdist_sha or sha(key))
    wheel = FileRef(f"{name.replace('-', '_')}-{version}-py3-none-any.whl", sha(key + "w"))
    return Node(
        name=name,
        version=version,
        sdist=None if prebuilt else ref,
        wheel=wheel if prebuilt else None,
        prebuilt=prebuilt,
        edges=tuple(sorted(edges)),
        build_env=tuple(NodeKey(k) for k in (build if build_env is None else build_env)),
    )


def graph(
    *nodes: Node,
    top: Mapping[str, str] | Iterable[str] = (),
    collection: str = "web",
    variant: str = "cpu",
    input_hash: str | None = None,
) -> Graph:
    """``top`` maps node keys to the requirement text (or lists keys: text = the name)."""
    reqs = dict(top) if isinstance(top, Mapping) else {k: k.split("==")[0] for k in top}
    g = Graph(
        collection=collection,
        variant=variant,
        input_hash=input_hash or sha("inputs"),
        target={"python_version": "3.11", "sys_platform": "linux"},
        toplevel=tuple(Edge(NodeKey(k), "toplevel", r) for k, r in sorted(reqs.items())),
        nodes={n.key: n for n in nodes},
    )
    install_closure(g)  # fails loudly on a dangling factory key
    return g


def web_graph(*, requests: str = "2.32.3", urllib3: str = "2.2.1") -> Graph:
    """requests + idna, built with flit-core and setuptools (two setuptools versions)."""
    return graph(
        pkg(f"requests=={requests}", install=[f"urllib3=={urllib3}", "idna==3.7"],
            build=["setuptools==70.0.0"]),
        pkg(f"urllib3=={urllib3}", build=["hatchling==1.25.0"],
            build_env=["hatchling==1.25.0", "packaging==24.1"]),
        pkg("idna==3.7", build=["flit-core==3.9.0"]),
        pkg("hatchling==1.25.0", install=["packaging==24.1"], build=["setuptools==69.5.1"]),
        pkg("packaging==24.1", build=["flit-core==3.9.0"]),
        pkg("flit-core==3.9.0"),
        pkg("setuptools==70.0.0"),
        pkg("setuptools==69.5.1"),
        top={f"requests=={requests}": "requests>=2", "idna==3.7": "idna"},
    )  # fmt: skip


def write_project(
    root: Path,
    graphs: Iterable[Graph] = (),
    *,
    files: Mapping[str, str] | None = None,
) -> Path:
    """A project with the web collection and cpu variant (or ``files``), and these locks."""
    layout = {"collections/web.toml": COLLECTION, "variants/cpu.yaml": VARIANT, **(files or {})}
    for rel, text in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "overrides").mkdir(exist_ok=True)
    for g in graphs:
        write_lock(root, g)
    return root


def write_lock(root: Path, g: Graph) -> Path:
    path = root / "lock" / g.collection / g.variant / "graph.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dumps(g))
    return path


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def commit_all(root: Path, message: str = "lock") -> None:
    if not (root / ".git").exists():
        git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
