#!/usr/bin/env python3
"""A sync peer that plays MISP on either side, for misp-guard's end-to-end
tests across network namespaces.

  misp_sync.py data DIR --name A
      Writes one instance's data: events (clean ones and one breaking each
      rule kind), proposals, sightings, an analyst note, a custom galaxy
      cluster, and DIR/index.json saying which is which.

  misp_sync.py data DIR --name A --forbidden-extras
      The same, plus what must not cross although the events do: a proposal
      of a blocked attribute type beside a clean one, and an analyst note of
      a blocked distribution beside a clean one. --no-analyst-data: none at
      all (the remote's indexMinimal is then PHP's empty array, []).

  misp_sync.py serve --data DIR --listen IP:PORT ... [--cert C --key K]
                     [--deflate] [--correlate]
      Answers like a MISP 2.5.1 remote does (getVersion, filterEventIdsForPush,
      HEAD/add/edit with metadata:1, events/index with ETag, events/view,
      proposals, sightings, analyst data, galaxy clusters), serving DIR's
      data for pulls and keeping what is pushed, with what real Apache adds
      (two Set-Cookie headers, a 304 without Content-Length, HEAD answered
      text/html without one). --deflate: as Apache with mod_deflate on JSON,
      answers gzip-encoded (Vary: Accept-Encoding) to a client that accepts
      gzip, the add/edit/view ones chunked. --correlate: the add/edit answer
      carries RelatedEvent summaries of the remote's own events, as a remote
      whose events correlate with the pushed one answers. It records every
      request (method, path, headers, body as received) to --record and
      every byte each connection brought to --raw DIR/<n>.bin.

  misp_sync.py push|pull --data DIR --to IP --host NAME --port P --ca FILE ...
      Runs the request sequence of MISP's Server::push (P1-P15 of the
      protocol reference) or Server::pull (L1-L10) against IP:PORT with no
      proxy setting, over TLS verified against --ca (the guard's CA, as the
      README tells admins to configure MISP), as MISP's curl client does:
      one keep-alive connection, new ones where MISP opens them, gzip for
      bodies over 1 KiB when the remote offers it, the headers MISP 2.5.1
      sends (the raw API key as Authorization, Accept-Encoding "deflate,
      gzip, br, zstd", If-None-Match "" on the first index). A 403 on one
      event is logged and the run goes on with the next. Writes a JSON
      report, with the (decoded) answer of every exchange.

Only the Python standard library is used.
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time
import uuid as uuidlib
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "2.5.1"
USER_AGENT = "MISP 2.5.1 - #bb0909a4a2dd4a6eb2e7da6c4e0a8cf7b3a8d2f1"
# The sharing group the instances' rules block.
BLOCKED_SG = "b9e656ba-b9c0-4506-83ed-7b54b43a57cb"
PULL_PARAMS = ("/deleted[]:0/deleted[]:1/excludeGalaxy:1/includeEventCorrelations:0"
               "/includeFeedCorrelations:0/includeWarninglistHits:0/excludeLocalTags:1")


def uid(name, *parts):
    """A stable uuid for a named thing of an instance."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "misp-guard-test/" + name + "/" + "/".join(parts)))


def dumps(v):
    # MISP's JSON: compact, unicode escaped.
    return json.dumps(v, separators=(",", ":"))


# --------------------------------------------------------------------------
# Data of one instance


