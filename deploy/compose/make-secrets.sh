#!/bin/sh
# Makes the compose stack's secrets once: random tokens in ./secrets/ (a 0700 folder outside git). The
# files are 0644 inside it so the containers' own users (gateway 10001, Prometheus and Alertmanager nobody)
# can read their bind-mounted copy; on the host only root and this user reach the folder.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
for name in admin-key metrics-token postgres-password; do
    if [ ! -s "secrets/$name" ]; then
        python3 -c "import secrets; print('dg-' + secrets.token_urlsafe(32))" > "secrets/$name"
    fi
    chmod 0644 "secrets/$name"
done
echo "secrets in $(pwd)/secrets; the admin key: secrets/admin-key"
