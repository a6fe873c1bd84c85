"""The tag provider's APIs, standing in for the partner in the tests and the benchmark.

One process serves, per tenant (each test has its own, under /t/<tenant>/):
- REST (Flask): toll transactions behind every auth kind sluice speaks (open, bearer,
  api key in a header or the query, basic, OAuth2 client credentials with revocable
  tokens), through every paginator (offset, page, cursor in the body or a header, next
  URL, Link header), windowed by `since` / `until` (both inclusive, as partner APIs
  usually are); tags and each tag's transactions (parent/child); injected 500s and 429s
  with Retry-After; data that grows between runs (admin endpoints).
  OAuth2 tokens live `token_seconds` (default 3600) and the token requests are counted
  (/admin/stats). Records published late (/admin/late: timestamps already `age_seconds`
  old when they appear), as partners do.
- SOAP 1.1 at /soap (spyne, with a WSDL at /soap?wsdl) and SOAP 1.2 at /soap12:
  GetTransactions(since, until, pageToken) paged by a token, WS-Security UsernameToken
  (digest or text) checked on every call and its nonce remembered, so that a replayed
  nonce is refused as WS-Security services do; client and server faults, and a
  `Server.Busy` (1.2: `Receiver`) fault once when asked (`busy_once`, /admin/busy).

Records are a pure function of their index (so a million cost no memory); records
added later are kept in a list. Usage: partner.py PORTS_FILE [--port N]
"""

import base64
import datetime as dt
import hashlib
import json
import sys
import threading
from bisect import bisect_left, bisect_right
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, request
from lxml import etree
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from spyne import (Application, ComplexModel, DateTime, Fault, Integer, Iterable,
                   ServiceBase, Unicode, rpc)
from spyne.protocol.soap import Soap11
from spyne.protocol.soap.soap12 import Soap12
from spyne.server.wsgi import WsgiApplication

EPOCH = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
TAGS = 25
CLIENT_ID, CLIENT_SECRET = "sluice-client", "oauth-s3cret-value"
BEARER = "bearer-s3cret-token"
API_KEY = "key-s3cret-value"
BASIC = ("partner", "basic-s3cret-pw")
SOAP_USER, SOAP_PASSWORD = "soap-user", "soap-s3cret-pw"


