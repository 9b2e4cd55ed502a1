// Millwright dashboard: a single-page application over the HTTP API.
// Plain JavaScript, no build step, no library: pages are built with h(),
// charts are inline SVG drawn by lineChart(). The session token from
// POST /api/auth/login is kept in sessionStorage (gone with the tab).
'use strict';

const S = {
  token: sessionStorage.getItem('mw.token'),
  timers: [],
  gen: 0, // bumped at every navigation: late answers of old pages are dropped
};

// ------------------------------------------------------------ helpers

function h(tag, attrs, ...kids) {
  const svg = ['svg', 'path', 'line', 'text', 'g', 'rect', 'title', 'circle'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel, root) => (root || document).querySelector(sel);
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : '—');
const fmtNum = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? v.toLocaleString() : v.toFixed(2)) : String(v));
const fmtBytes = (b) => {
  if (typeof b !== 'number') return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
};
const enc = encodeURIComponent;

function toast(msg) {
  const t = $('#toast');
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toast.t);
  toast.t = setTimeout(() => t.classList.remove('show'), 4000);
}

// Runs fn now and every ms until the page changes.
function every(ms, fn) {
  const gen = S.gen;
  const run = async () => {
    if (gen !== S.gen) return;
    try { await fn(); } catch (e) { if (!(e instanceof Gone)) console.warn(e); }
  };
  run();
  S.timers.push(setInterval(run, ms));
}

class Gone extends Error {}

class Problem extends Error {
  constructor(status, doc) {
    super(doc && (doc.detail || doc.title) ? `${doc.detail || doc.title}` : `HTTP ${status}`);
    this.status = status;
    this.doc = doc || {};
  }
}

// Calls the API; answers the parsed JSON (null for 204) or throws Problem.
async function api(method, path, body, headers) {
  const gen = S.gen;
  const init = { method, headers: Object.assign({}, headers) };
  if (S.token) init.headers.Authorization = `Bearer ${S.token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
  if (r.status === 401 && path !== '/api/auth/login') {
    logout(false);
    throw new Gone('logged out');
  }
  if (!r.ok) throw new Problem(r.status, data);
  if (gen !== S.gen && method === 'GET') throw new Gone('page changed');
  return data;
}

function problemBox(e) {
  if (e instanceof Gone) return null;
  const d = e.doc || {};
  return h('p', { class: 'problem', role: 'alert' },
    `${e.status ? e.status + ' ' : ''}${d.code ? d.code + ': ' : ''}${e.message}${d.field ? ` (${d.field})` : ''}`);
}

function show(container, e) {
  container.replaceChildren(problemBox(e) || '');
}

function logout(callApi) {
  if (callApi && S.token) fetch('/api/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${S.token}` } }).catch(() => {});
  S.token = null;
  sessionStorage.removeItem('mw.token');
  sessionStorage.removeItem('mw.user');
  location.hash = '#/login';
  route();
}

function page(title, ...kids) {
  const m = $('#main');
  document.title = `${title} · Millwright`;
  m.replaceChildren(h('h1', { text: title }), ...kids);
  return m;
}

function table(headers, rows, caption) {
  return h('div', { class: 'scroll' },
    h('table', {},
      caption ? h('caption', { class: 'muted', text: caption }) : null,
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', class: x.num ? 'num' : null }, x.label || x)))),
      h('tbody', {}, rows)));
}

// ------------------------------------------------------------ the chart

