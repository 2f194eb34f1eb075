#!/usr/bin/env bash
# misp-guard end to end, as it runs "dropped onto a MISP host": two hosts
# made of network namespaces joined by a cable (a veth pair),
#
#   host A (10.77.9.2): our MISP and misp-guard (guard.firewall.mode "host")
#   host B (10.77.9.3): a partner's MISP, over HTTPS with its own CA
#
# Our MISP keeps its Server.url (https://misp-b.example) and no proxy
# setting; the guard's own nftables table sends its sync to the guard,
# which presents a certificate from the guard's CA (trusted by our MISP as
# the README says) and verifies B's own certificate upstream. Our MISP
# (tests/peer/misp_sync.py, MISP's request sequences) pushes to B and pulls
# from B; clean events pass, the ones breaking a rule are refused. Then the
# verdict lines, the metrics that moved and where to look next.
#
# Everything lives in the two namespaces and a temporary directory, all
# removed at the end, also on Ctrl-C. Needs root.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: run as root (it creates network namespaces and nftables rules)" >&2
  exit 1
fi
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v python3 >/dev/null || missing+=(python3)
command -v openssl >/dev/null || missing+=(openssl)
# The guard links libnftnl and libmnl (its nftables table).
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists libnftnl 2>/dev/null || missing+=(libnftnl-dev)
pkg-config --exists libmnl 2>/dev/null || missing+=(libmnl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "Building misp-guard ..."
cargo build --quiet
GUARD=$PWD/target/debug/misp-guard
PEER=$PWD/tests/peer/misp_sync.py
A=mg-demo-a-$$
B=mg-demo-b-$$
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$A"
ip netns add "$B"
ip link add "mgd$$" netns "$A" type veth peer name "mgd$$b" netns "$B"
ip -n "$A" addr add 10.77.9.2/24 dev "mgd$$"
ip -n "$B" addr add 10.77.9.3/24 dev "mgd$$b"
for ns in "$A" "$B"; do
  ip -n "$ns" link set lo up
done
ip -n "$A" link set "mgd$$" up
ip -n "$B" link set "mgd$$b" up

# B's own CA and certificate (what the partner's Apache has).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=Partner CA" -keyout "$WORK/b-ca.key" -out "$WORK/b-ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=misp-b.example" -keyout "$WORK/b.key" -out "$WORK/b.csr" 2>/dev/null
printf 'subjectAltName=DNS:misp-b.example,IP:10.77.9.3\n' >"$WORK/b.ext"
openssl x509 -req -in "$WORK/b.csr" -CA "$WORK/b-ca.crt" -CAkey "$WORK/b-ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/b.ext" -out "$WORK/b.crt" 2>/dev/null
# The guard's CA, as the README's install says (misp-guard ca init); our
# MISP trusts its ca.crt for B (Server cert_file).
"$GUARD" ca init --out "$WORK/guard-ca" >/dev/null

# Both MISPs' events: clean ones, and one breaking each rule.
python3 "$PEER" data "$WORK/a-data" --name A
python3 "$PEER" data "$WORK/b-data" --name B

rules='"taxonomies_rules": {"blocked_tags": ["tlp:red"], "required_taxonomies": ["tlp"],
        "allowed_tags": {"tlp": ["tlp:clear", "tlp:white", "tlp:green", "tlp:amber"]}},
      "blocked_distribution_levels": ["0"],
      "blocked_sharing_groups_uuids": ["b9e656ba-b9c0-4506-83ed-7b54b43a57cb"],
      "blocked_attribute_types": ["passport-number"],
      "blocked_attribute_categories": ["Person"],
      "blocked_object_types": ["person"]'
cat >"$WORK/config.json" <<EOF
{
  "compartments_rules": { "can_reach": { "ours": ["ours", "partners"], "partners": ["partners", "ours"] } },
  "instances": {
    "A": { "ip": "10.77.9.2", "host": "misp-a.example", "port": 443, "compartment_id": "ours",
      $rules },
    "B": { "ip": "10.77.9.3", "host": "misp-b.example", "port": 443, "compartment_id": "partners",
      $rules }
  },
  "guard": {
    "listen": { "transparent": ["0.0.0.0:8443"] },
    "firewall": { "mode": "host", "local_instances": ["A"] },
    "tls": { "ca_cert": "$WORK/guard-ca/ca.crt", "ca_key": "$WORK/guard-ca/ca.key" },
    "instances": { "B": { "tls": { "ca": "$WORK/b-ca.crt" } } },
    "admin": { "listen": "127.0.0.1:9464" },
    "spill_dir": "$WORK",
    "log": { "level": "info" }
  }
}
EOF

