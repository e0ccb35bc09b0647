#!/usr/bin/env bash
# Side-by-side run: Debian's Rspamd and `outscore scan` on the same labelled
# corpus, both offline (no DNS, RBL, fuzzy, reputation or other network checks;
# Rspamd has no Redis, so no Bayes or neural network either), and one table
# with each system's detection rate, false-positive rate and messages/s.
#
#   benches/rspamd-compare.sh [MANIFEST.tsv]      (default: corpus/MANIFEST.tsv)
#
# OUTSCORE_BIN=path uses that outscore binary instead of building a release one.
#
# Detection counts spam at or above each system's refusal line (Rspamd's
# `reject` action, score >= 15 by default; outscore's first tier); a second
# Rspamd row counts `add header` or worse. Installs rspamd with apt when
# missing; runs it on free loopback ports (never Rspamd's own 11332-11334,
# so a running Rspamd is left alone) from a private configuration in a
# temporary directory, then stops it. Needs root (or sudo) for apt and to run
# rspamd as its own user.
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=${1:-corpus/MANIFEST.tsv}
[ -d "$manifest" ] && manifest="$manifest/MANIFEST.tsv"
[ -f "$manifest" ] || { echo "rspamd-compare: no manifest at $manifest" >&2; exit 2; }
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"

if ! command -v rspamd >/dev/null || ! command -v rspamc >/dev/null; then
    echo "rspamd-compare: installing rspamd" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q --no-install-recommends rspamd >/dev/null
fi

