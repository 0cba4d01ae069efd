#!/bin/sh
# outpost-agent postinstall: runs after the files are unpacked.
#   deb: "configure" <last configured version, empty on a first install>
#        (also "abort-upgrade" | "abort-remove" | "abort-deconfigure" after a failure)
#   rpm %post: 1 on install, 2 (or more) on upgrade
#
# First install: enable the unit, do NOT start it. The agent would start on
# its defaults and create its store in clear text; encryption at rest must be
# chosen (AGENT_ENCRYPTION_KEY_FILE) before the store exists, and upstream
# credentials go in /etc/outpost/agent.env. So the operator starts it.
# Upgrade: restart the agent if it was running, to run the new binary; an
# admin's enable/disable choice is left alone.
set -e
unit=outpost-agent.service

action=
case "$1" in
configure)
	if [ -z "$2" ]; then action=install; else action=upgrade; fi ;;
abort-upgrade | abort-remove | abort-deconfigure)
	action=upgrade ;;
[0-9]*)
	if [ "$1" -ge 2 ]; then action=upgrade; else action=install; fi ;;
*)
	exit 0 ;;
esac

# systemctl talks to a running systemd only when it is PID 1 (not in a
# container build or a chroot); enable works either way (it makes symlinks).
running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

if running; then
	systemctl daemon-reload || true
fi

case "$action" in
install)
	# The package already says root:outpost; say it again in case the group
	# name could not be resolved while unpacking (dpkg --root, some tools).
	for f in /etc/outpost /etc/outpost/agent.env; do
		if [ -e "$f" ]; then chgrp outpost "$f" || true; fi
	done
	if command -v systemctl >/dev/null 2>&1; then
		systemctl enable "$unit" || true
	fi
	cat <<'MSG'
outpost-agent is installed and enabled but not started. Before starting it:
  - put credentials and settings in /etc/outpost/agent.env (root:outpost 0640);
  - to encrypt the spool at rest, create /etc/outpost/encryption.key and set
    AGENT_ENCRYPTION_KEY_FILE now: a store created without a key cannot be
    encrypted later.
Then: systemctl start outpost-agent && systemctl status outpost-agent
MSG
	;;
upgrade)
	if running; then
		# try-restart restarts only a running unit; the drain may take up to
		# AGENT_SHUTDOWN_TIMEOUT + 10s (the unit's TimeoutStopSec bounds it).
		systemctl try-restart "$unit" || true
	fi
	;;
esac
exit 0
