#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (one node named "localhost"), to try and test the
# SLURM launcher (hydra/launcher=slurm) for real. Debian 12 packages, no systemd, run as root.
#
#   scripts/local-slurm.sh install   # the Debian packages slurmctld slurmd slurm-client munge, if missing
#   scripts/local-slurm.sh start     # install, configure, start munged + slurmctld + slurmd, wait for the node
#   scripts/local-slurm.sh status    # the daemons and the node; exit 0 only when the cluster takes jobs
#   scripts/local-slurm.sh stop      # stop the daemons `start` started, undo what it added outside its folder
#
# Everything lives in $ITSR_SLURM_DIR (default /tmp/itsr-slurm): slurm.conf, a private munge key and
# socket, state, spool, logs, pid files, env.sh. `start` is idempotent (it starts only what is not
# running) and also links, only where nothing exists yet, /etc/slurm/slurm.conf to our slurm.conf and
# (when the real sacct cannot answer, as without an accounting database) /usr/local/bin/sacct to a
# stand-in that answers from `scontrol -o show job`: without it submitit waits forever for a job
# that died before writing its result. `stop` removes exactly those links again. Where the links
# could not be made, `source $ITSR_SLURM_DIR/env.sh` sets SLURM_CONF and PATH.
#
# Settings (environment): ITSR_SLURM_DIR, ITSR_SLURM_PORT (slurmctld port, default 6817; slurmd
# uses the next one), ITSR_SLURM_TIMEOUT (seconds to wait for a daemon or the node, default 60).
# Exit status 77: SLURM cannot run here (not Linux, not root, no apt-get); the tests skip on it.
set -euo pipefail

D=$(realpath -m "${ITSR_SLURM_DIR:-/tmp/itsr-slurm}")   # slurm.conf needs absolute paths
PORT=${ITSR_SLURM_PORT:-6817}
TIMEOUT=${ITSR_SLURM_TIMEOUT:-60}
CONF=$D/slurm.conf
MUNGE_SOCKET=$D/munge/munge.socket
ADDED=$D/added                      # paths outside $D that start created; stop removes them
PACKAGES=(slurmctld slurmd slurm-client munge)
export SLURM_CONF=$CONF

say() { echo "local-slurm: $*"; }
die() { echo "local-slurm: error: $1" >&2; exit "${2:-1}"; }
unsupported() { die "$1" 77; }

# wait_until DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds, up to $TIMEOUT seconds
wait_until() {
  local what=$1 deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "local-slurm: timed out after ${TIMEOUT}s waiting for $what" >&2; return 1; }
    sleep 0.2
  done
}

# pid_in PIDFILE: the file's content, or nothing (status 1) when it is gone. A daemon removes its own pid
# file as it exits, between any check and the read; bash 5.2 ends a `set -e` script when a command
# substitution reads a missing file by redirection, even inside an `if`: that made `stop` fail at random.
pid_in() { cat "$1" 2>/dev/null; }

# running PIDFILE NAME: the pid in PIDFILE is a live NAME process (a zombie or a reused pid is not)
running() {
  local pid state
  pid=$(pid_in "$1") || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
  [[ -n $state && $state != Z && $state != X ]]
}

check_platform() {
  [[ $(uname -s) == Linux ]] || unsupported "a local SLURM cluster needs Linux (this is $(uname -s))"
  [[ $(id -u) == 0 ]] || unsupported "a local SLURM cluster needs root (its daemons run as root here)"
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_packages() {
  check_platform
  local missing=() p
  for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || unsupported "no apt-get: install ${missing[*]} by hand"
  # The packages' scripts would start their services; a policy-rc.d that exits 101 forbids that.
  # Ours replaces whatever is there for the duration of the install and puts it back afterwards.
  local policy=/usr/sbin/policy-rc.d backup=""
  if [[ -e $policy ]]; then backup=$(mktemp); cp -p "$policy" "$backup"; fi
  # shellcheck disable=SC2064  # expand now: restore exactly this backup on any exit
  trap "$(if [[ -n $backup ]]; then echo "mv -f '$backup' '$policy'"; else echo "rm -f '$policy'"; fi)" EXIT
  printf '#!/bin/sh\n# local-slurm.sh: no service starts during the install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}")
  say "installing ${missing[*]}"
  if ! "${apt[@]}"; then
    say "install failed; refreshing the package lists and trying again"
    if ! { apt-get update -q && "${apt[@]}"; }; then die "apt-get could not install ${missing[*]}"; fi
  fi
  if [[ -n $backup ]]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
  trap - EXIT
}

write_config() {
  mkdir -p "$D"/{state,spool,log,run,bin}
  install -d -m 0755 "$D/munge"   # munged: the socket's folder must be searchable by all
  local cpus mem_mb
  cpus=$(nproc)
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)  # slurmd refuses more than it sees
  cat >"$CONF.new" <<EOF
# Written by scripts/local-slurm.sh: one node (localhost), no accounting database, root daemons.
ClusterName=itsr-local
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to scontrol for an hour: the sacct stand-in reads them from there
MinJobAge=3600
KillWait=10
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  mv -f "$CONF.new" "$CONF"
  [[ -s $D/munge/munge.key ]] || {
    dd if=/dev/urandom of="$D/munge/munge.key.new" bs=1024 count=1 status=none
    chmod 0600 "$D/munge/munge.key.new"
    mv -f "$D/munge/munge.key.new" "$D/munge/munge.key"
  }
}

