"""chartaudit: batch retrospective chart audit of leg-numbness care against guideline measures."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chartaudit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
