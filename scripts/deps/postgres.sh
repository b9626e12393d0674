# shellcheck shell=bash
# scripts/deps/postgres.sh: the PostgreSQL part of scripts/deps.sh, sourced by it (not run).
#
# The server is the one DATABASE_URL names (default postgres://postgres@127.0.0.1:5432/catalog).
# On this machine (host 127.0.0.1, ::1 or localhost) that is the Debian cluster (pg_lsclusters)
# listening on the URL's port, started when it is down; on another host the script only checks
# that the URL logs in. Either way the URL's database is created when it is missing.
#
# A local cluster that already fits is never touched. Otherwise these are the changes `up` may
# make, each printed (file or setting, old value, new value) before it is made:
#   - pg_hba.conf: the first `host all all <loopback address>` line gets method trust (or such a
#     line is inserted first), when the URL has no password and the login is refused;
#   - a login role for the URL's user is created when it is missing;
#   - max_connections is raised to DEPS_PG_MAX_CONNECTIONS (400: the test suite runs packages in
#     parallel, each with its own pools), which restarts the cluster.
# They are made without asking only on a cluster this script created (it installed PostgreSQL or
# ran pg_createcluster, and left a marker file in the cluster's configuration directory). On any
# other cluster they need consent: DEPS_PG_ALLOW_CHANGES=1, CI=true (a fresh CI machine), or a yes
# on a terminal; DEPS_PG_ALLOW_CHANGES=0 refuses them everywhere. Without consent nothing is
# changed: a refused login or a missing role stops `up`, a low max_connections is a warning.

DEFAULT_DATABASE_URL='postgres://postgres@127.0.0.1:5432/catalog?sslmode=disable'
PG_MAX_CONNECTIONS=${DEPS_PG_MAX_CONNECTIONS:-400}
# The marker file, in /etc/postgresql/<version>/<cluster>/, that says this script created the cluster.
PG_OWNED_MARK=catalog-deps.created
# Password-less logins are tested without ever reading a ~/.pgpass that could hide a missing
# `trust` (libpq silently ignores a password file that does not exist).
NO_PGPASS="$STATE/postgres/no-such-pgpass"

# Set by pg_parse_url from DATABASE_URL.
PG_URL="" PG_USER="" PG_PASSWORD="" PG_HOST="" PG_PORT="" PG_DB=""
# Set by pg_find_cluster: the local cluster on PG_PORT.
PG_VER="" PG_CLUSTER=""

urldecode() { printf '%b' "${1//%/\\x}"; }
# redact URL: the URL with its password replaced, for output.
redact() { sed -E 's#^([a-z]+://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# pg_parse_url: splits DATABASE_URL (or the default) into PG_USER, PG_PASSWORD, PG_HOST, PG_PORT,
# PG_DB with libpq's defaults (user: PGUSER or the OS user; database: the user's name).
pg_parse_url() {
  [ -z "$PG_URL" ] || return 0
  PG_URL=${DATABASE_URL:-$DEFAULT_DATABASE_URL}
  local re='^postgres(ql)?://(([^:@/?]*)(:([^@/?]*))?@)?(\[[0-9A-Fa-f:.]+\]|[^]:/?,[]*)(:([0-9]+))?(/([^?]*))?(\?.*)?$'
  [[ "$PG_URL" =~ $re ]] ||
    die2 "DATABASE_URL must be one postgres://user[:password]@host[:port]/database URL, not $(redact "$PG_URL")"
  PG_USER=$(urldecode "${BASH_REMATCH[3]}")
  PG_PASSWORD=$(urldecode "${BASH_REMATCH[5]}")
  PG_HOST=${BASH_REMATCH[6]}
  PG_HOST=${PG_HOST#[}
  PG_HOST=${PG_HOST%]}
  PG_PORT=${BASH_REMATCH[8]:-5432}
  PG_DB=$(urldecode "${BASH_REMATCH[10]}")
  [[ "${BASH_REMATCH[11]}" =~ [?\&](host|hostaddr|port|user|dbname|password)= ]] &&
    die2 "DATABASE_URL: scripts/deps.sh does not read ${BASH_REMATCH[1]}= in the query; put it in the URL itself"
  [ -n "$PG_USER" ] || PG_USER=${PGUSER:-$(id -un)}
  [ -n "$PG_DB" ] || PG_DB=$PG_USER
  return 0
}

# pg_is_local: the URL names this machine, where the script manages the cluster.
pg_is_local() { case "$PG_HOST" in 127.0.0.1 | ::1 | localhost | "") return 0 ;; *) return 1 ;; esac }