def make_event(name, key, info, tags=("tlp:green",), distribution="1", attrs=None,
               objects=(), sharing_group=None, reports=0):
    org = {"id": "1", "name": "ORG-" + name, "uuid": uid(name, "org"), "local": True}
    attributes = attrs if attrs is not None else [("ip-dst", "Network activity", "198.51.100.%d" % i)
                                                  for i in range(1, 3)]
    ev = {
        "id": "1", "orgc_id": "1", "org_id": "1", "date": "2025-01-08", "threat_level_id": "2",
        "info": info, "published": True, "uuid": uid(name, "event", key), "attribute_count": str(len(attributes)),
        "analysis": "2", "timestamp": "1736330000", "distribution": distribution, "proposal_email_lock": False,
        "locked": False, "publish_timestamp": "1736330100", "sharing_group_id": "0",
        "disable_correlation": False, "extends_uuid": "", "protected": None,
        "event_creator_email": "admin@%s.test" % name.lower(),
        "Orgc": org,
        "Tag": [{"id": str(i + 1), "name": t, "colour": "#33FF00", "exportable": True, "local": 0}
                for i, t in enumerate(tags)],
        "Attribute": [
            {"id": str(i + 1), "type": t, "category": c, "to_ids": False, "uuid": uid(name, key, "attr", str(i)),
             "event_id": "1", "distribution": "5", "timestamp": "1736330000", "comment": "",
             "sharing_group_id": "0", "deleted": False, "disable_correlation": False, "object_id": "0",
             "object_relation": None, "first_seen": None, "last_seen": None, "value": v,
             # Rules that require a taxonomy require it of attributes too.
             "Tag": [{"id": "1", "name": t, "colour": "#33FF00", "exportable": True, "local": 0}
                     for t in tags if t.startswith("tlp:")]}
            for i, (t, c, v) in enumerate(attributes)
        ],
        "Object": [
            {"id": str(i + 1), "name": o, "meta-category": "misc", "description": o,
             "template_uuid": uid("template", o), "template_version": "1", "event_id": "1",
             "uuid": uid(name, key, "object", str(i)), "timestamp": "1736330000", "distribution": "5",
             "sharing_group_id": "0", "comment": "", "deleted": False, "first_seen": None, "last_seen": None,
             "Attribute": []}
            for i, o in enumerate(objects)
        ],
        "ShadowAttribute": [], "CryptographicKey": [], "Galaxy": [],
        "EventReport": [
            {"id": str(i + 1), "uuid": uid(name, key, "report", str(i)), "event_id": "1",
             "name": "report %d" % i, "content": "A report on " + info, "distribution": "5",
             "sharing_group_id": "0", "timestamp": "1736330000", "deleted": False}
            for i in range(reports)
        ],
    }
    if sharing_group:
        ev["sharing_group_id"] = "1"
        ev["SharingGroup"] = {"id": "1", "name": "restricted", "releasability": "", "description": "",
                              "uuid": sharing_group, "organisation_uuid": org["uuid"], "org_id": "1",
                              "sync_user_id": "0", "active": True, "created": "2025-01-08 10:00:00",
                              "modified": "2025-01-08 10:00:00", "local": True, "roaming": False,
                              "Organisation": {"id": "1", "name": org["name"], "uuid": org["uuid"]}}
    return {"Event": ev}


