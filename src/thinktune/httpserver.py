"""Running an ASGI app under uvicorn until SIGINT / SIGTERM (``thinktune serve``, ``thinktune label``)."""

from __future__ import annotations

import threading
from typing import Any

from thinktune.errors import ThinktuneError


def run_until_signalled(app: Any, host: str, port: int, log_level: str = "warning",
                        graceful_timeout: int = 30) -> None:
    """Serve ``app`` on ``host:port`` (blocking); a signalled, graceful stop returns normally."""
    import uvicorn

    run_config_until_signalled(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                              timeout_graceful_shutdown=graceful_timeout))


def run_config_until_signalled(config: Any) -> None:
    """Run a ``uvicorn.Config`` (blocking) until SIGINT / SIGTERM.

    uvicorn handles the signal (graceful shutdown), then re-raises it to the handler it found installed; a no-op
    handler there makes a requested stop a normal exit instead of a kill (exit status 0, not -15 / 130)."""
    import signal

    import uvicorn

    server = uvicorn.Server(config)
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits 1 or 3 when it cannot start (the port was taken after a check)
        raise ThinktuneError(f"the server could not start on {config.host}:{config.port} (exit {e.code}); is the "
                             "port in use? choose another with --port") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
