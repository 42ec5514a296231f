"""Where edgectl connects and with which admin token: flags, then EDGEFLEET_* variables, then the config file.

Precedence, highest first:
  coordinator  --coordinator > EDGEFLEET_COORDINATOR > config `coordinator` > 127.0.0.1:7400
  token        --token > EDGEFLEET_TOKEN > config `token` or `token_file`
  timeout      --timeout > config `timeout` > 10 s
  config file  --config > EDGEFLEET_CONFIG > ~/.config/edgefleet/edgectl.toml (may be absent)

Only the standard library here: this runs on every call, and edgectl must start fast.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from coordinator.cli.errors import CliError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_COORDINATOR = "127.0.0.1:7400"
DEFAULT_PORT = 7400
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_CONFIG_PATH = Path("~/.config/edgefleet/edgectl.toml")
# Where the coordinator keeps its admin token unless its data_dir says otherwise (coordinator/config.py).
ADMIN_TOKEN_HINT = "<data_dir>/admin.token (default data_dir: ~/.local/share/edgefleet/coordinator)"

ENV_COORDINATOR = "EDGEFLEET_COORDINATOR"
ENV_TOKEN = "EDGEFLEET_TOKEN"
ENV_CONFIG = "EDGEFLEET_CONFIG"

# Config file keys and the type each must have.
CONFIG_KEYS: dict[str, tuple[type, ...]] = {
    "coordinator": (str,),
    "token": (str,),
    "token_file": (str,),
    "timeout": (int, float),
}


@dataclass(frozen=True)
class ClientSettings:
    """Everything a connection needs, already validated."""

    address: str                 # HOST:PORT
    token: str                   # empty when none was given anywhere
    token_source: str            # where the token came from, for error messages: "--token", "EDGEFLEET_TOKEN", ...
    timeout_s: float
    config_path: Path | None     # the config file that was read, None when there was none


def resolve_settings(
    *,
    coordinator: str | None = None,
    token: str | None = None,
    config: Path | None = None,
    timeout_s: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    """Merge flags, environment and config file into ClientSettings; raise CliError naming what is wrong."""
    env = os.environ if environ is None else environ
    config_path, explicit = _config_path(config, env)
    file_values = load_config_file(config_path, required=explicit)
    used_config = config_path if file_values is not None else None
    file_values = file_values or {}

    address = coordinator or env.get(ENV_COORDINATOR) or file_values.get("coordinator") or DEFAULT_COORDINATOR
    address_source = (
        "--coordinator" if coordinator else ENV_COORDINATOR if env.get(ENV_COORDINATOR)
        else f"{config_path} (coordinator)" if file_values.get("coordinator") else "default"
    )
    address = normalize_address(address, source=address_source)

    resolved_token, token_source = _token(token, env, file_values, config_path)

    timeout = timeout_s if timeout_s is not None else float(file_values.get("timeout", DEFAULT_TIMEOUT_S))
    if not timeout > 0:
        raise CliError(f"timeout must be above 0 seconds, got {timeout:g}")
    return ClientSettings(address, resolved_token, token_source, timeout, used_config)


def _config_path(config: Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether the user named it (then it must exist)."""
    if config is not None:
        return Path(config).expanduser(), True
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser(), True
    return DEFAULT_CONFIG_PATH.expanduser(), False


def load_config_file(path: Path, *, required: bool) -> dict[str, Any] | None:
    """Read and check an edgectl TOML config file; None when it is absent and was not asked for."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise CliError(f"config file {path} does not exist") from None
        return None
    except OSError as exc:
        raise CliError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"config file {path} is not valid TOML: {exc}") from None
    for key, value in data.items():
        if key not in CONFIG_KEYS:
            known = ", ".join(CONFIG_KEYS)
            raise CliError(f"config file {path}: unknown key '{key}' (known keys: {known})")
        wanted = CONFIG_KEYS[key]
        # bool is an int in Python; `timeout = true` is still a mistake.
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise CliError(f"config file {path}: key '{key}' must be {_type_words(wanted)}, got {type(value).__name__}")
    if "token" in data and "token_file" in data:
        raise CliError(f"config file {path}: set either 'token' or 'token_file', not both")
    return data


def _type_words(types: tuple[type, ...]) -> str:
    return "a number" if float in types else "a string"


def _token(
    flag: str | None, env: Mapping[str, str], file_values: Mapping[str, Any], config_path: Path
) -> tuple[str, str]:
    if flag:
        return flag.strip(), "--token"
    if env.get(ENV_TOKEN):
        return env[ENV_TOKEN].strip(), ENV_TOKEN
    if file_values.get("token"):
        return str(file_values["token"]).strip(), f"{config_path} (token)"
    if file_values.get("token_file"):
        token_path = Path(file_values["token_file"]).expanduser()
        if not token_path.is_absolute():
            # Relative to the config file, so a config and its token can move together.
            token_path = config_path.parent / token_path
        try:
            token = token_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"cannot read token_file {token_path} (named in {config_path}): {exc.strerror or exc}") from None
        if not token:
            raise CliError(f"token_file {token_path} (named in {config_path}) is empty")
        return token, f"token_file {token_path}"
    return "", ""


def normalize_address(address: str, *, source: str = "--coordinator") -> str:
    """HOST:PORT, [IPv6]:PORT, or a bare HOST (port 7400); a scheme such as grpc:// is not accepted."""
    address = address.strip()
    if not address or "://" in address or "/" in address or " " in address:
        raise CliError(f"coordinator address {address!r} from {source} is not HOST:PORT")
    if address.startswith("["):
        host, sep, rest = address[1:].partition("]")
        if not sep or not host:
            raise CliError(f"coordinator address {address!r} from {source} is not HOST:PORT")
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise CliError(f"coordinator address {address!r} from {source} is not HOST:PORT")
        host = f"[{host}]"
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    elif ":" not in address:
        host, port = address, ""
    else:
        raise CliError(f"coordinator address {address!r} from {source}: write an IPv6 address as [ADDR]:PORT")
    if not host:
        raise CliError(f"coordinator address {address!r} from {source} has no host")
    if port == "":
        port = str(DEFAULT_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"coordinator address {address!r} from {source}: port {port!r} is not a number in 1-65535")
    return f"{host}:{int(port)}"