def make_data(dirname, name, forbidden_extras=False, no_analyst_data=False):
    """The events of instance `name`, in push order: clean ones interleaved
    with one event breaking each rule kind, so a run must go on past each."""
    many = [("ip-dst", "Network activity", "203.0.113.%d" % i) for i in range(1, 41)]
    specs = [
        # key, info, kwargs, expect, rule
        ("clean-small", "clean: phishing wave", {}, None),
        ("tag", "blocked: tlp red", {"tags": ("tlp:red",)}, "blocked tag"),
        ("clean-big", "clean: botnet infrastructure", {"attrs": many, "reports": 1, "tags": ("tlp:clear",)}, None),
        ("distribution", "blocked: your organisation only", {"distribution": "0"}, "blocked distribution level"),
        ("sharing-group", "blocked: restricted sharing group",
         {"distribution": "4", "sharing_group": BLOCKED_SG}, "blocked sharing group"),
        ("attribute-type", "blocked: traveller",
         {"attrs": [("passport-number", "Other", "X1234567")]}, "blocked attribute type"),
        ("attribute-category", "blocked: a person's name",
         {"attrs": [("text", "Person", "John Doe")]}, "blocked attribute category"),
        ("object-type", "blocked: suspect", {"objects": ("person",)}, "blocked object type"),
        ("taxonomy", "blocked: no tlp marking", {"tags": ("type:OSINT",)}, "missing required taxonomy"),
        ("clean-last", "clean: after the blocked ones", {"tags": ("tlp:amber",)}, None),
    ]
    os.makedirs(os.path.join(dirname, "events"), exist_ok=True)
    index = []
    for key, info, kwargs, rule in specs:
        ev = make_event(name, key, "%s %s" % (name, info), **kwargs)
        u = ev["Event"]["uuid"]
        with open(os.path.join(dirname, "events", u + ".json"), "w") as f:
            f.write(dumps(ev))
        index.append({"uuid": u, "key": key, "info": ev["Event"]["info"],
                      "expect": "block" if rule else "allow", "rule": rule})
    clean_small = uid(name, "event", "clean-small")
    clean_big = uid(name, "event", "clean-big")
    org_uuid = uid(name, "org")
    extras = {
        "proposals": {clean_big: [{"ShadowAttribute": {
            "id": "1", "old_id": "0", "event_id": "1", "type": "domain", "category": "Network activity",
            "uuid": uid(name, "proposal"), "to_ids": True, "comment": "proposed", "org_id": "1",
            "timestamp": "1736330200", "first_seen": None, "last_seen": None, "value": "bad.example",
            "deleted": False, "proposal_to_delete": False, "disable_correlation": False,
            "org_uuid": org_uuid, "event_uuid": clean_big,
            "Org": {"name": "ORG-" + name, "uuid": org_uuid}}}]},
        "sightings": {clean_small: [
            {"id": str(i + 1), "attribute_id": "1", "event_id": "1", "org_id": "1", "date_sighting": "1736330300",
             "uuid": uid(name, "sighting", str(i)), "source": "", "type": "0", "value": "198.51.100.1",
             "attribute_uuid": uid(name, "clean-small", "attr", "0"), "event_uuid": clean_small,
             "Organisation": {"id": "1", "uuid": org_uuid, "name": "ORG-" + name}}
            for i in range(2)]},
        "notes": [{"Note": {
            "id": "1", "uuid": uid(name, "note"), "object_uuid": uid(name, "clean-small", "attr", "0"),
            "object_type": "Attribute", "authors": "analyst@%s.test" % name.lower(), "org_uuid": org_uuid,
            "orgc_uuid": org_uuid, "created": "2025-01-08 10:37:00", "modified": "2025-01-08 10:37:00",
            "distribution": "1", "sharing_group_id": None, "locked": True, "note": "seen in the wild",
            "language": "en"}}],
        "clusters": [{"GalaxyCluster": {
            "id": "1", "uuid": uid(name, "cluster"), "collection_uuid": "", "type": "test-galaxy",
            "value": "%s custom cluster" % name, "tag_name": 'misp-galaxy:test-galaxy="%s"' % uid(name, "cluster"),
            "description": "custom", "galaxy_id": "1", "source": "", "authors": [], "version": "3",
            "distribution": "1", "sharing_group_id": None, "org_id": "1", "orgc_id": "1", "default": False,
            "locked": False, "extends_uuid": "", "extends_version": "0", "published": True, "deleted": False,
            "Galaxy": {"id": "1", "uuid": uid("galaxy", "test"), "name": "Test", "type": "test-galaxy",
                       "description": "test", "version": "1", "namespace": "misp"},
            "GalaxyElement": [], "GalaxyClusterRelation": [],
            "Org": {"id": "1", "name": "ORG-" + name, "uuid": org_uuid},
            "Orgc": {"id": "1", "name": "ORG-" + name, "uuid": org_uuid}}}],
    }
    if forbidden_extras:
        add_forbidden_extras(extras, name, clean_big, org_uuid)
    if no_analyst_data:
        extras["notes"] = []
    with open(os.path.join(dirname, "extras.json"), "w") as f:
        json.dump(extras, f)
    with open(os.path.join(dirname, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


def add_forbidden_extras(extras, name, event_uuid, org_uuid):
    """Independent items the rules forbid, beside clean ones: a proposal of
    a blocked attribute type, a note of a blocked distribution. Their uuids
    are listed under "forbidden" so tests can look for them."""
    clean = extras["proposals"][event_uuid][0]["ShadowAttribute"]
    bad = dict(clean, type="passport-number", category="Person", value="X7654321",
               uuid=uid(name, "proposal", "forbidden"), id="2")
    extras["proposals"][event_uuid].append({"ShadowAttribute": bad})
    extras["proposals"][event_uuid].append({"ShadowAttribute": dict(
        clean, uuid=uid(name, "proposal", "after"), id="3", value="after.example")})
    note = extras["notes"][0]["Note"]
    extras["notes"].append({"Note": dict(note, uuid=uid(name, "note", "forbidden"),
                                          distribution="0", note="for our organisation only")})
    extras["forbidden"] = {"proposal": bad["uuid"], "proposal_value": bad["value"],
                           "note": uid(name, "note", "forbidden"), "note_text": "for our organisation only"}


def load_data(dirname):
    with open(os.path.join(dirname, "index.json")) as f:
        index = json.load(f)
    events = {}
    for entry in index:
        with open(os.path.join(dirname, "events", entry["uuid"] + ".json"), "rb") as f:
            events[entry["uuid"]] = f.read()
    with open(os.path.join(dirname, "extras.json")) as f:
        extras = json.load(f)
    return index, events, extras


# --------------------------------------------------------------------------
# The server side


class Tee:
    """The connection's reader, copying every byte read to a file."""

    def __init__(self, inner, sink):
        self.inner, self.sink = inner, sink

    def _keep(self, data):
        if data:
            self.sink.write(data)
            self.sink.flush()
        return data

    def read(self, *a):
        return self._keep(self.inner.read(*a))

    def readline(self, *a):
        return self._keep(self.inner.readline(*a))

    def readinto(self, b):
        n = self.inner.readinto(b)
        if n:
            self._keep(bytes(b[:n]))
        return n

    def __getattr__(self, name):
        return getattr(self.inner, name)


class TeeSock:
    """A socket whose reader copies every byte the client receives."""

    def __init__(self, sock, sink):
        self.sock, self.sink = sock, sink

    def makefile(self, mode):
        return Tee(self.sock.makefile(mode), self.sink)


class State:
    def __init__(self, args):
        self.index, self.events, self.extras = load_data(args.data)
        self.lock = threading.Lock()
        self.received = {}  # pushed events, uuid -> decoded body
        self.record = args.record
        self.raw = args.raw
        self.connections = 0
        self.name = args.name
        self.deflate = args.deflate
        self.correlate = args.correlate
        self.received_dir = os.path.join(args.data, "received")
        os.makedirs(self.received_dir, exist_ok=True)
        if self.raw:
            os.makedirs(self.raw, exist_ok=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        st = self.server.state
        if st.raw:
            with st.lock:
                st.connections += 1
                n = st.connections
            self._sink = open(os.path.join(st.raw, "%d.bin" % n), "wb")
            self.rfile = Tee(self.rfile, self._sink)

    def finish(self):
        super().finish()
        if getattr(self, "_sink", None):
            self._sink.close()

    def _record(self, body):
        st = self.server.state
        entry = {
            "listen": "%s:%d" % self.server.server_address[:2],
            "client": self.client_address[0],
            "method": self.command, "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_b64": base64.b64encode(body).decode(), "body_len": len(body),
        }
        with st.lock:
            with open(st.record, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def _send(self, status, body=b"", ctype="application/json; charset=UTF-8", headers=()):
        self.send_response(status)
        if status == 304:
            self.end_headers()
            return
        self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        # CakePHP sets its session cookie twice (or three times) per answer.
        self.send_header("Set-Cookie", "CAKEPHP=deadbeef; path=/; HttpOnly")
        self.send_header("Set-Cookie", "CAKEPHP=deadbeef; path=/; HttpOnly")
        if self.command == "HEAD":
            # MISP's HEAD answers: text/html, no Content-Length, no body.
            self.end_headers()
            return
        st = self.server.state
        accepts = [t.strip() for t in (self.headers.get("Accept-Encoding") or "").split(",")]
        if st.deflate and ctype.startswith("application/json") and "gzip" in accepts and body:
            # mod_deflate: gzip for JSON, and the big dynamic answers chunked.
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
            route = "/".join(self.path.strip("/").split("/")[:2])
            if route in ("events/add", "events/edit", "events/view"):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 4096):
                    piece = body[i:i + 4096]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
                return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value, status=200, headers=()):
        self._send(status, dumps(value).encode(), headers=headers)

    def _saved(self, message):
        self._json({"saved": True, "success": True, "name": message, "message": message, "url": self.path})

    def handle_one(self):
        length = int(self.headers.get("Content-Length") or 0)
        wire = self.rfile.read(length) if length else b""
        self._record(wire)
        body = gzip.decompress(wire) if self.headers.get("Content-Encoding") == "gzip" else wire
        st = self.server.state
        path = self.path
        m = self.command
        parts = path.strip("/").split("/")
        route = "/".join(parts[:2])
        if m == "GET" and route == "servers/getVersion":
            return self._json({"version": VERSION, "pymisp_recommended_version": "2.5.1", "perm_sync": True,
                               "perm_sighting": True, "perm_galaxy_editor": True, "perm_analyst_data": True,
                               "uuid": uid(st.name, "instance"), "request_encoding": ["gzip"],
                               "filter_sightings": True})
        if m == "POST" and route == "galaxy_clusters/restSearch":
            return self._json({"response": [{"GalaxyCluster": {"uuid": c["GalaxyCluster"]["uuid"],
                                                               "version": c["GalaxyCluster"]["version"]}}
                                            for c in st.extras["clusters"]]})
        if m == "GET" and route == "galaxy_clusters/view":
            for c in st.extras["clusters"]:
                if c["GalaxyCluster"]["uuid"] == parts[2]:
                    return self._json(c)
            return self._json({"name": "Invalid cluster", "message": "Invalid cluster", "url": path}, 404)
        if m == "POST" and route == "galaxies/pushCluster":
            return self._saved("Galaxy cluster saved")
        if m == "POST" and route == "events/filterEventIdsForPush":
            wanted = [e["Event"]["uuid"] for e in json.loads(body) if e["Event"]["uuid"] not in st.received]
            return self._json(wanted)
        if m == "GET" and route == "eventReports/add":
            return self._json({"name": "Add EventReport", "description": "POST a MISP EventReport JSON to this API to create an EventReport.", "mandatory": ["name"], "optional": ["distribution", "content"], "url": "/eventReports/add"})
        if route == "events/view" and m == "HEAD":
            return self._send(200 if parts[2] in st.received else 404, ctype="text/html; charset=UTF-8")
        if m == "POST" and route in ("events/add", "events/edit"):
            ev = json.loads(body)["Event"]
            with st.lock:
                st.received[ev["uuid"]] = body
            with open(os.path.join(st.received_dir, ev["uuid"] + ".json"), "wb") as f:
                f.write(body)
            meta = {k: v for k, v in ev.items() if k not in (
                "Attribute", "Object", "ShadowAttribute", "EventReport", "CryptographicKey", "Galaxy")}
            meta["id"] = "7"
            if st.correlate:
                # The remote's own events that correlate with the pushed one.
                meta["RelatedEvent"] = [{"Event": {
                    "id": "3", "date": "2025-01-02", "threat_level_id": "1", "info": "remote only: op nightfall",
                    "published": True, "uuid": uid(st.name, "related"), "analysis": "2",
                    "timestamp": "1736000000", "distribution": "1", "org_id": "1", "orgc_id": "1",
                    "Org": {"id": "1", "name": "ORG-" + st.name, "uuid": uid(st.name, "org")},
                    "Orgc": {"id": "1", "name": "ORG-" + st.name, "uuid": uid(st.name, "org")}}}]
            return self._json({"Event": meta})
        if m == "POST" and route == "events/index":
            index = [{"id": str(i + 1), "timestamp": "1736330000", "sighting_timestamp": "1736330300",
                      "published": True, "uuid": e["uuid"], "orgc_uuid": uid(st.name, "org")}
                     for i, e in enumerate(st.index)]
            text = dumps(index).encode()
            etag = '"%s"' % hashlib.sha1(body).hexdigest()
            if self.headers.get("If-None-Match") == etag:
                return self._send(304)
            return self._send(200, text, headers=[("ETag", etag), ("X-Result-Count", str(len(index)))])
        if m == "POST" and route == "events/pushProposals":
            n = len(json.loads(body))
            return self._json({"success": True, "message": "%d proposal(s) saved" % n, "counter": n})
        if m == "POST" and route == "sightings/filterSightingUuidsForPush":
            return self._json([])
        if m == "POST" and route == "sightings/bulkSaveSightings":
            return self._json({"saved": True, "success": "%d sightings added." % len(json.loads(body))})
        if m == "POST" and route == "analyst_data/filterAnalystDataForPush":
            # All three types, each the accepted entries or PHP's empty [].
            offer = json.loads(body)
            offer = offer if isinstance(offer, dict) else {}
            return self._json({t: offer.get(t) or [] for t in ("Note", "Opinion", "Relationship")})
        if m == "POST" and route == "analyst_data/pushAnalystData":
            return self._saved("Analyst Data saved")
        if m == "GET" and route == "events/view":
            if parts[2] in st.events:
                return self._send(200, st.events[parts[2]])
            return self._json({"name": "Invalid event", "message": "Invalid event", "url": path}, 404)
        if m == "GET" and route == "shadow_attributes/index":
            return self._json([p for ps in st.extras["proposals"].values() for p in ps])
        if m == "POST" and route == "sightings/restSearch":
            wanted = json.loads(body).get("uuid", [])
            return self._json({"response": [{"Sighting": s} for u, ss in st.extras["sightings"].items()
                                            if u in wanted for s in ss]})
        if m == "POST" and route == "analyst_data/indexMinimal":
            if not st.extras["notes"]:
                # PHP's json_encode of an empty array: [].
                return self._json([])
            # Only the types that have entries, as AnalystData::indexMinimal.
            return self._json({"Note": {n["Note"]["uuid"]: n["Note"]["modified"] for n in st.extras["notes"]}})
        if m == "GET" and route == "analyst_data/index":
            return self._json(st.extras["notes"])
        return self._json({"name": "Not Found", "message": "Not Found", "url": path}, 404)

    def _guarded(self):
        try:
            self.handle_one()
        except (ValueError, KeyError) as e:
            self._json({"name": "Bad request", "message": str(e), "url": self.path}, 400)

    do_GET = do_POST = do_HEAD = _guarded


def serve(args):
    state = State(args)
    servers = []
    for spec in args.listen:
        host, port = spec.rsplit(":", 1)
        host = host.strip("[]")
        cls = ThreadingHTTPServer
        if ":" in host:
            cls = type("Server6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        srv = cls((host, int(port)), Handler)
        srv.daemon_threads = True
        srv.state = state
        if args.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.cert, args.key)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        servers.append(srv)
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(os.getpid()))
    servers[0].serve_forever()


# --------------------------------------------------------------------------
# The client side


class Client:
    """MISP's sync client for one remote Server: curl over TLS, keep-alive."""

    def __init__(self, args):
        self.args = args
        self.ctx = ssl.create_default_context(cafile=args.ca) if args.ca else None
        if self.ctx:
            self.ctx.set_alpn_protocols(["http/1.1"])
        self.conn = None
        self.report = {"exchanges": [], "events": {}, "pulled": {}, "errors": []}
        self.gzip = False
        self.step = 0
        self.sent_dir = args.sent
        if self.sent_dir:
            os.makedirs(self.sent_dir, exist_ok=True)
        # Every byte the remote's answers brought, to prove what never came.
        self.raw = open(args.raw, "ab") if args.raw else None

    def _connect(self):
        family = socket.AF_INET6 if ":" in self.args.to else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(30)
        if self.args.source:
            s.bind((self.args.source, 0))
        s.connect((self.args.to, self.args.port))
        if self.ctx:
            # MISP sends the Server.url host as SNI and verifies it.
            s = self.ctx.wrap_socket(s, server_hostname=self.args.host)
        return s

    def _pause(self, where):
        """Stop here until the test says go: a kill or reload mid-run."""
        d = self.args.pause_dir
        # Written aside and renamed: the test must never read a half-written marker.
        with open(os.path.join(d, "paused.tmp"), "w") as f:
            f.write(where)
        os.rename(os.path.join(d, "paused.tmp"), os.path.join(d, "paused"))
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(d, "go")) and time.time() < deadline:
            time.sleep(0.05)
        os.unlink(os.path.join(d, "go"))

    def request(self, step, method, path, body=None, new_conn=False, headers=()):
        self.step += 1
        wire = body
        h = [("Host", self.args.host if self.args.port == 443 else "%s:%d" % (self.args.host, self.args.port)),
             ("User-Agent", USER_AGENT), ("Accept", "application/json"),
             ("Content-Type", "application/json"), ("Authorization", self.args.key),
             ("Accept-Encoding", "deflate, gzip, br, zstd")]
        h.extend(headers)
        if body is not None:
            if self.gzip and len(body) > 1024:
                wire = gzip.compress(body, compresslevel=1)
                h.append(("Content-Encoding", "gzip"))
            h.append(("Content-Length", str(len(wire))))
        head = ("%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in h) + "\r\n").encode()
        entry = {"n": self.step, "step": step, "method": method, "path": path, "status": None}
        if wire is not None and self.sent_dir:
            name = "%03d-%s.bin" % (self.step, step)
            with open(os.path.join(self.sent_dir, name), "wb") as f:
                f.write(wire)
            entry["sent"] = name
        self.report["exchanges"].append(entry)
        pause_here = self.args.pause_at == self.step
        try:
            conn = self._connect() if new_conn else (self.conn or self._connect())
            if not new_conn:
                self.conn = conn
            if pause_here and self.args.pause_mid_body and wire:
                half = len(wire) // 2
                conn.sendall(head + wire[:half])
                self._pause("mid-body of exchange %d (%s)" % (self.step, step))
                conn.sendall(wire[half:])
            else:
                if pause_here:
                    self._pause("before exchange %d (%s)" % (self.step, step))
                conn.sendall(head + (wire or b""))
            r = http.client.HTTPResponse(TeeSock(conn, self.raw) if self.raw else conn, method=method)
            r.begin()
            data = r.read()
            coding = (r.getheader("Content-Encoding") or "").strip()
            if coding == "gzip":
                data = gzip.decompress(data)
            elif coding == "deflate":
                data = zlib.decompress(data)
            elif coding:
                raise http.client.HTTPException("answer in %s, which this client does not read" % coding)
            entry["status"] = r.status
            entry["coding"] = coding
            entry["answer_b64"] = base64.b64encode(data[:1 << 20]).decode()
            if r.status == 403:
                try:
                    entry["reason"] = json.loads(data).get("errors", "")
                    entry["saved"] = json.loads(data).get("saved")
                except ValueError:
                    entry["reason"] = data[:200].decode("latin-1")
            if new_conn or r.will_close:
                conn.close()
                if not new_conn:
                    self.conn = None
            return r.status, data, r
        except (OSError, http.client.HTTPException) as e:
            entry["error"] = "%s: %s" % (type(e).__name__, e)
            self.report["errors"].append("%s %s: %s" % (method, path, entry["error"]))
            if self.conn is not None:
                try:
                    self.conn.close()
                except OSError:
                    pass
            self.conn = None
            return None, b"", None

    def version(self):
        status, data, _ = self.request("getVersion", "GET", "/servers/getVersion")
        if status != 200:
            self.report["aborted"] = "getVersion failed"
            return None
        info = json.loads(data)
        self.gzip = "gzip" in info.get("request_encoding", [])
        return info

    def push(self, data_dir):
        index, events, extras = load_data(data_dir)
        if not self.version():
            return
        # P2/P3: custom clusters.
        clusters = extras["clusters"]
        search = {"published": 1, "minimal": 1, "custom": 1, "uuid": [c["GalaxyCluster"]["uuid"] for c in clusters]}
        status, data, _ = self.request("clusterSearch", "POST", "/galaxy_clusters/restSearch", dumps(search).encode())
        if status == 200:
            for c in clusters:
                self.request("pushCluster", "POST", "/galaxies/pushCluster", dumps([c]).encode())
        # P4: which events the remote wants.
        candidates = [{"Event": {"uuid": e["uuid"], "timestamp": "1736330000"}} for e in index]
        status, data, _ = self.request("filterEventIdsForPush", "POST", "/events/filterEventIdsForPush",
                                       dumps(candidates).encode())
        wanted = json.loads(data) if status == 200 else []
        for u in wanted:
            ev = json.loads(events[u])["Event"]
            # P6: a fresh client per event report.
            for _ in ev.get("EventReport", []):
                self.request("eventReportsProbe", "GET", "/eventReports/add", new_conn=True)
            status, _, _ = self.request("exists", "HEAD", "/events/view/" + u)
            if status == 200:
                path = "/events/edit/%s/metadata:1" % u
            else:
                path = "/events/add/metadata:1"
            status, data, _ = self.request("event", "POST", path, events[u])
            last = self.report["exchanges"][-1]
            self.report["events"][u] = {"status": status, "reason": last.get("reason"),
                                        "error": last.get("error"), "sent": last.get("sent")}
        # P9: the remote's index (a new connection), for proposals.
        self.request("index", "POST", "/events/index", dumps({"minimal": 1, "published": 1}).encode(),
                     new_conn=True, headers=[("If-None-Match", '""')])
        for u, proposals in extras["proposals"].items():
            if self.report["events"].get(u, {}).get("status") == 200:
                # Server::syncProposals posts the event's proposal rows as they
                # are: flat, not wrapped as the pull page serves them.
                rows = [p["ShadowAttribute"] for p in proposals]
                self.request("pushProposals", "POST", "/events/pushProposals/" + u, dumps(rows).encode(),
                             new_conn=True)
        # P11-P13: sightings.
        self.request("index", "POST", "/events/index", dumps({"minimal": 1, "published": 1}).encode(),
                     headers=[("If-None-Match", '""')])
        for u, sightings in extras["sightings"].items():
            if self.report["events"].get(u, {}).get("status") != 200:
                continue
            uuids = [s["uuid"] for s in sightings]
            status, data, _ = self.request("filterSightings", "POST", "/sightings/filterSightingUuidsForPush/" + u,
                                           dumps(uuids).encode())
            if status == 200:
                have = set(json.loads(data))
                # Sighting::attachToEvent(forSync) rows: no attribute value
                # (getSightings adds it only to what a search answers).
                new = [{k: v for k, v in s.items() if k != "value"}
                       for s in sightings if s["uuid"] not in have]
                if new:
                    self.request("bulkSaveSightings", "POST", "/sightings/bulkSaveSightings/" + u,
                                 dumps(new).encode())
        # P14/P15: analyst data.
        notes = extras["notes"]
        # With nothing to offer MISP posts PHP's empty array, [].
        offer = {"Note": {n["Note"]["uuid"]: n["Note"]["modified"] for n in notes}} if notes else []
        status, data, _ = self.request("filterAnalystData", "POST", "/analyst_data/filterAnalystDataForPush",
                                       dumps(offer).encode())
        if status == 200:
            accepted = json.loads(data).get("Note") or {}
            for n in notes:
                if n["Note"]["uuid"] in accepted:
                    self.request("pushAnalystData", "POST", "/analyst_data/pushAnalystData", dumps(n).encode())

    def pull(self, save_dir):
        os.makedirs(save_dir, exist_ok=True)
        if not self.version():
            return
        # L2/L3: custom clusters.
        status, data, _ = self.request("clusterSearch", "POST", "/galaxy_clusters/restSearch",
                                       dumps({"published": 1, "minimal": 1, "custom": 1}).encode())
        if status == 200:
            for c in json.loads(data).get("response", []):
                self.request("clusterView", "GET", "/galaxy_clusters/view/" + c["GalaxyCluster"]["uuid"])
        # L4: the remote's index.
        status, data, r = self.request("index", "POST", "/events/index",
                                       dumps({"minimal": 1, "published": 1}).encode(),
                                       headers=[("If-None-Match", '""')])
        index = json.loads(data) if status == 200 else []
        # MISP keeps the index's ETag (in Redis) for the next index call.
        etag = r.getheader("ETag") if r is not None else None
        # L5: every event.
        for e in index:
            u = e["uuid"]
            status, body, _ = self.request("eventView", "GET", "/events/view/" + u + PULL_PARAMS)
            last = self.report["exchanges"][-1]
            self.report["pulled"][u] = {"status": status, "reason": last.get("reason"), "error": last.get("error")}
            if status == 200:
                with open(os.path.join(save_dir, u + ".json"), "wb") as f:
                    f.write(body)
        # L6: proposals.
        stamp = int(time.time()) - 90 * 86400
        self.request("proposals", "GET",
                     "/shadow_attributes/index/all:1/timestamp:%d/limit:1000/page:1/deleted[]:0/deleted[]:1.json"
                     % stamp)
        # L7: the index again, for sightings.
        self.request("index", "POST", "/events/index", dumps({"minimal": 1, "published": 1}).encode(),
                     headers=[("If-None-Match", etag or '""')])
        # L8: sightings of up to 20 events.
        uuids = [e["uuid"] for e in index][:20]
        if uuids:
            self.request("sightings", "POST", "/sightings/restSearch/event",
                         dumps({"returnFormat": "json", "last": 0, "includeUuid": True, "uuid": uuids}).encode())
        # L9/L10: analyst data.
        status, data, _ = self.request("analystIndex", "POST", "/analyst_data/indexMinimal",
                                       dumps({"orgc_name": []}).encode())
        if status == 200:
            minimal = json.loads(data)
            # `[]` when the remote has no analyst data (PHP's empty array).
            notes = (minimal.get("Note") if isinstance(minimal, dict) else None) or {}
            if notes:
                self.request("analystData", "GET",
                             "/analyst_data/index/Note/" + "/".join("uuid[]:" + u for u in notes) + ".json")


def client(args):
    c = Client(args)
    try:
        if args.command == "push":
            c.push(args.data)
        else:
            c.pull(args.save)
    finally:
        with open(args.out, "w") as f:
            json.dump(c.report, f, indent=1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data")
    d.add_argument("dir")
    d.add_argument("--name", required=True)
    d.add_argument("--forbidden-extras", action="store_true")
    d.add_argument("--no-analyst-data", action="store_true")
    s = sub.add_parser("serve")
    s.add_argument("--data", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--listen", action="append", required=True)
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--record", required=True)
    s.add_argument("--raw")
    s.add_argument("--ready")
    s.add_argument("--deflate", action="store_true")
    s.add_argument("--correlate", action="store_true")
    for name in ("push", "pull"):
        c = sub.add_parser(name)
        c.add_argument("--data", help="push: the events to push")
        c.add_argument("--save", help="pull: where pulled events go")
        c.add_argument("--to", required=True, help="the remote's address (Server.url, resolved)")
        c.add_argument("--host", required=True, help="the remote's host name (Server.url)")
        c.add_argument("--port", type=int, default=443)
        c.add_argument("--ca", help="CA bundle to verify the remote with (cert_file)")
        c.add_argument("--key", default="k" * 40, help="the sync user's API key")
        c.add_argument("--source", help="address to connect from")
        c.add_argument("--out", required=True, help="the report")
        c.add_argument("--sent", help="directory for every request body as sent")
        c.add_argument("--raw", help="file for every byte received")
        c.add_argument("--pause-at", type=int, help="pause before (or inside) this exchange")
        c.add_argument("--pause-mid-body", action="store_true", help="pause half-way through its body")
        c.add_argument("--pause-dir", help="paused/go files")
    args = p.parse_args()
    if args.command == "data":
        make_data(args.dir, args.name, args.forbidden_extras, args.no_analyst_data)
    elif args.command == "serve":
        serve(args)
    else:
        client(args)


if __name__ == "__main__":
    sys.exit(main())
