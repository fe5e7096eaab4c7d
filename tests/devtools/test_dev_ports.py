"""dev's Redis and stand-in ports: the last run's again when free, else another, said so."""

from __future__ import annotations

import socket
from pathlib import Path

from sensor_billing.devtools.dev_ports import choose_port, remember_ports, remembered_ports
from tests.support.net import free_port


def test_the_last_runs_port_is_taken_again_when_it_is_free() -> None:
    last = free_port()

    choice = choose_port(last)

    assert choice.port == last
    assert choice.note() == ""


def test_a_taken_port_is_replaced_and_the_note_names_it() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        choice = choose_port(taken)

    assert choice.port != taken
    assert choice.moved_from == taken
    assert f"port {taken} of the last run is taken" in choice.note()


def test_the_ports_are_read_back_as_written(tmp_path: Path) -> None:
    remember_ports(tmp_path, {"redis": 6400, "standin": 12111})

    assert remembered_ports(tmp_path) == {"redis": 6400, "standin": 12111}


def test_a_missing_or_damaged_ports_file_remembers_nothing(tmp_path: Path) -> None:
    assert remembered_ports(tmp_path) == {}
    (tmp_path / "dev-ports.json").write_text('{"redis": "six", "standin": 70000')
    assert remembered_ports(tmp_path) == {}
    (tmp_path / "dev-ports.json").write_text('{"redis": "six", "standin": 70000, "api": 8000}')
    assert remembered_ports(tmp_path) == {"api": 8000}
