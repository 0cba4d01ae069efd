#!/bin/sh
# outpost-agent preremove: runs before the files are removed.
#   deb: "remove" | "upgrade" <new> | "deconfigure" | "failed-upgrade" <old>
#   rpm %preun: 0 on erase, 1 (or more) on upgrade
#
# On removal: stop the agent (it drains: finishes in-flight requests and closes
# the store) and disable it. On upgrade: nothing; postinstall restarts it.
set -e
unit=outpost-agent.service

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if command -v systemctl >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then
		systemctl stop "$unit" || true
	fi
	systemctl disable "$unit" >/dev/null 2>&1 || true
fi
exit 0
