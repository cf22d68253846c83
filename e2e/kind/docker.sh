#!/usr/bin/env bash
# docker.sh makes sure a Docker engine answers for the kind cluster, and
# takes back what it changed on the machine when asked to.
#
#   e2e/kind/docker.sh start    # engine already answering: leave it alone
#                               # otherwise: start dockerd, wait for it
#   e2e/kind/docker.sh stop     # only if start launched it: stop dockerd
#                               # (and the containerd it runs), put back the
#                               # sysctls and iptables policies it found
#   e2e/kind/docker.sh status
#
# Both are idempotent: start twice starts one engine, stop without start
# does nothing.
#
# What an engine and a kind cluster change outside their own namespaces:
# dockerd turns on forwarding, sets the root iptables FORWARD policy to
# DROP, adds its chains and rules to the root namespace's nat and filter
# tables (creating them with iptables-nft) and a bridge per network
# (docker0, br-<id>), all of which it leaves behind when it stops; each
# node's kubelet writes non-namespaced sysctls (kernel.panic,
# kernel.panic_on_oops, vm.overcommit_memory, kernel.keys.*) on the host,
# and each node's systemd raises fs.file-max.
# start records the machine's sysctls, iptables and ip6tables rules and
# links before dockerd runs. stop writes back every recorded sysctl that
# changed under the keys below and names any other key it sees changed;
# puts back the filter table's policies; removes the rules, DOCKER* chains,
# tables and bridges that are new since start and belong to the engine
# (they name a DOCKER chain, docker0 or a br-<id> bridge), and names
# anything else new it leaves alone.
#
# Machines whose capability bounding set lacks CAP_SYS_RESOURCE cannot run
# `docker run --privileged` (runc asks for every capability and the kernel
# refuses). There dockerd gets a default runtime that drops
# CAP_SYS_RESOURCE from the container's spec before calling runc.
#
# Environment:
#   DOORMAN_CACHE         cache dir (default ~/.cache/doorman); dockerd's
#                         log goes to $DOORMAN_CACHE/kind/dockerd.log
#   DOORMAN_DOCKER_STATE  where start keeps what stop needs
#                         (default /run/doorman-docker)
set -euo pipefail

cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
state="${DOORMAN_DOCKER_STATE:-/run/doorman-docker}"
log="${cache}/kind/dockerd.log"
sock=/var/run/docker.sock

# Keys stop writes back when they differ from what start recorded.
restore_keys='^(net\.ipv4\.ip_forward|net\.ipv4\.conf\.(all|default)\.forwarding|net\.ipv6\.conf\.(all|default)\.forwarding|kernel\.panic|kernel\.panic_on_oops|kernel\.panic_on_warn|vm\.overcommit_memory|vm\.panic_on_oom|kernel\.keys\..*|fs\.inotify\..*|net\.bridge\..*|net\.netfilter\.nf_conntrack_max|net\.nf_conntrack_max|kernel\.pid_max|vm\.max_map_count|fs\.file-max|fs\.nr_open|fs\.protected_.*|kernel\.sysrq|kernel\.core_uses_pid|net\.core\.somaxconn)$'
# Keys that change on their own (counters, per-device entries that come
# and go with the engine's bridges and veths): never reported.
volatile_keys='^(kernel\.ns_last_pid|kernel\.random\..*|fs\.(dentry-state|inode-nr|inode-state|file-nr|aio-nr|quota\..*)|kernel\.pty\.nr|net\.netfilter\.nf_conntrack_count|net\.(ipv4|ipv6)\.conf\.(docker0|br-|veth).*|net\.(ipv4|ipv6)\.neigh\.(docker0|br-|veth).*|kernel\.sched_domain\..*|fs\.binfmt_misc\..*|dev\..*|kernel\.tainted|user\..*|vm\.stat_refresh|kernel\.sched_.*)'

