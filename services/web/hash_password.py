"""Print an argon2id hash for deploy/users.yml: `python -m services.web.hash_password` (asks twice)."""

from __future__ import annotations

import getpass
import sys

from services.web.access import hash_password


def main() -> int:
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("the two passwords differ", file=sys.stderr)
            return 1
    if len(password) < 12:
        print("use at least 12 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
