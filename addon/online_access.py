"""Blender's "Allow Online Access" and a manager on the studio network (no bpy).

Blender 4.2+ asks add-ons not to reach the internet unless the artist allowed online access
(``bpy.app.online_access``, off in background mode). A render farm usually lives on the
studio network, which that switch is not about, so a manager whose host is this machine or
a private / link-local address is always reachable; any other host needs online access.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse


def is_local_host(host: str) -> bool:
    """Loopback, private or link-local address, or a name under ``.local``."""
    host = host.strip("[]").lower()
    if host in ("localhost", "") or host.endswith(".local") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return False
    return address.is_loopback or address.is_private or address.is_link_local


def online_access_problem(url: str, online_access: bool) -> str | None:
    """Why the add-on may not call this manager now, or None when it may."""
    if online_access:
        return None
    host = urllib.parse.urlsplit(url.strip()).hostname or ""
    if is_local_host(host):
        return None
    return (
        f"Blender's online access is off, and {host} is not on this machine or a private "
        "network: turn on Preferences > System > Network > Allow Online Access"
    )
