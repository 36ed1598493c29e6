#!/usr/bin/env bash
# Writes a development PKI for UMS Balancer into OUTDIR (default: certs/out):
#   ca.pem, ca.key            a development CA
#   balancer.pem, balancer.key   the balancer's server certificate (by-path listeners)
#   node.pem, node.key        a UMS Server certificate (for simulated nodes on 127.0.0.11-19)
#   device.pem, device.key    an IGEL OS 12 device client certificate
# Keys are written with mode 600. Nothing here is secret or meant for production: generate real
# certificates from your own CA for a real cluster.
set -euo pipefail
out="${1:-$(dirname "$0")/out}"
days="${DAYS:-30}"
command -v openssl >/dev/null || { echo "generate.sh: openssl is not installed (Debian: apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077
cd "$out"

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
    -subj "/O=UMS Balancer development/CN=UMS Balancer development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca.key -out ca.pem 2>/dev/null

issue() {  # name subject extensions
    local name=$1 subject=$2 extensions=$3
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
        -keyout "$name.key" -out "$name.csr" 2>/dev/null
    printf '%b\n' "$extensions" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
        -extfile "$name.ext" -out "$name.pem" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

server_ext='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth'
issue balancer "/O=UMS Balancer development/CN=ums.example.com" \
    "$server_ext\nsubjectAltName=DNS:ums.example.com,DNS:ums-console.example.com,DNS:localhost,IP:127.0.0.1"
issue node "/O=UMS Balancer development/CN=ums-node" \
    "$server_ext\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.11,IP:127.0.0.12,IP:127.0.0.13,IP:127.0.0.14,IP:127.0.0.15,IP:127.0.0.16,IP:127.0.0.17,IP:127.0.0.18,IP:127.0.0.19"
issue device "/O=IGEL OS 12 devices/CN=device-00E0C5000001" \
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth'
rm -f ca.srl
chmod 644 ./*.pem
chmod 600 ./*.key
echo "generate.sh: wrote ca, balancer, node and device certificates and keys to $out"
