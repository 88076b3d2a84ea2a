"""The errors gradtwin raises at its boundary, each mapped to one exit code by the CLI."""

from __future__ import annotations


class GradtwinError(Exception):
    """Base of every expected error; the CLI prints its message on one line."""

    exit_code = 1


class UsageError(GradtwinError, ValueError):
    """An argument outside its allowed values (learning rate, device, dtype...)."""

    exit_code = 2


class DataError(GradtwinError, ValueError):
    """Data that cannot be used: NaN, infinite, empty, ragged or non-numeric."""

    exit_code = 1


class DataTypeError(DataError, TypeError):
    """Data of a kind that is not real numbers: strings, complex, objects that are not numbers."""


class OutputError(GradtwinError):
    """An output file that could not be written (disk full, no permission); nothing half-written is left."""

    exit_code = 1


class DivergedError(GradtwinError, ArithmeticError):
    """A training run whose loss or parameters left the finite, bounded range."""

    exit_code = 3
