# Throwaway Debian machines under a real systemd, for the scripts that
# need one (scripts/check-deb-systemd, scripts/check-rebuild). Sourced,
# not run. As root.
#
# A Debian bookworm root (systemd, dbus, procps) is made once by
# mmdebstrap and cached in /var/tmp/vigie-systemd-base/KEY (KEY names the
# suite, the package list and the architecture: change BASE_VERSION below
# when the list changes); it is built in a temporary directory and
# renamed, so a killed build leaves no half cache. Each machine boots
# `systemd-nspawn -b` on a throwaway overlay of that root (the upper
# directory in a temporary directory under /var/tmp, mounted in a mount
# namespace of the script's own; the script is PID 1 of a PID namespace
# of its own, so that even a SIGKILL takes the machines and the mounts
# with it, and the next run removes the directory): each machine has its
# own /, /tmp, /run and /var, its own network namespace (loopback only),
# and boots nothing over this machine's filesystem. Where systemd is not
# PID 1 on the host (this machine, CI), nspawn runs with --register=no
# --keep-unit (no machined, no scope). The script drives a machine with
# nsenter into its namespaces; a trap always stops them and removes the
# overlays.
#
# Use:
#   ct_enter "$@"            first: installs what is missing, then runs
#                            the script again in its own namespaces
#   ct_base                  the cached root (built the first time)
#   ct_mount NAME            an overlay for machine NAME; sets CT_ROOT to
#                            its root, to put files in before it boots
#   ct_boot NAME [OPTS…]     boot it (extra systemd-nspawn options) and
#                            wait for the end of its boot
#   ct NAME CMD…             run CMD in it, with its environment
#   ct_halt NAME             stop it and remove its overlay
# The caller defines `say` (a line on stderr) and `ct_failed NAME WHY`
# (what to print, then exit 1) before.

CT_BASE_VERSION=1
CT_SUITE=bookworm
CT_PACKAGES=systemd,systemd-sysv,dbus,procps
CT_CACHE=/var/tmp/vigie-systemd-base

declare -A CT_NSPAWN=() CT_LEADER=()
CT_RUN=""
CT_ROOT=""
CT_BASE_BUILT=""

