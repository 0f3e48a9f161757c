"""``bleprov completion SHELL``: print the shell completion script.

A command that prints, rather than typer's ``--install-completion`` (which appends to
~/.bashrc or ~/.zshrc by itself): the person decides where the script goes, as with
``gh completion``, ``kubectl completion`` or ``pip completion``. The script calls
``bleprov`` back with ``_BLEPROV_COMPLETE`` set; :func:`prepare` readies typer's
completion classes for that call (typer registers them only with ``add_completion``).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

#: The variable the completion script sets when it calls bleprov back.
COMPLETE_ENV = "_BLEPROV_COMPLETE"


#: The shells typer has a completion script for that a Linux host runs.
SHELLS = ("bash", "zsh", "fish")


def _check_shell(shell: str) -> str:
    """A plain value checked here: typer's choice error lists one shell a line."""
    if shell not in SHELLS:
        raise typer.BadParameter(f"{shell!r}: use {', '.join(SHELLS)}")
    return shell


def prepare() -> None:
    """Typer's completion classes, for the shell's call back (``_BLEPROV_COMPLETE``)."""
    if os.environ.get(COMPLETE_ENV):
        from typer._completion_classes import completion_init

        completion_init()


def completion(
    shell: Annotated[
        str,
        typer.Argument(
            metavar="SHELL",
            help="bash, zsh or fish.",
            show_default=False,
            callback=_check_shell,
            autocompletion=lambda: list(SHELLS),
        ),
    ],
) -> None:
    """Print the shell completion script for bleprov's commands and options.

    Install it where your shell loads completions, e.g.

      bleprov completion bash > ~/.local/share/bash-completion/completions/bleprov

      bleprov completion zsh > "${fpath[1]}/_bleprov"

      bleprov completion fish > ~/.config/fish/completions/bleprov.fish

    or try it in this shell only: eval "$(bleprov completion bash)".
    """
    from typer._completion_classes import completion_init
    from typer._completion_shared import get_completion_script

    completion_init()
    script = get_completion_script(prog_name="bleprov", complete_var=COMPLETE_ENV, shell=shell)
    typer.echo(script)
