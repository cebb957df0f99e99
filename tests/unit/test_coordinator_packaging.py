"""The coordinator's service packaging: the systemd unit and the container recipe start a real
`ownrec coordinator serve` with flags that exist and values it accepts, and `--public-url` (what a
container or a NAT needs) reaches the pin file and the certificate."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from agent.cli.coordinator import coordinator_serve
from agent.server.app import public_address

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "ownrec-coordinator.service"
CONTAINERFILE = ROOT / "packaging" / "container" / "Containerfile"


def unit_entries() -> list[tuple[str, str, bool]]:
    """(key, value, commented out) for every `Key=value` line of the unit (examples in comments included)."""
    entries = []
    for line in UNIT.read_text().splitlines():
        match = re.match(r"^(#?)([A-Za-z]+)=(.*)$", line)
        if match:
            entries.append((match[2], match[3], match[1] == "#"))
    return entries


def serve_flags() -> set[str]:
    """Every flag `ownrec coordinator serve --help` lists, asked of the command itself."""
    result = subprocess.run([sys.executable, "-m", "agent.cli", "coordinator", "serve", "--help"], capture_output=True,
                            text=True, timeout=120, env=os.environ | {"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", result.stdout))


def check_serve_command(argv: list[str], flags: set[str]) -> click.Context:
    """`argv` runs `ownrec coordinator serve`, every flag it uses exists, and the command accepts its values."""
    assert Path(argv[0]).name == "ownrec" and argv[1:3] == ["coordinator", "serve"], argv
    used = {arg.split("=")[0] for arg in argv[3:] if arg.startswith("--")}
    assert used <= flags, f"not flags of coordinator serve: {sorted(used - flags)}"
    return coordinator_serve.make_context("serve", argv[3:])  # raises on a bad value


def test_the_systemd_units_commands_are_real_serve_invocations():
    flags = serve_flags()
    commands = [(value, commented) for key, value, commented in unit_entries() if key == "ExecStart"]
    assert [commented for _, commented in commands] == [False, True]  # the one in use, and the PostgreSQL example
    for value, _ in commands:
        context = check_serve_command(shlex.split(value.replace("%d", "/run/credentials/x")), flags)
        # the state directory systemd creates and hands to the service's user is the one the command uses
        assert context.params["state_dir"] == Path("/var/lib/ownrec-coordinator")
        assert context.params["log_format"] == "json"
    entries = {key: value for key, value, commented in unit_entries() if not commented}
    assert entries["StateDirectory"] == "ownrec-coordinator"
    assert (entries["DynamicUser"], entries["NoNewPrivileges"], entries["ProtectSystem"]) == ("yes", "yes", "strict")
    assert entries["CapabilityBoundingSet"] == ""  # port 8443 needs no privilege
    # onnxruntime writes under $HOME: a directory systemd makes writable for the service
    assert entries["Environment"] == f"HOME=/var/cache/{entries['CacheDirectory']}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing_to_say_about_the_unit(tmp_path):
    # verify checks that the command exists: point it at this environment's ownrec.
    ownrec = Path(sys.executable).parent / "ownrec"
    if not ownrec.exists():
        pytest.skip(f"no ownrec script beside {sys.executable}")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/ownrec/bin/ownrec", str(ownrec)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    # verify exits 0 even for unknown keys and bad values: any line about the unit is a failure.
    lines = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    assert (result.returncode, lines) == (0, [])


def containerfile_instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_container_runs_a_real_serve_invocation_with_its_state_on_the_volume():
    instructions = containerfile_instructions()
    (entrypoint,) = [json.loads(v) for k, v in instructions if k == "ENTRYPOINT"]
    context = check_serve_command(entrypoint, serve_flags())
    (volume,) = [v for k, v in instructions if k == "VOLUME"]
    assert context.params["state_dir"] == Path(volume)
    assert context.params["host"] == "0.0.0.0"
    assert [v for k, v in instructions if k == "EXPOSE"] == [str(context.params["port"])]
    # the installed ownrec is the one the entrypoint runs, and the health check's Python is beside it
    assert any(k == "RUN" and "python -m venv /opt/ownrec" in v for k, v in instructions)
    assert Path(entrypoint[0]).parent == Path("/opt/ownrec/bin")
    (healthcheck,) = [v for k, v in instructions if k == "HEALTHCHECK"]
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3:])
    assert probe[:2] == ["/opt/ownrec/bin/python", "-c"]
    compile(probe[2], "healthcheck", "exec")
    assert f"https://127.0.0.1:{context.params['port']}/healthz" in probe[2]
    assert f"cafile='{volume}/tls-cert.pem'" in probe[2]  # where ensure_tls_certificate writes it
    # what it copies exists, and .dockerignore lets it through
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for k, v in instructions:
        if k == "COPY" and not v.startswith("--from"):
            for source in v.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source}" in ignore, source
    # the base image's Python satisfies the package's requires-python (>=3.11)
    bases = [v.split()[0] for k, v in instructions if k == "FROM"]
    assert all(re.match(r"python:3\.(1[1-9])-", base) for base in bases), bases


def test_public_url_is_what_the_pin_gives_and_the_certificate_covers():
    assert public_address("0.0.0.0", 8443, None) == ("https://127.0.0.1:8443", ["0.0.0.0"])
    assert public_address("0.0.0.0", 8443, "https://coord.example.org:9443/") == \
        ("https://coord.example.org:9443", ["0.0.0.0", "coord.example.org"])
    for bad in ("http://coord.example.org", "https://", "https://coord.example.org/path", "coord.example.org",
                "https://coord.example.org:port"):
        with pytest.raises(ValueError, match="is not https://NAME"):
            public_address("0.0.0.0", 8443, bad)


def test_a_bad_public_url_stops_serve_with_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "agent.cli", "coordinator", "serve", "--state-dir",
                             str(tmp_path / "state"), "--public-url", "http://coord.example.org"],
                            capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert result.returncode == 1
    assert "Error: the public URL 'http://coord.example.org' is not https://NAME[:PORT]" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "coordinator-pin.json").exists()
