# Shared by scripts/test, scripts/demo and bench/: the cache folder, tool checks and the
# ephemeral database servers. Source it; it defines functions and sets no traps.

SLUICE_CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}
mkdir -p "$SLUICE_CACHE"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_cargo() {
  command -v cargo >/dev/null 2>&1 || [ ! -x "$HOME/.cargo/bin/cargo" ] || export PATH="$HOME/.cargo/bin:$PATH"
  command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install Rust 1.94 or newer (https://rustup.rs) and run this again"
  local v; v=$(rustc --version | awk '{print $2}')
  case "$v" in 1.[0-8]?.*|1.9[0-3].*) die "Rust $v is too old: sluice needs 1.94 or newer (rustup update)";; esac
  # Linking the test binaries dominates warm rebuilds: mold links them several times
  # faster than ld. Installed where we may (root); without it cargo uses the default.
  [ "$(id -u)" != 0 ] || apt_install mold
  if command -v mold >/dev/null 2>&1; then
    case " ${RUSTFLAGS:-} " in *fuse-ld=*) ;; *) export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=mold";; esac
  fi
}

# Installs Debian packages that are missing (needs root, as on a fresh machine).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
  say "installing ${missing[*]}"
  if [ ! -f "$SLUICE_CACHE/.apt-updated" ] || ! apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq && touch "$SLUICE_CACHE/.apt-updated"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

# Starts an ephemeral PostgreSQL owned by the `postgres` system user (PostgreSQL refuses
# to run as root) in a temporary folder on a free port. Sets PG_DIR and PG_URL. Logical
# decoding is on (change capture): wal_level=logical, slots and senders to spare, and the
# WAL a slot may keep bounded so that a forgotten test slot cannot fill the disk.
start_postgres() {
  local bin port
  bin=$(pg_bin); [ -n "$bin" ] || die "PostgreSQL server binaries not found"
  PG_DIR=$(mktemp -d /tmp/sluice-pg.XXXXXX)
  port=$(free_port)
  local as=()
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c wal_level=logical -c max_replication_slots=64 -c max_wal_senders=16 -c max_slot_wal_keep_size=2GB" start >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; die "PostgreSQL did not start"; }
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_postgres() {
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ] || return 0
  local as=(); [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}

# Starts an ephemeral MariaDB in a temporary folder on a free port, with a user `sluice`
# (password `sluice`) allowed to create databases. Sets MY_DIR and MY_URL. The row binlog
# is on (change capture): ROW format, FULL row images and metadata, GTIDs strict, small
# files so that rotations happen in tests.
start_mariadb() {
  local port user=()
  MY_DIR=$(mktemp -d /tmp/sluice-my.XXXXXX)
  port=$(free_port)
  if [ "$(id -u)" = 0 ]; then chown mysql: "$MY_DIR"; user=(--user=mysql); fi
  mariadb-install-db --no-defaults --datadir="$MY_DIR/data" "${user[@]}" --auth-root-authentication-method=normal \
    --skip-test-db >"$MY_DIR/install.log" 2>&1 || { cat "$MY_DIR/install.log" >&2; die "mariadb-install-db failed"; }
  mariadbd --no-defaults --datadir="$MY_DIR/data" "${user[@]}" --socket="$MY_DIR/sock" --port="$port" \
    --bind-address=127.0.0.1 --pid-file="$MY_DIR/pid" --log-error="$MY_DIR/server.log" \
    --log-bin="$MY_DIR/binlog" --server-id=1 --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata=FULL --binlog-checksum=CRC32 --gtid-strict-mode=1 --sync-binlog=0 \
    --max-binlog-size=16M \
    --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=0 --max-connections=300 \
    >"$MY_DIR/stdout.log" 2>&1 &
  for _ in $(seq 1 120); do
    mariadb --no-defaults --socket="$MY_DIR/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb --no-defaults --socket="$MY_DIR/sock" -uroot -e \
    "CREATE USER 'sluice'@'%' IDENTIFIED BY 'sluice'; GRANT ALL ON *.* TO 'sluice'@'%'; CREATE DATABASE sluice;" \
    || { cat "$MY_DIR/server.log" >&2; die "MariaDB did not start"; }
  MY_URL="mysql://sluice:sluice@127.0.0.1:$port/sluice"
}

stop_mariadb() {
  [ -n "${MY_DIR:-}" ] && [ -d "$MY_DIR" ] || return 0
  if [ -f "$MY_DIR/pid" ]; then kill "$(cat "$MY_DIR/pid")" 2>/dev/null || true; fi
  for _ in $(seq 1 40); do [ -f "$MY_DIR/pid" ] || break; sleep 0.25; done
  rm -rf "$MY_DIR"
}

# A venv at DIR with the pinned REQUIREMENTS, made again when the file changes.
pinned_venv() {
  local dir=$1 requirements=$2 stamp="$1/.requirements.sha256" want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  say "installing $requirements into $dir"
  python3 -m venv "$dir" || die "python3 -m venv failed (apt-get install python3-venv)"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" \
    || die "pip install -r $requirements failed"
  echo "$want" >"$stamp"
}

# The Python tools of the tests (scripts/requirements-test.txt) in a venv under the
# cache. Sets TEST_VENV.
test_venv() {
  TEST_VENV="$SLUICE_CACHE/test-venv"
  pinned_venv "$TEST_VENV" scripts/requirements-test.txt
}

# The docs site's tools (scripts/requirements-docs.txt: mkdocs, mkdocs-material) in their
# own venv under the cache, apart from the test venv so that their pins never meet. Sets
# DOCS_VENV.
docs_venv() {
  DOCS_VENV="$SLUICE_CACHE/docs-venv"
  pinned_venv "$DOCS_VENV" scripts/requirements-docs.txt
}

# Starts moto in server mode with the CloudWatch CBOR front (tests/aws/moto_front.py) on
# free loopback ports. Sets MOTO_DIR, MOTO_URL and MOTO_CLOUDWATCH_URL.
start_moto() {
  test_venv
  MOTO_DIR=$(mktemp -d /tmp/sluice-moto.XXXXXX)
  "$TEST_VENV/bin/python" tests/aws/moto_front.py "$MOTO_DIR/ports.json" >"$MOTO_DIR/server.log" 2>&1 &
  echo $! >"$MOTO_DIR/pid"
  for _ in $(seq 1 120); do [ -f "$MOTO_DIR/ports.json" ] && break; sleep 0.25; done
  [ -f "$MOTO_DIR/ports.json" ] || { cat "$MOTO_DIR/server.log" >&2; die "moto did not start"; }
  local ports; ports=$(cat "$MOTO_DIR/ports.json")
  MOTO_URL="http://127.0.0.1:$(echo "$ports" | python3 -c 'import json,sys; print(json.load(sys.stdin)["moto"])')"
  MOTO_CLOUDWATCH_URL="http://127.0.0.1:$(echo "$ports" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cloudwatch"])')"
}

