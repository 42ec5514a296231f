"""edge-agent's entry point: `run` parsed by argparse without typer, the same options as the typer app's `run`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import cli


def test_run_takes_flags_then_environment_then_defaults():
    values = cli.parse_run(["--socket", "/tmp/a.sock", "--telemetry-interval", "0.5"],
                           environ={"EDGEFLEET_AGENT_SOCKET": "/tmp/env.sock", "EDGEFLEET_AGENT_PROFILE": "jetson-nano"})
    assert values["socket"] == Path("/tmp/a.sock")           # the flag wins over its variable
    assert values["profile"] == "jetson-nano"                 # the variable when no flag
    assert values["state_dir"] == cli.DEFAULT_STATE_DIR       # the default when neither
    assert values["telemetry_interval"] == 0.5 and values["log_level"] == "info" and values["keepalive"] is None


@pytest.mark.parametrize("argv, words", [
    (["--telemetry-interval", "0.01"], "--telemetry-interval: 0.01 is not in the range x>=0.1"),
    (["--keepalive", "soon"], "--keepalive: 'soon' is not a valid integer"),
    (["--storage-budget", "0"], "--storage-budget: 0 is not in the range x>=1"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_run_flags_name_the_flag(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_run(argv, environ={})
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err


def test_an_empty_environment_variable_counts_as_unset():
    assert cli.parse_run([], environ={"EDGEFLEET_AGENT_SOCKET": ""})["socket"] is None


def test_the_typer_run_has_the_same_options_as_argparse():
    import typer.main

    command = typer.main.get_command(cli.app).commands["run"]
    typer_options = {p.name: p for p in command.params}
    assert set(typer_options) == {o.dest for o in cli.RUN_OPTIONS}
    for option in cli.RUN_OPTIONS:
        param = typer_options[option.dest]
        assert set(param.opts) == set(option.flags), option.dest
        assert param.envvar == option.envvar, option.dest
        assert param.default == option.default, option.dest
        assert param.min == option.minimum, option.dest
    flags = {f for action in cli.run_parser()._actions for f in action.option_strings}
    assert {f for o in cli.RUN_OPTIONS for f in o.flags} <= flags


def test_run_never_imports_typer_or_pydantic(tmp_path):
    # An unenrolled state directory: `run` fails right after parsing, having imported what it imports.
    code = ("import sys\nfrom agent import cli\n"
            f"try:\n    cli.main(['run', '--state-dir', {str(tmp_path)!r}])\nexcept SystemExit as e:\n    print(e.code)\n"
            "print(sorted(m for m in ('typer', 'click', 'pydantic', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:2] == ["1", "[]"], out.stdout + out.stderr
    assert "identity.json not found" in out.stderr


def _run_state_dir_error(command: list[str], tmp_path, **env: str) -> str:
    """stderr of `run` on an unenrolled state directory (it fails right after the debug line)."""
    import os

    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONOPTIMIZE", cli.OPTIMIZE_ENV)}
    out = subprocess.run([*command, "run", "--state-dir", str(tmp_path), "--log-level", "debug"], capture_output=True,
                         text=True, timeout=120, env={**environ, **env}, cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 1 and "identity.json not found" in out.stderr, out.stderr
    return out.stderr


@pytest.mark.skipif(sys.version_info < (3, 11), reason="-X no_debug_ranges is 3.11's")
@pytest.mark.parametrize("how", ["script", "module"])
def test_run_reexecutes_itself_without_docstrings(tmp_path, how):
    script = Path(sys.executable).with_name("edge-agent")
    if how == "script" and not script.exists():
        pytest.skip("the edge-agent console script is not installed")
    command = [str(script)] if how == "script" else [sys.executable, "-m", "agent.cli"]
    assert "python optimize level 2, ['no_debug_ranges']" in _run_state_dir_error(command, tmp_path)
    assert "python optimize level 0, []" in _run_state_dir_error(command, tmp_path, EDGEFLEET_AGENT_OPTIMIZE="0")


def test_optimized_command_keeps_the_program_and_its_arguments(monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.executable, "run", "--state-dir", "/x"])  # a file that exists: a script
    monkeypatch.setitem(sys.modules, "__main__", type(sys)("__main__"))  # no __spec__: started as a script
    command = cli.optimized_command(["run", "--state-dir", "/x"], environ={})
    if sys.flags.optimize >= 2:
        pytest.skip("this interpreter already runs under -OO")
    assert command[0] == sys.executable and command[-4:] == [sys.executable, "run", "--state-dir", "/x"]
    assert "-OO" in command and not [f for f in command if f in ("-O",)]
    assert cli.optimized_command(["run"], environ={cli.OPTIMIZE_ENV: "0"}) is None


def test_a_caller_passing_argv_is_never_replaced(monkeypatch):
    """main(argv) from a test or a tool runs in its own process: no exec, whatever the flags."""
    monkeypatch.setattr(cli.os, "execv", lambda *a: pytest.fail("execv called"))
    monkeypatch.setattr(cli, "run_agent", lambda **kw: None)
    cli.main(["run", "--state-dir", "/nonexistent"])
