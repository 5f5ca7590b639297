"""The one error hierarchy of covidct.

Messages say what was received, what was expected and how to fix it. Only the CLI and
the service turn these into exit codes or HTTP statuses.
"""

from __future__ import annotations


class CovidCTError(Exception):
    """Base class of every error covidct raises on purpose."""

    exit_code: int = 2


class InputError(CovidCTError):
    """The input (file, folder, array) cannot be used as a CT volume."""


class SeriesSelectionError(InputError):
    """The input holds CT, but which series to analyse is ambiguous or absent."""


class ConfigError(CovidCTError):
    """A configuration value or command-line option is invalid."""


class ModelError(CovidCTError):
    """Model weights are missing, corrupt or do not match the architecture."""


class DataError(CovidCTError):
    """A training or evaluation dataset is malformed or empty."""


class PacsError(CovidCTError):
    """A PACS / DICOMweb server refused or failed a request."""