// A line chart of points [{ts, value}] as an SVG element: the path is one
// "M x y L x y ..." over a time axis [t0, t1] and a value axis padded
// around the data, with grid lines and labels. No library.
function lineChart(points, t0, t1, label) {
  const W = 800, H = 260, L = 56, R = 12, T = 12, B = 28;
  const svg = h('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
  svg.append(h('title', { text: label }));
  const vals = points.map((p) => p.value).filter((v) => typeof v === 'number' && isFinite(v));
  let lo = vals.length ? Math.min(...vals) : 0;
  let hi = vals.length ? Math.max(...vals) : 1;
  if (hi === lo) { hi += 1; lo -= 1; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    svg.append(h('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(h('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', text: Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2) }));
  }
  const span = t1 - t0;
  const tfmt = (t) => {
    const d = new Date(t);
    return span > 2 * 86400e3 ? `${d.getMonth() + 1}/${d.getDate()}` : d.toTimeString().slice(0, 5);
  };
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (span * i) / 4;
    svg.append(h('text', { x: x(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle', text: tfmt(t) }));
  }
  svg.append(h('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }));
  svg.append(h('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  let d = '';
  let pen = 'M';
  let prev = null;
  const gap = points.length > 1 ? 3 * Math.max(1, (points[points.length - 1].ts - points[0].ts) / (points.length - 1)) : Infinity;
  for (const p of points) {
    if (typeof p.value !== 'number' || !isFinite(p.value)) { pen = 'M'; continue; }
    if (prev !== null && p.ts - prev > gap) pen = 'M'; // a hole in the data stays a hole
    d += `${pen}${x(p.ts).toFixed(1)} ${y(p.value).toFixed(1)} `;
    pen = 'L';
    prev = p.ts;
  }
  svg.append(h('path', { class: 'line', id: 'chart-line', d: d.trim(), 'data-points': points.length }));
  if (points.length === 1) {
    svg.append(h('circle', { cx: x(points[0].ts), cy: y(points[0].value), r: 3, fill: '#0b5cad' }));
  }
  return svg;
}

// Ranges and their bucket: at most a few hundred points whatever the
// range, read from rollups for the long ones.
const RANGES = {
  '15m': { ms: 15 * 60e3, bucket: '10s', poll: 5e3 },
  '1h': { ms: 3600e3, bucket: '30s', poll: 10e3 },
  '1d': { ms: 86400e3, bucket: '10m', poll: 60e3 },
  '30d': { ms: 30 * 86400e3, bucket: '6h', poll: 300e3 },
};

// ------------------------------------------------------------ pages

function loginPage() {
  $('#top').hidden = true;
  const err = h('div', { 'aria-live': 'assertive' });
  const form = h('form', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      try {
        const r = await api('POST', '/api/auth/login', { username: fd.get('username'), password: fd.get('password') });
        S.token = r.token;
        sessionStorage.setItem('mw.token', r.token);
        location.hash = '#/fleet';
      } catch (e) {
        show(err, e.status === 401 ? new Problem(401, { detail: 'wrong user name or password' }) : e);
      }
    },
  },
  h('label', {}, 'User name', h('input', { name: 'username', id: 'username', autocomplete: 'username', required: true })),
  h('label', {}, 'Password', h('input', { name: 'password', id: 'password', type: 'password', autocomplete: 'current-password', required: true })),
  h('button', { type: 'submit' }, 'Log in'),
  err);
  const m = page('Log in', h('div', { class: 'card login' }, form));
  m.classList.add('narrow');
  $('#username').focus();
}

async function fleetPage() {
  const tiles = h('div', { class: 'tiles', id: 'fleet-tiles' });
  const alarms = h('div', { class: 'tiles', id: 'alarm-tiles' });
  const rate = h('div', { class: 'tiles' });
  const byType = h('div');
  const err = h('div');
  page('Fleet overview', err,
    h('section', { class: 'card', 'aria-labelledby': 'h-presence' }, h('h2', { id: 'h-presence', text: 'Devices' }), tiles),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-alarms' }, h('h2', { id: 'h-alarms' }, h('a', { href: '#/alarms', text: 'Active alarms' })), alarms),
      h('section', { class: 'card', 'aria-labelledby': 'h-rate' }, h('h2', { id: 'h-rate', text: 'Throughput and storage' }), rate)),
    h('section', { class: 'card', 'aria-labelledby': 'h-types' }, h('h2', { id: 'h-types', text: 'By machine type' }), byType));
  const tile = (n, l, cls, id) => h('div', { class: 'tile' }, h('span', { class: `n ${cls || ''}`, id }, n), h('span', { class: 'l' }, l));
  every(5000, async () => {
    try {
      const [st, types] = await Promise.all([api('GET', '/api/fleet/status'), api('GET', '/api/fleet/status?group_by=type')]);
      const a = st.groups.all || {};
      tiles.replaceChildren(
        tile(fmtNum(a.online || 0), 'online', 'online', 'count-online'),
        tile(fmtNum(a.inactive || 0), 'inactive', 'inactive', 'count-inactive'),
        tile(fmtNum(a.offline || 0), 'offline', 'offline', 'count-offline'),
        tile(fmtNum(a.never_connected || 0), 'never connected', '', 'count-never'),
        tile(fmtNum(a.total || 0), 'registered', '', 'count-total'));
      byType.replaceChildren(table(['type', { label: 'online', num: 1 }, { label: 'inactive', num: 1 }, { label: 'offline', num: 1 }, { label: 'never connected', num: 1 }, { label: 'total', num: 1 }],
        Object.entries(types.groups).map(([k, c]) => h('tr', {},
          h('td', {}, h('a', { href: `#/devices?type=${enc(k)}`, text: k || '(none)' })),
          [c.online, c.inactive, c.offline, c.never_connected, c.total].map((n) => h('td', { class: 'num', text: fmtNum(n) }))))));
      err.replaceChildren();
    } catch (e) { show(err, e); }
    try {
      const c = await api('GET', '/api/alarms/counts');
      alarms.replaceChildren(...['critical', 'major', 'minor', 'warning', 'indeterminate'].map((s) =>
        tile(fmtNum(c.active_by_severity[s] || 0), s, (c.active_by_severity[s] || 0) ? s : '', `alarms-${s}`)),
      tile(fmtNum(c.unacknowledged || 0), 'unacknowledged', '', 'alarms-unack'));
    } catch (e) { alarms.replaceChildren(problemBox(e) || ''); }
    try {
      // Points stored in the last full minute, all devices: the count
      // aggregate over one-minute buckets (the telemetry store's own
      // figure, so it counts MQTT and HTTP ingest alike).
      const now = Date.now();
      const end = Math.floor(now / 60e3) * 60e3;
      const [q, s, sys] = await Promise.all([
        api('GET', `/api/telemetry/query?device=*&agg=count&bucket=60000&group_by=all&start=${end - 60e3}&end=${end}`),
        api('GET', '/api/telemetry/stats'),
        api('GET', '/api/system').catch(() => null),
      ]);
      let n = 0;
      for (const se of q.series || []) for (const p of se.points || []) n += p.value || 0;
      // MQTT messages per second: the broker's received counter between
      // two refreshes.
      let mps = '…';
      const b = sys && sys.broker;
      if (b) {
        if (S.lastRecv && now > S.lastRecv.t) {
          mps = ((b.messages_received - S.lastRecv.n) * 1000 / (now - S.lastRecv.t)).toFixed(1);
        }
        S.lastRecv = { t: now, n: b.messages_received };
      }
      rate.replaceChildren(
        tile(mps, 'MQTT messages per second', '', 'messages-per-second'),
        tile((n / 60).toFixed(1), 'points per second (last full minute)', '', 'points-per-second'),
        tile(fmtNum(s.series), 'series', ''),
        tile(fmtBytes(s.raw_chunk_bytes + s.rollup_chunk_bytes + s.wal_bytes), 'storage used (chunks + WAL)', '', 'storage'),
        tile(fmtNum(s.head_points), 'points in memory', ''));
    } catch (e) { rate.replaceChildren(problemBox(e) || ''); }
  });
}

function parseQuery(hash) {
  const i = hash.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : hash.slice(i + 1));
}

async function devicesPage(q) {
  const form = h('form', { class: 'inline', role: 'search', 'aria-label': 'Filter devices' },
    h('label', {}, 'Id starts with', h('input', { name: 'prefix', id: 'f-prefix', value: q.get('prefix') || '', type: 'search' })),
    h('label', {}, 'Type', h('input', { name: 'type', id: 'f-type', value: q.get('type') || '' })),
    h('label', {}, 'Label (key:value)', h('input', { name: 'label', id: 'f-label', value: q.get('label') || '', placeholder: 'line:3' })),
    h('label', {}, 'State', h('select', { name: 'state', id: 'f-state' },
      ['', 'online', 'offline'].map((s) => h('option', { value: s, selected: (q.get('state') || '') === s }, s || 'any')))),
    h('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    location.hash = `#/devices?${p}`;
  });
  const list = h('div', { 'aria-live': 'polite' });
  const pager = h('div', { class: 'pager' });
  page('Devices', form, list, pager);
  const cursors = [null];
  let pos = 0;
  const load = async () => {
    const p = new URLSearchParams({ limit: '50' });
    for (const k of ['prefix', 'type', 'label', 'state']) if (q.get(k)) p.set(k, q.get(k));
    if (cursors[pos]) p.set('after', cursors[pos]);
    let r;
    try { r = await api('GET', `/api/devices?${p}`); } catch (e) { show(list, e); return; }
    cursors[pos + 1] = r.next;
    list.replaceChildren(r.items.length ? table(['id', 'name', 'type', 'state', 'labels', 'firmware'], r.items.map((d) => h('tr', {},
      h('td', {}, h('a', { href: `#/device/${enc(d.id)}`, text: d.id })),
      h('td', { text: d.name || '' }),
      h('td', { text: d.type || '' }),
      h('td', { class: d.state || (d.connected ? 'online' : 'offline'), text: d.state || (d.connected ? 'online' : 'offline') }),
      h('td', { text: Object.entries(d.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ') }),
      h('td', { text: d.firmware_version || '' }))), `page ${pos + 1}, ${r.items.length} devices`) : h('p', { class: 'muted', text: 'No device matches.' }));
    pager.replaceChildren(
      h('button', { type: 'button', class: 'secondary', disabled: pos === 0, onclick: () => { pos--; load(); } }, 'Previous page'),
      h('span', { class: 'muted', text: `page ${pos + 1}` }),
      h('button', { type: 'button', class: 'secondary', id: 'next-page', disabled: !r.next, onclick: () => { pos++; load(); } }, 'Next page'));
  };
  load();
}

async function devicePage(id) {
  const err = h('div');
  const meta = h('div');
  const presence = h('div', { id: 'presence' });
  const latest = h('div', { id: 'latest' });
  const metricSel = h('select', { id: 'chart-metric', name: 'metric' });
  const rangeSel = h('select', { id: 'chart-range', name: 'range' }, Object.keys(RANGES).map((r) => h('option', { value: r }, r)));
  const chart = h('div', { id: 'chart' });
  const twinDoc = h('pre', { id: 'twin-doc', tabindex: '0', 'aria-label': 'twin document' });
  const twinErr = h('div', { 'aria-live': 'assertive' });
  const desired = h('textarea', { id: 'desired', name: 'desired', rows: 4, spellcheck: 'false' }, '{"speed": 900}');
  const version = h('input', { id: 'twin-version', name: 'version', readonly: true, size: 6 });
  const cmdOut = h('div', { id: 'command-result', 'aria-live': 'polite' });
  page(`Device ${id}`, err, meta,
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-latest' }, h('h2', { id: 'h-latest', text: 'Latest values' }), latest),
      h('section', { class: 'card', 'aria-labelledby': 'h-presence' }, h('h2', { id: 'h-presence', text: 'Presence' }), presence)),
    h('section', { class: 'card', 'aria-labelledby': 'h-chart' }, h('h2', { id: 'h-chart', text: 'Chart' }),
      h('div', { class: 'row' }, h('label', {}, 'Metric', metricSel), h('label', {}, 'Range', rangeSel)), chart),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-twin' }, h('h2', { id: 'h-twin', text: 'Twin' }), twinDoc,
        h('form', { class: 'twin-form', onsubmit: (ev) => { ev.preventDefault(); patchTwin(); } },
          h('label', {}, 'Desired (JSON merge patch)', desired),
          h('div', { class: 'row' }, h('label', {}, 'Based on version', version),
            h('button', { type: 'submit', id: 'apply-desired' }, 'Apply desired'))),
        twinErr),
      h('section', { class: 'card', 'aria-labelledby': 'h-cmd' }, h('h2', { id: 'h-cmd', text: 'Send a command' }),
        h('form', { onsubmit: (ev) => { ev.preventDefault(); sendCommand(ev.target); } },
          h('div', { class: 'row' },
            h('label', {}, 'Method', h('input', { name: 'method', id: 'cmd-method', value: 'ping', required: true, list: 'methods' })),
            h('label', {}, 'Timeout (s)', h('input', { name: 'timeout', type: 'number', min: '1', max: '300', value: '30', size: 4 }))),
          h('datalist', { id: 'methods' }, ['ping', 'get_state', 'set_speed', 'reboot'].map((m) => h('option', { value: m }))),
          h('label', {}, 'Params (JSON)', h('textarea', { name: 'params', id: 'cmd-params', rows: 3, spellcheck: 'false' }, '{}')),
          h('button', { type: 'submit', id: 'send-command' }, 'Send')),
        cmdOut)));

  api('GET', `/api/devices/${enc(id)}`).then((d) => {
    meta.replaceChildren(h('p', { class: 'muted' },
      `${d.name || ''} · type ${d.type || '—'} · ${Object.entries(d.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ')} · firmware ${d.firmware_version || '—'} · ${d.enabled ? 'enabled' : 'disabled'}`));
  }).catch((e) => show(err, e));

  every(5000, async () => {
    const p = await api('GET', `/api/devices/${enc(id)}/presence`).catch((e) => ({ err: e }));
    if (p.err) { show(presence, p.err); } else {
      presence.replaceChildren(h('dl', {},
        h('dt', { text: 'State' }), h('dd', { class: p.state, id: 'presence-state', text: p.state }),
        h('dt', { text: 'Connected now' }), h('dd', { text: p.connected ? 'yes' : 'no' }),
        h('dt', { text: 'Last connected' }), h('dd', { text: fmtTime(p.last_connected) }),
        h('dt', { text: 'Last disconnected' }), h('dd', { text: `${fmtTime(p.last_disconnected)}${p.last_reason ? ` (${p.last_reason})` : ''}` }),
        h('dt', { text: 'Last seen' }), h('dd', { text: fmtTime(p.last_seen) }),
        h('dt', { text: 'Address' }), h('dd', { text: `${p.address || '—'} ${p.protocol || ''}` })));
    }
    const l = await api('GET', `/api/telemetry/latest?device=${enc(id)}`);
    const items = (l.latest || []).sort((a, b) => a.metric.localeCompare(b.metric));
    latest.replaceChildren(items.length ? table(['metric', { label: 'value', num: 1 }, 'time'], items.map((x) => h('tr', {},
      h('td', { text: x.metric }), h('td', { class: 'num', text: fmtNum(x.value) }), h('td', { text: fmtTime(x.ts) })))) : h('p', { class: 'muted', text: 'No telemetry yet.' }));
    const have = [...metricSel.options].map((o) => o.value);
    for (const x of items) {
      if (typeof x.value === 'number' && !have.includes(x.metric)) metricSel.append(h('option', { value: x.metric }, x.metric));
    }
    if (!have.length && metricSel.options.length) {
      if ([...metricSel.options].some((o) => o.value === 'temp')) metricSel.value = 'temp';
      drawChart();
    }
  });

  // The chart: polled at a pace matched to its range.
  let chartTimer = null;
  const drawChart = async () => {
    const metric = metricSel.value;
    if (!metric) return;
    const r = RANGES[rangeSel.value];
    const end = Date.now();
    const start = end - r.ms;
    try {
      const q = await api('GET', `/api/telemetry/query?device=${enc(id)}&metric=${enc(metric)}&agg=avg&bucket=${r.bucket}&start=${start}&end=${end}`);
      const pts = (q.series && q.series[0] && q.series[0].points) || [];
      chart.replaceChildren(lineChart(pts, start, end, `${metric} of ${id}, average per ${r.bucket}, last ${rangeSel.value}`),
        h('p', { class: 'muted', text: `${pts.length} points, average per ${r.bucket} bucket` }));
    } catch (e) { show(chart, e); }
  };
  const restartChart = () => {
    if (chartTimer) clearInterval(chartTimer);
    drawChart();
    chartTimer = setInterval(drawChart, RANGES[rangeSel.value].poll);
    S.timers.push(chartTimer);
  };
  metricSel.addEventListener('change', restartChart);
  rangeSel.addEventListener('change', restartChart);
  restartChart();

  // The twin.
  // The view follows the twin; the version the editor is based on
  // follows it too, except while the user is editing.
  const twinView = (t) => JSON.stringify({ version: t.version, state: t.state, timestamp: t.timestamp }, null, 2);
  const loadTwin = async (force) => {
    const t = await api('GET', `/api/devices/${enc(id)}/twin`);
    twinDoc.textContent = twinView(t);
    if (force === true || ![desired, version].includes(document.activeElement)) version.value = t.version;
  };
  every(3000, loadTwin);
  async function patchTwin() {
    let patch;
    try { patch = JSON.parse(desired.value); } catch (e) {
      twinErr.replaceChildren(h('p', { class: 'problem', role: 'alert', text: `Desired is not JSON: ${e.message}` }));
      return;
    }
    try {
      const body = { desired: patch };
      if (version.value !== '') body.version = Number(version.value);
      const t = await api('PATCH', `/api/devices/${enc(id)}/twin`, body);
      twinDoc.textContent = twinView(t);
      version.value = t.version;
      twinErr.replaceChildren(h('p', { class: 'muted', id: 'twin-ok', text: `Saved as version ${t.version}.` }));
    } catch (e) {
      twinErr.replaceChildren(problemBox(e) || '',
        e.status === 409 ? h('button', { type: 'button', class: 'secondary', onclick: () => loadTwin(true).then(() => twinErr.replaceChildren()) }, 'Reload the twin') : null);
    }
  }

  // Commands: send, then poll until a final status.
  const FINAL = ['succeeded', 'failed', 'timed_out', 'expired', 'cancelled'];
  const showCmd = (c) => cmdOut.replaceChildren(
    h('p', {}, 'Command ', h('code', { text: c.id }), ' ', h('strong', { id: 'command-status', class: c.status === 'succeeded' ? 'online' : FINAL.includes(c.status) ? 'err' : '', text: c.status })),
    h('ol', { class: 'trail', 'aria-label': 'status trail' }, (c.trail || []).map((s) => h('li', { text: `${s.status} at ${fmtTime(s.time)}` }))),
    c.response !== null && c.response !== undefined ? h('pre', { text: JSON.stringify(c.response, null, 2) }) : null,
    c.error ? h('p', { class: 'problem', text: String(c.error) }) : null);
  async function sendCommand(form) {
    const fd = new FormData(form);
    let params;
    try { params = JSON.parse(fd.get('params') || '{}'); } catch (e) {
      cmdOut.replaceChildren(h('p', { class: 'problem', role: 'alert', text: `Params is not JSON: ${e.message}` }));
      return;
    }
    let c;
    try {
      c = await api('POST', `/api/devices/${enc(id)}/commands`, { method: fd.get('method'), params, timeout: Number(fd.get('timeout')) || 30 });
    } catch (e) { show(cmdOut, e); return; }
    showCmd(c);
    const gen = S.gen;
    while (!FINAL.includes(c.status) && gen === S.gen) {
      await new Promise((r) => setTimeout(r, 1000));
      try { c = await api('GET', `/api/devices/${enc(id)}/commands/${enc(c.id)}`); } catch (e) { if (e instanceof Gone) return; show(cmdOut, e); return; }
      showCmd(c);
    }
  }
}

async function alarmsPage(q) {
  const form = h('form', { class: 'inline', 'aria-label': 'Filter alarms' },
    h('label', {}, 'State', h('select', { name: 'state', id: 'a-state' },
      [['active', 'active'], ['active_unack', 'active, unacknowledged'], ['active_ack', 'active, acknowledged'], ['cleared', 'cleared'], ['', 'all']]
        .map(([v, l]) => h('option', { value: v, selected: (q.has('state') ? q.get('state') : 'active') === v }, l)))),
    h('label', {}, 'Severity', h('select', { name: 'severity', id: 'a-severity' },
      ['', 'critical', 'major', 'minor', 'warning', 'indeterminate'].map((s) => h('option', { value: s, selected: (q.get('severity') || '') === s }, s || 'any')))),
    h('label', {}, 'Device', h('input', { name: 'device', value: q.get('device') || '' })),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) p.set(k, v);
    location.hash = `#/alarms?${p}`;
  });
  const list = h('div', { id: 'alarm-list' });
  const msg = h('div', { 'aria-live': 'assertive' });
  page('Alarms', form, msg, list);
  const act = async (a, what) => {
    try {
      await api('POST', `/api/alarms/${enc(a.id)}/${what}`);
      toast(`Alarm ${a.type} of ${a.device_id}: ${what === 'ack' ? 'acknowledged' : 'cleared'}`);
      msg.replaceChildren();
    } catch (e) { show(msg, e); }
    load();
  };
  const load = async () => {
    const p = new URLSearchParams({ limit: '200' });
    const state = q.has('state') ? q.get('state') : 'active';
    if (state) p.set('state', state);
    for (const k of ['severity', 'device']) if (q.get(k)) p.set(k, q.get(k));
    const r = await api('GET', `/api/alarms?${p}`);
    list.replaceChildren(r.items.length ? table(['severity', 'type', 'device', 'state', { label: 'count', num: 1 }, 'last raised', 'rule', 'details', 'actions'],
      r.items.map((a) => h('tr', { 'data-alarm': a.id },
        h('td', { class: a.severity, text: a.severity }),
        h('td', { text: a.type }),
        h('td', {}, h('a', { href: `#/device/${enc(a.device_id)}`, text: a.device_id })),
        h('td', { class: 'alarm-state', text: a.state + (a.acknowledged_by ? ` (by ${a.acknowledged_by})` : '') }),
        h('td', { class: 'num', text: a.count }),
        h('td', { text: fmtTime(a.last_raised) }),
        h('td', { text: a.rule || '' }),
        h('td', {}, h('code', { text: JSON.stringify(a.details) })),
        h('td', {},
          a.state === 'active_unack' || a.state === 'cleared_unack' ? h('button', { type: 'button', class: 'ack', onclick: () => act(a, 'ack') }, 'Acknowledge') : null, ' ',
          a.state.startsWith('active') ? h('button', { type: 'button', class: 'secondary clear', onclick: () => act(a, 'clear') }, 'Clear') : null))))
      : h('p', { class: 'muted', text: 'No alarm matches.' }));
  };
  // Refreshed unless the user is working in the list.
  every(10000, async () => { if (!list.contains(document.activeElement)) await load(); });
}

async function rulesPage() {
  const list = h('div', { id: 'rule-list' });
  const msg = h('div');
  page('Rules', h('p', {}, h('a', { href: '#/rules/new', id: 'new-rule', text: 'New rule' })), msg, list);
  const load = async () => {
    const r = await api('GET', '/api/rules');
    list.replaceChildren(table(['name', 'enabled', 'FROM / WHERE', { label: 'evaluations', num: 1 }, { label: 'matches', num: 1 }, { label: 'errors', num: 1 }, { label: 'action failures', num: 1 }, { label: 'avg µs', num: 1 }, ''],
      r.items.map((x) => h('tr', {},
        h('td', {}, h('a', { href: `#/rules/edit/${enc(x.name)}`, text: x.name })),
        h('td', { text: x.enabled ? 'yes' : 'no' }),
        h('td', {}, h('code', { text: x.sql })),
        ['evaluations', 'matches', 'errors', 'action_failures', 'avg_eval_us'].map((k) => h('td', { class: 'num', text: fmtNum(x.metrics[k]) })),
        h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: async () => {
          try { await api('POST', `/api/rules/${enc(x.name)}/${x.enabled ? 'disable' : 'enable'}`); load(); } catch (e) { show(msg, e); }
        } }, x.enabled ? 'Disable' : 'Enable')))),
      r.dropped ? `${r.dropped} messages dropped by a full engine queue` : null));
  };
  every(5000, async () => { if (!list.contains(document.activeElement)) await load(); });
}

async function ruleEditPage(name) {
  const isNew = !name;
  const sql = h('textarea', { id: 'rule-sql', name: 'sql', rows: 5, spellcheck: 'false', 'aria-describedby': 'sql-problem' });
  const form = h('form', { id: 'rule-form' },
    h('div', { class: 'row' },
      h('label', {}, 'Name', h('input', { name: 'name', id: 'rule-name', required: true, readonly: !isNew, value: name || '' })),
      h('label', {}, 'Description', h('input', { name: 'description', id: 'rule-description', size: 50 })),
      h('label', {}, 'Enabled', h('input', { type: 'checkbox', name: 'enabled', id: 'rule-enabled', checked: true }))),
    h('label', {}, 'SQL', sql),
    h('div', { id: 'sql-problem', 'aria-live': 'assertive' }),
    h('label', {}, 'Actions (JSON array)', h('textarea', { id: 'rule-actions', name: 'actions', rows: 6, spellcheck: 'false' }, '[]')),
    h('div', { class: 'row' },
      h('button', { type: 'button', id: 'rule-validate', onclick: () => save(true) }, 'Validate'),
      h('button', { type: 'submit', id: 'rule-save' }, 'Save'),
      isNew ? null : h('button', { type: 'button', class: 'secondary', onclick: del }, 'Delete')),
    h('div', { id: 'rule-msg', 'aria-live': 'polite' }));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); save(false); });
  const dry = h('form', { id: 'dry-run' },
    h('label', {}, 'Topic', h('input', { name: 'topic', id: 'dry-topic', value: 'devices/demo-0001/telemetry', size: 40 })),
    h('label', {}, 'Payload (JSON)', h('textarea', { name: 'payload', id: 'dry-payload', rows: 3, spellcheck: 'false' }, '{"temp": 95, "rpm": 1500}')),
    h('button', { type: 'submit' }, 'Dry run'),
    h('pre', { id: 'dry-result', tabindex: '0', 'aria-label': 'dry-run result' }));
  const traces = h('div', { id: 'traces' });
  page(isNew ? 'New rule' : `Rule ${name}`,
    h('p', {}, h('a', { href: '#/rules', text: '← all rules' })),
    h('section', { class: 'card' }, form),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-dry' }, h('h2', { id: 'h-dry', text: 'Dry run (no side effects)' }), dry),
      isNew ? null : h('section', { class: 'card', 'aria-labelledby': 'h-traces' }, h('h2', { id: 'h-traces', text: 'Recent evaluations' }),
        h('button', { type: 'button', class: 'secondary', onclick: () => loadTraces() }, 'Refresh'), traces)));
  const F = (n) => form.elements[n];
  if (!isNew) {
    try {
      const r = await api('GET', `/api/rules/${enc(name)}`);
      F('description').value = r.description || '';
      sql.value = r.sql;
      F('actions').value = JSON.stringify(r.actions, null, 2);
      F('enabled').checked = r.enabled;
    } catch (e) { show($('#rule-msg'), e); }
  } else {
    sql.value = "SELECT temp, device_id() AS device FROM 'devices/+/telemetry' WHERE temp > 85";
  }
  const definition = () => {
    let actions;
    try { actions = JSON.parse(F('actions').value || '[]'); } catch (e) { throw new Problem(0, { detail: `actions are not JSON: ${e.message}`, field: 'actions' }); }
    const d = { name: F('name').value, sql: sql.value, actions, enabled: F('enabled').checked };
    if (F('description').value) d.description = F('description').value;
    return d;
  };
  // A 400 naming `sql` says "line N, column M: ...": shown under the
  // editor with that line of the statement highlighted.
  const showProblem = (e) => {
    const box = $('#sql-problem');
    sql.removeAttribute('aria-invalid');
    box.replaceChildren();
    if (!e) return;
    const d = e.doc || {};
    const m = /line (\d+), column (\d+)/.exec(d.detail || '');
    if (d.field === 'sql' && m) {
      const line = Number(m[1]);
      sql.setAttribute('aria-invalid', 'true');
      box.append(h('p', { class: 'problem', role: 'alert', id: 'sql-error', text: d.detail }),
        h('div', { class: 'sqlview', 'aria-label': 'SQL with the error line marked' }, sql.value.split('\n').map((l, i) => [
          h('div', { class: i + 1 === line ? 'bad' : null, 'data-line': i + 1, text: `${String(i + 1).padStart(3)}  ${l || ' '}` }),
          i + 1 === line ? h('div', { class: 'caret', 'aria-hidden': 'true', text: `${' '.repeat(5 + Math.max(0, Number(m[2]) - 1))}^` }) : null])));
      const lines = sql.value.split('\n');
      let off = 0;
      for (let i = 0; i < line - 1 && i < lines.length; i++) off += lines[i].length + 1;
      off += Math.max(0, Number(m[2]) - 1);
      sql.focus();
      sql.setSelectionRange(off, off);
    } else {
      box.append(problemBox(e) || '');
    }
  };
  async function save(validateOnly) {
    const out = $('#rule-msg');
    out.replaceChildren();
    let d;
    try { d = definition(); } catch (e) { showProblem(e); return; }
    try {
      if (validateOnly) await api('POST', '/api/rules/validate', d);
      else if (isNew) await api('POST', '/api/rules', d);
      else await api('PUT', `/api/rules/${enc(name)}`, d);
      showProblem(null);
      out.replaceChildren(h('p', { class: 'online', id: 'rule-ok', text: validateOnly ? 'Valid.' : 'Saved.' }));
      if (!validateOnly && isNew) location.hash = `#/rules/edit/${enc(d.name)}`;
    } catch (e) { showProblem(e); }
  }
  async function del() {
    if (!confirm(`Delete rule ${name}?`)) return;
    try { await api('DELETE', `/api/rules/${enc(name)}`); location.hash = '#/rules'; } catch (e) { show($('#rule-msg'), e); }
  }
  dry.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = $('#dry-result');
    let payload;
    try { payload = JSON.parse(dry.elements.payload.value); } catch (_) { payload = dry.elements.payload.value; }
    try {
      const r = await api('POST', '/api/rules/dry-run', { definition: definition(), topic: dry.elements.topic.value, payload });
      showProblem(null);
      out.textContent = JSON.stringify(r, null, 2);
    } catch (e) { out.textContent = ''; showProblem(e); }
  });
  async function loadTraces() {
    try {
      const r = await api('GET', `/api/rules/${enc(name)}/traces`);
      traces.replaceChildren(r.items.length ? table(['time', 'topic', 'matched', 'outputs', 'actions', { label: 'µs', num: 1 }],
        r.items.slice(0, 50).map((t) => h('tr', {},
          h('td', { text: fmtTime(t.time) }), h('td', { text: t.topic }),
          h('td', { class: t.matched ? 'online' : '', text: t.error ? `error: ${t.error}` : t.matched ? 'yes' : 'no' }),
          h('td', {}, h('code', { text: JSON.stringify(t.outputs) })),
          h('td', { text: (t.actions || []).map((a) => `${a.type}: ${a.ok ? 'ok' : 'failed'}${a.detail ? ` (${a.detail})` : ''}`).join('; ') }),
          h('td', { class: 'num', text: t.latency_us }))))
        : h('p', { class: 'muted', text: 'No evaluation yet.' }));
    } catch (e) { show(traces, e); }
  }
  if (!isNew) loadTraces();
}