say() { echo "docker.sh: $*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

lacks_sys_resource() {
  # CAP_SYS_RESOURCE is capability 24.
  local bnd
  bnd="$(awk '/^CapBnd:/ {print $2}' /proc/self/status)"
  (( (16#${bnd} >> 24 & 1) == 0 ))
}

# write_runc_wrapper writes the runtime dockerd uses when the bounding set
# lacks CAP_SYS_RESOURCE. runc is called as
#   runc [global flags] create|run --bundle DIR ... ID    (spec: DIR/config.json)
#   runc [global flags] exec --process FILE ... ID        (spec: FILE)
# and the wrapper removes the capability from every set in that spec, then
# runs the real runc with the same arguments.
write_runc_wrapper() {
  local real
  real="$(command -v runc)" || { say "runc not found (apt-get install runc)"; exit 1; }
  command -v jq >/dev/null || { say "jq not found (apt-get install jq), the runtime wrapper needs it"; exit 1; }
  cat >"${state}/runc-drop-sys-resource" <<EOF
#!/usr/bin/env bash
# Runtime for dockerd on a machine whose capability bounding set lacks
# CAP_SYS_RESOURCE: drops that capability from the container's spec, then
# runs ${real}. Written by e2e/kind/docker.sh start.
set -euo pipefail
real=${real}
args=("\$@")
cmd= bundle=. process=
i=0
while [ \$i -lt \${#args[@]} ]; do
  a="\${args[\$i]}"
  if [ -z "\$cmd" ]; then
    case "\$a" in
      --root|--log|--log-format|--criu|--rootless) i=\$((i + 2)); continue ;;
      -*) ;;
      *) cmd="\$a" ;;
    esac
  else
    case "\$a" in
      --bundle|-b) bundle="\${args[\$((i + 1))]}" ;;
      --bundle=*) bundle="\${a#--bundle=}" ;;
      --process|-p) process="\${args[\$((i + 1))]}" ;;
      --process=*) process="\${a#--process=}" ;;
    esac
  fi
  i=\$((i + 1))
done
drop() { # drop FILE JQ-PATH
  local tmp="\$1.doorman-runc"
  jq "(\$2 // {}) |= with_entries(.value |= map(select(. != \"CAP_SYS_RESOURCE\")))" "\$1" >"\$tmp"
  mv "\$tmp" "\$1"
}
case "\$cmd" in
  create|run) if [ -f "\$bundle/config.json" ]; then drop "\$bundle/config.json" .process.capabilities; fi ;;
  exec) if [ -n "\$process" ] && [ -f "\$process" ]; then drop "\$process" .capabilities; fi ;;
esac
exec "\$real" "\$@"
EOF
  chmod 0755 "${state}/runc-drop-sys-resource"
}

record_machine() {
  # A record left by a start whose stop never ran holds the machine as it
  # was before that engine: keep it, it is the one to put back.
  if [ -s "${state}/sysctl.before" ]; then
    say "keeping the record from an earlier start in ${state}"
    return
  fi
  sysctl -a 2>/dev/null | sort >"${state}/sysctl.before.tmp"
  mv "${state}/sysctl.before.tmp" "${state}/sysctl.before"
  # kind bind-mounts /lib/modules into each node; Docker creates a missing
  # source directory.
  if [ ! -e /lib/modules ]; then touch "${state}/lib-modules.absent"; fi
  for t in iptables ip6tables; do
    if command -v "${t}-save" >/dev/null; then
      "${t}-save" -t filter 2>/dev/null | grep '^:' >"${state}/${t}.policies" || true
      "${t}-save" 2>/dev/null | grep -v '^#' >"${state}/${t}.before" || true
    fi
  done
  ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' >"${state}/links.before"
}

