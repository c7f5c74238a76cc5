#!/bin/sh
# Writes what the compose stack needs and git must never see: .env (database passwords and the
# codec server's bearer token) and secrets/encryption.keys (the payload encryption key, in the
# KEY_ID=BASE64 format of PDPP_ENCRYPTION_KEY_FILE). Existing files are kept: a new key would
# make every encrypted history unreadable.
set -eu
cd "$(dirname "$0")"

random() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
token() { random 24 | tr -d '/+='; }

if [ -e .env ]; then
    echo ".env exists; kept"
else
    umask 077
    {
        echo "TEMPORAL_DB_PASSWORD=$(token)"
        echo "RECORDSTORE_PASSWORD=$(token)"
        echo "PDPP_CODEC_TOKEN=$(token)"
    } > .env
    echo "wrote .env"
fi

# The directory keeps other users of the host out; the key file itself must be readable by the
# containers' uid 10001, because Compose bind-mounts file secrets with their host owner and mode.
mkdir -p -m 0700 secrets
if [ -e secrets/encryption.keys ]; then
    echo "secrets/encryption.keys exists; kept"
else
    echo "k$(date +%Y%m%d)=$(random 32)" > secrets/encryption.keys
    chmod 0644 secrets/encryption.keys
    echo "wrote secrets/encryption.keys"
fi