work=$(mktemp -d /tmp/rspamd-compare.XXXXXX)
rspamd_pid=""
cleanup() {
    if [ -n "$rspamd_pid" ] && kill -0 "$rspamd_pid" 2>/dev/null; then
        $sudo kill "$rspamd_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$rspamd_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    $sudo rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
normal_port=$(free_port)
controller_port=$(free_port)
proxy_port=$(free_port)
conf="$work/local"
mkdir -p "$conf/local.d" "$conf/override.d" "$work/db" "$work/run" "$work/log"
echo "bind_socket = \"127.0.0.1:$normal_port\"; count = 2;" >"$conf/override.d/worker-normal.inc"
echo "bind_socket = \"127.0.0.1:$controller_port\";" >"$conf/override.d/worker-controller.inc"
echo "bind_socket = \"127.0.0.1:$proxy_port\";" >"$conf/override.d/worker-proxy.inc"
echo 'type = "file"; filename = "'"$work"'/log/rspamd.log"; level = "error";' >"$conf/override.d/logging.inc"
# Any DNS query that a module still makes fails at once on a closed port.
cat >"$conf/local.d/options.inc" <<'CONF'
dns { nameserver = ["127.0.0.1:1"]; timeout = 0.1s; retransmits = 0; }
CONF
for module in rbl surbl spf dkim dmarc arc fuzzy_check asn phishing mx_check \
    reputation url_redirector greylist ratelimit replies neural history_redis \
    dcc rspamd_update p0f antivirus external_services clickhouse elastic \
    metadata_exporter dkim_signing bimi; do
    echo 'enabled = false;' >"$conf/local.d/$module.conf"
done
$sudo chown -R _rspamd:_rspamd "$work/db" "$work/run" "$work/log" 2>/dev/null || true
chmod 755 "$work"

$sudo rspamd -f -u _rspamd -g _rspamd \
    --var=LOCAL_CONFDIR="$conf" --var=DBDIR="$work/db" \
    --var=RUNDIR="$work/run" --var=LOGDIR="$work/log" \
    >"$work/stdout.log" 2>&1 &
rspamd_pid=$!
for _ in $(seq 1 150); do
    rspamc -h "127.0.0.1:$normal_port" stat >/dev/null 2>&1 && break
    kill -0 "$rspamd_pid" 2>/dev/null || { cat "$work/stdout.log" "$work/log/rspamd.log" >&2 2>/dev/null; exit 1; }
    sleep 0.2
done
# `stat` talks to the controller; make sure the scanner answers too.
printf 'Subject: ping\r\n\r\nping\r\n' | rspamc -h "127.0.0.1:$normal_port" -t 10 >/dev/null

bin=${OUTSCORE_BIN:-}
if [ -z "$bin" ]; then
    cargo build --locked --release --quiet --bin outscore
    bin="${CARGO_TARGET_DIR:-target}/release/outscore"
fi
threads=$(nproc)

python3 - "$manifest" "$bin" "$work" "$threads" "127.0.0.1:$normal_port" <<'PY'
import json, os, subprocess, sys, time

manifest, outscore, work, threads, rspamd = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
base = os.path.dirname(os.path.abspath(manifest))
rows = []
with open(manifest, encoding="utf-8") as f:
    cols = None
    for line in f:
        fields = line.rstrip("\n").split("\t")
        if cols is None and fields[0] == "path":
            cols = fields
            continue
        if len(fields) >= 2 and fields[1] in ("spam", "ham"):
            rows.append((os.path.join(base, fields[0]), fields[1]))
label_of = {p: l for p, l in rows}

# Rspamd: rspamc with as many parallel requests as cores, in batches.
results = {}
started = time.monotonic()
batch = 500
for i in range(0, len(rows), batch):
    files = [p for p, _ in rows[i:i + batch]]
    out = subprocess.run(["rspamc", "-h", rspamd, "-n", str(threads * 2), "-t", "60", "-j", "symbols", *files],
                         capture_output=True, text=True, errors="replace")
    # rspamc -j prints one pretty-printed JSON object per file, with its filename.
    text, pos, decoder = out.stdout, 0, json.JSONDecoder()
    while True:
        start = text.find("{", pos)
        if start < 0:
            break
        try:
            obj, pos = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        if isinstance(obj, dict) and "filename" in obj:
            results[obj["filename"]] = obj
rspamd_wall = time.monotonic() - started

def rates(flagged):
    spam = [p for p, l in rows if l == "spam"]
    ham = [p for p, l in rows if l == "ham"]
    det = sum(1 for p in spam if flagged(p)) / len(spam) if spam else float("nan")
    fp = sum(1 for p in ham if flagged(p)) / len(ham) if ham else float("nan")
    return det, fp

def action(p):
    r = results.get(p) or results.get(os.path.relpath(p)) or {}
    return r.get("action", "error")

r_reject = rates(lambda p: action(p) == "reject")
r_header = rates(lambda p: action(p) in ("reject", "add header", "rewrite subject", "soft reject"))
errors = sum(1 for p, _ in rows if action(p) == "error")

summary = os.path.join(work, "outscore-summary.json")
started = time.monotonic()
subprocess.run([outscore, "scan", manifest, "--format", "summary", "--summary-json", summary],
               stdout=subprocess.DEVNULL, check=False)
outscore_wall = time.monotonic() - started
s = json.load(open(summary))

n = len(rows)
pct = lambda x: "n/a" if x != x else f"{x * 100:6.2f}%"
print(f"\ncorpus: {manifest} ({n} messages: {sum(1 for _, l in rows if l == 'spam')} spam, "
      f"{sum(1 for _, l in rows if l == 'ham')} ham); {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")
print(f"{'system':<34} {'detection':>10} {'false pos.':>10} {'msgs/s':>9}")
print(f"{'rspamd 3.4 (reject >= 15)':<34} {pct(r_reject[0]):>10} {pct(r_reject[1]):>10} {n / rspamd_wall:>9.0f}")
print(f"{'rspamd 3.4 (add header or worse)':<34} {pct(r_header[0]):>10} {pct(r_header[1]):>10} {'':>9}")
det = s["detection_rate"]; fp = s["false_positive_rate"]
print(f"{'outscore (first tier)':<34} {pct(det if det is not None else float('nan')):>10} "
      f"{pct(fp if fp is not None else float('nan')):>10} {s['messages_per_second']:>9.0f}")
if errors:
    print(f"(rspamd returned no result for {errors} messages; counted as not flagged)")
print(f"msgs/s: rspamd = wall clock of the rspamc runs against the running daemon "
      f"({threads * 2} parallel requests); outscore = scan's own clock once its rules are "
      f"compiled ({s['threads']} threads; whole process {outscore_wall:.1f} s).")
PY
