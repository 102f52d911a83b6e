#!/usr/bin/env python3
"""Capture real provider documents into tests/fixtures/real/.

Run with the providers' virtualenv python (it needs `cryptography`, and `hestia` for the
owner-request signer):

    /tmp/provenv/bin/python tests/providers/capture_fixtures.py \
        --python /tmp/provenv/bin/python --out tests/fixtures/real --work /tmp/capture

It starts the providers twice through run_providers.py (everything on 127.0.0.1):

  run A  oracles with no price gate; HESTIA with payments off and no hub keys
  run B  oracles with ORACLE_TRUSTED_HUBS=<hub>=<key>; HESTIA with two tenant hub keys,
         its x402 rail on against run_providers' fake chain, and one owner's tenant

and writes every answer as the raw bytes served (`NAME.json`) and, where the status or
headers matter, `NAME.headers.json` ({"status", "headers"}). Requests that carried hub
signatures are written as `NAME.request.json` so the signature can be checked offline
against HUB_PUBLIC_KEY (fixed seed below; test use only).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent
# A fixed test-only hub identity, so the captured requests can be re-verified offline.
HUB_SEED = bytes(range(1, 33))
HUB_KEY = Ed25519PrivateKey.from_private_bytes(HUB_SEED)
HUB_PUBLIC_KEY = base64.b64encode(HUB_KEY.public_key().public_bytes_raw()).decode()
HUB_URL = "http://127.0.0.1:18080"       # nothing listens there; it is only a name
OTHER_HUB_URL = "http://127.0.0.1:18081"
HUB_API_KEY = "hub-a-api-key-0001"
OTHER_HUB_API_KEY = "hub-b-api-key-0002"
OWNER_SEED = bytes(range(101, 133))
OWNER_ACCOUNT = "acct_00112233445566ff"

SAMPLE_INPUTS = {
    "lattice.sequence@v1": {"count": 4, "dim": 2},
    "chronos.eval@v1": {"seed": "fixture", "difficulty": 1000},
    "lumen.reputation@v1": {"nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 0.5], [2, 0, 1]]},
    "lumen.score@v1": {"nodes": 3, "edges": [[0, 1, 1.0], [1, 2, 0.5], [2, 0, 1]], "target_node": 1},
}


# ── small helpers (our own) ─────────────────────────────────────────────────────


def normalize_url(url: str) -> str:
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (parts.scheme.lower(), port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return f"{parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"


def compact(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hub_headers(capability_id: str, payload: dict, audience: str, *, hub: str = HUB_URL,
                key: Ed25519PrivateKey = HUB_KEY, ts: int | None = None,
                nonce: str | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or secrets.token_hex(16)
    body = compact({
        "aud": normalize_url(audience), "capability_id": capability_id, "hub": normalize_url(hub),
        "input_sha256": hashlib.sha256(compact(payload or {}).encode()).hexdigest(),
        "nonce": nonce, "ts": ts,
    })
    sig = base64.b64encode(key.sign(f"aimarket-hub-request/v1\n{body}".encode())).decode()
    return {
        "X-AIMarket-Hub-Signer": normalize_url(hub),
        "X-AIMarket-Hub-Audience": normalize_url(audience),
        "X-AIMarket-Hub-Timestamp": str(ts),
        "X-AIMarket-Hub-Nonce": nonce,
        "X-AIMarket-Hub-Signature": sig,
    }


def fetch(method: str, url: str, body: object | None = None, headers: dict | None = None,
          raw_body: bytes | None = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


class Out:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.index: list[tuple[str, str]] = []

    def save(self, name: str, status: int, headers: dict, raw: bytes, what: str,
             with_headers: bool = False, request: dict | None = None) -> None:
        (self.folder / f"{name}.json").write_bytes(raw)
        self.index.append((f"{name}.json", what))
        if with_headers:
            keep = {k: v for k, v in sorted(headers.items()) if k != "date"}
            (self.folder / f"{name}.headers.json").write_text(
                json.dumps({"status": status, "headers": keep}, indent=2) + "\n")
            self.index.append((f"{name}.headers.json", f"status and headers of {name}.json"))
        if request is not None:
            (self.folder / f"{name}.request.json").write_text(json.dumps(request, indent=2) + "\n")
            self.index.append((f"{name}.request.json", f"the request that produced {name}.json"))
        print(f"  {name}: {status} ({len(raw)} bytes)", file=sys.stderr)


class Providers:
    """run_providers.py as a child; stopped by closing its stdin."""

    def __init__(self, python: str, base: Path, args: list[str]):
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        argv = [sys.executable, str(HERE / "run_providers.py"), "--python", python,
                "--base-dir", str(base), *args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        self.info = None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("PROVIDERS: "):
                self.info = json.loads(line[len("PROVIDERS: "):])
                break
        if self.info is None:
            self.stop()
            raise SystemExit("run_providers.py did not print PROVIDERS")

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# ── run A ───────────────────────────────────────────────────────────────────────


def run_a(python: str, work: Path, agents: list[str], out: Out) -> None:
    print("run A: ungated oracles, HESTIA without payments", file=sys.stderr)
    p = Providers(python, work / "a", agents)
    try:
        info = p.info
        for name in ("lattice", "chronos", "lumen"):
            o = info[name]
            s, h, raw = fetch("GET", o["well_known_url"])
            out.save(f"{name}.well-known", s, h, raw, "well-known, price gate off (raw bytes)", True)
            s, h, raw = fetch("GET", o["manifest_url"])
            out.save(f"{name}.manifest", s, h, raw, "signed manifest, first fetch (raw bytes)", True)
            time.sleep(1.1)
            s, h, raw = fetch("GET", o["manifest_url"])
            out.save(f"{name}.manifest.second", s, h, raw, "the same manifest fetched 1 s later")
        # Free (ungated) answers. Every oracle capability is priced; with no trusted hub
        # the gate is off and any caller is served.
        for name, cap in (("lattice", "lattice.sequence@v1"), ("chronos", "chronos.eval@v1"),
                          ("lumen", "lumen.reputation@v1")):
            body = {"capability_id": cap, "input": SAMPLE_INPUTS[cap]}
            s, h, raw = fetch("POST", info[name]["invoke_url"], body)
            out.save(f"{name}.invoke-free", s, h, raw, f"{cap}, gate off, no payment", True,
                     request={"url": info[name]["invoke_url"], "body": body})
        # Manifest again, now that calls were measured (metrics_source: measured).
        s, h, raw = fetch("GET", info["lumen"]["manifest_url"])
        out.save("lumen.manifest.measured", s, h, raw, "manifest after one call (measured p50)")
        body = {"capability_id": "lumen.score@v1", "input": {"nodes": 3, "edges": []}}
        s, h, raw = fetch("POST", info["lumen"]["invoke_url"], body)
        out.save("lumen.invoke-refused", s, h, raw, "missing input field: 200 {ok:false,error}", True,
                 request={"body": body})
        body = {"capability_id": "lumen.nope@v1", "input": {}}
        s, h, raw = fetch("POST", info["lumen"]["invoke_url"], body)
        out.save("lumen.invoke-unknown", s, h, raw, "unknown capability: 200 {ok:false,error}", True)
        body = {"capability_id": "chronos.eval@v1", "input": {"seed": "x", "difficulty": 200000}}
        s, h, raw = fetch("POST", info["chronos"]["invoke_url"], body)
        out.save("chronos.402-free-tier", s, h, raw, "unpaid call over the free-tier ceiling", True,
                 request={"body": body})

        hs = info["hestia"]
        s, h, raw = fetch("GET", hs["well_known_url"])
        out.save("hestia.well-known", s, h, raw, "signed well-known (raw bytes)", True)
        s, h, raw = fetch("GET", hs["manifest_url"])
        out.save("hestia.manifest", s, h, raw, "signed manifest, two tenants running", True)
        time.sleep(1.1)
        s, h, raw = fetch("GET", hs["manifest_url"])
        out.save("hestia.manifest.second", s, h, raw, "the same manifest fetched 1 s later")
        body = {"capability_id": "hestia.hearth.list@v1", "input": {}}
        s, h, raw = fetch("POST", hs["invoke_url"], body)
        out.save("hestia.invoke-free", s, h, raw, "free host capability: result + v1 receipt", True)
        body = {"capability_id": "hestia.host.status@v1", "input": {"slug": "id-check"}}
        s, h, raw = fetch("POST", hs["invoke_url"], body)
        out.save("hestia.invoke-host-status", s, h, raw, "priced host capability, served unpaid", True)
        body = {"capability_id": "json.canonical@v1", "product_id": "hestia-agents",
                "input": {"document": {"b": [1, 2], "a": "é"}}}
        s, h, raw = fetch("POST", hs["invoke_url"], body)
        out.save("hestia.tenant-answer", s, h, raw,
                 "tenant via the routed invoke, payments off: {ok,result,provider_pubkey,signature}",
                 True, request={"url": hs["invoke_url"], "body": body})
        edge = hs["tenants"]["json-canonical"]["edge_invoke_url"]
        s, h, raw = fetch("POST", edge, {"document": {"b": [1, 2], "a": "é"}})
        out.save("hestia.tenant-answer.edge", s, h, raw, "same call at the tenant's own /t/<slug>/invoke",
                 True, request={"url": edge, "body": {"document": {"b": [1, 2], "a": "é"}}})
        body = {"capability_id": "json.canonical@v1", "input": {"doc": 1}}
        s, h, raw = fetch("POST", hs["invoke_url"], body)
        out.save("hestia.tenant-error", s, h, raw, "tenant refused its input: 400 {detail:<json string>}",
                 True, request={"body": body})
        body = {"capability_id": "nope@v1", "input": {}}
        s, h, raw = fetch("POST", hs["invoke_url"], body)
        out.save("hestia.invoke-unknown", s, h, raw, "unknown capability: 404", True)

        # Rate limit: 120 invokes per minute per client address. Last, on lattice only.
        body = {"capability_id": "lattice.sequence@v1", "input": {"count": 1, "dim": 1}}
        got = None
        for i in range(130):
            s, h, raw = fetch("POST", info["lattice"]["invoke_url"], body)
            if s == 429:
                got = (i, s, h, raw)
                break
        if got:
            i, s, h, raw = got
            out.save("lattice.429", s, h, raw,
                     f"invoke number {i + 2} from one client within a minute (120/min allowed)", True)
    finally:
        p.stop()


# ── run B ───────────────────────────────────────────────────────────────────────


def run_b(python: str, work: Path, agents: list[str], out: Out) -> None:
    print("run B: gated oracles, HESTIA with hub keys and x402", file=sys.stderr)
    args = [*agents, "--trusted-hub", f"{HUB_URL}={HUB_PUBLIC_KEY}",
            "--tenant-hub-key", f"{HUB_URL}={HUB_API_KEY}",
            "--tenant-hub-key", f"{OTHER_HUB_URL}={OTHER_HUB_API_KEY}", "--hestia-payments"]
    p = Providers(python, work / "b", args)
    try:
        info = p.info
        for name, cap in (("lattice", "lattice.sequence@v1"), ("chronos", "chronos.eval@v1"),
                          ("lumen", "lumen.reputation@v1")):
            o = info[name]
            s, h, raw = fetch("GET", o["well_known_url"])
            out.save(f"{name}.well-known.gated", s, h, raw, "well-known with ORACLE_TRUSTED_HUBS set", True)
            payload = SAMPLE_INPUTS[cap]
            body = {"capability_id": cap, "input": payload}
            s, h, raw = fetch("POST", o["invoke_url"], body)
            out.save(f"{name}.402", s, h, raw, "priced call with no hub signature", True,
                     request={"url": o["invoke_url"], "body": body})
            hdrs = hub_headers(cap, payload, o["invoke_url"])
            s, h, raw = fetch("POST", o["invoke_url"], body, hdrs)
            out.save(f"{name}.invoke-paid", s, h, raw, "hub-signed (admitted) call: served with receipt",
                     True, request={"url": o["invoke_url"], "headers": hdrs, "body": body,
                                    "hub_public_key": HUB_PUBLIC_KEY})
            if name == "lumen":
                s, h, raw = fetch("POST", o["invoke_url"], body, hdrs)
                out.save("lumen.401-replay", s, h, raw, "the same signed request again", True,
                         request={"headers": hdrs, "body": body})
                bad = dict(hub_headers(cap, payload, o["invoke_url"]))
                bad["X-AIMarket-Hub-Signature"] = base64.b64encode(b"\x00" * 64).decode()
                s, h, raw = fetch("POST", o["invoke_url"], body, bad)
                out.save("lumen.401", s, h, raw, "bad signature", True, request={"headers": bad, "body": body})
                wrong_aud = hub_headers(cap, payload, o["invoke_url"].replace("127.0.0.1", "localhost"))
                s, h, raw = fetch("POST", o["invoke_url"], body, wrong_aud)
                out.save("lumen.401-audience", s, h, raw, "signed for another audience", True,
                         request={"headers": wrong_aud, "body": body})
                stranger = hub_headers(cap, payload, o["invoke_url"], hub=OTHER_HUB_URL)
                s, h, raw = fetch("POST", o["invoke_url"], body, stranger)
                out.save("lumen.401-unknown-hub", s, h, raw, "signer not in ORACLE_TRUSTED_HUBS", True,
                         request={"headers": stranger, "body": body})
                stale = hub_headers(cap, payload, o["invoke_url"], ts=int(time.time()) - 121)
                s, h, raw = fetch("POST", o["invoke_url"], body, stale)
                out.save("lumen.401-stale", s, h, raw, "timestamp 121 s old", True,
                         request={"headers": stale, "body": body})
                other_input = hub_headers(cap, {"nodes": 2, "edges": []}, o["invoke_url"])
                s, h, raw = fetch("POST", o["invoke_url"], body, other_input)
                out.save("lumen.401-input", s, h, raw, "signature over a different input", True,
                         request={"headers": other_input, "body": body})
        # A hub-admitted call does not lift chronos' free-tier ceiling.
        payload = {"seed": "x", "difficulty": 200000}
        body = {"capability_id": "chronos.eval@v1", "input": payload}
        hdrs = hub_headers("chronos.eval@v1", payload, info["chronos"]["invoke_url"])
        s, h, raw = fetch("POST", info["chronos"]["invoke_url"], body, hdrs)
        out.save("chronos.402-free-tier.signed", s, h, raw,
                 "hub-signed call over the free-tier ceiling: still 402", True,
                 request={"headers": hdrs, "body": body})

        hs = info["hestia"]
        inv = hs["invoke_url"]
        doc_input = {"document": {"z": 1, "a": [3, 2, 1]}}
        body = {"capability_id": "json.canonical@v1", "input": doc_input}
        s, h, raw = fetch("POST", inv, body)
        out.save("hestia.402", s, h, raw, "x402 402 for a priced tenant (HESTIA_PAYMENTS_ENABLED=1)",
                 True, request={"url": inv, "body": body})
        quote = json.loads(raw)
        s, h, raw = fetch("POST", inv, body, {"X-Payment": "demo-payment"})
        out.save("hestia.402-made-up-payment", s, h, raw, "made-up X-Payment value: refused", True,
                 request={"headers": {"X-Payment": "demo-payment"}, "body": body})
        pay = {"X-Payment": quote["nonce"], "X-Payment-Secret": quote["payment_secret"],
               "X-Payment-Nonce": quote["nonce"]}
        s, h, raw = fetch("POST", inv, body, pay)
        out.save("hestia.tenant-answer.x402-paid", s, h, raw,
                 "paid on the fake loopback chain (tx hash = the 402's nonce)", True,
                 request={"headers": pay, "body": body})
        s, h, raw = fetch("POST", inv, body, pay)
        out.save("hestia.402-spent", s, h, raw, "the same payment again", True)
        for label, charged in (("hub-billed", "0.001000"), ("hub-billed.no-charged", None),
                               ("hub-billed.trial", "0.000000")):
            hdrs = {"X-API-Key": HUB_API_KEY}
            if charged is not None:
                hdrs["X-AIMarket-Hub-Charged"] = charged
            s, h, raw = fetch("POST", inv, body, hdrs)
            out.save(f"hestia.tenant-answer.{label}", s, h, raw,
                     f"operator tenant, X-API-Key, X-AIMarket-Hub-Charged={charged or '(absent)'}", True,
                     request={"headers": hdrs, "body": body})
        s, h, raw = fetch("POST", inv, body, {"X-API-Key": "not-a-key"})
        out.save("hestia.401-api-key", s, h, raw, "unknown X-API-Key", True)

        # An owner's tenant: the owner chose HUB_URL (account OWNER_ACCOUNT), not OTHER_HUB_URL.
        from hestia.owners import sign_owner_request  # the package's own client half

        owner = Ed25519PrivateKey.from_private_bytes(OWNER_SEED)
        owner_pub = base64.b64encode(owner.public_key().public_bytes_raw()).decode()
        auth = {"Authorization": f"Bearer {hs['deploy_token']}"}
        s, h, raw = fetch("POST", f"{hs['base_url']}/v1/owners",
                          {"pubkey": owner_pub, "label": "fixture owner", "may_run_code": True,
                           "admitted_by": "operator"}, auth)
        assert s == 200, raw
        src = json.loads((Path(agents[1]) / "id-check" / "deploy.json").read_text())
        src["slug"] = "owner-idcheck"
        src["owner_pubkey"] = owner_pub
        src["payout_address"] = "0x00000000000000000000000000000000000a11ce"
        cap = src["capability"]
        cap.update({"capability_id": "ownerfixture.idcheck@v1", "product_id": "owner-fixture",
                    "publisher_id": "owner-fixture", "price_per_call_usd": 0.002})
        s, h, raw = fetch("POST", f"{hs['base_url']}/v1/tenants", src, auth)
        assert s == 200, raw
        billing = json.dumps({"hubs": {HUB_URL: OWNER_ACCOUNT}}).encode()
        oh = sign_owner_request(owner, hearth=hs["base_url"], method="POST",
                                path="/v1/owners/me/billing", body=billing)
        s, h, raw = fetch("POST", f"{hs['base_url']}/v1/owners/me/billing", raw_body=billing, headers=oh)
        assert s == 200, raw
        obody = {"capability_id": "ownerfixture.idcheck@v1", "input": {"id": "978-0-306-40615-7"}}
        for label, key, charged in (("owner.hub-billed", HUB_API_KEY, "0.002000"),
                                    ("owner.402-trial", HUB_API_KEY, "0.000000"),
                                    ("owner.402-other-hub", OTHER_HUB_API_KEY, "0.002000")):
            hdrs = {"X-API-Key": key, "X-AIMarket-Hub-Charged": charged}
            s, h, raw = fetch("POST", inv, obody, hdrs)
            out.save(f"hestia.{label}", s, h, raw,
                     f"owner's tenant, key of {'hub A' if key == HUB_API_KEY else 'hub B'}, charged {charged}",
                     True, request={"headers": hdrs, "body": obody})
        s, h, raw = fetch("GET", hs["manifest_url"])
        out.save("hestia.manifest.payments", s, h, raw, "manifest with three tenants, payments on")
    finally:
        p.stop()


def fetch_agents(python: str, cache: Path) -> Path:
    """The agents/ folder of the aimarket-hestia-agents 0.1.1 sdist (not in the wheel)."""
    found = sorted(cache.glob("*/agents"))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
                        "--no-deps", "-d", str(cache), "aimarket-hestia-agents==0.1.1"],
                       check=True, timeout=300)
        import tarfile
        for archive in cache.glob("*.tar.gz"):
            with tarfile.open(archive) as tar:
                tar.extractall(cache, filter="data")
        found = sorted(cache.glob("*/agents"))
    return found[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--agents-dir")
    a = ap.parse_args()
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    agents_dir = Path(a.agents_dir) if a.agents_dir else fetch_agents(a.python, work / "sdist")
    agents = ["--agents-dir", str(agents_dir)]
    out = Out(Path(a.out))
    run_a(a.python, work, agents, out)
    run_b(a.python, work, agents, out)
    (work / "INDEX.txt").write_text(
        f"hub public key for *.request.json: {HUB_PUBLIC_KEY} (hub {HUB_URL})\n"
        + "".join(f"{n}\t{w}\n" for n, w in out.index))
    print(f"wrote {len(out.index)} files to {out.folder} (list: {work / 'INDEX.txt'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