ip netns exec "$B" python3 "$PEER" serve --data "$WORK/b-data" --name B --listen 10.77.9.3:443 \
  --cert "$WORK/b.crt" --key "$WORK/b.key" --record "$WORK/b-received.jsonl" \
  --ready "$WORK/b.ready" 2>"$WORK/b.log" &
PIDS+=($!)
ip netns exec "$A" "$GUARD" run --config "$WORK/config.json" 2>"$WORK/guard.log" &
PIDS+=($!)

admin() { # GET the admin listener's $1 from inside host A
  ip netns exec "$A" python3 -c '
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:9464" + sys.argv[1], timeout=5)
    sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode()); sys.exit(1)
except OSError:
    sys.exit(2)
' "$1"
}
for _ in $(seq 200); do
  [ -f "$WORK/b.ready" ] && admin /healthz >/dev/null 2>&1 && break
  sleep 0.1
done
if ! admin /healthz >/dev/null 2>&1; then
  echo "demo.sh: the guard did not become ready:" >&2
  cat "$WORK/guard.log" >&2
  exit 1
fi
echo
echo "Host A's guard is ready (GET /healthz: $(admin /healthz)); its nftables table:"
ip netns exec "$A" nft list table inet misp_guard | sed -e 's/^/  /'
admin /metrics | grep -v '^#' | sort >"$WORK/metrics.before"

sync() { # $1: push or pull
  local extra=(--data "$WORK/a-data")
  [ "$1" = pull ] && extra=(--save "$WORK/pulled")
  ip netns exec "$A" python3 "$PEER" "$1" --to 10.77.9.3 --host misp-b.example --port 443 \
    --ca "$WORK/guard-ca/ca.crt" --source 10.77.9.2 --out "$WORK/$1.json" "${extra[@]}" \
    2>"$WORK/$1.log"
}
report() { # $1: push or pull, $2: whose data (a or b)
  python3 - "$WORK/$1.json" "$WORK/$2-data/index.json" "$1" <<'EOF'
import json, sys
report, index, kind = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
got = report["events" if kind == "push" else "pulled"]
for e in index:
    r = got.get(e["uuid"])
    if r is None:
        continue
    status = r["status"]
    verdict = "passed " if status == 200 else "REFUSED"
    why = "" if e["rule"] is None else "  (breaks: %s)" % e["rule"]
    print("  %s %s  %s%s" % (status, verdict, e["info"][:44].ljust(44), why))
EOF
}

echo
echo "Our MISP (A) pushes its events to the partner (B), straight to https://misp-b.example:"
sync push
report push a
echo
echo "Our MISP (A) pulls the partner's (B) events:"
sync pull
report pull b

echo
echo "What B received: $(python3 -c '
import json, sys
adds = [json.loads(l) for l in open(sys.argv[1])]
adds = [r for r in adds if r["method"] == "POST" and "/events/add" in r["path"]]
clean = [e for e in json.load(open(sys.argv[2])) if e["rule"] is None]
print(len(adds), "events pushed:", "the clean ones, and no other" if len(adds) == len(clean) else "NOT the clean ones only")
' "$WORK/b-received.jsonl" "$WORK/a-data/index.json")"
echo
echo "The guard's verdict lines for the events (one per exchange; cut down here, the full lines name every field):"
python3 - "$WORK/guard.log" <<'EOF'
import re, sys
field = re.compile(r'([a-z_.]+)=("(?:[^"\\]|\\.)*"|\S+)')
for line in open(sys.argv[1]):
    if "exchange " not in line:
        continue
    f = {k: v.strip('"') for k, v in field.findall(line)}
    if f.get("method") not in ("POST", "GET") or not re.search(r"/events/(add|view)/", f.get("path", "")):
        continue
    path = f["path"] if len(f["path"]) <= 44 else f["path"][:41] + "..."
    why = "  %s: %s" % (f["rule"], f.get("value", "")) if f.get("rule", "-") != "-" else ""
    print("  %-5s %s %s->%s %-4s %-44s mode=%s%s" % (f.get("verdict"), f.get("status"), f.get("src.instance"),
          f.get("dst.instance"), f["method"], path, f.get("mode"), why))
EOF
echo
echo "The metrics that moved (GET http://127.0.0.1:9464/metrics, series that changed):"
admin /metrics | grep -v '^#' | sort >"$WORK/metrics.after"
comm -13 "$WORK/metrics.before" "$WORK/metrics.after" |
  grep -E '^misp_guard_(exchanges_total|blocks_total|bytes_(in|out)_total|decision_seconds_count)' |
  sed -e 's/^/  /' | head -40
cat <<EOF

Where to look next:
  - monitor mode, to roll out a new rule: guard.mode "monitor" logs "would block" and lets it pass;
  - every metric and the journal's fields: README, "Monitor mode, metrics and logs";
  - the table and how it is kept in place: README, "The nftables table the guard owns";
  - installing it for real: README, "Install: the Debian package".
EOF