# Starts the partner's APIs (tests/api/partner.py: REST and SOAP) on a free loopback
# port, with the Python given (default: the test venv's). Sets PARTNER_DIR and PARTNER_URL.
start_partner() {
  local python=${1:-}
  [ -n "$python" ] || { test_venv; python="$TEST_VENV/bin/python"; }
  PARTNER_DIR=$(mktemp -d /tmp/sluice-partner.XXXXXX)
  "$python" tests/api/partner.py "$PARTNER_DIR/ports.json" >"$PARTNER_DIR/server.log" 2>&1 &
  echo $! >"$PARTNER_DIR/pid"
  for _ in $(seq 1 120); do [ -f "$PARTNER_DIR/ports.json" ] && break; sleep 0.25; done
  [ -f "$PARTNER_DIR/ports.json" ] || { cat "$PARTNER_DIR/server.log" >&2; die "the partner fixture did not start"; }
  PARTNER_URL="http://127.0.0.1:$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$PARTNER_DIR/ports.json")"
}

stop_partner() {
  [ -n "${PARTNER_DIR:-}" ] && [ -d "$PARTNER_DIR" ] || return 0
  kill "$(cat "$PARTNER_DIR/pid")" 2>/dev/null || true
  rm -rf "$PARTNER_DIR"
}

stop_moto() {
  [ -n "${MOTO_DIR:-}" ] && [ -d "$MOTO_DIR" ] || return 0
  kill "$(cat "$MOTO_DIR/pid")" 2>/dev/null || true
  rm -rf "$MOTO_DIR"
}