start() {
  if engine_answers; then
    if [ -f "${state}/dockerd.pid" ]; then
      say "dockerd (pid $(cat "${state}/dockerd.pid")) started by this script already answers"
    else
      say "a Docker engine already answers; leaving it as it is"
    fi
    return
  fi
  command -v dockerd >/dev/null || {
    say "dockerd missing, installing docker.io"
    DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io >&2
  }
  if [ -S "${sock}" ] && pgrep -x dockerd >/dev/null; then
    say "a dockerd runs but does not answer on ${sock}; not starting a second one"
    exit 1
  fi
  mkdir -p "${state}" "$(dirname "${log}")"
  record_machine

  local args=(--host "unix://${sock}" --pidfile "${state}/dockerd.pid")
  if lacks_sys_resource; then
    write_runc_wrapper
    args+=(--add-runtime "doorman-runc=${state}/runc-drop-sys-resource" --default-runtime doorman-runc)
    say "capability bounding set lacks CAP_SYS_RESOURCE: default runtime drops it from each container"
  fi
  say "starting dockerd, log ${log}"
  # setsid: dockerd must outlive this script and the caller's terminal.
  setsid dockerd "${args[@]}" >>"${log}" 2>&1 </dev/null &
  local pid=$!
  for _ in $(seq 1 120); do
    if engine_answers; then
      say "dockerd (pid ${pid}) answers"
      return
    fi
    if ! kill -0 "${pid}" 2>/dev/null; then
      tail -n 20 "${log}" >&2
      say "dockerd exited before answering; see ${log}"
      exit 1
    fi
    sleep 0.5
  done
  tail -n 20 "${log}" >&2
  say "dockerd (pid ${pid}) did not answer within 60s; see ${log}"
  exit 1
}

# sysctl_table prints "key<US>value" per key, sorted on the key. Keys that
# sysctl prints on several lines (fs.pipe-keep, kernel.core_modes) are
# read-only reports and left out.
us=$'\x1f'
sysctl_table() {
  awk -F' = ' '{n[$1]++; line[$1] = $0} END {for (k in n) if (n[k] == 1) print line[k]}' "$1" |
    sed "s/ = /${us}/" | LC_ALL=C sort -t "${us}" -k1,1
}

# sysctl_changes prints "key<US>recorded<US>now" for each key whose value
# differs from the record.
sysctl_changes() {
  local now
  now="$(mktemp)"
  sysctl -a 2>/dev/null >"${now}"
  LC_ALL=C join -t "${us}" <(sysctl_table "${state}/sysctl.before") <(sysctl_table "${now}") |
    awk -F "${us}" '$2 != $3'
  rm -f "${now}"
}

