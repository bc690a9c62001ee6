#!/usr/bin/env bash
# Test PKI for the TLS tests: a CA, a server certificate for 127.0.0.1/localhost and five
# client certificates (a database client, a DICOM node, an HTTPS service account, one with a CN hidden in its
# subjectAltName, one naming a person), all signed by the CA,
# plus a client certificate from a second, untrusted CA. Usage: make_certs.sh DIR
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
ossl() { openssl "$@" 2>/dev/null; }
ca() { # name
  ossl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" -days 2 \
    -subj "/CN=$1" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}
leaf() { # name cn ca extfile-lines
  ossl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%b\n' "$4" > "$1.ext"
  ossl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}
ca ca
ca rogue-ca
leaf server localhost ca "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE"
leaf node1 MODALITY1 ca "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE"
leaf svc ai-service-1 ca "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE"
leaf rogue ROGUE rogue-ca "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE"
# The certificate-field trick: subject CN=svc-tech, and a subjectAltName directoryName with
# CN=svc-admin, as a CA that copies requested SANs would sign it.
leaf tech svc-tech ca "subjectAltName=dirName:dir_sect\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n[dir_sect]\nCN=svc-admin"
# The archive's client certificate for PostgreSQL (pg_hba `cert`: CN = database user).
leaf db-client postgres ca "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE"
# A person's name on a certificate (an admin with password + TOTP).
leaf alice alice ca "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE"
