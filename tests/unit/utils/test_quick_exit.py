"""utils/quick_exit.py: the processes reglab owns freeze their objects at exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from click.testing import CliRunner

from reglab.utils import quick_exit


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_objects_alive_at_exit_are_frozen_before_the_exit_collects_them():
    out = run_python("""
        import atexit, gc
        # handlers run last-in first-out: this one runs after freeze_at_exit's
        atexit.register(lambda: print("frozen", gc.get_freeze_count() > 1000))
        from reglab.utils.quick_exit import freeze_at_exit
        freeze_at_exit()
        freeze_at_exit()  # once
        import atexit as a
        print("handlers", a._ncallbacks())
    """)
    assert "handlers 2" in out and "frozen True" in out


def test_without_it_nothing_is_frozen_at_exit():
    out = run_python("""
        import atexit, gc
        atexit.register(lambda: print("frozen", gc.get_freeze_count()))
        import reglab.utils.quick_exit
    """)
    assert "frozen 0" in out


def test_every_command_of_the_cli_asks_for_it(monkeypatch):
    from reglab.cli import main

    monkeypatch.setattr(quick_exit, "_registered", False)
    registered = []
    monkeypatch.setattr(quick_exit.atexit, "register", registered.append)
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert registered == [quick_exit.gc.freeze]
