"""Fixtures for tests against real peers: the Callplane server, SIPp and baresip.

A test that needs a peer which is not installed is skipped with the reason, except under
`CI=true`, where a missing peer fails the test so that CI cannot pass by skipping everything
(`scripts/install-test-deps` installs the peers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.baresip import TONE_HZ, Baresip, baresip_available
from harness.ports import free_udp_tcp_port
from harness.server import RunningServer, default_config, extension_password, start_server
from harness.sipp import SippUas, register_phone, sipp_available

CI = os.environ.get("CI", "").lower() == "true"


def _require(available: bool, peer: str, package: str) -> None:
    if available:
        return
    message = f"{peer} is not installed (Debian package {package}; run scripts/install-test-deps)"
    if CI:
        pytest.fail(message + " -- required under CI=true", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/integration is marked `integration`."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def need_sipp() -> None:
    _require(sipp_available(), "SIPp", "sip-tester")


@pytest.fixture
def need_baresip() -> None:
    _require(baresip_available(), "baresip", "baresip")


@pytest.fixture(name="default_config")
def default_config_fixture() -> Callable[..., dict[str, Any]]:
    """A function building the default tenant config with free trunk ports."""
    return default_config


@pytest.fixture
def start_pbx(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers (`start_pbx(config=None, **serve_flags)`); all are stopped at teardown."""
    started: list[RunningServer] = []
    counter = iter(range(1_000))

    def start(config: dict[str, Any] | None = None, **serve_flags: Any) -> RunningServer:
        server = start_server(
            tmp_path / f"pbx{next(counter)}", config or default_config(), **serve_flags
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def pbx_config() -> dict[str, Any]:
    """The config the `pbx` fixture serves (override in a test module to change it)."""
    return default_config()


@pytest.fixture
def pbx(start_pbx: Callable[..., RunningServer], pbx_config: dict[str, Any]) -> RunningServer:
    """A server started on the default config, stopped after the test."""
    return start_pbx(pbx_config)


@pytest.fixture
def sipp_dir(need_sipp: None, tmp_path: Path) -> Path:
    """Where SIPp runs write their statistics, error logs and message traces."""
    path = tmp_path / "sipp"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def uas_factory(sipp_dir: Path) -> Iterator[Callable[..., SippUas]]:
    """Start background SIPp scenarios (phones, providers); all are stopped at teardown."""
    started: list[SippUas] = []

    def start(scenario: str, **kwargs: Any) -> SippUas:
        uas = SippUas(scenario, work_dir=sipp_dir, **kwargs)
        started.append(uas)
        return uas

    yield start
    for uas in started:
        uas.stop()


@pytest.fixture
def baresip_factory(need_baresip: None, tmp_path: Path) -> Iterator[Callable[..., Baresip]]:
    """Start baresip phones (`baresip_factory(number, password, server_port)`), stopped after."""
    started: list[Baresip] = []

    def start(
        number: str,
        password: str,
        server_port: int,
        transport: str = "udp",
        tone_hz: float = TONE_HZ,
    ) -> Baresip:
        phone = Baresip(
            tmp_path, number=number, password=password, server_port=server_port,
            transport=transport, tone_hz=tone_hz,
        )  # fmt: skip
        started.append(phone)
        phone.start()
        return phone

    yield start
    for phone in started:
        phone.stop()


@pytest.fixture
def phone(
    pbx: RunningServer, sipp_dir: Path, uas_factory: Callable[..., SippUas]
) -> Callable[..., SippUas]:
    """A SIPp phone for an extension of `pbx`: registers from a free port, then runs `scenario`
    there as a UAS (`phone("1002", "uas_answer.xml", transport="tcp", pause_ms=1000)`)."""

    def start(
        number: str, scenario: str, *, transport: str = "udp", pause_ms: int | None = None
    ) -> SippUas:
        port = free_udp_tcp_port()
        registered = register_phone(
            pbx.target,
            work_dir=sipp_dir,
            number=number,
            password=extension_password(number),
            local_port=port,
            transport=transport,
        )
        assert registered.ok, registered.explain()
        return uas_factory(
            scenario, local_port=port, service=number, transport=transport, pause_ms=pause_ms
        )

    return start