as_postgres() {
  if [ "$(id -un)" = postgres ]; then
    "$@"
  elif [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    sudo -n -u postgres "$@"
  fi
}

# pg_host_args: the -h option for libpq tools (none: the default unix socket).
pg_host_args() { [ -z "$PG_HOST" ] || printf '%s\0' -h "$PG_HOST"; }
pg_ready() {
  local h=()
  mapfile -d '' h < <(pg_host_args)
  pg_isready "${h[@]}" -p "$PG_PORT" -q
}
# pg_url_psql ARG...: psql as DATABASE_URL's user and password (never ~/.pgpass), to database postgres.
pg_url_psql() {
  local h=() pw=()
  mapfile -d '' h < <(pg_host_args)
  [ -z "$PG_PASSWORD" ] || pw=("PGPASSWORD=$PG_PASSWORD")
  env PGPASSFILE="$NO_PGPASS" PGCONNECT_TIMEOUT=3 "${pw[@]}" \
    psql -X -w "${h[@]}" -p "$PG_PORT" -U "$PG_USER" -d postgres -Atq -v ON_ERROR_STOP=1 "$@"
}
# pg_login_error: why DATABASE_URL cannot log in (psql's last line of output).
pg_login_error() { pg_url_psql -c 'select 1' 2>&1 | tail -n1 || true; }
# pg_admin ARG...: psql as the superuser postgres over the local cluster's unix socket (peer
# authentication, independent of what pg_hba.conf says about TCP).
pg_admin() { as_postgres psql -X -p "$PG_PORT" -d postgres -Atq -v ON_ERROR_STOP=1 "$@"; }

# pg_find_cluster: sets PG_VER and PG_CLUSTER to the local cluster listening on PG_PORT.
pg_find_cluster() {
  read -r PG_VER PG_CLUSTER _ < <(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2, $4; exit }') || true
  [ -n "$PG_VER" ]
}
pg_conf_dir() { printf '/etc/postgresql/%s/%s' "$PG_VER" "$PG_CLUSTER"; }
pg_owned() { [ -f "$(pg_conf_dir)/$PG_OWNED_MARK" ]; }
pg_mark_owned() {
  printf 'This cluster was created by catalog'"'"'s scripts/deps.sh (%s) on %s; the script may change its\nconfiguration without asking. Delete this file to make it ask.\n' \
    "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$(pg_conf_dir)/$PG_OWNED_MARK"
  note postgres "cluster $PG_VER/$PG_CLUSTER was created by scripts/deps.sh ($1): marked in $(pg_conf_dir)/$PG_OWNED_MARK"
}

pg_wait_ready() {
  for _ in $(seq 1 "$PG_WAIT"); do pg_ready && return 0; sleep 1; done
  die_log postgres "/var/log/postgresql/postgresql-$PG_VER-$PG_CLUSTER.log" "not ready on port $PG_PORT after ${PG_WAIT}s"
}

# pg_cluster_up: finds (or, on a fresh machine, creates) the local cluster on PG_PORT and starts it.
pg_cluster_up() {
  local installed=0 ver
  if ! have pg_lsclusters; then
    apt_install postgresql
    installed=1
  fi
  if ! pg_find_cluster; then
    ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
    [ -n "$ver" ] || die "postgres: no PostgreSQL installed under /usr/lib/postgresql"
    if [ "$PG_PORT" != 5432 ] || [ -d "/etc/postgresql/$ver/main" ]; then
      die "postgres: no local cluster listens on port $PG_PORT (see pg_lsclusters); create one with 'pg_createcluster $ver <name> --port $PG_PORT' or point DATABASE_URL at your server"
    fi
    note postgres "creating cluster $ver/main on port 5432 (pg_createcluster)"
    pg_createcluster "$ver" main --port 5432 >"$STATE/postgres/createcluster.log" 2>&1 ||
      die_log postgres "$STATE/postgres/createcluster.log" "pg_createcluster $ver main failed"
    pg_find_cluster || die "postgres: pg_createcluster $ver main made no cluster on port 5432"
    pg_mark_owned "pg_createcluster"
  elif [ "$installed" = 1 ] && ! pg_owned; then
    pg_mark_owned "apt-get install postgresql"
  fi
  if ! pg_ready; then
    if ! pg_lsclusters -h | awk -v v="$PG_VER" -v c="$PG_CLUSTER" '$1 == v && $2 == c && $4 ~ /^down/ { f = 1 } END { exit !f }'; then
      die "postgres: cluster $PG_VER/$PG_CLUSTER runs but does not answer on ${PG_HOST:-the unix socket}:$PG_PORT (check listen_addresses)"
    fi
    note postgres "starting cluster $PG_VER/$PG_CLUSTER (it was down)"
    # 9>&-: the server outlives this script and must not inherit its lock.
    pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_CLUSTER" start >"$STATE/postgres/start.log" 2>&1 9>&- ||
      die_log postgres "$STATE/postgres/start.log" "pg_ctlcluster $PG_VER $PG_CLUSTER start failed"
    pg_wait_ready
    PG_DID+=("started cluster $PG_VER/$PG_CLUSTER")
  fi
}

# The changes planned for the local cluster: PG_PLAN holds one line each for the output, the
# PG_NEED_* flags what to do.
PG_PLAN=()
PG_NEED_ROLE=0
PG_NEED_MAXCONN=0
PG_HBA_FILE=""
PG_HBA_EDITS=() # "LINE<US>OLD<US>NEW" (US: the unit separator, which no line contains) (LINE 0: insert first)
PG_MAXCONN_OLD=""
PG_DID=()

# pg_plan_hba: plans `trust` for the URL's loopback address(es) in pg_hba.conf.
pg_plan_hba() {
  local addrs=() addr found n old new
  case "$PG_HOST" in
    127.0.0.1) addrs=(127.0.0.1/32) ;;
    ::1) addrs=(::1/128) ;;
    localhost) addrs=(127.0.0.1/32 ::1/128) ;;
    *) die "postgres: $PG_USER cannot log in over the unix socket without a password; scripts/deps.sh only sets up loopback TCP: put host=127.0.0.1 in DATABASE_URL, or configure pg_hba.conf yourself" ;;
  esac
  PG_HBA_FILE=$(pg_admin -c 'show hba_file') || die "postgres: cannot read hba_file as user postgres"
  for addr in "${addrs[@]}"; do
    found=$(awk -v a="$addr" '$1 == "host" && $2 == "all" && $3 == "all" && $4 == a { print NR "\t" $0; exit }' "$PG_HBA_FILE")
    if [ -n "$found" ]; then
      n=${found%%$'\t'*}
      old=${found#*$'\t'}
      new=$(sed -E 's#^([[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+[^[:space:]]+[[:space:]]+)[^[:space:]].*$#\1trust#' <<<"$old")
      PG_PLAN+=("$PG_HBA_FILE line $n: '$old' -> '$new'")
      PG_HBA_EDITS+=("$n"$'\x1f'"$old"$'\x1f'"$new")
    else
      new="host all all $addr trust"
      PG_PLAN+=("$PG_HBA_FILE: insert as line 1 (no 'host all all $addr' line yet): '$new'")
      PG_HBA_EDITS+=("0"$'\x1f'$'\x1f'"$new")
    fi
  done
}