restore_machine() {
  [ -s "${state}/sysctl.before" ] || return 0
  local key before after
  while IFS="${us}" read -r key before after; do
    [[ "${key}" =~ ${restore_keys} ]] || continue
    if sysctl -q -w "${key}=${before}" >/dev/null 2>&1; then
      say "put back ${key} = ${before} (was ${after})"
    else
      say "could not put back ${key} = ${before} (is ${after})"
    fi
  done < <(sysctl_changes)
  # Read again: some keys follow others (ip_forward resets every
  # interface's forwarding and accept_redirects).
  while IFS="${us}" read -r key before after; do
    [[ "${key}" =~ ${volatile_keys} ]] && continue
    say "note: ${key} is ${after}, was ${before} before the engine started; not one this script puts back"
  done < <(sysctl_changes)
  for t in iptables ip6tables; do
    [ -s "${state}/${t}.policies" ] || continue
    local chain policy current
    while read -r chain policy _; do
      chain="${chain#:}"
      [ "${policy}" = "-" ] && continue
      current="$("${t}-save" -t filter 2>/dev/null | awk -v c=":${chain}" '$1 == c {print $2}')"
      if [ -n "${current}" ] && [ "${current}" != "${policy}" ]; then
        "${t}" -t filter -P "${chain}" "${policy}"
        say "put back ${t} filter ${chain} policy ${policy} (was ${current})"
      fi
    done <"${state}/${t}.policies"
  done
  for t in iptables ip6tables; do undo_engine_rules "${t}"; done
  undo_engine_links
  local leftovers
  leftovers="$(engine_leftovers)"
  if [ -f "${state}/lib-modules.absent" ] && [ -d /lib/modules ] && rmdir /lib/modules 2>/dev/null; then
    say "removed /lib/modules, which Docker created for the node containers"
  fi
  rm -f "${state}/sysctl.before" "${state}"/*.policies "${state}"/*.before "${state}/lib-modules.absent"
  if [ -n "${leftovers}" ]; then
    say "the engine's rules or links that are new since start are still in the root namespace:"
    echo "${leftovers}" >&2
    return 1
  fi
}

# The engine's names in iptables-save lines and links: its chains
# (DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-*), the default bridge and
# one bridge per user-defined network.
engine_chain='^DOCKER'
engine_rule='(^| )-[jg] DOCKER|(^| )!? ?-[io] (docker0|br-[0-9a-f]+)( |$)'
engine_link='^(docker0|br-[0-9a-f]+)$'

# undo_plan BEFORE NOW prints an iptables-restore --noflush input that
# deletes the rules in NOW (iptables-save output) that are not in BEFORE
# and name the engine, then flushes and deletes the engine's chains that
# are new; and, on stderr, "note:" lines for anything else new.
undo_plan() {
  awk -v chainre="${engine_chain}" -v rulere="${engine_rule}" '
    { file = (FILENAME == ARGV[1]) ? 1 : 2 }
    /^\*/ { table = substr($0, 2); if (file == 1) had[table] = 1; else if (!(table in tables)) { tables[table] = 1; order[++n] = table }; next }
    /^:/ {
      chain = substr($1, 2)
      if (file == 1) old[table, chain] = 1
      else if (!((table, chain) in old)) {
        if (chain ~ chainre) { newchains[table] = newchains[table] " " chain }
        else if (table in had) printf "note: chain %s in table %s is new since the engine started; left alone\n", chain, table > "/dev/stderr"
      }
      next
    }
    /^-A / {
      if (file == 1) { count[table, $0]++; next }
      if (count[table, $0] > 0) { count[table, $0]--; next }
      if (($2 ~ chainre) && !((table, $2) in old)) next   # flushed with its chain
      if ($0 ~ rulere) dels[table] = dels[table] "-D" substr($0, 3) "\n"
      else printf "note: %s rule \"%s\" is new since the engine started; left alone\n", table, $0 > "/dev/stderr"
    }
    END {
      for (i = 1; i <= n; i++) {
        t = order[i]
        if (dels[t] == "" && newchains[t] == "") continue
        print "*" t
        printf "%s", dels[t]
        k = split(newchains[t], c, " ")
        for (j = 1; j <= k; j++) print "-F " c[j]
        for (j = 1; j <= k; j++) print "-X " c[j]
        print "COMMIT"
      }
    }
  ' "$1" "$2"
}

# undo_engine_rules TOOL (iptables or ip6tables) removes what the engine
# added to that family's tables since start; with the nf_tables backend it
# also deletes a table that did not exist before and is empty again.
undo_engine_rules() {
  local t="$1" before="${state}/$1.before" now plan table family
  [ -f "${before}" ] && command -v "${t}-save" >/dev/null || return 0
  now="$(mktemp)"
  "${t}-save" 2>/dev/null | grep -v '^#' >"${now}" || true
  plan="$(undo_plan "${before}" "${now}" 2> >(sed 's/^/docker.sh: /' >&2))"
  if [ -n "${plan}" ]; then
    if "${t}-restore" --noflush <<<"${plan}"; then
      say "removed the engine's ${t} rules and chains: $(grep -c '^-[DX] ' <<<"${plan}") deleted"
    else
      say "could not remove the engine's ${t} rules; plan was:"
      echo "${plan}" >&2
    fi
  fi
  rm -f "${now}"
  "${t}" --version 2>/dev/null | grep -q nf_tables || return 0
  family=ip; [ "${t}" = ip6tables ] && family=ip6
  for table in $("${t}-save" 2>/dev/null | sed -n 's/^\*//p'); do
    grep -qx "\*${table}" "${before}" && continue
    # Empty again: only the built-in chains, policy ACCEPT, no rules.
    if ! "${t}-save" -t "${table}" 2>/dev/null | grep -v '^#' |
      grep -Evq '^(\*|COMMIT$|:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT )'; then
      nft delete table "${family}" "${table}" && say "deleted table ${family} ${table}, which the engine created"
    else
      say "note: table ${family} ${table} is new since the engine started and not empty; left alone"
    fi
  done
}

