#!/usr/bin/env python3
"""Start the published AIMarket providers on loopback for tests.

Starts, each on its own free 127.0.0.1 port and in its own folder under BASE:

* three oracle-core providers (``lattice``, ``chronos``, ``lumen``), each an ASGI app
  ``NAME.main:app`` under uvicorn, with ``NAME_PUBLIC_URL`` set to its loopback URL so
  the URLs it publishes (and the audience it accepts hub signatures for) are the ones
  a test reaches it at;
* HESTIA (``python -m hestia``, stub runtime) with tenants deployed from the
  ``agents/<slug>/deploy.json`` files of the aimarket-hestia-agents sdist.

Then it prints ONE line ``PROVIDERS: {json}`` on stdout with everything a test needs
(URLs, keys, capability ids and prices) and stays up until its stdin closes or it gets
SIGTERM/SIGINT, when it stops every child (and the children's children: HESTIA's
tenants) and exits. All progress goes to stderr.

Needs a virtualenv with the providers installed, e.g.::

    python3 -m venv /tmp/provenv
    /tmp/provenv/bin/pip install aimarket-oracle-core==0.6.2 aimarket-oracle-lattice==0.1.0 \
        aimarket-oracle-chronos==0.1.0 aimarket-oracle-lumen==0.1.0 aimarket-hestia==0.1.3 \
        aimarket-hestia-agents==0.1.1 uvicorn

Usage::

    run_providers.py --python /tmp/provenv/bin/python --base-dir /tmp/prov \
        [--trusted-hub http://127.0.0.1:8080=<base64 ed25519 pubkey>] \
        [--tenant-hub-key http://127.0.0.1:8080=<api key without '='>] \
        [--agents-dir DIR] [--tenants json-canonical,id-check] [--only lattice,hestia] \
        [--hestia-payments] [--oracle-env NAME=VALUE] [--hestia-env NAME=VALUE]

``--hestia-payments`` turns on HESTIA's own seller-direct (x402) rail against a fake
chain served by this script on 127.0.0.1: every priced tenant then answers an unpaid
routed call with an x402 402, and accepts the retry that carries
``X-Payment: <the 402's nonce>`` and ``X-Payment-Secret: <the 402's payment_secret>``
(the fake chain reports any transaction hash as a confirmed EIP-3009 payment whose
authorization nonce equals the hash, to every payout address of the deployed tenants).

Nothing here talks to anything but 127.0.0.1, except ``pip download`` of the agents'
sdist from the package index when no ``--agents-dir`` is given and none is cached in
BASE.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ORACLES = ("lattice", "chronos", "lumen")
DEFAULT_TENANTS = ("json-canonical", "id-check")
AGENTS_SDIST = "aimarket-hestia-agents==0.1.1"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
# Variables a child must not inherit: proxies would route loopback calls elsewhere,
# and HESTIA's hub/Themis settings would make it call out.
SCRUBBED_ENV = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
    "HESTIA_HUB_URL", "HESTIA_THEMIS_URL", "HESTIA_AUTO_ANNOUNCE", "HESTIA_DATABASE_URL",
    "HESTIA_PAYMENT_RPC_URL", "HESTIA_PAYMENTS_ENABLED", "HESTIA_PROFILE",
    "HESTIA_REQUIRE_SANDBOX", "WEB_CONCURRENCY", "ORACLE_SIGNING_SEED_B64",
    "ORACLE_TRUSTED_HUBS", "ORACLE_PRICE_GATE", "ORACLE_HUB_AUDIENCES",
    "ORACLE_PAID_TIER_SECRET", "ORACLE_TRUSTED_PAYMENT_PROXIES", "AIFACTORY_PROD",
)
# USDC on Base: HESTIA's default token contract (hestia/config.py).
DEFAULT_TOKEN_CONTRACT = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
AUTHORIZATION_USED_TOPIC = "0x98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5"
FAKE_PAYER = "0x00000000000000000000000000000000000b0b0b"


def log(msg: str) -> None:
    sys.stderr.write(f"[run_providers] {msg}\n")
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(method: str, url: str, body: object | None = None,
              headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    # No proxy, whatever the environment says: loopback only.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, raw.decode(errors="replace")


class Child:
    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], base_url: str):
        self.name = name
        self.base_url = base_url
        cwd.mkdir(parents=True, exist_ok=True)
        self.log_path = cwd / f"{name}.log"
        self._log = open(self.log_path, "ab")
        # Own session, so stopping it stops what it started too (HESTIA's tenants).
        self.proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log(f"{name}: pid {self.proc.pid} at {base_url} (log {self.log_path})")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=STOP_GRACE_S)
        else:
            # The leader is gone; its group may still hold tenants.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()


def wait_ready(children: list[Child], deadline: float) -> dict[str, dict]:
    """Poll each child's well-known until it answers 200, it dies, or the deadline."""
    pending = {c.name: c for c in children}
    docs: dict[str, dict] = {}
    while pending and time.monotonic() < deadline:
        for name, child in list(pending.items()):
            if not child.alive():
                tail = child.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {child.proc.returncode}:\n{tail}")
            try:
                status, doc = http_json("GET", f"{child.base_url}/.well-known/ai-market.json",
                                        timeout=2.0)
            except (OSError, ValueError):
                continue
            if status == 200 and isinstance(doc, dict):
                docs[name] = doc
                del pending[name]
                log(f"{name}: ready")
        if pending:
            time.sleep(0.2)
    if pending:
        raise RuntimeError(f"not ready within {READY_TIMEOUT_S:.0f}s: {', '.join(pending)}")
    return docs


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def parse_pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for raw in values:
        name, sep, value = raw.partition("=")
        if not sep or not name:
            raise SystemExit(f"{what} must be NAME=VALUE, got {raw!r}")
        out.append((name, value))
    return out


