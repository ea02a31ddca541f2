"""Ports for servers that bind late: outside the range the kernel gives outgoing connections;
children that die with the process that started them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from pipeline import procutil
from tests.polling import wait_until
from tests.procs import pid_gone


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


@pytest.mark.parametrize("tied", [True, False])
def test_a_child_started_with_die_with_parent_ends_when_its_parent_is_killed(tied: bool) -> None:
    """`bench correlate` SIGTERMed left its worker running before its spawn used this."""
    preexec = "die_with_parent(signal.SIGTERM)" if tied else "None"
    script = textwrap.dedent(
        f"""
        import signal, subprocess, sys, time
        from pipeline.procutil import die_with_parent
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            start_new_session=True,
            preexec_fn={preexec},
        )
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert not pid_gone(child)
        parent.send_signal(signal.SIGTERM)  # Python's default: ends at once, no cleanup runs
        parent.wait(10)
        if tied:
            wait_until(lambda: pid_gone(child), 10, "the child to end with its parent")
        else:
            assert not pid_gone(child)  # the control: an untied child outlives its parent
    finally:
        if not pid_gone(child):
            os.kill(child, signal.SIGKILL)
