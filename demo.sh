#!/usr/bin/env bash
# misp-guard end to end on a built-in demo, as it runs "dropped onto a MISP
# host": a local MISP (here: a Python client) talks to a remote MISP (here:
# a fake one that records what it receives) with no proxy setting; the
# guard's own nftables table (guard.firewall.mode "host") redirects that
# traffic to misp-guard, which lets clean events through and blocks a
# TLP:RED event and a passport number.
#
# Everything runs in a network namespace this script creates and removes;
# all traffic stays on that namespace's loopback. Needs root.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: run as root (it creates a network namespace and nftables rules)" >&2
  exit 1
fi
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --quiet
GUARD=$PWD/target/debug/misp-guard
NS=mg-demo-$$
WORK=$(mktemp -d)
cleanup() {
  [ -n "${GUARD_PID:-}" ] && kill "$GUARD_PID" 2>/dev/null || true
  [ -n "${PEER_PID:-}" ] && kill "$PEER_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up

# Two instances: ours (127.10.0.1) in a restricted compartment, a partner
# (127.20.0.1:8080) that may receive our events but nothing TLP:RED, no
# passport numbers, nothing of distribution "Your organisation only".
cat >"$WORK/config.json" <<'EOF'
{
  "compartments_rules": {
    "can_reach": { "restricted": ["restricted", "partners"], "partners": ["partners", "restricted"] }
  },
  "instances": {
    "our-misp": {
      "ip": "127.10.0.1", "host": "misp.internal.example", "port": 8080,
      "compartment_id": "restricted",
      "taxonomies_rules": { "blocked_tags": ["tlp:red"] },
      "blocked_distribution_levels": ["0"],
      "blocked_attribute_types": ["passport-number"],
      "blocked_object_types": ["person"]
    },
    "partner-misp": {
      "ip": "127.20.0.1", "host": "misp.partner.example", "port": 8080,
      "compartment_id": "partners",
      "taxonomies_rules": { "blocked_tags": ["tlp:red"] }
    }
  },
  "guard": {
    "listen": { "transparent": ["0.0.0.0:15001"] },
    "firewall": { "mode": "host", "local_instances": ["our-misp"] },
    "log": { "level": "info" }
  }
}
EOF

echo '{}' >"$WORK/script.json"
ip netns exec "$NS" python3 tests/peer/fake_misp.py --listen 127.20.0.1:8080 \
  --record "$WORK/received.jsonl" --script "$WORK/script.json" --ready "$WORK/peer.ready" &
PEER_PID=$!
ip netns exec "$NS" "$GUARD" run --config "$WORK/config.json" 2>"$WORK/guard.log" &
GUARD_PID=$!
for _ in $(seq 100); do
  [ -f "$WORK/peer.ready" ] && grep -q "installed" "$WORK/guard.log" && break
  sleep 0.1
done
echo "The guard installed its own nftables table (misp-guard nft render prints the same):"
ip netns exec "$NS" nft list table inet misp_guard | sed -e 's/^/  /'
echo

ip netns exec "$NS" python3 - "$WORK" <<'EOF'
import http.client, json, sys
work = sys.argv[1]

def ask(method, path, body=None, answer=None):
    with open(work + "/script.json", "w") as f:
        json.dump(answer or {}, f)
    # Our MISP connects straight to the partner: no proxy configured.
    c = http.client.HTTPConnection("127.20.0.1", 8080, source_address=("127.10.0.1", 0), timeout=10)
    headers = {"Host": "misp.partner.example:8080", "Content-Type": "application/json",
               "Accept": "application/json", "Authorization": "x" * 40}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    reason = ""
    if r.status == 403:
        reason = " -> " + json.loads(data).get("errors", "")
    print(f"  {method:4} {path[:60]:60} {r.status}{reason}")

def event(info, tags=(), attribute_type="ip-dst", objects=()):
    return json.dumps({"Event": {
        "uuid": "385283a1-b5e0-4e10-a532-dce11c365a56", "info": info, "distribution": "2",
        "published": True, "Tag": [{"name": t} for t in tags],
        "Attribute": [{"type": attribute_type, "category": "Network activity",
                       "value": "198.51.100.7", "distribution": "5", "Tag": []}],
        "Object": [{"name": o, "distribution": "5", "Attribute": []} for o in objects],
    }}).encode()

print("Our MISP pushes events to the partner:")
ask("GET", "/servers/getVersion", answer={"body": '{"version":"2.5.1"}'})
ask("POST", "/events/add/metadata:1", event("phishing campaign", tags=["tlp:green"]))
ask("POST", "/events/add/metadata:1", event("source reporting", tags=["TLP:RED"]))
ask("POST", "/events/add/metadata:1", event("traveller", attribute_type="passport-number"))
ask("POST", "/events/add/metadata:1", event("suspect", objects=["person"]))
print("Something that is not MISP sync:")
ask("GET", "/users")
ask("POST", "/events", b"{}")
EOF

echo
echo "What the partner received (the blocked events never reached it):"
python3 - "$WORK/received.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print(f"  {e['method']:4} {e['path']:40} {e['body_len']} bytes")
EOF
echo
echo "The guard's verdict log:"
sed -e 's/\x1b\[[0-9;]*m//g' "$WORK/guard.log" | grep -E "exchange (allowed|blocked)" | sed -E 's/^.*(exchange (allowed|blocked))/  \1/' | cut -c1-220