# Runs the calling script again as PID 1 of a mount and a PID namespace
# of its own (unshare's child, killed if unshare is): however it ends,
# even by SIGKILL, the kernel kills every process of the namespace, the
# machines' included, and the overlays mounted go with it.
ct_enter() {
  [ -n "${VIGIE_CT_NS:-}" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    say "needs root (it builds a root with mmdebstrap and boots it with systemd-nspawn)"
    exit 2
  fi
  local missing=()
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  VIGIE_CT_NS=1 exec unshare --mount --propagation private \
    --pid --fork --kill-child --mount-proc -- "$0" "$@"
}

ct_base() {
  local key
  key="$CT_SUITE-$CT_BASE_VERSION-$(dpkg --print-architecture)"
  CT_BASE_DIR="$CT_CACHE/$key"
  mkdir -p "$CT_CACHE"
  [ -d "$CT_BASE_DIR" ] || CT_BASE_BUILT=1
  (
    # One builder at a time; a build killed earlier left only its
    # temporary directory, removed here.
    flock 9
    if [ ! -d "$CT_BASE_DIR" ]; then
      rm -rf "$CT_CACHE"/.build.*
      local tmp
      tmp=$(mktemp -d "$CT_CACHE/.build.XXXXXX")
      say "building the $CT_SUITE base ($CT_PACKAGES) with mmdebstrap into $CT_BASE_DIR"
      if ! mmdebstrap --quiet --variant=minbase --include="$CT_PACKAGES" \
        "$CT_SUITE" "$tmp/root" >"$tmp/log" 2>&1; then
        cat "$tmp/log" >&2
        rm -rf "$tmp"
        say "mmdebstrap failed (see above)"
        exit 1
      fi
      mv -T "$tmp/root" "$CT_BASE_DIR"
      rm -rf "$tmp"
    fi
  ) 9>"$CT_CACHE/.lock"
}

# The run's directory, made at the first mount: runs of a killed script
# left theirs, those whose lock no process holds (a run holds its own
# for its whole life; the kernel drops it with the process), removed
# here. A directory without a lock yet is a run starting: left alone.
ct_run_dir() {
  [ -n "$CT_RUN" ] && return 0
  local old
  for old in /var/tmp/vigie-systemd-run.*; do
    [ -e "$old/lock" ] || continue
    if flock -n "$old/lock" true; then rm -rf "$old"; fi
  done
  CT_RUN=$(mktemp -d /var/tmp/vigie-systemd-run.XXXXXX)
  exec 8>"$CT_RUN/lock"
  flock 8
  trap ct_cleanup EXIT
  trap 'exit 130' INT TERM
}

ct_mount() {
  local name=$1
  ct_run_dir
  mkdir "$CT_RUN/$name" "$CT_RUN/$name/upper" "$CT_RUN/$name/work" "$CT_RUN/$name/root"
  mount -t overlay overlay \
    -o "lowerdir=$CT_BASE_DIR,upperdir=$CT_RUN/$name/upper,workdir=$CT_RUN/$name/work" \
    "$CT_RUN/$name/root"
  CT_ROOT="$CT_RUN/$name/root"
}

ct_boot() {
  local name=$1
  shift
  local dir="$CT_RUN/$name"
  local opts=(--quiet -D "$dir/root" -M "vigie-$name-${CT_RUN##*.}" -b --private-network
    --link-journal=no --console=pipe "$@")
  if [ ! -d /run/systemd/system ]; then
    # No systemd on the host: no machined to register with, no scope to
    # create.
    opts+=(--register=no --keep-unit)
  fi
  local started
  started=$(date +%s%N)
  # Killed with this script, whatever kills it (nspawn's own child, the
  # machine's PID 1, dies with nspawn).
  setpriv --pdeathsig SIGKILL -- systemd-nspawn "${opts[@]}" \
    >"$dir/console.log" 2>&1 </dev/null &
  local nspawn=$!
  CT_NSPAWN[$name]=$nspawn
  local leader="" c
  for _ in $(seq 1 100); do
    for c in $(ps --ppid "$nspawn" -o pid= 2>/dev/null); do
      if [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ]; then leader=$c; fi
    done
    [ -n "$leader" ] && break
    kill -0 "$nspawn" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$leader" ]; then
    cat "$dir/console.log" >&2
    ct_failed "$name" "systemd-nspawn did not start the machine's systemd"
  fi
  CT_LEADER[$name]=$leader
  local state="" deadline=$((SECONDS + 90))
  while [ "$SECONDS" -lt "$deadline" ]; do
    # --wait returns once the boot is over; the loop waits for the bus.
    state=$(ct "$name" timeout 30 systemctl is-system-running --wait 2>/dev/null) || true
    case "$state" in running | degraded) break ;; esac
    kill -0 "$nspawn" 2>/dev/null || break
    sleep 0.5
  done
  local ms=$(( ($(date +%s%N) - started) / 1000000 ))
  case "$state" in
    running) echo "ok: machine $name booted systemd ($(ct "$name" systemctl --version | sed -n 1p)) in $ms ms" ;;
    degraded)
      echo "ok: machine $name booted systemd, degraded (not vigie's doing):"
      ct "$name" systemctl --failed --no-pager --no-legend || true ;;
    *)
      cat "$dir/console.log" >&2
      ct_failed "$name" "the machine's systemd did not finish booting (is-system-running: ${state:-no answer})" ;;
  esac
}

# A command inside machine NAME, with its environment, not ours.
ct() {
  local name=$1
  shift
  nsenter -t "${CT_LEADER[$name]}" -a -- env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

ct_halt() {
  local name=$1
  local nspawn=${CT_NSPAWN[$name]:-}
  if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
    # A clean halt first (nspawn asks the machine's systemd on SIGTERM);
    # past 15 s, killed.
    kill -TERM "$nspawn" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn" 2>/dev/null || true
    wait "$nspawn" 2>/dev/null || true
  fi
  unset "CT_NSPAWN[$name]" "CT_LEADER[$name]"
  if [ -n "$CT_RUN" ] && [ -d "$CT_RUN/$name" ]; then
    umount "$CT_RUN/$name/root" 2>/dev/null || umount -l "$CT_RUN/$name/root" 2>/dev/null || true
    rm -rf "${CT_RUN:?}/$name"
  fi
}

ct_cleanup() {
  local rc=$? name
  for name in "${!CT_NSPAWN[@]}"; do ct_halt "$name"; done
  if [ -n "$CT_RUN" ]; then
    for name in "$CT_RUN"/*/; do
      [ -d "$name/root" ] && { umount "$name/root" 2>/dev/null || umount -l "$name/root" 2>/dev/null || true; }
    done
    rm -rf "$CT_RUN"
  fi
  exit "$rc"
}
