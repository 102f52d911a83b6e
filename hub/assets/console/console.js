// AIMarket hub console. Plain JS, no dependencies, no inline handlers (the CSP forbids them).
// Every text that comes from the network is put in the page with textContent (via `el`),
// never parsed as markup: capability descriptions and peer names are written by strangers.
'use strict';

const API = '/ai-market/v2';
const TOKEN_KEY = 'aimarket-admin-token';

// ---------- small helpers ----------
function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function usd(x) { return typeof x === 'number' ? '$' + x.toFixed(6).replace(/0+$/, '').replace(/\.$/, '') : '—'; }
function num(x, d) { return typeof x === 'number' ? x.toFixed(d) : '—'; }
function when(s) { return s ? new Date(s).toLocaleString() : '—'; }

// The admin token lives in sessionStorage only (this tab), is sent as a bearer token, and is
// never put in a cookie or a URL.
function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

async function call(method, path, body, extraHeaders) {
  const headers = Object.assign({ 'Accept': 'application/json' }, extraHeaders || {});
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, credentials: 'omit',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  return { status: response.status, headers: response.headers, data };
}

async function admin(method, path, body) {
  if (!token()) return { status: 0, data: { detail: 'enter the admin token first' } };
  return call(method, path, body, { 'Authorization': 'Bearer ' + token() });
}

function say(node, text, isError) {
  node.textContent = text;
  node.classList.toggle('error', !!isError);
}

function refusal(r) {
  const d = r.data || {};
  return 'HTTP ' + r.status + (d.error ? ' ' + d.error : '') + (d.detail ? ': ' + d.detail : '');
}

// ---------- navigation ----------
const views = ['catalog', 'federation', 'floor', 'plugins'];
function show() {
  const wanted = location.hash.replace('#', '') || 'catalog';
  const name = views.includes(wanted) ? wanted : 'catalog';
  for (const v of views) {
    $(v).hidden = v !== name;
    $('nav-' + v).classList.toggle('active', v === name);
  }
  if (name === 'federation') loadFederation();
  if (name === 'plugins') loadPlugins();
  if (name === 'floor') startFloor();
}

function tokenState() {
  const has = !!token();
  $('token-state').textContent = has ? 'admin (this tab)' : 'read-only';
  for (const b of document.querySelectorAll('button.admin')) b.disabled = !has;
}

// ---------- catalog ----------
async function search(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams();
  const put = (name, id) => { const v = $(id).value.trim(); if (v) params.set(name, v); };
  put('intent', 'q-intent'); put('budget', 'q-budget'); put('max_latency_ms', 'q-latency');
  put('min_trust', 'q-trust'); put('hub', 'q-hub'); put('category', 'q-category');
  params.set('limit', '50');
  const r = await call('GET', API + '/search?' + params.toString());
  const body = $('results').tBodies[0];
  clear(body);
  if (r.status !== 200) { say($('search-status'), refusal(r), true); return; }
  say($('search-status'), r.data.total + ' capabilities (catalog version ' +
    (r.headers.get('X-AIMarket-Catalog-Version') || '—') + ')');
  for (const m of r.data.matches) {
    const row = el('tr', { class: 'clickable', 'data-capability': m.capability_id, onclick: () => openCapability(m) },
      el('td', {}, el('strong', {}, m.name || m.capability_id), el('br'), m.product_id + ' / ' + m.capability_id),
      el('td', {}, usd(m.price_per_call_usd)),
      el('td', {}, usd(m.routed_price_usd)),
      el('td', {}, num(m.trust_score, 2)),
      el('td', {}, typeof m.p50_latency_ms === 'number' ? m.p50_latency_ms + ' ms' : '—'),
      el('td', {}, m.source_hub_name || m.product_id),
      el('td', {}, m.source_hub));
    body.append(row);
  }
}

let current = null;   // the open capability
let channel = null;   // a demo channel opened from this tab: {channel_id, channel_secret}

