"""An index client costs nothing until it is asked something."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_client_imports_requests_only_for_its_first_request() -> None:
    # A build whose sources are all at hand makes a client and never asks it.
    code = textwrap.dedent(
        """
        import sys
        from affineur.index import IndexClient

        client = IndexClient(["http://127.0.0.1:9/simple"], retries=0)
        assert "requests" not in sys.modules, "imported before any request"
        session = client.http.session
        assert "requests" in sys.modules and client.http.session is session
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
