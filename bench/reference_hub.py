"""Starts the reference hub (the `aimarket-hub` package from PyPI) for `bench/compare`.

Usage: python reference_hub.py PORT PARENT_PID

It serves `aimarket_hub.api.create_app()` under uvicorn on 127.0.0.1:PORT (the packaged
`aimarket serve` always binds 9083). Everything else is configured by the caller through the
package's own environment variables, with the working directory set to a scratch folder (the
package writes `data/` relative to it).

Two things are added here, nothing else:

- The package's outbound-URL guard refuses every non-global address, so its crawler cannot
  reach providers on loopback at all. The guard is wrapped to also accept plain-http URLs
  whose host is the literal 127.0.0.1 or ::1 (what the benchmark's providers use); any other
  URL still goes through the original check.
- The process exits when the benchmark that started it goes away, so an interrupted run
  leaves no hub behind.
"""

import os
import sys
import threading
import time
from urllib.parse import urlsplit

LOOPBACK_HOSTS = {"127.0.0.1", "::1"}


def allow_literal_loopback() -> None:
    from aimarket_hub import crawler

    checked = crawler._url_is_safe

    def loopback_or_checked(url, *args, **kwargs):
        if isinstance(url, str) and not any(c in url for c in "\r\n\t"):
            try:
                parts = urlsplit(url)
                if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
                    return True
            except ValueError:
                pass
        return checked(url, *args, **kwargs)

    crawler._url_is_safe = loopback_or_checked


def exit_with_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: reference_hub.py PORT PARENT_PID")
    port, parent = int(sys.argv[1]), int(sys.argv[2])
    exit_with_parent(parent)
    allow_literal_loopback()

    import uvicorn
    from aimarket_hub.api import create_app

    uvicorn.run(create_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
