"""API keys: made by their user or an admin, shown once, hashed, revocable, last use kept."""

from __future__ import annotations

from sqlmodel import Session

from manager.apikeys import hash_key
from manager.models import ApiKey
from tests.manager.auth_helpers import assert_error, engine_of
from tests.manager.conftest import Farm


def test_a_user_makes_lists_and_revokes_their_own_keys(farm: Farm):
    me = farm.auth(farm.user_key)
    made = farm.client.post("/api/auth/keys", json={"name": "blender laptop"}, headers=me)
    assert made.status_code == 201, made.text
    key, public = made.json()["key"], made.json()["api_key"]
    assert key.startswith("ff_") and len(key) > 40
    assert public["scope"] == "user" and public["prefix"] == key[:10]
    assert public["last_used_at"] is None and public["revoked_at"] is None

    with Session(engine_of(farm)) as session:
        record = session.get(ApiKey, public["id"])
        assert record is not None and record.key_hash == hash_key(key)

    mine = farm.auth(key)
    assert (
        farm.client.get("/api/auth/me", headers=mine).json()["user"]["email"]
        == "artist@example.com"
    )
    listed = farm.client.get("/api/auth/keys", headers=me).json()
    assert {k["name"] for k in listed} == {"u", "blender laptop"}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    used = next(k for k in listed if k["id"] == public["id"])
    assert used["last_used_at"] is not None

    # Someone else cannot see or revoke it.
    theirs = farm.auth(farm.other_user_key)
    assert public["id"] not in {
        k["id"] for k in farm.client.get("/api/auth/keys", headers=theirs).json()
    }
    assert_error(
        farm.client.delete(f"/api/auth/keys/{public['id']}", headers=theirs),
        404,
        "api_key_not_found",
    )

    revoked = farm.client.delete(f"/api/auth/keys/{public['id']}", headers=me)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_error(farm.client.get("/api/jobs", headers=mine), 401, "invalid_api_key")
    assert farm.client.get("/api/jobs", headers=me).status_code == 200


def test_admins_make_runner_keys_and_revoke_anyones(farm: Farm):
    admin = farm.auth(farm.admin_key)
    made = farm.client.post(
        "/api/admin/keys", json={"name": "render nodes", "scope": "runner"}, headers=admin
    )
    assert made.status_code == 201, made.text
    runner_key = made.json()["key"]
    assert made.json()["api_key"]["user_id"] is None
    register = farm.client.post(
        "/api/runner/register", json={"name": "node-9"}, headers=farm.auth(runner_key)
    )
    assert register.status_code == 200, register.text
    assert_error(
        farm.client.get("/api/jobs", headers=farm.auth(runner_key)), 403, "wrong_key_scope"
    )

    bad = {"name": "x", "scope": "runner", "user_id": 1}
    assert_error(farm.client.post("/api/admin/keys", json=bad, headers=admin), 422, "invalid_input")

    everyone = farm.client.get("/api/admin/keys", headers=admin).json()
    users_key = next(k for k in everyone if k["name"] == "u")
    assert (
        farm.client.delete(f"/api/admin/keys/{users_key['id']}", headers=admin).status_code == 200
    )
    assert_error(
        farm.client.get("/api/jobs", headers=farm.auth(farm.user_key)), 401, "invalid_api_key"
    )
    revoke_runner = farm.client.delete(
        f"/api/admin/keys/{made.json()['api_key']['id']}", headers=admin
    )
    assert revoke_runner.status_code == 200
    heartbeat = farm.client.post(
        f"/api/runner/{register.json()['id']}/heartbeat", json={}, headers=farm.auth(runner_key)
    )
    assert_error(heartbeat, 401, "invalid_api_key")
    assert_error(
        farm.client.delete("/api/admin/keys/9999", headers=admin), 404, "api_key_not_found"
    )
