from tests.fleet.redis_server import redis_server  # noqa: F401  (fixture)
