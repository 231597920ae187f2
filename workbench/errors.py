"""The one place workbench's exception types live.

Every message says what went wrong and how to fix it, on one line; the CLI prints
it without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base of every error the workbench raises on purpose."""

    exit_code: int = 2


class ConfigError(WorkbenchError):
    """A setting, policy or command-line value is invalid."""


class DataError(WorkbenchError):
    """Input data is missing, malformed or unusable (columns, labels, sizes)."""


class ModelError(WorkbenchError):
    """A model file is missing, corrupt, or does not fit the tokenizer/task."""


class InputMismatchError(WorkbenchError):
    """A feed or calibration set does not match a model's inputs (names, shapes, dtypes)."""


class CalibrationError(WorkbenchError):
    """Calibration could not produce trustworthy ranges (NaN, empty set, wrong cache)."""


class EngineBuildError(WorkbenchError):
    """A backend failed to build an engine or quantized model."""


class BackendUnavailableError(WorkbenchError):
    """A backend's library or hardware is absent on this machine."""

    exit_code = 3


class ResultsError(WorkbenchError):
    """A results directory or record is missing, corrupt or of another schema."""


class GateFailedError(WorkbenchError):
    """Raised only by the CLI layer to exit 1 when a gate fails."""

    exit_code = 1


# Where the CLI writes an internal error's traceback: the folder of the run, search or sweep
# under way (set by the code that creates it), else a cache folder. One process, one command.
_output_dir: list[str] = []


def note_output_dir(path: object) -> None:
    """Record the folder the current command writes into (the crash log goes there)."""
    _output_dir[:] = [str(path)]


def noted_output_dir() -> str | None:
    """The folder recorded by ``note_output_dir``, or None."""
    return _output_dir[0] if _output_dir else None