function schemaForm(schema) {
  const form = $('cap-form');
  clear(form);
  const props = (schema && schema.properties) || {};
  const names = Object.keys(props);
  if (names.length === 0) {
    form.append(el('label', {}, 'input (JSON) ', el('textarea', { id: 'cap-json', rows: '4', cols: '60' }, '{}')));
    return;
  }
  const required = new Set((schema && schema.required) || []);
  for (const name of names) {
    const p = props[name] || {};
    let input;
    if (Array.isArray(p.enum)) {
      input = el('select', { 'data-field': name, 'data-type': p.type || 'string' }, ...p.enum.map(v => el('option', { value: String(v) }, String(v))));
    } else if (p.type === 'boolean') {
      input = el('input', { type: 'checkbox', 'data-field': name, 'data-type': 'boolean' });
    } else if (p.type === 'number' || p.type === 'integer') {
      input = el('input', { type: 'number', step: p.type === 'integer' ? '1' : 'any', 'data-field': name, 'data-type': p.type });
    } else if (p.type === 'string') {
      input = el('input', { type: 'text', 'data-field': name, 'data-type': 'string' });
    } else {
      input = el('textarea', { 'data-field': name, 'data-type': 'json', rows: '2', cols: '40' });
    }
    form.append(el('label', { title: p.description || '' }, name + (required.has(name) ? ' *' : '') + ' ', input));
  }
}

function formInput() {
  const json = $('cap-json');
  if (json) return JSON.parse(json.value || '{}');
  const input = {};
  for (const f of document.querySelectorAll('#cap-form [data-field]')) {
    const type = f.getAttribute('data-type');
    const name = f.getAttribute('data-field');
    if (type === 'boolean') { input[name] = f.checked; continue; }
    if (f.value === '') continue;
    if (type === 'number' || type === 'integer') input[name] = Number(f.value);
    else if (type === 'json') input[name] = JSON.parse(f.value);
    else input[name] = f.value;
  }
  return input;
}

function openCapability(m) {
  current = m;
  $('capability').hidden = false;
  $('cap-title').textContent = (m.name || m.capability_id) + ' — ' + m.product_id;
  $('cap-description').textContent = m.description || '';
  $('cap-facts').textContent = 'price ' + usd(m.price_per_call_usd) + ', routed ' + usd(m.routed_price_usd) +
    ', trust ' + num(m.trust_score, 2) + ', p50 ' + m.p50_latency_ms + ' ms, from ' + m.source_hub;
  $('cap-explain').hidden = true;
  $('cap-pay').hidden = true;
  $('cap-paid').hidden = true;
  $('cap-output').textContent = '';
  schemaForm(m.input_schema);
  $('capability').scrollIntoView();
  capabilityDetails(m);
}

// A value for each property of `schema`: its example, default or first enum value, else a
// placeholder of its type.
function exampleInput(schema) {
  const out = {};
  const props = (schema && schema.properties) || {};
  for (const [name, p] of Object.entries(props)) {
    const q = p || {};
    if (Array.isArray(q.examples) && q.examples.length) out[name] = q.examples[0];
    else if (q.example !== undefined) out[name] = q.example;
    else if (q.default !== undefined) out[name] = q.default;
    else if (Array.isArray(q.enum) && q.enum.length) out[name] = q.enum[0];
    else out[name] = { string: 'text', number: 1.5, integer: 1, boolean: true, array: [] }[q.type] ?? {};
  }
  return out;
}