# ── agents' deploy.json ────────────────────────────────────────────────────────


def find_agents_dir(explicit: str | None, base: Path, python: str) -> Path:
    if explicit:
        path = Path(explicit)
        if not (path / DEFAULT_TENANTS[0] / "deploy.json").is_file() and not any(path.glob("*/deploy.json")):
            raise SystemExit(f"--agents-dir {path} holds no */deploy.json")
        return path
    cache = base / "sdist"
    found = sorted(cache.glob("*/agents")) if cache.is_dir() else []
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    log(f"downloading the {AGENTS_SDIST} sdist (its agents/*/deploy.json are not in the wheel)")
    subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
                    "--no-deps", "-d", str(cache), AGENTS_SDIST],
                   check=True, timeout=300, stdin=subprocess.DEVNULL)
    for archive in cache.glob("*.tar.gz"):
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(cache, filter="data")
            except TypeError:  # Python without extraction filters
                tar.extractall(cache)
    found = sorted(cache.glob("*/agents"))
    if not found:
        raise SystemExit("the sdist holds no agents/ folder")
    return found[0]


# ── a fake chain for HESTIA's seller-direct rail ────────────────────────────────


class FakeChain:
    """JSON-RPC on 127.0.0.1 that calls every transaction a confirmed EIP-3009 payment.

    For a transaction hash H it reports, from the token contract, one
    AuthorizationUsed(payer, nonce=H) followed by its Transfer(payer -> payee, amount)
    for every payee it was told about. HESTIA pays a call when the authorization nonce
    equals the one it minted, so a test pays with ``X-Payment: <nonce from the 402>``.
    """

    def __init__(self, payees: list[str], token_contract: str, amount_units: int = 10**12):
        self.payees = sorted({p.lower() for p in payees})
        self.token = token_contract.lower()
        self.amount = amount_units
        self.calls = 0
        chain = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a):  # quiet
                return

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    req = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    req = {}
                chain.calls += 1
                result = chain.answer(str(req.get("method")), req.get("params") or [])
                raw = json.dumps({"jsonrpc": "2.0", "id": req.get("id", 1), "result": result}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def _topic(addr: str) -> str:
        return "0x" + "0" * 24 + addr.lower()[2:]

    def answer(self, method: str, params: list):
        if method == "eth_blockNumber":
            return hex(0x20)
        if method == "eth_getBlockByNumber":
            return {"number": params[0] if params else hex(0x10), "timestamp": hex(int(time.time()))}
        if method == "eth_getTransactionReceipt":
            tx = str(params[0] if params else "").lower()
            logs = []
            for payee in self.payees:
                logs.append({"address": self.token,
                             "topics": [AUTHORIZATION_USED_TOPIC, self._topic(FAKE_PAYER), tx],
                             "data": "0x"})
                logs.append({"address": self.token,
                             "topics": [TRANSFER_TOPIC, self._topic(FAKE_PAYER), self._topic(payee)],
                             "data": hex(self.amount)})
            return {"transactionHash": tx, "status": "0x1", "blockNumber": hex(0x10), "logs": logs}
        return None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ── main ───────────────────────────────────────────────────────────────────────


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", required=True, help="the virtualenv's python")
    ap.add_argument("--base-dir", required=True, help="working folders, keys and logs go here")
    ap.add_argument("--trusted-hub", action="append", default=[], metavar="URL=KEY",
                    help="ORACLE_TRUSTED_HUBS entry for every oracle (KEY: base64 Ed25519 public key)")
    ap.add_argument("--tenant-hub-key", action="append", default=[], metavar="URL=KEY",
                    help="HESTIA_TENANT_HUB_KEYS entry (KEY: the X-API-Key; must not contain '=')")
    ap.add_argument("--agents-dir", help="folder holding <slug>/deploy.json (default: sdist in BASE)")
    ap.add_argument("--tenants", default=",".join(DEFAULT_TENANTS), help="comma-separated slugs")
    ap.add_argument("--only", default="", help="comma-separated subset of lattice,chronos,lumen,hestia")
    ap.add_argument("--hestia-payments", action="store_true",
                    help="enable HESTIA's x402 rail against a fake chain on loopback")
    ap.add_argument("--deploy-token", default="test-deploy-token")
    ap.add_argument("--oracle-env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--hestia-env", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()

    base = Path(args.base_dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or [*ORACLES, "hestia"]
    unknown = set(wanted) - {*ORACLES, "hestia"}
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)}")
    tenants = [s.strip() for s in args.tenants.split(",") if s.strip()]
    for raw in args.tenant_hub_key:
        url, sep, key = raw.rpartition("=")
        if not sep or not key or not url.startswith(("http://", "https://")):
            raise SystemExit(f"--tenant-hub-key must be URL=KEY with a key that has no '=': {raw!r}")
    for raw in args.trusted_hub:
        if "=" not in raw:
            raise SystemExit(f"--trusted-hub must be URL=KEY: {raw!r}")

    children: list[Child] = []
    chain: FakeChain | None = None
    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"signal {signum}: stopping")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def shutdown() -> None:
        for c in reversed(children):
            try:
                c.stop()
            except Exception as exc:  # noqa: BLE001 — keep stopping the others
                log(f"{c.name}: stop failed: {exc}")
        if chain is not None:
            chain.stop()
        log("all stopped")

    try:
        oracle_extra = dict(parse_pairs(args.oracle_env, "--oracle-env"))
        if args.trusted_hub:
            oracle_extra["ORACLE_TRUSTED_HUBS"] = ",".join(args.trusted_hub)
        for name in ORACLES:
            if name not in wanted:
                continue
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = child_env({**oracle_extra, f"{name.upper()}_PUBLIC_URL": url})
            children.append(Child(name, [args.python, "-m", "uvicorn", f"{name}.main:app",
                                         "--host", "127.0.0.1", "--port", str(port),
                                         "--no-access-log"],
                                  base / name, env, url))

        agents_dir: Path | None = None
        deploys: dict[str, dict] = {}
        if "hestia" in wanted:
            agents_dir = find_agents_dir(args.agents_dir, base, args.python)
            for slug in tenants:
                path = agents_dir / slug / "deploy.json"
                if not path.is_file():
                    raise SystemExit(f"no {path}")
                deploys[slug] = json.loads(path.read_text(encoding="utf-8"))
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            extra = {
                "HESTIA_HOST": "127.0.0.1", "HESTIA_PORT": str(port), "HESTIA_PUBLIC_BASE": url,
                "HESTIA_DATA_DIR": str(base / "hestia" / "data"),
                "HESTIA_DEPLOY_TOKEN": args.deploy_token, "HESTIA_RUNTIME": "stub",
            }
            if args.tenant_hub_key:
                extra["HESTIA_TENANT_HUB_KEYS"] = ",".join(args.tenant_hub_key)
            if args.hestia_payments:
                payees = [d.get("payout_address", "") for d in deploys.values() if d.get("payout_address")]
                chain = FakeChain(payees, DEFAULT_TOKEN_CONTRACT)
                extra.update({"HESTIA_PAYMENTS_ENABLED": "1", "HESTIA_PAYMENT_RPC_URL": chain.url,
                              "HESTIA_PAYMENT_TOKEN_CONTRACT": DEFAULT_TOKEN_CONTRACT})
                log(f"fake chain at {chain.url} paying {payees}")
            extra.update(dict(parse_pairs(args.hestia_env, "--hestia-env")))
            children.append(Child("hestia", [args.python, "-m", "hestia"], base / "hestia",
                                  child_env(extra), url))

        deadline = time.monotonic() + READY_TIMEOUT_S
        docs = wait_ready(children, deadline)

        out: dict[str, dict] = {}
        for c in children:
            if c.name == "hestia":
                continue
            status, manifest = http_json("GET", f"{c.base_url}/ai-market/v2/manifest")
            tools = manifest.get("tools", []) if isinstance(manifest, dict) else []
            wk = docs[c.name]
            out[c.name] = {
                "base_url": c.base_url,
                "well_known_url": f"{c.base_url}/.well-known/ai-market.json",
                "manifest_url": wk.get("manifest_url"),
                "invoke_url": f"{c.base_url}/ai-market/v2/invoke",
                "signer_public_key": wk.get("signer_public_key"),
                "price_gate": wk.get("price_gate", {"mode": "off"}),
                "pid": c.proc.pid,
                "capabilities": [{"capability_id": t.get("capability_id"),
                                  "product_id": t.get("product_id"),
                                  "price_per_call_usd": t.get("price_per_call_usd")} for t in tools],
            }

        hestia = next((c for c in children if c.name == "hestia"), None)
        if hestia is not None:
            auth = {"Authorization": f"Bearer {args.deploy_token}"}
            deployed: dict[str, dict] = {}
            for slug, doc in deploys.items():
                if time.monotonic() > deadline + 30:
                    raise RuntimeError("deploying tenants took too long")
                status, answer = http_json("POST", f"{hestia.base_url}/v1/tenants", doc, auth, timeout=30.0)
                if status != 200 or not isinstance(answer, dict) or not answer.get("ok"):
                    raise RuntimeError(f"deploy {slug}: {status} {answer}")
                cap = doc.get("capability", {})
                deployed[slug] = {
                    "capability_id": cap.get("capability_id"),
                    "product_id": cap.get("product_id"),
                    "price_per_call_usd": cap.get("price_per_call_usd"),
                    "payout_address": doc.get("payout_address", ""),
                    "public_url": answer.get("public_url"),
                    "edge_invoke_url": answer.get("invoke_url"),
                    "listed": answer.get("listed"),
                }
                log(f"hestia: deployed {slug} ({cap.get('capability_id')})")
            status, manifest = http_json("GET", f"{hestia.base_url}/ai-market/v2/manifest")
            tools = manifest.get("tools", []) if isinstance(manifest, dict) else []
            wk = docs["hestia"]
            out["hestia"] = {
                "base_url": hestia.base_url,
                "well_known_url": f"{hestia.base_url}/.well-known/ai-market.json",
                "manifest_url": wk.get("manifest_url"),
                "invoke_url": f"{hestia.base_url}/ai-market/v2/invoke",
                "signer_public_key": wk.get("signer_public_key"),
                "deploy_token": args.deploy_token,
                "pid": hestia.proc.pid,
                "tenant_hub_keys": [raw.rpartition("=")[0] for raw in args.tenant_hub_key],
                "payments": ({"rail": "x402 (fake chain)", "rpc_url": chain.url,
                              "pay_with": "X-Payment: <402 nonce>, X-Payment-Secret: <402 payment_secret>"}
                             if chain else None),
                "tenants": deployed,
                "capabilities": [{"capability_id": t.get("capability_id"),
                                  "product_id": t.get("product_id"),
                                  "price_per_call_usd": t.get("price_per_call_usd")} for t in tools],
            }

        sys.stdout.write("PROVIDERS: " + json.dumps(out, separators=(",", ":")) + "\n")
        sys.stdout.flush()

        # Up until stdin closes, a signal, or a child dies. Each wait is bounded; the
        # loop ends on any of those three events.
        stdin_open = True
        while not stop.is_set():
            dead = [c.name for c in children if not c.alive()]
            if dead:
                log(f"child exited: {', '.join(dead)}")
                return 1
            if stdin_open:
                try:
                    ready, _, _ = select.select([sys.stdin], [], [], 0.5)
                except (OSError, ValueError):
                    ready, stdin_open = [], False
                if ready:
                    chunk = os.read(sys.stdin.fileno(), 4096)
                    if not chunk:
                        log("stdin closed: stopping")
                        return 0
            else:
                stop.wait(0.5)
        return 0
    except Exception as exc:  # noqa: BLE001 — report, then clean up below
        log(f"error: {exc}")
        return 2
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
