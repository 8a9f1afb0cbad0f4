"""Per-client token buckets in Redis, shared by every origin of a deployment.

One bucket per client: `burst` tokens, refilled at `rate` tokens per second; a request takes
`cost` tokens or is told how long to wait. The arithmetic runs in one Lua script against Redis's
own clock, so origins with skewed clocks still share one budget. Failures raise
IndexUnavailable (the caller lets the request through: a limiter that cannot reach its store
must not become an outage).
"""
from __future__ import annotations

import logging
from typing import Callable

import redis

from . import redis_keys
from .errors import IndexUnavailable
from .index import CircuitBreaker

logger = logging.getLogger(__name__)

# KEYS[1] bucket hash {tokens, at_ms}
# ARGV[1] rate (tokens per second), ARGV[2] burst (bucket size), ARGV[3] cost
# Returns 0 when the tokens were taken, else the milliseconds until `cost` tokens are there.
_TAKE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
-- an idle bucket is full again after burst/rate seconds: then it can go
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class RedisRateLimiter:
    """Token buckets on a Redis client (the index's pool: cache.index.make_client)."""

    def __init__(self, client: redis.Redis, *, rate: float, burst: int,
                 breaker: CircuitBreaker | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.client = client
        self.rate = rate
        self.burst = burst
        self.breaker = breaker or CircuitBreaker()
        self._take = client.register_script(_TAKE_LUA)

    def __repr__(self) -> str:
        return f"<RedisRateLimiter rate={self.rate}/s burst={self.burst}>"

    def _call(self, fn: Callable[[], int]) -> int:
        if not self.breaker.allow():
            raise IndexUnavailable("redis circuit open (rate limit)")
        try:
            result = fn()
        except redis.RedisError as exc:
            self.breaker.failure()
            raise IndexUnavailable(f"redis rate limit failed: {exc}") from exc
        self.breaker.success()
        return result

    def take(self, client_id: str, cost: int = 1) -> float:
        """Take `cost` tokens from `client_id`'s bucket: 0.0 if allowed, else seconds to wait."""
        key = redis_keys.rate_bucket(client_id)
        wait_ms = self._call(lambda: int(self._take(keys=[key], args=[self.rate, self.burst, cost])))
        return wait_ms / 1000.0
