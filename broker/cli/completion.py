"""`fedbroker completion bash|zsh|fish`: the shell's completion script, from click's own.

    eval "$(fedbroker completion bash)"     # in ~/.bashrc
    fedbroker completion zsh > "${fpath[1]}/_fedbroker"
    fedbroker completion fish > ~/.config/fish/completions/fedbroker.fish

Commands and options complete, and workload ids and names where a broker answers quickly.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

PROG = "fedbroker"
COMPLETE_VAR = "_FEDBROKER_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (see `fedbroker completion --help`)."""
    from broker.cli import cli

    kind = get_completion_class(shell)
    assert kind is not None  # every choice has a class in click
    click.echo(kind(cli, {}, PROG, COMPLETE_VAR).source())
