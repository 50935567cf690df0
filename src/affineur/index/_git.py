"""Sources from git repositories: a tag or commit turned into a deterministic archive.

Some projects publish no sdist at all, or the sdist lacks what a build needs
(submodules, test data a patch relies on). An override's ``git`` setting names
the repository and the ref (``v${version}``, a branch or a commit). In the
network stage the repository is fetched, the ref resolved to one commit, its
submodules checked out, and the tracked files packed into a plain tar whose
bytes depend only on the commit: files in sorted order, every mtime the
commit's time, modes 0644/0755, no owners. So the archive is hashed, stored and
verified exactly like an sdist, and two machines that make it get the same
sha256. A plain tar rather than a gzip one: compressed bytes depend on the zlib
build, the tar's only on its content.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from packaging.utils import NormalizedName, canonicalize_name

from affineur.errors import AffineurError
from affineur.index._distfile import DistFile
from affineur.index._urls import redact_url

__all__ = ["GitSource", "git_archive_name", "is_local_repository"]

GIT_TIMEOUT = 1800.0
"""Seconds one git command may take (a big repository's full fetch is slow, not hung)."""


def git_archive_name(name: str, version: str, commit: str) -> str:
    """The store's file name for one commit's archive.

    The commit is part of the name so that moving a ref to another commit never
    meets the old archive under the same name (the store refuses a file whose
    hash is not the one the lock records).
    """
    return f"{canonicalize_name(name).replace('-', '_')}-{version}-git-{commit[:12]}.tar"


def is_local_repository(url: str) -> bool:
    """A path or file:// URL: the one case where submodules may use the file transport.

    git refuses local submodules by default (a hostile .gitmodules could copy any
    repository on this machine into the archive); a repository that is itself
    local is trusted as much as the paths it names.
    """
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return True
    if "://" in url:
        return False
    # scp-like "host:path" is remote; "/abs", "./rel" and a bare relative path are not.
    return ":" not in url.split("/", 1)[0]


@dataclass(frozen=True)
class GitSource:
    """One package's repository and ref; a :class:`~affineur.index.Fetcher` once pinned.

    ``commit`` pins it: fetching then takes exactly that commit (the build
    stage re-creating a locked archive). Without it, :meth:`checkout` resolves
    ``ref`` and says which commit it got.
    """

    project: NormalizedName
    version: str
    url: str
    ref: str
    commit: str | None = None

    # --- Fetcher, for the store --------------------------------------------------

    def find_file(self, project: str, filename: str) -> DistFile:
        return DistFile(self.project, filename, redact_url(self.url), "sdist", None)

    def download(self, file: DistFile, dest: Path) -> Path:
        """Make the archive of the pinned commit as ``dest/<file.filename>``."""
        assert self.commit is not None, "only a pinned source is fetched into the store"
        with tempfile.TemporaryDirectory(prefix=".git-", dir=dest) as tmp:
            commit, archive = self.checkout(Path(tmp))
            if archive.name != file.filename:
                raise self._error(f"commit {commit} makes {archive.name}, not {file.filename}")
            return archive.replace(dest / file.filename)

    # --- the network stage -------------------------------------------------------

    def checkout(self, work: Path) -> tuple[str, Path]:
        """Fetch, resolve, check out with submodules and archive, all under ``work``.

        Returns the full commit hash and the archive (inside ``work``).
        """
        tree = work / "tree"
        self._git("init", "-q", str(tree))
        self._git("-C", str(tree), "remote", "add", "origin", self.url)
        wanted = self.commit or self.ref
        commit = self._fetch(tree, wanted)
        if self.commit is not None and commit != self.commit:
            raise self._error(f"{self.commit} resolved to {commit}")
        self._git("-C", str(tree), "-c", "advice.detachedHead=false", "checkout", "-q", commit)
        allow_file = ["-c", "protocol.file.allow=always"] if is_local_repository(self.url) else []
        self._git(
            "-C", str(tree), *allow_file, "submodule", "update", "--init", "--recursive", "-q"
        )  # fmt: skip
        mtime = int(self._git("-C", str(tree), "show", "-s", "--format=%ct", commit).strip())
        archive = work / git_archive_name(self.project, self.version, commit)
        top = f"{self.project.replace('-', '_')}-{self.version}"
        _write_archive(tree, self._tracked(tree), top, mtime, archive)
        return commit, archive

    def _fetch(self, tree: Path, wanted: str) -> str:
        """The commit ``wanted`` names, fetched into ``tree``.

        A shallow fetch of just that ref (tag, branch, or a full commit hash where
        the server allows it) is tried first; a full fetch of branches and tags is
        the fallback for short hashes and servers that refuse fetching by hash.
        """
        try:
            self._git("-C", str(tree), "fetch", "-q", "--depth", "1", "--no-tags", "origin", wanted)
            return self._git("-C", str(tree), "rev-parse", "FETCH_HEAD^{commit}").strip()
        except AffineurError:
            pass
        self._git(
            "-C", str(tree), "fetch", "-q", "--tags", "origin",
            "+refs/heads/*:refs/remotes/origin/*",
        )  # fmt: skip
        for candidate in (wanted, f"origin/{wanted}"):
            try:
                return self._git(
                    "-C", str(tree), "rev-parse", "--verify", "-q", f"{candidate}^{{commit}}"
                ).strip()  # fmt: skip
            except AffineurError:
                continue
        raise self._error(
            f"no tag, branch or commit {wanted!r}",
            hint="check the override's git ref; '${version}' in it is the version being locked",
        )

    def _tracked(self, tree: Path) -> list[str]:
        out = self._git("-C", str(tree), "ls-files", "-z", "--recurse-submodules")
        return sorted({p for p in out.split("\0") if p})

    def _git(self, *args: str) -> str:
        env = {
            **os.environ,
            # Never wait for a password nobody will type: a lock runs unattended.
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "LC_ALL": "C",
        }
        # Content must not depend on this machine's settings (line endings, symlinks).
        fixed = ["-c", "core.autocrlf=false", "-c", "core.symlinks=true"]
        try:
            done = subprocess.run(
                ["git", *fixed, *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=GIT_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            raise self._error(
                "git is not installed", hint="install git to lock packages with a 'git' source"
            ) from None
        except subprocess.TimeoutExpired:
            raise self._error(f"git {args[-1]} took more than {GIT_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            said = done.stderr.strip().splitlines()
            last = said[-1] if said else f"exit {done.returncode}"
            raise self._error(last.replace(self.url, redact_url(self.url)))
        return done.stdout

    def _error(self, message: str, hint: str | None = None) -> AffineurError:
        return AffineurError(
            f"git source {redact_url(self.url)} at {self.ref}: {message}",
            package=self.project,
            version=self.version,
            stage="download",
            key_path=("git",),
            hint=hint,
        )


def _write_archive(tree: Path, files: list[str], top: str, mtime: int, dest: Path) -> None:
    """A tar of ``files`` (posix paths under ``tree``) whose bytes depend only on them."""
    dirs = {p.as_posix() for f in files for p in Path(f).parents if p != Path()}
    entries = sorted(dirs | set(files))

    def info(name: str) -> tarfile.TarInfo:
        made = tarfile.TarInfo(f"{top}/{name}" if name else top)
        made.mtime, made.uid, made.gid, made.uname, made.gname = mtime, 0, 0, "", ""
        return made

    tmp = dest.with_name(dest.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        root = info("")
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(root)
        for rel in entries:
            path = tree / rel
            entry = info(rel)
            try:
                st = path.lstat()
            except FileNotFoundError:
                # A tracked path absent from the checkout (sparse, or an LFS pointer
                # git could not smudge) is left out rather than guessed.
                continue
            if rel in dirs or stat.S_ISDIR(st.st_mode):
                # A submodule that was not checked out is an empty directory.
                entry.type, entry.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(entry)
            elif stat.S_ISLNK(st.st_mode):
                entry.type, entry.mode = tarfile.SYMTYPE, 0o777
                entry.linkname = str(path.readlink())
                tar.addfile(entry)
            elif stat.S_ISREG(st.st_mode):
                entry.mode = 0o755 if st.st_mode & 0o111 else 0o644
                entry.size = st.st_size
                with path.open("rb") as f:
                    tar.addfile(entry, f)
    tmp.replace(dest)
