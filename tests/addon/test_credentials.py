"""The API key's credentials file: only its owner can read it, and it never shows in a repr.

Inside Blender (the masked field, the key absent from userpref.blend, moving a key older
versions kept in the preferences) is tests/addon/test_addon_in_blender.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from addon.client import ManagerAddress
from addon.credentials import ApiKeyStore, CredentialsError, migrate_key

KEY = "ff_1234567890abcdef"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_file_is_created_for_its_owner_only_whatever_the_umask(tmp_path: Path):
    store = ApiKeyStore(tmp_path / "config" / "framefarm")
    assert store.load() == "" and not store.has_key()
    old_umask = os.umask(0)
    try:
        store.save(f"  {KEY}\n")
    finally:
        os.umask(old_umask)
    assert mode(store.path) == 0o600
    assert json.loads(store.path.read_text()) == {"api_key": KEY}
    assert ApiKeyStore(store.path.parent).load() == KEY  # a fresh store reads the file
    assert [p.name for p in store.path.parent.iterdir()] == ["credentials.json"]


def test_replacing_a_key_keeps_the_file_private_and_forgetting_removes_it(tmp_path: Path):
    store = ApiKeyStore(tmp_path)
    store.path.write_text(json.dumps({"api_key": "ff_old"}))
    store.path.chmod(0o644)  # as another tool might have left it
    assert store.load() == "ff_old"
    store.save(KEY)
    assert mode(store.path) == 0o600 and ApiKeyStore(tmp_path).load() == KEY
    store.forget()
    assert not store.path.exists() and store.load() == ""
    store.save(KEY)
    store.save("   ")  # clearing the field forgets the key
    assert not store.path.exists() and ApiKeyStore(tmp_path).load() == ""
    store.forget()  # nothing stored: nothing to do


def test_an_unreadable_file_means_no_key_and_an_unwritable_folder_says_where(tmp_path: Path):
    (tmp_path / "credentials.json").write_text("not json")
    assert ApiKeyStore(tmp_path).load() == ""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    store = ApiKeyStore(blocked / "framefarm")
    with pytest.raises(CredentialsError, match="could not store the API key in .*a-file"):
        store.save(KEY)
    assert store.load() == ""


def test_the_key_never_shows_in_a_repr(tmp_path: Path):
    store = ApiKeyStore(tmp_path)
    store.save(KEY)
    address = ManagerAddress("http://farm:8080", KEY)
    assert KEY not in repr(store) and KEY not in repr(address) and KEY not in str(address)
    assert "farm:8080" in repr(address)


def test_a_key_from_old_preferences_moves_once_and_never_over_a_newer_one(tmp_path: Path):
    store = ApiKeyStore(tmp_path)
    migrate_key(store, "")
    assert not store.path.exists()
    migrate_key(store, "ff_from_preferences")
    assert ApiKeyStore(tmp_path).load() == "ff_from_preferences" and mode(store.path) == 0o600
    store.save(KEY)
    migrate_key(store, "ff_from_preferences")
    assert ApiKeyStore(tmp_path).load() == KEY
