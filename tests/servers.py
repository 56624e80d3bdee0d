"""Real cache servers for the test suite: started on free loopback ports, stopped after.

In CI (``CI`` set) a missing binary is an error; on a developer machine the tests that
need it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process on 127.0.0.1:<port> that a test may kill, freeze or restart."""

    def __init__(self, binary: str, args: list[str], port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def location(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Server:
        path = shutil.which(self.binary)
        if path is None:
            message = f"{self.binary} is not installed (apt-get install {self.binary})"
            if "pytest" not in sys.modules:
                raise RuntimeError(message)
            import pytest

            if os.environ.get("CI"):
                pytest.fail(f"CI must not skip: {message}")
            pytest.skip(message)
        argv = [path, *(a.format(port=self.port) for a in self.args)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.binary} exited with {self.process.returncode}") from None
                time.sleep(0.02)
        raise RuntimeError(f"{self.binary} did not listen on {self.location}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def memcached(port: int | None = None) -> Server:
    args = ["-l", "127.0.0.1", "-p", "{port}", "-U", "0", "-m", "64", "-t", "2"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    return Server("memcached", args, port)


def redis(port: int | None = None) -> Server:
    return Server(
        "redis-server",
        ["--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        port,
    )


# Client options the README recommends: a frozen server costs a call at most ~timeout.
MEMCACHED_OPTIONS = {
    "connect_timeout": 0.5,
    "timeout": 0.5,
    "retry_attempts": 0,
    "dead_timeout": 5,
    "use_pooling": True,
}
REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
# The same for django-redis (its own spelling) and for pylibmc (libmemcached's behaviors:
# connect_timeout in milliseconds, send and receive timeouts in microseconds).
DJANGO_REDIS_OPTIONS = {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5}
PYLIBMC_BEHAVIORS = {
    "connect_timeout": 500,
    "send_timeout": 500_000,
    "receive_timeout": 500_000,
    "tcp_nodelay": True,
}


def memcached_config(server: Server, **options: object) -> dict[str, object]:
    return {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": server.location,
        "OPTIONS": {**MEMCACHED_OPTIONS, **options},
    }


def redis_config(server: Server) -> dict[str, object]:
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"redis://{server.location}/0",
        "OPTIONS": dict(REDIS_OPTIONS),
    }


def django_redis_config(server: Server) -> dict[str, object]:
    """django-redis (``django_redis.cache.RedisCache``) on a Redis server of the suite."""
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://{server.location}/0",
        "OPTIONS": dict(DJANGO_REDIS_OPTIONS),
    }


def pylibmc_config(server: Server) -> dict[str, object]:
    """Django's PyLibMCCache on a memcached server of the suite."""
    return {
        "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
        "LOCATION": server.location,
        "OPTIONS": {"behaviors": dict(PYLIBMC_BEHAVIORS)},
    }


LOCMEM = {
    "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
    "LOCATION": "tests-locmem",
    # Django's default of 300 entries culls version counters after a few hundred bumps.
    "OPTIONS": {"MAX_ENTRIES": 100_000},
}
