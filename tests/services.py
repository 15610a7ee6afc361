"""What a test run takes from the machine's PostgreSQL and Redis, under its own prefix, and gives back.

The fresh-machine rule: PostgreSQL holds only its default databases and Redis only what others put
there. A test run that needs a database or a Redis db makes it here, named with the run's prefix
(``GLUE_TEST_PREFIX``, default ``glue_test_<random>_``, then the xdist worker's id), and removes it
when the run ends (tests/conftest.py calls :func:`release_all` at session finish). A Redis db is
claimed by writing an owner key into an empty one, so two runs on one machine never share a db, and
a user's own prod set (database ``feast``, Redis db 0) is never touched.

`.ci/run` checks afterwards that nothing of its prefix is left::

    python -m tests.services --check PREFIX
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

PREFIX_ENV = "GLUE_TEST_PREFIX"
PG = {"host": os.environ.get("GLUE_POSTGRES_HOST", "127.0.0.1"),
      "port": int(os.environ.get("GLUE_POSTGRES_PORT", "5432")),
      "user": os.environ.get("GLUE_POSTGRES_USER", "postgres")}
REDIS = (os.environ.get("GLUE_REDIS_HOST", "127.0.0.1"), int(os.environ.get("GLUE_REDIS_PORT", "6379")))
OWNER_KEY = "glue:test-run-owner"  # the key that claims a Redis db for one test run
_FIRST_REDIS_DB = 2  # 0 and 1 are the defaults of a user's own prod set (Feast online, Celery broker)

if not os.environ.get(PREFIX_ENV):
    os.environ[PREFIX_ENV] = f"glue_test_{uuid.uuid4().hex[:8]}_"
# Under pytest-xdist each worker process (gw0, gw1...) takes and gives back its own share: its
# names carry the run's prefix, then the worker's, so one worker's release never drops another's
# databases while it still runs, and the run's --check still finds them all.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PREFIX = os.environ[PREFIX_ENV] + (f"{_WORKER}_" if _WORKER else "")

_claimed_redis: list[int] = []


def database(name: str) -> str:
    """The name of this run's database `name` (created by :func:`create_database`)."""
    return PREFIX + name


def create_database(name: str) -> str:
    """Create this run's database `name` (empty); returns its full name."""
    full = database(name)
    with _pg() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{full}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{full}"')
    return full


def claim_redis_db() -> int:
    """An empty Redis db, claimed for this run with an owner key; flushed by :func:`release_all`."""
    import redis

    for db in range(_FIRST_REDIS_DB, _redis_db_count()):
        client = redis.Redis(*REDIS, db=db)
        if client.dbsize() == 0 and client.set(OWNER_KEY, PREFIX, nx=True):
            if client.dbsize() == 1:  # nobody else wrote here in the meantime
                _claimed_redis.append(db)
                return db
            client.delete(OWNER_KEY)
    raise RuntimeError(f"no empty Redis db at {REDIS[0]}:{REDIS[1]} for the tests (dbs "
                       f"{_FIRST_REDIS_DB}..{_redis_db_count() - 1} all hold keys)")


def release_all() -> None:
    """Drop every database with this run's prefix and flush the Redis dbs it claimed."""
    import redis

    if _pg_reachable():
        with _pg() as conn:
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                        (PREFIX.replace("_", r"\_") + "%",)).fetchall():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for db in _claimed_redis:
        client = redis.Redis(*REDIS, db=db)
        if client.get(OWNER_KEY) in (PREFIX.encode(), None):
            client.flushdb()
    _claimed_redis.clear()


def leftovers(prefix: str) -> list[str]:
    """What a finished run with `prefix` left behind: its databases and the Redis dbs it still owns."""
    import redis

    left = []
    if _pg_reachable():
        with _pg() as conn:
            left += [f"database {name}" for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (prefix.replace("_", r"\_") + "%",)).fetchall()]
    try:
        for db in range(_redis_db_count()):
            if (redis.Redis(*REDIS, db=db).get(OWNER_KEY) or b"").startswith(prefix.encode()):
                left.append(f"redis db {db}")
    except redis.exceptions.ConnectionError:
        pass
    return left


def _redis_db_count() -> int:
    import redis

    return int(redis.Redis(*REDIS).config_get("databases").get("databases", 16))


def _pg():  # noqa: ANN202 - a psycopg connection
    import psycopg

    return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **PG)


def _pg_reachable() -> bool:
    import psycopg

    try:
        _pg().close()
    except psycopg.OperationalError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", metavar="PREFIX", required=True,
                        help="fail if databases or Redis dbs of this test-run prefix are left")
    args = parser.parse_args()
    left = leftovers(args.check)
    if left:
        print(f"left behind by the test run {args.check}: {', '.join(left)}", file=sys.stderr)
        return 1
    print(f"nothing left by the test run {args.check} (PostgreSQL databases, Redis dbs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