# pg_plan: what the local cluster needs so that DATABASE_URL logs in and the tests have enough
# connections.
pg_plan() {
  local out role_exists cur
  role_exists=$(pg_admin -v u="$PG_USER" <<<"select 1 from pg_roles where rolname = :'u'") ||
    die "postgres: cannot query cluster $PG_VER/$PG_CLUSTER as user postgres over its unix socket"
  if [ -z "$role_exists" ]; then
    PG_NEED_ROLE=1
    PG_PLAN+=("create role \"$PG_USER\" (LOGIN CREATEDB${PG_PASSWORD:+, with the password from DATABASE_URL})")
  fi
  if ! out=$(pg_url_psql -c 'select 1' 2>&1); then
    case "$out" in
      *"role \"$PG_USER\" does not exist"*) ;; # authentication passed; the role is planned above
      *"no password supplied"* | *"password authentication failed"* | *"no pg_hba.conf entry"* | *"pg_hba.conf rejects connection"* | *"Peer authentication failed"* | *"Ident authentication failed"*)
        if [ -n "$PG_PASSWORD" ] && [ -n "$role_exists" ]; then
          die "postgres: $PG_USER cannot log in to ${PG_HOST:-the unix socket}:$PG_PORT with the password in DATABASE_URL (the script does not change passwords): $(tail -n1 <<<"$out")"
        fi
        [ -n "$PG_PASSWORD" ] || pg_plan_hba
        ;;
      *) die "postgres: cannot log in as $PG_USER to ${PG_HOST:-the unix socket}:$PG_PORT: $(tail -n1 <<<"$out")" ;;
    esac
  fi
  cur=$(pg_admin -c 'show max_connections')
  if [ "$cur" -lt "$PG_MAX_CONNECTIONS" ]; then
    PG_NEED_MAXCONN=1
    PG_MAXCONN_OLD=$cur
    PG_PLAN+=("max_connections: $cur -> $PG_MAX_CONNECTIONS (ALTER SYSTEM, in $(pg_admin -c 'show data_directory')/postgresql.auto.conf), then a restart of cluster $PG_VER/$PG_CLUSTER")
  fi
}

