# Sourced by scripts/test and bench/run: starts moto, the AWS-compatible test server.
# Needs say() and port_open(); sets moto_pid and SWITCHYARD_TEST_AWS_ENDPOINT. The
# caller stops moto_pid.

start_moto() {
  local venv="${SWITCHYARD_MOTO_VENV:-/var/tmp/switchyard-moto-venv}" port
  if [ ! -x "$venv/bin/moto_server" ]; then
    command -v python3 >/dev/null 2>&1 || { say "the AWS tests need python3 (apt-get install python3 python3-venv)"; exit 1; }
    say "installing moto into $venv (once)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5.1,<5.3'
  fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >/tmp/switchyard-moto.$port.log 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 100); do
    port_open 127.0.0.1 "$port" && break
    sleep 0.1
  done
  port_open 127.0.0.1 "$port" || { say "moto did not start; see /tmp/switchyard-moto.$port.log"; exit 1; }
  export SWITCHYARD_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"
  say "using moto on $SWITCHYARD_TEST_AWS_ENDPOINT"
}