# Starts an ephemeral OpenSSH server on a free loopback port, serving SFTP only
# (internal-sftp), with a generated host key, a user with a generated password and key
# (root: a system user `sluicesftp`; otherwise the current user, key only), and a home
# folder the tests write the bank's files into. Sets SFTP_DIR and the SLUICE_TEST_SFTP_*
# variables the tests read.
SFTP_USER=sluicesftp
start_sftp() {
  apt_install openssh-server openssh-client
  SFTP_DIR=$(mktemp -d /tmp/sluice-sftp.XXXXXX)
  chmod 755 "$SFTP_DIR"
  local port user home password=""
  port=$(free_port)
  ssh-keygen -q -t ed25519 -N '' -C sluice-test-host -f "$SFTP_DIR/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C sluice-test-user -f "$SFTP_DIR/user_ed25519"
  cp "$SFTP_DIR/user_ed25519.pub" "$SFTP_DIR/authorized_keys"
  home="$SFTP_DIR/home"
  mkdir -p "$home"
  if [ "$(id -u)" = 0 ]; then
    user=$SFTP_USER
    id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    password="sftp-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "$user:$password" | chpasswd
    usermod -d "$home" "$user" >/dev/null
    chown "$user": "$home"
    chmod 777 "$home"
    mkdir -p /run/sshd
  else
    user=$(id -un)
  fi
  cat >"$SFTP_DIR/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $SFTP_DIR/host_ed25519
PidFile $SFTP_DIR/sshd.pid
AuthorizedKeysFile $SFTP_DIR/authorized_keys
PasswordAuthentication $([ -n "$password" ] && echo yes || echo no)
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PermitRootLogin no
AllowUsers $user
Subsystem sftp internal-sftp
ForceCommand internal-sftp -d $home
MaxStartups 100:30:200
MaxSessions 50
CONF
  "$(command -v sshd || echo /usr/sbin/sshd)" -f "$SFTP_DIR/sshd_config" -D -e >"$SFTP_DIR/sshd.log" 2>&1 &
  echo $! >"$SFTP_DIR/pid"
  for _ in $(seq 1 80); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" 2>/dev/null && break
    sleep 0.25
  done
  kill -0 "$(cat "$SFTP_DIR/pid")" 2>/dev/null || { cat "$SFTP_DIR/sshd.log" >&2; die "sshd did not start"; }
  export SLUICE_TEST_SFTP_PORT=$port SLUICE_TEST_SFTP_USER=$user SLUICE_TEST_SFTP_PASSWORD=$password
  export SLUICE_TEST_SFTP_KEY="$SFTP_DIR/user_ed25519" SLUICE_TEST_SFTP_ROOT=$home
  SLUICE_TEST_SFTP_HOST_KEY=$(ssh-keygen -lf "$SFTP_DIR/host_ed25519.pub" | awk '{print $2}')
  export SLUICE_TEST_SFTP_HOST_KEY
}

stop_sftp() {
  [ -n "${SFTP_DIR:-}" ] && [ -d "$SFTP_DIR" ] || return 0
  kill "$(cat "$SFTP_DIR/pid")" 2>/dev/null || true
  rm -rf "$SFTP_DIR"
}

# The validators of the infrastructure files: checkov and cfn-lint in their own venv
# (scripts/requirements-infra.txt), asl-validator from npm in $SLUICE_CACHE/npm. Sets
# INFRA_VENV.
ASL_VALIDATOR_VERSION=4.0.0
infra_tools() {
  INFRA_VENV="$SLUICE_CACHE/infra-venv"
  pinned_venv "$INFRA_VENV" scripts/requirements-infra.txt
  if [ "$(cat "$SLUICE_CACHE/npm/.version" 2>/dev/null)" != "$ASL_VALIDATOR_VERSION" ]; then
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    say "installing asl-validator $ASL_VALIDATOR_VERSION into $SLUICE_CACHE/npm"
    mkdir -p "$SLUICE_CACHE/npm"
    npm install --silent --no-audit --no-fund --prefix "$SLUICE_CACHE/npm" "asl-validator@$ASL_VALIDATOR_VERSION" >/dev/null \
      || die "npm install asl-validator failed"
    echo "$ASL_VALIDATOR_VERSION" >"$SLUICE_CACHE/npm/.version"
  fi
}

# The browser of the console's tests (tests/infra/test_console.py): Debian's chromium and
# chromium-driver, driven by Selenium from the test venv, and axe-core from npm in
# $SLUICE_CACHE/npm-axe, which the tests inject into each page. Sets SLUICE_AXE.
AXE_CORE_VERSION=4.11.1
browser_tools() {
  apt_install chromium chromium-driver
  if [ "$(cat "$SLUICE_CACHE/npm-axe/.version" 2>/dev/null)" != "$AXE_CORE_VERSION" ]; then
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    say "installing axe-core $AXE_CORE_VERSION into $SLUICE_CACHE/npm-axe"
    mkdir -p "$SLUICE_CACHE/npm-axe"
    npm install --silent --no-audit --no-fund --prefix "$SLUICE_CACHE/npm-axe" "axe-core@$AXE_CORE_VERSION" >/dev/null \
      || die "npm install axe-core failed"
    echo "$AXE_CORE_VERSION" >"$SLUICE_CACHE/npm-axe/.version"
  fi
  export SLUICE_AXE="$SLUICE_CACHE/npm-axe/node_modules/axe-core/axe.min.js"
}
