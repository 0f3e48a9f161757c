"""Names of enum members as a person reads them in a message ("wrong password", not
``wrong_password`` or ``JoinFailure.WRONG_PASSWORD``). JSON output keeps the identifiers."""

from __future__ import annotations

import enum


def words(member: enum.Enum) -> str:
    """``JoinFailure.WRONG_PASSWORD`` -> ``"wrong password"``."""
    return (member.name or str(member.value)).lower().replace("_", " ")
