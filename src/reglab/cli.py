"""The ``reglab`` command line. Studies (``reglab run``) arrive with the studies issue."""

from __future__ import annotations

import platform

import click

import reglab


@click.group()
@click.version_option(reglab.__version__, prog_name="reglab")
def main() -> None:
    """reglab: a regularization laboratory for neural networks."""


@main.command()
def info() -> None:
    """Prints the versions and devices reglab sees."""
    import torch

    click.echo(f"reglab {reglab.__version__}")
    click.echo(f"python {platform.python_version()}")
    click.echo(f"torch {torch.__version__} (threads: {torch.get_num_threads()})")
    cuda = torch.cuda.is_available()
    click.echo(f"cuda {'available: ' + torch.cuda.get_device_name(0) if cuda else 'not available'}")
