"""Runner keys are trusted from a cache for a few seconds; revocation still takes effect."""

from __future__ import annotations

from sqlalchemy import update

from manager.apikeys import KEY_CACHE_SECONDS, ApiKeyCache, hash_key
from manager.db import make_engine
from manager.models import ApiKey, utcnow
from tests.manager.conftest import Farm
from tests.manager.test_jobs_api import assert_error


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_key_expires_after_its_time():
    clock = FakeClock()
    cache = ApiKeyCache(ttl=5, clock=clock)
    record = ApiKey(id=1, name="r", prefix="ff_x", key_hash="h", scope="runner")
    cache.put("ff_x", record)
    clock.now += 4.9
    assert cache.get("ff_x") is record
    clock.now += 0.1
    assert cache.get("ff_x") is None


def test_a_key_revoked_by_another_process_stops_working_within_the_bound(farm: Farm):
    clock = FakeClock()
    farm.client.app.state.api_key_cache = ApiKeyCache(clock=clock)  # type: ignore[attr-defined]
    key = farm.auth(farm.runner_key)
    runner = farm.client.post("/api/runner/register", json={"name": "node"}, headers=key)
    assert runner.status_code == 200, runner.text
    heartbeat = f"/api/runner/{runner.json()['id']}/heartbeat"

    # What `framefarm manager config remove apikey` does from its own process.
    engine = make_engine(farm.settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            update(ApiKey)
            .where(ApiKey.key_hash == hash_key(farm.runner_key))  # type: ignore[arg-type]
            .values(revoked_at=utcnow())
        )
    engine.dispose()

    assert farm.client.post(heartbeat, json={}, headers=key).status_code == 200  # still cached
    clock.now += KEY_CACHE_SECONDS
    assert_error(farm.client.post(heartbeat, json={}, headers=key), 401, "invalid_api_key")


def test_a_key_revoked_through_this_manager_stops_working_at_once(farm: Farm):
    key = farm.auth(farm.runner_key)
    runner = farm.client.post("/api/runner/register", json={"name": "node"}, headers=key)
    assert runner.status_code == 200, runner.text
    admin = farm.auth(farm.admin_key)
    keys = farm.client.get("/api/admin/keys", headers=admin).json()
    runner_key = next(k for k in keys if k["scope"] == "runner")
    assert (
        farm.client.delete(f"/api/admin/keys/{runner_key['id']}", headers=admin).status_code == 200
    )
    claim = farm.client.post(f"/api/runner/{runner.json()['id']}/claim", headers=key)
    assert_error(claim, 401, "invalid_api_key")
