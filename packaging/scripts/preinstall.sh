#!/bin/sh
# outpost-agent preinstall: runs before the files are unpacked, on install and
# on upgrade (deb: "install" | "upgrade" <old>; rpm %pre: 1 | 2).
#
# Creates the system group and user the agent runs as (User=/Group=outpost in
# outpost-agent.service). They must exist before unpacking: /etc/outpost and
# /etc/outpost/agent.env belong to group outpost. Idempotent; never changes an
# existing user.
set -e

if ! getent group outpost >/dev/null 2>&1; then
	groupadd --system outpost
fi
if ! getent passwd outpost >/dev/null 2>&1; then
	# No login, no home of its own: its only directory is the state directory
	# systemd creates (/var/lib/outpost, mode 0700).
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	useradd --system --gid outpost --no-create-home --home-dir /var/lib/outpost \
		--shell "$nologin" --comment "Outpost edge agent" outpost
fi
exit 0
