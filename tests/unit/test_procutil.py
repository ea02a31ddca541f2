"""Ports for servers that bind late: outside the range the kernel gives outgoing connections."""

from __future__ import annotations

import socket

import pytest

from pipeline import procutil


def test_server_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    ports = procutil.server_ports(9)
    assert len(set(ports)) == 9
    assert all(1024 < port < procutil._ephemeral_low() for port in ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # free: binds


def test_server_ports_fall_back_to_free_ports_without_room_below_the_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(procutil, "_ephemeral_low", lambda: 10_050)
    ports = procutil.server_ports(3)
    assert len(set(ports)) == 3
    assert all(port >= 1024 for port in ports)