# undo_engine_links deletes the engine's bridges that are new since start
# (dockerd creates them again from its own records when it starts).
undo_engine_links() {
  [ -f "${state}/links.before" ] || return 0
  local link
  for link in $(ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}'); do
    [[ "${link}" =~ ${engine_link} ]] || continue
    grep -qx "${link}" "${state}/links.before" && continue
    ip link delete "${link}" && say "deleted link ${link}, which the engine created"
  done
}

# engine_children lists the processes the engine started that may outlive
# it: its containerd and the shims of its containers, found by the
# addresses dockerd gives them.
engine_children() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qE '(^|/)containerd(-shim[^ ]*)? .*/var/run/docker/containerd/' && echo "${p#/proc/}"
  done
  return 0
}

stop() {
  if [ ! -f "${state}/dockerd.pid" ]; then
    if [ -s "${state}/sysctl.before" ]; then
      restore_machine
    fi
    say "no dockerd started by this script; nothing to stop"
    return
  fi
  local pid
  pid="$(cat "${state}/dockerd.pid")"
  if kill -0 "${pid}" 2>/dev/null; then
    say "stopping dockerd (pid ${pid}); it stops its containers first"
    kill -TERM "${pid}"
    # dockerd gives each container 15s to stop, then kills it.
    for _ in $(seq 1 240); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "${pid}" 2>/dev/null; then
      say "dockerd (pid ${pid}) still running after 120s; killing it"
      kill -KILL "${pid}" || true
    fi
  fi
  local left
  for _ in $(seq 1 20); do
    left="$(engine_children)"
    [ -z "${left}" ] && break
    sleep 0.5
  done
  if [ -n "${left}" ]; then
    say "ending what the engine left running: $(echo ${left})"
    kill -TERM ${left} 2>/dev/null || true
    sleep 2
    left="$(engine_children)"
    if [ -n "${left}" ]; then kill -KILL ${left} 2>/dev/null || true; fi
  fi
  rm -f "${state}/dockerd.pid"
  restore_machine
  say "dockerd stopped"
}

# engine_leftovers prints the engine's chains, rules and bridges in the
# root namespace that were not there when start recorded the machine.
engine_leftovers() {
  local t
  for t in iptables ip6tables; do
    [ -f "${state}/${t}.before" ] && command -v "${t}-save" >/dev/null || continue
    "${t}-save" 2>/dev/null | grep -E "^:DOCKER|^-A .*(${engine_rule})" |
      grep -vxF -f <(grep -E "^:DOCKER|^-A " "${state}/${t}.before") | sed "s/^/  ${t}: /" || true
  done
  [ -f "${state}/links.before" ] || return 0
  ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -E "${engine_link}" |
    grep -vxF -f <(cat "${state}/links.before"; echo '') | sed 's/^/  link: /' || true
}

status() {
  if engine_answers; then
    if [ -f "${state}/dockerd.pid" ]; then say "running, started by this script (pid $(cat "${state}/dockerd.pid"))"
    else say "running, not started by this script"; fi
  else
    say "no engine answers"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
