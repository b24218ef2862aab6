"""The project's own error type: input it cannot use, said in one line that names what to fix.

The command line prints a :class:`LineageError` as that one line and exits with code 2; every other
exception is a bug or a fault, shown with its traceback (exit 1). A run either ends FAILED.
"""

from __future__ import annotations


class LineageError(ValueError):
    """Input the project cannot use (a dataset, weights, a device, a run id, a tracking URI, ...).

    The message names the file, field or parameter and says what to do.
    """


DatasetError = LineageError  # the name before the error covered weights, devices and runs too


class LeakageError(LineageError):
    """The dataset leaks between splits and ``on_leakage=fail`` was asked for."""


class TrackingError(LineageError):
    """The tracking URI cannot be used: no such store, a server that does not answer, refused credentials."""


class TrackingServerUnreachable(TrackingError):
    """The tracking URI names an HTTP server that does not answer."""


class TrackingCredentialsRejected(TrackingError):
    """The tracking server answers, but refuses the credentials (or their absence)."""


class TrackingUriUnusable(TrackingError):
    """The tracking URI names no store MLflow has, or a sqlite file that cannot be written."""