def iso(t):
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Tenant:
    def __init__(self, n=0, every_500=0, every_429=0, every_fault=0, step_seconds=60,
                 token_seconds=3600, busy_once=False):
        self.n = n
        self.token_seconds = token_seconds
        self.busy_once = busy_once
        self.token_requests = 0
        self.soap_calls = 0
        self.busy_answered = 0
        self.replays = 0
        self.nonces = set()
        self.step = step_seconds
        self.added = []
        self.every_500, self.every_429, self.every_fault = every_500, every_429, every_fault
        self.calls = 0
        self.tokens = set()
        self.log = []
        self.pages = {}
        self.lock = threading.Lock()

    def record(self, i):
        if i >= self.n:
            return self.added[i - self.n]
        return self.base(i)

    def base(self, i):
        at = EPOCH + dt.timedelta(seconds=i * self.step, microseconds=(i * 7919) % 1_000_000)
        return {
            "id": i + 1,
            "tag_id": f"TAG-{i % TAGS:04d}",
            "plaza": f"Plaza {i % 17}",
            "amount": f"{(i * 37) % 5000 / 100:.2f}",
            "currency": "EUR",
            "occurred_at": iso(at),
            "vehicle": {"plate": f"B-{i % 997:03d}", "class": i % 4 + 1},
        }

    def total(self):
        return self.n + len(self.added)

    def time_of(self, i):
        return parse_time(self.record(i)["occurred_at"])

    def add(self, n):
        with self.lock:
            now = dt.datetime.now(dt.timezone.utc)
            for k in range(n):
                i = self.total()
                r = self.base(i)
                r["occurred_at"] = iso(now + dt.timedelta(microseconds=k))
                self.added.append(r)

    def add_late(self, n, age_seconds):
        """Publishes n records now whose timestamps are already age_seconds old, in time
        order among the others (as a partner that delivers late does)."""
        with self.lock:
            at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_seconds)
            for k in range(n):
                r = self.base(self.total())
                r["occurred_at"] = iso(at + dt.timedelta(microseconds=k))
                times = [parse_time(a["occurred_at"]) for a in self.added]
                self.added.insert(bisect_right(times, parse_time(r["occurred_at"])), r)

    def add_at(self, times):
        """Publishes one record at each of these instants (RFC 3339), in time order."""
        with self.lock:
            for text in times:
                r = self.base(self.total())
                r["occurred_at"] = iso(parse_time(text))
                stamps = [parse_time(a["occurred_at"]) for a in self.added]
                self.added.insert(bisect_right(stamps, parse_time(r["occurred_at"])), r)

    def indexes(self, since=None, until=None, before=None):
        """The index range of records with since <= occurred_at <= until, or
        occurred_at < before (an exclusive upper bound)."""
        total = self.total()
        keys = _Times(self)
        lo = bisect_left(keys, parse_time(since)) if since else 0
        hi = bisect_right(keys, parse_time(until)) if until else total
        if before:
            hi = min(hi, bisect_left(keys, parse_time(before)))
        return lo, max(lo, hi)

    def chaos(self):
        """A failure to inject on this data call, if any."""
        with self.lock:
            self.calls += 1
            c = self.calls
        if self.every_429 and c % self.every_429 == 0:
            return "429"
        if self.every_500 and c % self.every_500 == 0:
            return "500"
        return None


class _Times:
    def __init__(self, tenant):
        self.tenant = tenant

    def __len__(self):
        return self.tenant.total()

    def __getitem__(self, i):
        return self.tenant.time_of(i)


TENANTS = {}
app = Flask(__name__)


def tenant(name):
    t = TENANTS.get(name)
    if t is None:
        t = TENANTS[name] = Tenant()
    return t


@app.post("/t/<name>/admin/reset")
def reset(name):
    body = request.get_json(force=True)
    TENANTS[name] = Tenant(**body)
    return jsonify(ok=True)


@app.post("/t/<name>/admin/add")
def add(name):
    tenant(name).add(int(request.get_json(force=True)["n"]))
    return jsonify(total=tenant(name).total())


@app.post("/t/<name>/admin/late")
def late(name):
    body = request.get_json(force=True)
    tenant(name).add_late(int(body["n"]), float(body["age_seconds"]))
    return jsonify(total=tenant(name).total())


@app.post("/t/<name>/admin/at")
def at_times(name):
    tenant(name).add_at(request.get_json(force=True)["times"])
    return jsonify(total=tenant(name).total())


@app.post("/t/<name>/admin/busy")
def busy(name):
    tenant(name).busy_once = True
    return jsonify(ok=True)


@app.get("/t/<name>/admin/stats")
def stats(name):
    t = tenant(name)
    return jsonify(token_requests=t.token_requests, soap_calls=t.soap_calls,
                   busy_answered=t.busy_answered, replays=t.replays)


@app.post("/t/<name>/admin/revoke")
def revoke(name):
    tenant(name).tokens.clear()
    return jsonify(ok=True)


@app.get("/t/<name>/admin/records")
def records(name):
    t = tenant(name)
    return jsonify([t.record(i) for i in range(t.total())])


@app.get("/t/<name>/admin/log")
def log(name):
    return jsonify(tenant(name).log)