write_sacct_standin() {
  # submitit asks `sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID ...]`; answer the same
  # from `scontrol -o show job` (array tasks as ID_TASK, pending ranges as ID_[a-b]).
  cat >"$D/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# itsr-local-slurm sacct stand-in: the cluster of scripts/local-slurm.sh has no accounting database,
# so this answers `sacct [-o FIELDS] [-P|--parsable2] [-n] [-j IDS]` from `scontrol -o show job`.
fields=JobID,JobName,Partition,State,ExitCode,NodeList header=1 ids=()
while (($#)); do
  case $1 in
    -j | --jobs) ids+=("$2"); shift 2 ;;
    -j* ) ids+=("${1#-j}"); shift ;;
    --jobs=*) ids+=("${1#--jobs=}"); shift ;;
    -o | --format) fields=$2; shift 2 ;;
    --format=*) fields=${1#--format=}; shift ;;
    -n | --noheader) header=0; shift ;;
    *) shift ;;  # -P/--parsable2 is the only output style; other filters are ignored
  esac
done
{
  if ((${#ids[@]})); then
    for id in "${ids[@]}"; do for one in ${id//,/ }; do scontrol -o show job "${one%%.*}" 2>/dev/null; done; done
  else
    scontrol -o show job 2>/dev/null
  fi
} | awk -v fields="$fields" -v header="$header" '
BEGIN { n = split(fields, want, ","); if (header) { line = want[1]; for (i = 2; i <= n; i++) line = line "|" want[i]; print line } }
/^JobId=/ {
  delete f
  for (i = 1; i <= NF; i++) { eq = index($i, "="); if (eq) { k = substr($i, 1, eq - 1); if (!(k in f)) f[k] = substr($i, eq + 1) } }
  id = f["JobId"]; t = f["ArrayTaskId"]; sub(/%[0-9]+$/, "", t)
  if (t != "" && f["ArrayJobId"] != "") id = f["ArrayJobId"] "_" (t ~ /^[0-9]+$/ ? t : "[" t "]")
  if (id in seen) next
  seen[id] = 1
  nodes = f["NodeList"]; if (nodes == "(null)") nodes = ""
  v["jobid"] = id; v["jobidraw"] = f["JobId"]; v["jobname"] = f["JobName"]; v["partition"] = f["Partition"]
  v["state"] = f["JobState"]; v["exitcode"] = f["ExitCode"]; v["nodelist"] = nodes; v["elapsed"] = f["RunTime"]
  v["submit"] = f["SubmitTime"]; v["start"] = f["StartTime"]; v["end"] = f["EndTime"]; v["user"] = f["UserId"]
  line = ""
  for (i = 1; i <= n; i++) { k = tolower(want[i]); sub(/%.*/, "", k); line = line (i > 1 ? "|" : "") ((k in v) ? v[k] : "") }
  print line
}'
EOF
  chmod 755 "$D/bin/sacct"
}

# link TARGET LINK: make LINK point at TARGET if nothing is at LINK; record it for stop
link() {
  if [[ -L $2 && $(readlink "$2") == "$1" ]]; then return 0; fi
  [[ -e $2 || -L $2 ]] && return 1
  mkdir -p "$(dirname "$2")"
  ln -s "$1" "$2"
  grep -qxF "$2" "$ADDED" 2>/dev/null || echo "$2" >>"$ADDED"
}

real_sacct_works() { # the first sacct on PATH that is not our stand-in answers a query
  local sacct
  while IFS= read -r sacct; do
    [[ $(readlink -f "$sacct") == "$D/bin/sacct" ]] && continue
    "$sacct" -n -X -o JobID -j 1 >/dev/null 2>&1
    return
  done < <(type -aP sacct)
  return 1
}

start_munged() {
  running "$D/run/munged.pid" munged && return 0
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  munged --socket="$MUNGE_SOCKET" --key-file="$D/munge/munge.key" --pid-file="$D/run/munged.pid" \
    --log-file="$D/log/munged.log" --seed-file="$D/munge/munged.seed" </dev/null >>"$D/log/munged.log" 2>&1 ||
    die "munged did not start; see $D/log/munged.log"
  wait_until "munged" sh -c "munge -S '$MUNGE_SOCKET' -n </dev/null | unmunge -S '$MUNGE_SOCKET'" ||
    die "munged does not answer; see $D/log/munged.log"
}

start_slurmctld() {
  running "$D/run/slurmctld.pid" slurmctld && return 0
  slurmctld -f "$CONF" </dev/null >>"$D/log/slurmctld.log" 2>&1 || die "slurmctld did not start; see $D/log/slurmctld.log"
  wait_until "slurmctld" scontrol ping || die "slurmctld does not answer; see $D/log/slurmctld.log"
}

start_slurmd() {
  running "$D/run/slurmd.pid" slurmd && return 0
  slurmd -f "$CONF" -N localhost </dev/null >>"$D/log/slurmd.log" 2>&1 || die "slurmd did not start; see $D/log/slurmd.log"
}

node_state() { sinfo -h -n localhost -o %T 2>/dev/null; }
node_ready() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }

start() {
  install_packages
  if running "$D/run/slurmctld.pid" slurmctld && running "$D/run/slurmd.pid" slurmd &&
     running "$D/run/munged.pid" munged && node_ready; then
    say "already running (node localhost $(node_state))"
  else
    local t0=$SECONDS
    write_config
    start_munged
    start_slurmctld
    start_slurmd
    wait_until "node localhost to become idle" node_ready || {
      sinfo -N -l >&2 || true
      tail -n 20 "$D/log/slurmd.log" "$D/log/slurmctld.log" >&2 || true
      die "node localhost is not idle (state: $(node_state || echo unknown))"
    }
    say "up in $((SECONDS - t0)) s: node localhost $(node_state), $(nproc) CPUs, config $CONF, logs in $D/log"
  fi
  write_sacct_standin
  local env_path=""
  if ! real_sacct_works; then
    link "$D/bin/sacct" /usr/local/bin/sacct || true
    [[ $(type -P sacct) == /usr/local/bin/sacct && $(readlink -f /usr/local/bin/sacct) == "$D/bin/sacct" ]] ||
      env_path="export PATH=$D/bin:\$PATH"
  fi
  link "$CONF" /etc/slurm/slurm.conf || true
  printf 'export SLURM_CONF=%s\n%s\n' "$CONF" "$env_path" >"$D/env.sh"
  [[ $(readlink /etc/slurm/slurm.conf 2>/dev/null) == "$CONF" && -z $env_path ]] ||
    say "in a new shell: source $D/env.sh"
}

stop_daemon() { # stop_daemon NAME: TERM the pid in its pid file, wait until it is gone (a zombie is gone)
  local pidfile=$D/run/$1.pid deadline
  if running "$pidfile" "$1"; then
    kill -TERM "$(pid_in "$pidfile")" 2>/dev/null || true
    deadline=$((SECONDS + TIMEOUT))
    while running "$pidfile" "$1" && ((SECONDS < deadline)); do sleep 0.2; done
    if running "$pidfile" "$1"; then
      say "$1 ignores SIGTERM; sending SIGKILL"
      kill -KILL "$(pid_in "$pidfile")" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while running "$pidfile" "$1" && ((SECONDS < deadline)); do sleep 0.2; done
      running "$pidfile" "$1" && die "$1 (pid $(pid_in "$pidfile")) does not exit"
    fi
    say "stopped $1"
  fi
  rm -f "$pidfile"
}

stop() {
  [[ -d $D ]] || { say "nothing to stop ($D does not exist)"; return 0; }
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon munged
  local path
  if [[ -s $ADDED ]]; then
    while IFS= read -r path; do
      [[ -L $path && $(readlink "$path") == "$D"/* ]] && rm -f "$path"
    done <"$ADDED"
    rm -f "$ADDED"
  fi
  say "stopped; state and logs kept in $D"
}

status() {
  local ok=0 name
  for name in munged slurmctld slurmd; do
    if running "$D/run/$name.pid" "$name"; then say "$name running (pid $(pid_in "$D/run/$name.pid"))"
    else say "$name not running"; ok=1; fi
  done
  if ((ok == 0)) && node_ready; then
    sinfo -N -o '%N %T %c %m %P'
  else
    ok=1
  fi
  return $ok
}

case ${1:-} in
  install) install_packages ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install | start | status | stop" >&2; exit 2 ;;
esac
