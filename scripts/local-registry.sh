#!/usr/bin/env bash
# A real registry (Debian's docker-registry, distribution v2.8) on 127.0.0.1
# with TLS from a freshly generated private CA and htpasswd auth, for the demo
# and benchmarks.
#   scripts/local-registry.sh start DIR   -> prints "HOST:PORT"; DIR gets ca.pem, password, pid
#   scripts/local-registry.sh stop DIR    -> stops the registry started in DIR (by its PID)
set -euo pipefail
cmd=${1:?usage: local-registry.sh start|stop DIR}
dir=${2:?usage: local-registry.sh start|stop DIR}

case "$cmd" in
start)
  mkdir -p "$dir/data"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=ferry demo CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
  cat "$dir/server.crt" "$dir/ca.pem" > "$dir/server-chain.pem"
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  printf '%s' "$password" > "$dir/password"; chmod 600 "$dir/password"
  htpasswd -B -C 5 -bn ferry "$password" > "$dir/htpasswd" 2>/dev/null
  cat > "$dir/config.yml" <<YAML
version: 0.1
log: { level: warn }
storage:
  filesystem: { rootdirectory: $dir/data }
  delete: { enabled: true }
http:
  addr: 127.0.0.1:$port
  secret: $(head -c 24 /dev/urandom | base64 | tr -d '/+=')
  tls: { certificate: $dir/server-chain.pem, key: $dir/server.key }
auth:
  htpasswd: { realm: ferry-demo, path: $dir/htpasswd }
YAML
  docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/ca.pem" "https://127.0.0.1:$port/v2/" || true)
    if [ "$code" = 401 ] || [ "$code" = 200 ]; then echo "127.0.0.1:$port"; exit 0; fi
    sleep 0.1
  done
  echo "local-registry: the registry did not start; log:" >&2; cat "$dir/registry.log" >&2; exit 1
  ;;
stop)
  if [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; rm -f "$dir/pid"; fi
  ;;
*) echo "usage: local-registry.sh start|stop DIR" >&2; exit 2 ;;
esac