async function systemPage() {
  const version = ($('meta[name="millwright-version"]') || {}).content || '?';
  const stats = h('div', { id: 'tsdb-stats' });
  const live = h('div');
  const broker = h('div', { id: 'broker-figures' });
  page('System',
    h('section', { class: 'card' }, h('h2', { text: 'Version' }), h('p', { id: 'version', text: `Millwright ${version}` })),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-st' }, h('h2', { id: 'h-st', text: 'Telemetry store' }), stats),
      h('section', { class: 'card', 'aria-labelledby': 'h-live' }, h('h2', { id: 'h-live', text: 'Connections and rules' }), live)),
    h('section', { class: 'card', 'aria-labelledby': 'h-br' }, h('h2', { id: 'h-br', text: 'Broker' }), broker));
  every(5000, async () => {
    const s = await api('GET', '/api/telemetry/stats');
    const rows = [
      ['series', fmtNum(s.series)], ['raw chunks', fmtNum(s.raw_chunks)], ['raw chunk bytes', fmtBytes(s.raw_chunk_bytes)],
      ['raw chunk points', fmtNum(s.raw_chunk_points)], ['rollup chunks', fmtNum(s.rollup_chunks)], ['rollup chunk bytes', fmtBytes(s.rollup_chunk_bytes)],
      ['write-ahead log', fmtBytes(s.wal_bytes)], ['points in memory (head)', fmtNum(s.head_points)], ['head bytes', fmtBytes(s.head_bytes)],
      ['chunk series decoded (queries)', fmtNum(s.query_work.chunk_series_decoded)], ['chunk summaries used (queries)', fmtNum(s.query_work.chunk_summaries_used)],
      ['rollup series read (queries)', fmtNum(s.query_work.rollup_series_read)],
    ];
    stats.replaceChildren(table(['figure', { label: 'value', num: 1 }], rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', { class: 'num', text: v })))));
    const [st, rules] = await Promise.all([api('GET', '/api/fleet/status'), api('GET', '/api/rules').catch(() => null)]);
    const a = st.groups.all || {};
    const lrows = [['devices connected (online + inactive)', fmtNum((a.online || 0) + (a.inactive || 0))], ['devices registered', fmtNum(a.total || 0)]];
    if (rules) {
      lrows.push(['rules', fmtNum(rules.items.length)], ['rule evaluations', fmtNum(rules.items.reduce((n, r) => n + r.metrics.evaluations, 0))],
        ['messages dropped by the rules queue', fmtNum(rules.dropped || 0)]);
    }
    live.replaceChildren(table(['figure', { label: 'value', num: 1 }], lrows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', { class: 'num', text: v })))));
    const sys = await api('GET', '/api/system').catch(() => null);
    if (sys && sys.broker) {
      const b = sys.broker;
      const brows = [
        ['uptime', `${fmtNum(b.uptime_s)} s`], ['connections', fmtNum(b.connected)], ['sessions', fmtNum(b.sessions)],
        ['subscriptions', fmtNum(b.subscriptions)], ['retained messages', fmtNum(b.retained)],
        ['messages received', fmtNum(b.messages_received)], ['messages sent', fmtNum(b.messages_sent)],
        ['bytes in', fmtBytes(b.bytes_in)], ['bytes out', fmtBytes(b.bytes_out)],
        ['messages dropped (session queues full, expired)', fmtNum(b.messages_dropped)],
        ['QoS 0 dropped (outbound queues full)', fmtNum(b.qos0_dropped)], ['slow clients dropped', fmtNum(b.slow_consumers_dropped)],
        ['connections refused', fmtNum(b.connections_refused)], ['authentications refused', fmtNum(b.auth_refused)],
        ['TLS handshakes failed', fmtNum(b.tls_handshake_failures)], ['platform events dropped', fmtNum(b.platform_events_dropped)],
        ['rule inputs dropped', fmtNum(b.rules_dropped)], ['live streams dropped', fmtNum(b.streams_dropped)],
      ];
      broker.replaceChildren(table(['figure', { label: 'value', num: 1 }], brows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row', text: k }), h('td', { class: 'num', text: v })))));
    } else {
      broker.replaceChildren(h('p', { class: 'muted', text: 'No broker figures from this server.' }));
    }
  });
}

// ------------------------------------------------------------ routing

async function route() {
  S.gen++;
  for (const t of S.timers) clearInterval(t);
  S.timers = [];
  const hash = location.hash || '#/fleet';
  const path = hash.slice(1).split('?')[0];
  const q = parseQuery(hash);
  if (!S.token) {
    if (path !== '/login') { location.hash = '#/login'; return; }
    loginPage();
    return;
  }
  if (path === '/login') { location.hash = '#/fleet'; return; }
  const top = $('#top');
  top.hidden = false;
  const section = '/' + path.split('/')[1];
  for (const a of top.querySelectorAll('nav a')) {
    const target = a.getAttribute('href').slice(1);
    if (target === section || (section === '/device' && target === '/devices')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!sessionStorage.getItem('mw.user')) {
    api('GET', '/api/auth/me').then((me) => {
      sessionStorage.setItem('mw.user', `${me.name} (${me.role})`);
      $('#who').textContent = sessionStorage.getItem('mw.user');
    }).catch(() => {});
  }
  $('#who').textContent = sessionStorage.getItem('mw.user') || '';
  const parts = path.split('/').slice(1).map(decodeURIComponent);
  try {
    if (parts[0] === 'fleet' || parts[0] === '') await fleetPage();
    else if (parts[0] === 'devices') await devicesPage(q);
    else if (parts[0] === 'device' && parts[1]) await devicePage(parts[1]);
    else if (parts[0] === 'alarms') await alarmsPage(q);
    else if (parts[0] === 'rules' && parts[1] === 'new') await ruleEditPage(null);
    else if (parts[0] === 'rules' && parts[1] === 'edit' && parts[2]) await ruleEditPage(parts[2]);
    else if (parts[0] === 'rules') await rulesPage();
    else if (parts[0] === 'system') await systemPage();
    else page('Not found', h('p', {}, 'No such page. ', h('a', { href: '#/fleet', text: 'Fleet overview' })));
  } catch (e) {
    if (!(e instanceof Gone)) $('#main').append(problemBox(e) || '');
  }
  $('#main').focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', () => {
  $('#logout').addEventListener('click', () => logout(true));
  route();
});