# pg_consent: whether the planned changes may be made; prints why.
pg_consent() {
  local ans
  case "${DEPS_PG_ALLOW_CHANGES:-}" in
    1 | yes | true)
      note postgres "changes allowed by DEPS_PG_ALLOW_CHANGES=$DEPS_PG_ALLOW_CHANGES"
      return 0
      ;;
    0 | no | false)
      note postgres "changes refused by DEPS_PG_ALLOW_CHANGES=$DEPS_PG_ALLOW_CHANGES"
      return 1
      ;;
  esac
  if pg_owned; then
    note postgres "changes allowed: cluster $PG_VER/$PG_CLUSTER was created by scripts/deps.sh ($(pg_conf_dir)/$PG_OWNED_MARK)"
    return 0
  fi
  if [ "${CI:-}" = true ]; then
    note postgres "changes allowed by CI=true (a CI machine's cluster is the one CI installed for this run)"
    return 0
  fi
  if [ -t 0 ] && [ -t 2 ]; then
    printf 'deps: make these changes to cluster %s/%s, which scripts/deps.sh did not create? [y/N] ' "$PG_VER" "$PG_CLUSTER" >&2
    read -r ans || ans=""
    case "$ans" in
      y | Y | yes | YES)
        note postgres "changes allowed: answered '$ans'"
        return 0
        ;;
    esac
  fi
  return 1
}

