"""``tether proxy``: the egress proxy for legacy HTTP systems (secret injection after an allow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import uvicorn

from tether.cli.common import err_console, fail, tether_errors
from tether.cli.config_schema import option
from tether.cli.server_options import (
    Shared,
    with_shared_options,
)
from tether.logs import configure_logging, flush_logs, get_logger
from tether.proxy import load_config, open_proxy
from tether.runtime import open_runtime

log = get_logger("tether.proxy")


@with_shared_options
def proxy(
    shared: Shared,
    proxy_config: Annotated[
        Path | None, option("proxy.proxy_config", "--proxy-config", dir_okay=False)
    ] = None,
    host: Annotated[str, option("proxy.host", "--host")] = "127.0.0.1",
    port: Annotated[int, option("proxy.port", "--port")] = 8472,
    metrics: Annotated[bool, option("proxy.metrics", "--metrics/--no-metrics")] = True,
) -> None:
    """Forward agents' HTTP calls to legacy services: authorize each one, inject the service's
    secret, record the effect. Agents call http://HOST:PORT/<upstream>/<path> with
    'Authorization: Bearer <SVID>' and 'X-Tether-Grant: <grant>'. GET /metrics is Prometheus
    text."""
    if proxy_config is None:
        fail(
            "which upstreams? give the proxy's file with --proxy-config FILE (or "
            "TETHER_PROXY_CONFIG, or proxy.proxy_config in tether.yaml)",
            "configuration_error",
        )
    json_logs = shared.json_logs
    # uvicorn's own lines too, so a JSON log stays one JSON object per line.
    configure_logging(shared.log_level.value, json=json_logs, capture_stdlib=True, queued=True)
    with tether_errors():
        loaded = load_config(proxy_config)
        runtime = open_runtime(shared.runtime_config(metrics=metrics))
    try:
        with tether_errors():
            _, app = open_proxy(loaded, runtime)
        upstreams = ", ".join(sorted(loaded.upstreams))
        if json_logs:
            log.info(
                "proxy_listening",
                url=f"http://{host}:{port}",
                upstreams=upstreams,
                routes=len(loaded.routes),
            )
        else:
            err_console.print(
                f"tether egress proxy on http://{host}:{port}/<upstream>/<path>  upstreams "
                f"{upstreams}  routes {len(loaded.routes)}",
                highlight=False,
            )
        uvicorn.run(
            app, host=host, port=port, log_level="warning", log_config=None, access_log=False
        )
    finally:
        runtime.close()
        flush_logs()  # a signal may end the process before atexit runs