@app.post("/t/<name>/oauth/token")
def token(name):
    t = tenant(name)
    with t.lock:
        t.token_requests += 1
    if request.form.get("grant_type") != "client_credentials":
        return jsonify(error="unsupported_grant_type"), 400
    if (request.form.get("client_id"), request.form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
        return jsonify(error="invalid_client"), 401
    value = base64.urlsafe_b64encode(hashlib.sha256(str(len(t.tokens)).encode() + threading.current_thread().name.encode() + str(dt.datetime.now().timestamp()).encode()).digest()).decode()
    t.tokens.add(value)
    return jsonify(access_token=value, token_type="Bearer", expires_in=t.token_seconds)


def authorised(t, kind):
    if kind == "open":
        return True
    if kind == "bearer":
        return request.headers.get("Authorization") == f"Bearer {BEARER}"
    if kind == "key":
        return request.headers.get("X-API-Key") == API_KEY
    if kind == "keyq":
        return request.args.get("api_key") == API_KEY
    if kind == "basic":
        a = request.authorization
        return a is not None and (a.username, a.password) == BASIC
    if kind == "oauth":
        h = request.headers.get("Authorization", "")
        return h.startswith("Bearer ") and h[7:] in t.tokens
    return False


def guard(t, kind):
    """A response that refuses or fails the call, or None to serve it."""
    t.log.append({"path": request.path, "args": {k: v for k, v in request.args.items() if k != "api_key"}})
    if not authorised(t, kind):
        return Response(json.dumps({"error": "unauthorised"}), status=401, content_type="application/json")
    failure = t.chaos()
    if failure == "429":
        return Response(json.dumps({"error": "slow down"}), status=429, headers={"Retry-After": "1"}, content_type="application/json")
    if failure == "500":
        return Response("<html>upstream error</html>", status=500)
    return None


def page_of(t, lo, hi, start, size):
    a = lo + start
    b = min(hi, a + size)
    return [t.record(i) for i in range(a, b)] if a < hi else []


def encode_cursor(i):
    return base64.urlsafe_b64encode(f"at:{i}".encode()).decode()


def decode_cursor(c):
    return int(base64.urlsafe_b64decode(c.encode()).decode().split(":")[1])


@app.get("/t/<name>/<kind>/transactions/<pager>")
def transactions(name, kind, pager):
    t = tenant(name)
    refused = guard(t, kind)
    if refused is not None:
        return refused
    # A page is a pure function of the data and the query: rendered once, served from
    # memory after that (so the benchmark's floor is the server, not Python's JSON).
    key = (pager, tuple(sorted(request.args.items(multi=True))), t.total())
    page = t.pages.get(key)
    if page is None:
        payload, headers = render(t, pager)
        if payload is None:
            return jsonify(error=f"no pager {pager}"), 404
        page = t.pages[key] = (app.json.dumps(payload).encode(), headers)
    body, headers = page
    return Response(body, headers=headers, content_type="application/json")


def render(t, pager):
    """The page this query asks for, as (payload, headers); (None, None) for no such pager."""
    lo, hi = t.indexes(request.args.get("since"), request.args.get("until"), request.args.get("before"))
    if pager == "offset":
        offset, limit = int(request.args.get("offset", 0)), int(request.args.get("limit", 100))
        return {"data": page_of(t, lo, hi, offset, limit), "total": hi - lo}, {}
    if pager == "page":
        page, size = int(request.args.get("page", 1)), int(request.args.get("per_page", 100))
        return {"items": page_of(t, lo, hi, (page - 1) * size, size)}, {}
    size = int(request.args.get("limit", 100))
    at = decode_cursor(request.args["cursor"]) if request.args.get("cursor") else 0
    data = page_of(t, lo, hi, at, size)
    following = at + len(data)
    more = lo + following < hi
    if pager == "cursor":
        return {"data": data, "meta": {"next": encode_cursor(following) if more else None}}, {}
    if pager == "header":
        return data, ({"X-Next-Cursor": encode_cursor(following)} if more else {})
    args = {k: v for k, v in request.args.items() if k not in ("cursor", "api_key")}
    args["cursor"] = encode_cursor(following)
    nxt = f"{request.path}?{urlencode(args)}"
    if pager == "next":
        return {"results": data, "links": {"next": nxt if more else None}}, {}
    if pager == "link":
        return data, ({"Link": f'<{request.host_url.rstrip("/")}{nxt}>; rel="next"'} if more else {})
    return None, None


@app.get("/t/<name>/open/tags")
def tags(name):
    t = tenant(name)
    refused = guard(t, "open")
    if refused is not None:
        return refused
    page, size = int(request.args.get("page", 1)), int(request.args.get("per_page", 10))
    all_tags = [{"id": f"TAG-{k:04d}", "owner": {"fleet": f"F{k % 3}"}} for k in range(TAGS)]
    return jsonify(tags=all_tags[(page - 1) * size: page * size])


@app.get("/t/<name>/open/tags/<tag>/transactions")
def tag_transactions(name, tag):
    t = tenant(name)
    refused = guard(t, "open")
    if refused is not None:
        return refused
    lo, hi = t.indexes(request.args.get("since"), request.args.get("until"))
    mine = [t.record(i) for i in range(lo, hi) if t.record(i)["tag_id"] == tag]
    for r in mine:
        r.pop("tag_id")
    at = int(request.args.get("cursor") or 0)
    size = int(request.args.get("limit", 5))
    data = mine[at: at + size]
    return jsonify(transactions=data, next=str(at + size) if at + size < len(mine) else None)


# --- SOAP -----------------------------------------------------------------------------

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"


class Vehicle(ComplexModel):
    __namespace__ = "urn:tags"
    plate = Unicode
    vehicle_class = Integer


class Transaction(ComplexModel):
    __namespace__ = "urn:tags"
    id = Integer
    tag_id = Unicode
    plaza = Unicode
    amount = Unicode
    currency = Unicode
    occurred_at = DateTime
    vehicle = Vehicle


class TransactionPage(ComplexModel):
    __namespace__ = "urn:tags"
    transactions = Transaction.customize(max_occurs="unbounded")
    nextPageToken = Unicode


def soap_tenant(ctx):
    query = ctx.transport.req_env.get("QUERY_STRING", "")
    args = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return tenant(args.get("t", "soap"))


def utc_iso(t):
    """An instant spyne parsed, as this fixture writes them (UTC assumed when naive)."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return iso(t.astimezone(dt.timezone.utc))


class TagService(ServiceBase):
    # `since` and `until` are inclusive; `before` is an exclusive upper bound.
    @rpc(DateTime, DateTime, Unicode, DateTime, _returns=TransactionPage)
    def GetTransactions(ctx, since, until, pageToken, before):
        t = soap_tenant(ctx)
        t.log.append({"path": "soap", "args": {"since": utc_iso(since), "until": utc_iso(until),
                                               "before": utc_iso(before), "pageToken": pageToken}})
        if pageToken == "bad":
            raise Fault("Client", "pageToken `bad` is not a token this service issued")
        with t.lock:
            t.calls += 1
            c = t.calls
        if t.every_fault and c % t.every_fault == 0:
            raise Fault("Server", "the tag ledger is busy, try again")
        lo, hi = t.indexes(utc_iso(since), utc_iso(until), utc_iso(before))
        at = int(pageToken) if pageToken else 0
        size = 50
        rows = page_of(t, lo, hi, at, size)
        out = []
        for r in rows:
            out.append(Transaction(id=r["id"], tag_id=r["tag_id"], plaza=r["plaza"], amount=r["amount"],
                                   currency=r["currency"], occurred_at=parse_time(r["occurred_at"]),
                                   vehicle=Vehicle(plate=r["vehicle"]["plate"], vehicle_class=r["vehicle"]["class"])))
        more = lo + at + len(rows) < hi
        return TransactionPage(transactions=out, nextPageToken=str(at + size) if more else None)


soap_app = WsgiApplication(Application([TagService], tns="urn:tags", name="TagService",
                                       in_protocol=Soap11(validator="lxml"), out_protocol=Soap11()))
soap12_app = WsgiApplication(Application([TagService], tns="urn:tags", name="TagService",
                                         in_protocol=Soap12(validator="lxml"), out_protocol=Soap12()))


def fault(code, text, v12=False):
    """A fault envelope: `code` is the SOAP 1.1 code (`Client`, `Server.Busy`); in 1.2 it
    becomes Sender or Receiver with the rest as a subcode."""
    if not v12:
        body = (f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>'
                f'<faultcode>soap:{code}</faultcode><faultstring>{text}</faultstring></soap:Fault></soap:Body></soap:Envelope>')
        return body.encode()
    main, _, sub = code.partition(".")
    value = "Sender" if main == "Client" else "Receiver"
    subcode = f"<env:Subcode><env:Value>t:{sub}</env:Value></env:Subcode>" if sub else ""
    body = (f'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:t="urn:tags"><env:Body><env:Fault>'
            f'<env:Code><env:Value>env:{value}</env:Value>{subcode}</env:Code>'
            f'<env:Reason><env:Text xml:lang="en">{text}</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>')
    return body.encode()


def ws_security(app, v12=False):
    """Checks the UsernameToken of every SOAP call (not the WSDL) before spyne sees it,
    refuses a nonce seen before (a replay), and answers Busy once when the tenant asks."""
    content_type = "application/soap+xml; charset=utf-8" if v12 else "text/xml; charset=utf-8"

    def check(environ, start_response):
        if environ["REQUEST_METHOD"] != "POST":
            return app(environ, start_response)
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size)
        import io
        environ["wsgi.input"] = io.BytesIO(raw)
        problem = None
        query = environ.get("QUERY_STRING", "")
        t = tenant(dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("t", "soap"))
        try:
            doc = etree.fromstring(raw)
            token = doc.find(f".//{{{WSSE}}}UsernameToken")
            if token is None:
                problem = "no WS-Security UsernameToken"
            else:
                user = token.findtext(f"{{{WSSE}}}Username")
                pw = token.find(f"{{{WSSE}}}Password")
                nonce = token.findtext(f"{{{WSSE}}}Nonce") or ""
                created = token.findtext(f"{{{WSU}}}Created") or ""
                if pw is not None and pw.get("Type", "").endswith("#PasswordDigest"):
                    want = base64.b64encode(hashlib.sha1(base64.b64decode(nonce) + created.encode() + SOAP_PASSWORD.encode()).digest()).decode()
                    ok = pw.text == want
                else:
                    ok = pw is not None and pw.text == SOAP_PASSWORD
                if user != SOAP_USER or not ok:
                    problem = "the security token could not be authenticated"
                elif nonce:
                    with t.lock:
                        replayed = nonce in t.nonces
                        t.nonces.add(nonce)
                        t.replays += replayed
                    if replayed:
                        problem = "the nonce was used before: a replayed message"
        except etree.XMLSyntaxError as e:
            problem = f"not XML: {e}"
        if problem:
            start_response("500 Internal Server Error", [("Content-Type", content_type)])
            return [fault("Client", f"FailedAuthentication: {problem}", v12)]
        with t.lock:
            t.soap_calls += 1
            busy, t.busy_once = t.busy_once, False
            t.busy_answered += busy
        if busy:
            start_response("500 Internal Server Error", [("Content-Type", content_type)])
            return [fault("Server.Busy", "the tag ledger is busy, try again", v12)]
        return app(environ, start_response)
    return check


wsgi = DispatcherMiddleware(app.wsgi_app, {"/soap": ws_security(soap_app),
                                           "/soap12": ws_security(soap12_app, v12=True)})


def main():
    ports_file = sys.argv[1]
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    server = make_server("127.0.0.1", port, wsgi, threaded=True)
    with open(ports_file + ".tmp", "w") as f:
        json.dump({"port": server.server_port}, f)
    import os
    os.rename(ports_file + ".tmp", ports_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