pg_apply() {
  local e n old new
  if [ "$PG_NEED_ROLE" = 1 ]; then
    note postgres "change: creating role \"$PG_USER\""
    # The password goes through stdin as a quoted literal, never onto a command line.
    local pwsql="" q="'"
    [ -z "$PG_PASSWORD" ] || pwsql=" password '${PG_PASSWORD//$q/$q$q}'"
    pg_admin -v u="$PG_USER" <<<"create role :\"u\" login createdb$pwsql" >/dev/null
    PG_DID+=("created role $PG_USER")
  fi
  if [ ${#PG_HBA_EDITS[@]} -gt 0 ]; then
    cp -p "$PG_HBA_FILE" "$STATE/postgres/pg_hba.conf.before-deps"
    for e in "${PG_HBA_EDITS[@]}"; do
      IFS=$'\x1f' read -r n old new <<<"$e"
      if [ "$n" = 0 ]; then
        note postgres "change: $PG_HBA_FILE: insert as line 1: '$new' (old file copied to $STATE/postgres/pg_hba.conf.before-deps)"
      else
        note postgres "change: $PG_HBA_FILE line $n: '$old' -> '$new' (old file copied to $STATE/postgres/pg_hba.conf.before-deps)"
      fi
      if [ "$n" = 0 ]; then
        sed -i "1i $new" "$PG_HBA_FILE"
      else
        awk -v n="$n" -v l="$new" 'NR == n { print l; next } { print }' "$PG_HBA_FILE" >"$PG_HBA_FILE.deps-tmp" &&
          cat "$PG_HBA_FILE.deps-tmp" >"$PG_HBA_FILE" && rm -f "$PG_HBA_FILE.deps-tmp"
      fi
    done
    note postgres "change: reloading cluster $PG_VER/$PG_CLUSTER (pg_reload_conf)"
    pg_admin -c 'select pg_reload_conf()' >/dev/null
    PG_DID+=("loopback set to trust in pg_hba.conf")
  fi
  if [ "$PG_NEED_MAXCONN" = 1 ]; then
    note postgres "change: max_connections: $PG_MAXCONN_OLD -> $PG_MAX_CONNECTIONS (alter system); restarting cluster $PG_VER/$PG_CLUSTER"
    pg_admin -c "alter system set max_connections = $PG_MAX_CONNECTIONS" >/dev/null
    pg_ctlcluster --skip-systemctl-redirect "$PG_VER" "$PG_CLUSTER" restart >"$STATE/postgres/restart.log" 2>&1 9>&- ||
      die_log postgres "$STATE/postgres/restart.log" "pg_ctlcluster $PG_VER $PG_CLUSTER restart failed"
    pg_wait_ready
    PG_DID+=("max_connections=$PG_MAX_CONNECTIONS")
  fi
}

# pg_login_ok: DATABASE_URL logs in (retried briefly: a reload takes a moment to apply).
pg_login_ok() {
  for _ in $(seq 1 20); do
    pg_url_psql -c 'select 1' >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  return 1
}

# pg_create_db PSQL_FN: creates PG_DB (owned by PG_USER) through PSQL_FN when it is missing.
pg_create_db() {
  local exists
  exists=$("$1" -v d="$PG_DB" <<<"select 1 from pg_database where datname = :'d'") ||
    die "postgres: cannot list the databases of ${PG_HOST:-the unix socket}:$PG_PORT"
  [ -z "$exists" ] || return 0
  note postgres "creating database \"$PG_DB\" (owner $PG_USER), named in DATABASE_URL"
  "$1" -v d="$PG_DB" -v u="$PG_USER" <<<"create database :\"d\" owner :\"u\"" >/dev/null ||
    die "postgres: could not create database $PG_DB on ${PG_HOST:-the unix socket}:$PG_PORT"
  PG_DID+=("created database $PG_DB")
}

postgres_up() {
  local t0 p
  t0=$(now)
  case "${DEPS_PG_ALLOW_CHANGES:-}" in
    "" | 1 | yes | true | 0 | no | false) ;;
    *) die2 "DEPS_PG_ALLOW_CHANGES must be 1 or 0, not '$DEPS_PG_ALLOW_CHANGES'" ;;
  esac
  pg_parse_url
  if ! pg_is_local; then
    have psql || apt_install postgresql-client
    pg_ready || die "postgres: nothing answers on $PG_HOST:$PG_PORT ($(redact "$PG_URL")); the script manages local clusters only"
    pg_login_ok || die "postgres: cannot log in with DATABASE_URL ($(redact "$PG_URL")): $(pg_login_error)"
    pg_create_db pg_url_psql
    line postgres "$t0" "ready on $PG_HOST:$PG_PORT, database $PG_DB (not on this machine: nothing else checked)"
    return 0
  fi
  pg_cluster_up
  pg_plan
  if [ ${#PG_PLAN[@]} -gt 0 ]; then
    note postgres "cluster $PG_VER/$PG_CLUSTER needs these changes for DATABASE_URL ($(redact "$PG_URL")) and the test suite:"
    for p in "${PG_PLAN[@]}"; do note postgres "  - $p"; done
    if pg_consent; then
      pg_apply
    elif [ "$PG_NEED_ROLE" = 1 ] || [ ${#PG_HBA_EDITS[@]} -gt 0 ]; then
      die "postgres: nothing changed, and DATABASE_URL cannot log in without the changes above. Allow them with DEPS_PG_ALLOW_CHANGES=1 (or answer y on a terminal), make them yourself, or point DATABASE_URL at another server"
    else
      note postgres "WARNING nothing changed: max_connections stays below $PG_MAX_CONNECTIONS, so the full test suite may fail with 'too many clients' (DEPS_PG_ALLOW_CHANGES=1 raises it)"
    fi
  fi
  if ! pg_login_ok; then
    local why
    why=$(pg_login_error)
    if [ ${#PG_HBA_EDITS[@]} -gt 0 ] && [ -f "$STATE/postgres/pg_hba.conf.before-deps" ]; then
      # The edit did not help (an earlier, narrower line matches first): put the file back.
      note postgres "change: restoring $PG_HBA_FILE from $STATE/postgres/pg_hba.conf.before-deps, since the edit did not let DATABASE_URL log in; reloading"
      cat "$STATE/postgres/pg_hba.conf.before-deps" >"$PG_HBA_FILE"
      pg_admin -c 'select pg_reload_conf()' >/dev/null
      die "postgres: DATABASE_URL ($(redact "$PG_URL")) cannot log in even with the loopback line set to trust (an earlier line of $PG_HBA_FILE matches first; fix it yourself): $why"
    fi
    die "postgres: DATABASE_URL ($(redact "$PG_URL")) still cannot log in: $why"
  fi
  pg_create_db pg_admin
  local how="cluster $PG_VER/$PG_CLUSTER" d
  for d in "${PG_DID[@]}"; do how="$how; $d"; done
  [ ${#PG_PLAN[@]} -gt 0 ] || how="$how, already fits, nothing changed"
  line postgres "$t0" "ready on ${PG_HOST:-the unix socket}:$PG_PORT, database $PG_DB ($how)"
}

postgres_status() {
  pg_parse_url
  if have pg_isready && pg_ready; then
    note postgres "up      ${PG_HOST:-unix socket}:$PG_PORT (DATABASE_URL database $PG_DB)"
  else
    note postgres "down    ${PG_HOST:-unix socket}:$PG_PORT"
    return 1
  fi
}

postgres_stop_hint() {
  pg_parse_url
  if pg_is_local && have pg_lsclusters && pg_find_cluster; then
    note postgres "left running (stop it with: pg_ctlcluster $PG_VER $PG_CLUSTER stop)"
  else
    note postgres "left running"
  fi
}

# postgres_env: the DATABASE_URL line for `env`; a DATABASE_URL already set is kept as it is.
postgres_env() {
  if [ -n "${DATABASE_URL:-}" ]; then
    echo "# DATABASE_URL kept from the environment: $(redact "$DATABASE_URL")"
  else
    echo "export DATABASE_URL=$DEFAULT_DATABASE_URL"
  fi
}
