"""Exit 0 when the team-deployment services (PostgreSQL, Redis) answer on 127.0.0.1."""

import socket
import sys


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(0 if _answers(5432) and _answers(6379) else 1)
