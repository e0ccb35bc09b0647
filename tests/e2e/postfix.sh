# Throwaway Postfix instance on loopback for the end-to-end tests. Sourced
# by tests/e2e/run and scripts/postfix-harness. Everything lives under one
# directory: configuration, queue, data, log and the delivery sink. Mail is
# never relayed: every transport is a pipe into files under $PF_DIR/sink
# (recipients at load.test are discarded after the milter has seen them).
#
# pf_create DIR SMTP_PORT MILTER_ADDR   write the instance (does not start it)
# pf_start / pf_stop / pf_reload        control it (bounded waits)
# pf_set NAME=VALUE...                  change main.cf (then pf_reload)

PF_DIR=""

pf_create() {
  PF_DIR=$1
  local smtp_port=$2 milter=$3
  mkdir -p "$PF_DIR"/etc "$PF_DIR"/spool "$PF_DIR"/data "$PF_DIR"/sink
  # The pipe transport runs as nobody: it must reach the sink script and
  # write into the sink directory.
  chmod 755 "$PF_DIR" "$PF_DIR"/etc
  chmod 1777 "$PF_DIR"/sink
  chown postfix "$PF_DIR"/data
  cat >"$PF_DIR"/sink.sh <<'SINK'
#!/bin/sh
# Postfix pipe(8) delivery sink: $1 = directory, $2 = queue id.
umask 022
tmp="$1/.tmp.$2.$$"
cat >"$tmp" && mv "$tmp" "$1/$2.$$.eml"
SINK
  chmod 755 "$PF_DIR"/sink.sh

  cat >"$PF_DIR"/etc/master.cf <<MASTER
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$smtp_port inet n     -       n       -       60      smtpd
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
sink      unix  -       n       n       -       10      pipe
  user=nobody argv=/bin/sh $PF_DIR/sink.sh $PF_DIR/sink \${queue_id}
MASTER

  cat >"$PF_DIR"/etc/main.cf <<MAIN
compatibility_level = 3.6
queue_directory = $PF_DIR/spool
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
myhostname = harness.test
mydomain = harness.test
myorigin = harness.test
mydestination =
relayhost =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_authorized_xclient_hosts = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $PF_DIR
# Nothing ever leaves this machine: every transport is the file sink.
default_transport = sink
relay_transport = sink
local_transport = sink
virtual_transport = sink
transport_maps = inline:{load.test=discard}
sink_destination_recipient_limit = 1
# Room for the large-message tests (outscore's own hard limit is 30 MB).
message_size_limit = 41943040
smtpd_banner = \$myhostname ESMTP
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 100
# Tempfails (milter down) must not slow or cut the load tests' sessions.
smtpd_soft_error_limit = 10000
smtpd_hard_error_limit = 10000
smtpd_error_sleep_time = 0
# A failed delivery must not loop for minutes.
maximal_queue_lifetime = 1m
bounce_queue_lifetime = 1m
queue_run_delay = 5s
minimal_backoff_time = 5s
# The milter under test.
smtpd_milters = $milter
non_smtpd_milters = $milter
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 10s
milter_command_timeout = 10s
milter_content_timeout = 60s
MAIN
  postfix -c "$PF_DIR"/etc set-permissions >/dev/null 2>&1 || true
  pf_loud check
}

# Run a postfix(1) command; on failure show its messages, which Postfix
# writes to stderr only when that is a terminal.
pf_loud() {
  postfix -c "$PF_DIR"/etc "$@" >/dev/null 2>&1 && return 0
  if command -v script >/dev/null; then
    script -qec "postfix -c '$PF_DIR/etc' $*" /dev/null </dev/null >&2 || true
  fi
  return 1
}

pf_set() {
  postconf -c "$PF_DIR"/etc -e "$@"
}

pf_start() {
  pf_loud start || {
    echo "postfix start failed:" >&2
    tail -20 "$PF_DIR"/maillog >&2 2>/dev/null
    return 1
  }
  local i
  for i in $(seq 1 50); do
    postfix -c "$PF_DIR"/etc status >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "postfix did not come up" >&2
  return 1
}

pf_reload() {
  postfix -c "$PF_DIR"/etc reload >/dev/null 2>&1
}

pf_stop() {
  [ -n "$PF_DIR" ] && [ -f "$PF_DIR"/etc/main.cf ] || return 0
  postfix -c "$PF_DIR"/etc stop >/dev/null 2>&1 || true
  local i
  for i in $(seq 1 50); do
    postfix -c "$PF_DIR"/etc status >/dev/null 2>&1 || return 0
    sleep 0.2
  done
  # Still up after 10 s: kill its master by pid file.
  local pid
  pid=$(cat "$PF_DIR"/spool/pid/master.pid 2>/dev/null | tr -d ' ')
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
}