// The example call, who listed the capability and with which key, and its trust breakdown
// (the listing hub's reputation components). All text goes in with textContent.
async function capabilityDetails(m) {
  const body = { product_id: m.product_id, capability_id: m.capability_id, input: exampleInput(m.input_schema) };
  const url = location.origin + API + '/invoke';
  const json = JSON.stringify(body);
  $('cap-example').textContent = 'POST ' + url + '\n' + JSON.stringify(body, null, 2) +
    "\n\ncurl -s " + url + " -H 'Content-Type: application/json' -d '" + json.replace(/'/g, "'\\''") + "'";
  say($('cap-key'), 'checking who lists it…');
  clear($('cap-trust'));
  const peers = await call('GET', API + '/federation/peers');
  if (current !== m) return;
  const all = peers.status === 200 ? [...(peers.data.peers || []), ...(peers.data.pending || [])] : [];
  const p = all.find(x => x.url === m.source_hub);
  if (p) {
    say($('cap-key'), 'Listed by ' + p.url + ' (' + p.status + '). Its manifest\'s Ed25519 signature is ' +
      'verified at every crawl with key ' + fingerprint(p) + ' (key source: ' + (p.key_source || 'unknown') +
      '); last successful crawl ' + when(p.last_success) +
      (p.last_error ? '; last error: ' + p.last_error : '; no error') + '.');
  } else {
    say($('cap-key'), 'Learned through another hub (a re-export of ' + m.source_hub + '): that hub\'s ' +
      'signed manifest was verified with its pinned key.');
  }
  const rep = await call('GET', API + '/reputation/' + encodeURIComponent(m.source_hub));
  if (current !== m) return;
  const box = $('cap-trust');
  clear(box);
  if (rep.status !== 200) { box.append(el('li', {}, 'no reputation record: ' + refusal(rep))); return; }
  const d = rep.data || {};
  const c = d.components || {};
  const w = d.weights || {};
  box.append(el('li', {}, 'capability trust ' + num(m.trust_score, 3) + ', listing hub ' + num(d.trust_score, 3) +
    (d.passes_floor ? ' (passes this hub\'s floor)' : ' (below this hub\'s floor)')));
  for (const k of Object.keys(c)) {
    box.append(el('li', { 'data-component': k }, k + ': ' + num(c[k], 3) +
      (typeof w[k] === 'number' ? ' (weight ' + num(w[k], 2) + ')' : '')));
  }
  if (d.formula) box.append(el('li', {}, d.formula));
}

function explain402(r) {
  const box = $('cap-explain');
  clear(box);
  let hub = null;
  try { hub = JSON.parse(r.headers.get('X-AIMarket-Hub-Payment') || 'null'); } catch (_) { hub = null; }
  const ways = r.headers.get('X-AIMarket-Payment-Ways') || '';
  box.append(el('strong', {}, 'Payment required (402).'), ' This capability is priced; nothing was charged.');
  const list = el('ul');
  if (hub) {
    list.append(el('li', {}, 'Pay through this hub: open a payment channel at ' + hub.open + ' and send its id in ' +
      hub.header + ' (and its secret in ' + hub.secret_header + '). This hub debits ' + usd(hub.needed) +
      ' per call: the list price ' + usd(hub.list_price_usd) + ' plus its routing fee ' + usd(hub.routing_fee_usd) +
      ' (' + hub.routing_fee_bps + ' bps).' + (hub.available ? '' : ' (Not available for this provider.)')));
  }
  if (ways) list.append(el('li', {}, 'Ways that can succeed: ' + ways));
  const d = r.data || {};
  if (d.detail) list.append(el('li', {}, 'Provider says: ' + d.detail));
  box.append(list);
  box.hidden = false;
  $('cap-pay').hidden = !(hub && hub.available);
}

async function runCapability() {
  if (!current) return;
  let input;
  try { input = formInput(); } catch (e) { say($('cap-output'), 'input is not valid JSON: ' + e.message, true); return; }
  const headers = {};
  if (channel) {
    headers['X-Payment-Channel'] = channel.channel_id;
    headers['X-Payment-Channel-Secret'] = channel.channel_secret;
  }
  const body = { product_id: current.product_id, capability_id: current.capability_id, source_hub: current.source_hub, input };
  $('cap-paid').hidden = true;
  const r = await call('POST', API + '/invoke', body, headers);
  if (r.status === 402) { explain402(r); say($('cap-output'), JSON.stringify(r.data, null, 2)); return; }
  $('cap-explain').hidden = true;
  if (r.status === 200 && channel) showPaid(r.data || {});
  say($('cap-output'), 'HTTP ' + r.status + '\n' + JSON.stringify(r.data, null, 2), r.status >= 400);
}

// What a channel-funded call cost, from the hub's signed routing receipt.
function showPaid(d) {
  const receipt = d.routing_receipt;
  if (!receipt) return;
  const box = $('cap-paid');
  box.textContent = 'Paid ' + usd(receipt.price_usd) + ' from demo channel ' + channel.channel_id +
    ' (' + (receipt.payment_rail || 'channel') + '); receipt ' + (receipt.nonce || '—') +
    (d.receipt ? ', with the provider\'s receipt' : '') + '.';
  box.hidden = false;
}

async function payWithDemoChannel() {
  const random = new Uint8Array(16);
  crypto.getRandomValues(random);
  const hash = 'demo-' + Array.from(random, b => b.toString(16).padStart(2, '0')).join('');
  const r = await call('POST', API + '/channel/open', { deposit_usd: 1.0, tx_hash: hash });
  if (r.status !== 200 || !r.data || !r.data.channel_id) { say($('cap-output'), 'cannot open a demo channel: ' + refusal(r), true); return; }
  channel = { channel_id: r.data.channel_id, channel_secret: r.data.channel_secret };
  await runCapability();
}

// ---------- federation ----------
function fingerprint(p) { return p.key_fingerprint || '—'; }

function actionButton(label, handler) {
  const b = el('button', { type: 'button', class: 'admin', onclick: handler }, label);
  b.disabled = !token();
  return b;
}

async function act(label, method, path, body) {
  say($('fed-status'), label + '…');
  const r = await admin(method, path, body);
  if (r.status !== 200 && r.status !== 202) { say($('fed-status'), label + ' refused: ' + refusal(r), true); return; }
  say($('fed-status'), label + ' done' + (r.data && r.data.catalog_version !== undefined ? ' (catalog version ' + r.data.catalog_version + ')' : ''));
  await loadFederation();
}

function dropped(p) {
  const r = p.rejected_tools;
  if (!r || !r.count) return '0';
  const details = el('details', {}, el('summary', {}, String(r.count)));
  const list = el('ul');
  for (const t of r.tools) list.append(el('li', {}, '#' + t.index + ' ' + (t.name || '(no name)') + ': ' + t.reason));
  details.append(list);
  return details;
}

async function loadFederation() {
  const r = await call('GET', API + '/federation/peers');
  if (r.status !== 200) { say($('fed-status'), refusal(r), true); return; }
  const peers = $('peers').tBodies[0];
  clear(peers);
  for (const p of r.data.peers) {
    peers.append(el('tr', { 'data-peer': p.url },
      el('td', {}, el('strong', {}, p.name || ''), el('br'), p.url),
      el('td', {}, p.status), el('td', {}, num(p.trust_score, 2)),
      el('td', {}, String(p.capability_count)), el('td', {}, when(p.last_crawl)),
      el('td', {}, p.last_error || ''), el('td', {}, p.key_source || '—'), el('td', {}, fingerprint(p)),
      el('td', {}, dropped(p)),
      el('td', {},
        actionButton('Remove', () => act('remove', 'DELETE', API + '/federation/peers?url=' + encodeURIComponent(p.url))),
        actionButton('Repin', () => {
          const key = prompt('New public key for ' + p.url);
          if (key) act('repin', 'POST', API + '/federation/peers/repin', { url: p.url, public_key: key.trim() });
        }))));
  }
  const pending = $('pending').tBodies[0];
  clear(pending);
  for (const p of r.data.pending) {
    const preview = p.preview && typeof p.preview.capabilities_count === 'number' ? p.preview.capabilities_count : p.capability_count;
    pending.append(el('tr', { 'data-peer': p.url },
      el('td', {}, el('strong', {}, p.name || ''), el('br'), p.url),
      el('td', {}, p.status), el('td', {}, String(preview), previewList(p.preview)), el('td', {}, when(p.first_seen)),
      el('td', {}, p.last_error || ''), el('td', {}, fingerprint(p)),
      el('td', {},
        actionButton('Approve', () => act('approve', 'POST', API + '/federation/peers/approve', { url: p.url })),
        actionButton('Remove', () => act('remove', 'DELETE', API + '/federation/peers?url=' + encodeURIComponent(p.url))))));
  }
  const crawls = await call('GET', API + '/federation/crawls');
  const box = $('crawls');
  clear(box);
  if (crawls.status !== 200) return;
  for (const run of crawls.data.runs) {
    const d = el('details', {}, el('summary', {}, 'run ' + run.run_id + ' — ' + when(run.started_at) + ' — ' + run.status +
      ', ' + run.capabilities_indexed + ' indexed, ' + run.rejected + ' peers refused, ' +
      (run.rejected_tools === null ? '?' : run.rejected_tools) + ' tools dropped'));
    const list = el('ul');
    for (const e of run.errors) list.append(el('li', {}, 'peer ' + e.url + ': ' + e.error));
    for (const t of run.rejected_tools_sample || []) list.append(el('li', {}, 'tool #' + t.index + ' ' + (t.name || '(no name)') + ' of ' + t.peer + ': ' + t.reason));
    d.append(list);
    box.append(d);
  }
}

// A pending peer's catalog preview (unapproved: fetched and verified, not indexed).
function previewList(preview) {
  if (!preview || !Array.isArray(preview.capabilities) || preview.capabilities.length === 0) return null;
  const list = el('ul', { class: 'preview' });
  for (const t of preview.capabilities) {
    list.append(el('li', {}, (t.name || t.capability_id) + ' — ' + usd(t.price_usd) +
      (t.description ? ': ' + t.description : '')));
  }
  return el('details', {}, el('summary', {}, (preview.verified ? 'verified' : 'unverified') + ' preview'), list);
}

// ---------- factory floor ----------
let stream = null;
// Per series ('all', 'capability:<product/capability>', 'provider:<origin>'): minute (ms) ->
// {calls, revenue}; and per capability and provider: totals.
const series = new Map();
const totals = { calls: 0, success: 0, pending: 0, revenue: 0 };
const byCapability = new Map();
const byProvider = new Map();

function bump(map, key, e) {
  const t = map.get(key) || { calls: 0, revenue: 0 };
  t.calls += 1; t.revenue += e.price_usd || 0;
  map.set(key, t);
}

function record(e) {
  totals.calls += 1;
  if (e.outcome === 'success') totals.success += 1;
  if (e.outcome === 'payment_required') totals.pending += 1;
  totals.revenue += e.price_usd || 0;
  const at = Date.parse(e.timestamp) || Date.now();
  const minute = Math.floor(at / 60000) * 60000;
  const capability = e.product_id + ' / ' + e.capability_id;
  const provider = e.source_hub || '—';
  bump(byCapability, capability, e);
  bump(byProvider, provider, e);
  for (const name of ['all', 'capability:' + capability, 'provider:' + provider]) {
    if (!series.has(name)) {
      series.set(name, new Map());
      if (name !== 'all') $('chart-by').append(el('option', { value: name }, name.replace(':', ': ')));
    }
    bump(series.get(name), minute, e);
  }
}

function breakdown(table, map) {
  const body = $(table).tBodies[0];
  clear(body);
  const rows = [...map.entries()].sort((a, b) => b[1].revenue - a[1].revenue || b[1].calls - a[1].calls);
  for (const [key, t] of rows.slice(0, 20)) {
    body.append(el('tr', {}, el('td', {}, key), el('td', {}, String(t.calls)), el('td', {}, usd(t.revenue))));
  }
}

function feedRow(e) {
  const feed = $('feed').tBodies[0];
  feed.prepend(el('tr', { class: 'event' },
    el('td', {}, when(e.timestamp)), el('td', {}, e.product_id + ' / ' + e.capability_id),
    el('td', {}, e.source_hub), el('td', {}, e.outcome + ' (' + e.status + ')'),
    el('td', {}, e.latency_ms + ' ms'), el('td', {}, usd(e.price_usd))));
  while (feed.rows.length > 100) feed.deleteRow(feed.rows.length - 1);
}

function counters() {
  $('c-calls').textContent = totals.calls;
  $('c-success').textContent = totals.success;
  $('c-402').textContent = totals.pending;
  $('c-revenue').textContent = totals.revenue.toFixed(6);
  breakdown('by-capability', byCapability);
  breakdown('by-provider', byProvider);
}

function draw() {
  const canvas = $('chart');
  const g = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, pad = 24;
  g.clearRect(0, 0, w, h);
  const now = Math.floor(Date.now() / 60000) * 60000;
  const slots = [];
  const minutes = series.get($('chart-by').value) || new Map();
  for (let i = 29; i >= 0; i--) slots.push(minutes.get(now - i * 60000) || { calls: 0, revenue: 0 });
  const maxCalls = Math.max(1, ...slots.map(s => s.calls));
  const maxRevenue = Math.max(1e-9, ...slots.map(s => s.revenue));
  const bw = (w - 2 * pad) / slots.length;
  g.fillStyle = '#7aa2f7';
  slots.forEach((s, i) => {
    const bh = (h - 2 * pad) * s.calls / maxCalls;
    g.fillRect(pad + i * bw + 1, h - pad - bh, bw - 2, bh);
  });
  g.strokeStyle = '#e0803a'; g.lineWidth = 2; g.beginPath();
  slots.forEach((s, i) => {
    const x = pad + i * bw + bw / 2, y = h - pad - (h - 2 * pad) * s.revenue / maxRevenue;
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
  g.fillStyle = '#1d2330'; g.font = '12px system-ui';
  g.fillText('max ' + maxCalls + ' calls/min, $' + maxRevenue.toFixed(6) + '/min', pad, 14);
}

async function startFloor() {
  if (stream) return;
  const r = await call('GET', API + '/stats/live?limit=200');
  if (r.status === 200) {
    for (const e of r.data.events.slice().reverse()) { record(e); feedRow(e); }
  }
  counters(); draw();
  stream = new EventSource(API + '/stats/live');
  stream.addEventListener('open', () => { $('c-stream').textContent = 'live'; });
  stream.addEventListener('error', () => { $('c-stream').textContent = 'reconnecting…'; });
  stream.addEventListener('invocation', (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch (_) { return; }
    record(e); feedRow(e); counters(); draw();
  });
  setInterval(draw, 15000);
}

// ---------- plugins and health ----------
async function loadPlugins() {
  const health = await call('GET', API + '/health');
  $('health').textContent = JSON.stringify(health.data, null, 2);
  const r = await call('GET', API + '/plugins');
  if (r.status !== 200) return;
  const chain = $('chain').tBodies[0];
  clear(chain);
  r.data.plugins.forEach((p, i) => chain.append(el('tr', {},
    el('td', {}, String(i + 1)), el('td', {}, p.name), el('td', {}, (p.hooks || []).join(', ')),
    el('td', {}, String(p.enabled)), el('td', {}, el('pre', {}, JSON.stringify(p.settings, null, 2))))));
  const available = $('available').tBodies[0];
  clear(available);
  for (const p of r.data.available || []) available.append(el('tr', { 'data-plugin': p.name },
    el('td', {}, p.name), el('td', {}, p.hooks.join(', ')), el('td', {}, p.summary),
    el('td', {}, el('details', {}, el('summary', {}, 'schema'), el('pre', {}, JSON.stringify(p.settings_schema, null, 2))))));
}

// ---------- wiring ----------
document.addEventListener('DOMContentLoaded', () => {
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('token').value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    tokenState();
    if (!$('federation').hidden) loadFederation();
  });
  $('token-forget').addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); tokenState(); loadFederation(); });
  $('search-form').addEventListener('submit', search);
  $('cap-run').addEventListener('click', runCapability);
  $('cap-pay').addEventListener('click', payWithDemoChannel);
  $('chart-by').addEventListener('change', draw);
  $('crawl-now').addEventListener('click', () => act('crawl', 'POST', API + '/federation/crawl'));
  $('seed-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const url = $('seed-url').value.trim();
    const key = $('seed-key').value.trim();
    if (url) act('add seed', 'POST', API + '/federation/seeds', key ? { url, public_key: key } : { url });
  });
  window.addEventListener('hashchange', show);
  tokenState();
  show();
  search();
});
