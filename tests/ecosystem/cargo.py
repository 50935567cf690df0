"""A fake Rust side of the ecosystem: a sparse cargo registry on 127.0.0.1, a Rust extension.

The registry speaks cargo's sparse protocol: ``config.json`` (with ``dl`` and
``api``), one index file per crate at the path cargo computes from its name, and
``.crate`` downloads (gzipped tars of ``name-version/``) whose sha256 is the
``cksum`` the index gives. Every request is logged, so a test can show that a
build asked it nothing.

The extension, ``rust-adder``, is built by setuptools-rust (the real backend,
taken as an upstream wheel with its dependencies) and depends on ``tinyadd``
from the fake registry. Its build script tries to connect to an address the
build is given, and the extension reports how that went, so an import of the
built wheel shows whether a build could reach the network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from tests.ecosystem.sdist import FIXED_EPOCH


def crate_bytes(name: str, version: str, files: Mapping[str, str]) -> bytes:
    """A .crate: a gzipped tar of ``name-version/`` (fixed dates, so fixed bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for rel, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size, info.mtime, info.mode = len(data), FIXED_EPOCH, 0o644
            tf.addfile(info, io.BytesIO(data))
    # gzip's header holds a date too: fixed, or every call would give other bytes.
    return gzip.compress(buffer.getvalue(), mtime=FIXED_EPOCH)


def index_path(name: str) -> str:
    """Where cargo's sparse protocol looks for a crate's index file."""
    name = name.lower()
    if len(name) <= 2:
        return f"{len(name)}/{name}"
    if len(name) == 3:
        return f"3/{name[0]}/{name}"
    return f"{name[:2]}/{name[2:4]}/{name}"


@dataclass(frozen=True)
class FakeCrate:
    name: str
    version: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def index_line(self) -> str:
        entry = {
            "name": self.name,
            "vers": self.version,
            "deps": [],
            "cksum": self.sha256,
            "features": {},
            "yanked": False,
        }
        return json.dumps(entry)


def tinyadd(version: str = "1.0.0") -> FakeCrate:
    """The one crate ``rust-adder`` needs."""
    files = {
        "Cargo.toml": f'[package]\nname = "tinyadd"\nversion = "{version}"\nedition = "2021"\n',
        "src/lib.rs": "pub fn add(a: i64, b: i64) -> i64 {\n    a + b\n}\n",
    }
    return FakeCrate("tinyadd", version, crate_bytes("tinyadd", version, files))


class FakeCrateRegistry:
    """A sparse cargo registry on 127.0.0.1 serving the crates given to :meth:`add`."""

    def __init__(self) -> None:
        self.crates: dict[str, list[FakeCrate]] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def add(self, *crates: FakeCrate) -> None:
        with self._lock:
            for crate in crates:
                self.crates.setdefault(crate.name, []).append(crate)

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        """The registry as cargo names it (``sparse+http://…/``)."""
        return f"sparse+http://{self.address}/"

    def __enter__(self) -> FakeCrateRegistry:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def answer(self, path: str) -> bytes | None:
        base = f"http://{self.address}"
        if path == "/config.json":
            return json.dumps({"dl": f"{base}/api/v1/crates", "api": base}).encode()
        with self._lock:
            for name, crates in self.crates.items():
                if path == f"/{index_path(name)}":
                    return "".join(c.index_line() + "\n" for c in crates).encode()
                for crate in crates:
                    if path == f"/api/v1/crates/{name}/{crate.version}/download":
                        return crate.data
        return None


def _handler(registry: FakeCrateRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with registry._lock:
                registry.requests.append(self.path)
            body = registry.answer(self.path.split("?")[0])
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


# --- the extension --------------------------------------------------------------------

PROBE_VARIABLE = "RUST_ADDER_PROBE"
"""The address ``rust-adder``'s build script tries to connect to, when set."""

_BUILD_RS = """\
use std::io::Write;

fn main() {
    let outcome = match std::env::var("RUST_ADDER_PROBE") {
        Ok(addr) => match std::net::TcpStream::connect(addr.as_str()) {
            Ok(_) => String::from("connected"),
            Err(err) => format!("failed: {:?}", err.kind()),
        },
        Err(_) => String::from("not asked"),
    };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("probe.rs");
    let mut file = std::fs::File::create(out).unwrap();
    write!(file, "pub const PROBE: &str = {:?};", format!("{}\\0", outcome)).unwrap();
    println!("cargo:rerun-if-env-changed=RUST_ADDER_PROBE");
}
"""

_LIB_RS = """\
include!(concat!(env!("OUT_DIR"), "/probe.rs"));

#[no_mangle]
pub extern "C" fn rust_adder_add(a: i64, b: i64) -> i64 {
    tinyadd::add(a, b)
}

#[no_mangle]
pub extern "C" fn rust_adder_probe() -> *const u8 {
    PROBE.as_ptr()
}
"""

_INIT_PY = """\
import ctypes
import pathlib

_lib = ctypes.CDLL(str(next(pathlib.Path(__file__).parent.glob("_native*.so"))))
_lib.rust_adder_add.argtypes = [ctypes.c_int64, ctypes.c_int64]
_lib.rust_adder_add.restype = ctypes.c_int64
_lib.rust_adder_probe.restype = ctypes.c_char_p


def add(a, b):
    return _lib.rust_adder_add(a, b)


def probe():
    return _lib.rust_adder_probe().decode()
"""


def rust_adder_files(version: str = "1.0") -> dict[str, str]:
    """The source tree of ``rust-adder`` (without its Cargo.lock)."""
    return {
        "PKG-INFO": f"Metadata-Version: 2.2\nName: rust-adder\nVersion: {version}\n",
        "pyproject.toml": (
            "[build-system]\n"
            'requires = ["setuptools>=62.4", "setuptools-rust>=1.5"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "rust-adder"\nversion = "{version}"\n'
        ),
        "setup.py": (
            "from setuptools import setup\n"
            "from setuptools_rust import Binding, RustExtension\n\n"
            'native = RustExtension("rust_adder._native", binding=Binding.NoBinding)\n'
            'setup(packages=["rust_adder"], rust_extensions=[native])\n'
        ),
        "Cargo.toml": (
            '[package]\nname = "rust-adder-native"\nversion = "1.0.0"\nedition = "2021"\n\n'
            '[lib]\nname = "rust_adder_native"\ncrate-type = ["cdylib"]\n\n'
            '[dependencies]\ntinyadd = "1.0"\n'
        ),
        "build.rs": _BUILD_RS,
        "src/lib.rs": _LIB_RS,
        "rust_adder/__init__.py": _INIT_PY,
    }


def cargo_lock(tree: Path, registry: FakeCrateRegistry, cargo_home: Path) -> str:
    """The Cargo.lock cargo writes for ``tree`` against the fake registry.

    Cargo writes it, as upstream authors do: the lock names crates-io, whichever
    registry served the versions.
    """
    done = subprocess.run(
        [
            "cargo",
            "generate-lockfile",
            "--config",
            'source.crates-io.replace-with="fake"',
            "--config",
            f'source.fake.registry="{registry.url}"',
        ],
        cwd=tree,
        env={**os.environ, "CARGO_HOME": str(cargo_home), "CARGO_TERM_COLOR": "never"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cargo generate-lockfile failed:\n{done.stderr}")
    return (tree / "Cargo.lock").read_text()


def write_rust_sdist(
    out_dir: Path, registry: FakeCrateRegistry, cargo_home: Path, version: str = "1.0"
) -> Path:
    """``rust_adder-<version>.tar.gz`` with a Cargo.lock whose crates are not vendored."""
    files = rust_adder_files(version)
    with tempfile.TemporaryDirectory(prefix="rust-adder-") as tmp:
        tree = Path(tmp)
        for rel, text in files.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_text(text)
        files["Cargo.lock"] = cargo_lock(tree, registry, cargo_home)
    top = f"rust_adder-{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for rel, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mtime, info.mode = len(data), FIXED_EPOCH, 0o644
            tf.addfile(info, io.BytesIO(data))
    return path
