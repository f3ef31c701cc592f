"""Prefect flows and the command line: the only layer that knows Prefect.

Health data: nothing phones home. These defaults are set before Prefect is imported anywhere
in chartaudit, so every entry point (CLI, tests, `prefect deploy`) inherits them.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The temporary server a flow run starts can take 20 s or more on a loaded 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# The run log goes to standard output, so standard error carries only the one-line error a
# scheduler or a person acts on.
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM", "ext://sys.stdout")
