#!/bin/sh
# Writes what the compose stack needs and git must never see: .env (database passwords — the
# record store's owner and its least-privilege worker role — and the codec server's bearer
# token) and secrets/encryption.keys (the payload encryption key, in the KEY_ID=BASE64 format of
# PDPP_ENCRYPTION_KEY_FILE). Existing values are kept: a new key would make every encrypted
# history unreadable. A value an older .env lacks is added.
set -eu
cd "$(dirname "$0")"

random() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
token() { random 24 | tr -d '/+='; }

umask 077
touch .env
chmod 0600 .env
for name in TEMPORAL_DB_PASSWORD RECORDSTORE_PASSWORD RECORDSTORE_WORKER_PASSWORD PDPP_CODEC_TOKEN; do
    if grep -q "^$name=" .env; then
        echo "$name: kept"
    else
        echo "$name=$(token)" >> .env
        echo "$name: written to .env"
    fi
done

# Yours alone on this host (0700, 0600): the stack's one-shot install-secrets gives the worker and
# the codec server a copy only their uid (10001) may read. Connectors' `file:` credentials go in
# this directory too, and reach the worker at /run/pdpp/secrets/NAME.
mkdir -p -m 0700 secrets
chmod 0700 secrets
if [ -e secrets/encryption.keys ]; then
    echo "secrets/encryption.keys: kept"
else
    echo "k$(date +%Y%m%d)=$(random 32)" > secrets/encryption.keys
    echo "secrets/encryption.keys: written"
fi
chmod 0600 secrets/encryption.keys
