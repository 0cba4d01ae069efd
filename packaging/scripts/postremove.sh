#!/bin/sh
# outpost-agent postremove: runs after the files are removed.
#   deb: "remove" | "purge" | "upgrade" <new> | "disappear" | "abort-install" | ...
#   rpm %postun: 0 on erase, 1 (or more) on upgrade
#
# Reloads systemd so it forgets the removed unit. Never deletes data: the
# spool in /var/lib/outpost may hold events not yet forwarded and dead
# letters; /etc/outpost/encryption.key (if any) is needed to read them; the
# outpost user owns them. Remove those by hand once they are no longer needed.
set -e

case "$1" in
remove | purge | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi

if [ "$1" = purge ] || [ "$1" = 0 ]; then
	if [ -d /var/lib/outpost ]; then
		echo "outpost-agent: kept /var/lib/outpost (the spool) and the outpost user; delete them by hand once the events are forwarded."
	fi
fi
exit 0
