/* Warren management UI: plain ES2020, no framework, no build step.
 *
 * Talks to the management HTTP API (RabbitMQ 3.10's paths and JSON shapes)
 * under api/, relative to the page, with HTTP basic auth kept in
 * sessionStorage.  Sections, in order:
 *   settings, DOM helpers, formatting, message area, API client, session,
 *   components (table, forms, dialog, publish form), charts, overview
 *   sampler, views (one object per view), router and refresh loop, boot.
 */
'use strict';

// ---------------------------------------------------------------- settings

const Settings = {
  get auth() { return sessionStorage.getItem('warren.auth'); },
  set auth(v) { v ? sessionStorage.setItem('warren.auth', v) : sessionStorage.removeItem('warren.auth'); },
  get user() { return JSON.parse(sessionStorage.getItem('warren.user') || 'null'); },
  set user(v) { sessionStorage.setItem('warren.user', JSON.stringify(v)); },
  get vhost() { return sessionStorage.getItem('warren.vhost') || ''; },
  set vhost(v) { sessionStorage.setItem('warren.vhost', v); },
  get refresh() { const v = localStorage.getItem('warren.refresh'); return v === null ? 5 : Number(v); },
  set refresh(v) { localStorage.setItem('warren.refresh', String(v)); },
};

// ------------------------------------------------------------- DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);

function isAttrs(x) {
  return x != null && typeof x === 'object' && !(x instanceof Node) && !Array.isArray(x);
}

function appendKids(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k == null || k === false) continue;
    el.append(k instanceof Node ? k : String(k));
  }
  return el;
}

/** h('tag', {attrs, onclick: fn}, ...children): an HTML element. */
function h(tag, attrs, ...kids) {
  if (!isAttrs(attrs)) { kids.unshift(attrs); attrs = {}; }
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') el.style.cssText = v; // CSSOM: allowed under a strict CSP
    else el.setAttribute(k, v === true ? '' : v);
  }
  return appendKids(el, kids);
}

/** s('tag', {attrs}, ...children): an SVG element. */
function s(tag, attrs = {}, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'style') el.style.cssText = v;
    else if (v != null) el.setAttribute(k, v);
  }
  return appendKids(el, kids);
}

// -------------------------------------------------------------- formatting

const nf = new Intl.NumberFormat();
const fmt = {
  num: (n) => (typeof n === 'number' ? nf.format(n) : '–'),
  rate: (n) => (typeof n === 'number' ? `${n.toFixed(n >= 100 ? 0 : 1)}/s` : '–'),
  bytes(n) {
    if (typeof n !== 'number') return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
  },
  duration(ms) {
    if (typeof ms !== 'number') return '–';
    const sec = Math.floor(ms / 1000), d = Math.floor(sec / 86400), hr = Math.floor(sec / 3600) % 24;
    const m = Math.floor(sec / 60) % 60;
    if (d) return `${d}d ${hr}h`;
    if (hr) return `${hr}h ${m}m`;
    return m ? `${m}m ${sec % 60}s` : `${sec}s`;
  },
  json: (v) => (v && typeof v === 'object' && Object.keys(v).length ? JSON.stringify(v) : ''),
  time: (t, seconds = true) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: seconds ? '2-digit' : undefined, hourCycle: 'h23' }),
  exchange: (name) => (name === '' ? '(AMQP default)' : name),
};

/** The rate of message_stats[key], or undefined. */
const rateOf = (obj, key) => obj?.message_stats?.[`${key}_details`]?.rate;

function badge(text, cls = '') { return h('span', { class: `badge ${cls}`, title: text }, text); }

function features(o) {
  const out = [];
  if (o.durable) out.push(badge('D', 'info'));
  if (o.auto_delete) out.push(badge('AD'));
  if (o.exclusive) out.push(badge('Excl'));
  if (o.internal) out.push(badge('I'));
  if (o.arguments && Object.keys(o.arguments).length) out.push(h('span', { class: 'badge', title: JSON.stringify(o.arguments) }, 'Args'));
  if (o.policy) out.push(badge(`Pol: ${o.policy}`, 'accent'));
  return h('span', { class: 'features' }, out);
}

/** A small key/value table for an object (arguments, properties, node info). */
function kvTable(obj, empty = 'none') {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h('span', { class: 'muted' }, empty);
  return h('table', { class: 'kv' }, entries.map(([k, v]) =>
    h('tr', h('th', k), h('td', typeof v === 'object' && v !== null ? h('code', JSON.stringify(v)) : String(v)))));
}

// ------------------------------------------------------------ message area

const Notify = {
  show(text, kind) {
    // inside an open dialog, show it there (the dialog covers the page)
    const box = $('#dialog').open ? $('#dialog .dialog-msgs') : $('#messages');
    const old = [...box.children].find((m) => m.dataset.text === text);
    if (old) old.remove();
    const msg = h('div', { class: `msg ${kind}`, role: kind === 'error' ? 'alert' : 'status', dataset: { text } },
      h('span', text), h('button', { class: 'close', 'aria-label': 'Dismiss', onclick: () => msg.remove() }, '×'));
    box.prepend(msg);
    while (box.children.length > 4) box.lastChild.remove();
    if (kind === 'ok') setTimeout(() => msg.remove(), 5000);
  },
  error(e) { Notify.show(e instanceof Error ? e.message : String(e), 'error'); },
  ok(text) { Notify.show(text, 'ok'); },
  /** Removes all messages, or those of one kind. */
  clear(kind) { $('#messages').querySelectorAll(kind ? `.msg.${kind}` : '.msg').forEach((m) => m.remove()); },
};

/** Runs an async action, reporting failure (and success, if okText). */
async function act(fn, okText) {
  try {
    const r = await fn();
    if (okText) Notify.ok(typeof okText === 'function' ? okText(r) : okText);
    return r;
  } catch (e) {
    if (!(e instanceof LoggedOut)) Notify.error(e);
    return undefined;
  }
}

// -------------------------------------------------------------- API client

class ApiError extends Error {
  constructor(status, body, path) {
    const reason = body && (body.reason || body.error);
    super(reason ? `${reason} (HTTP ${status})` : `HTTP ${status} for ${path}`);
    this.status = status;
    this.body = body;
  }
}
class LoggedOut extends Error {}

/** path`/queues/${vhost}/${name}`: each value percent-encoded as one segment. */
const path = (strings, ...vals) => strings.reduce((acc, str, i) =>
  acc + str + (i < vals.length ? encodeURIComponent(vals[i]) : ''), '');

function basicAuth(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

const api = {
  async raw(method, p, { body, headers = {}, auth = Settings.auth } = {}) {
    // (*/* too: RabbitMQ answers DELETE .../contents with 406 to a bare application/json)
    const init = { method, credentials: 'omit', headers: { Accept: 'application/json, */*;q=0.5', ...headers } };
    if (auth) init.headers.Authorization = auth;
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    const res = await fetch(`api${p}`, init);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { reason: text.slice(0, 200) }; }
    return { res, data };
  },
  async request(method, p, body, headers) {
    const { res, data } = await api.raw(method, p, { body, headers });
    if (res.ok) return data;
    // 401 means either bad credentials or a missing right: ask whoami which.
    if (res.status === 401 && p !== '/whoami') {
      const who = await api.raw('GET', '/whoami');
      if (who.res.status === 401) {
        Session.logout((who.data && who.data.reason) || 'Your session has expired, please log in again.');
        throw new LoggedOut();
      }
    }
    throw new ApiError(res.status, data, p);
  },
  get: (p) => api.request('GET', p),
  put: (p, body = {}) => api.request('PUT', p, body),
  post: (p, body = {}) => api.request('POST', p, body),
  del: (p, headers) => api.request('DELETE', p, undefined, headers),
};

/** `/queues` or `/queues/<vhost>` for the vhost filter (empty: all). */
const scoped = (base, vhost = Settings.vhost) => (vhost ? `${base}/${encodeURIComponent(vhost)}` : base);

// ----------------------------------------------------------------- session

const Session = {
  vhosts: [],

  async login(username, password) {
    const auth = basicAuth(username, password);
    const { res, data } = await api.raw('GET', '/whoami', { auth });
    if (!res.ok) throw new Error((data && data.reason) || `Login failed (HTTP ${res.status})`);
    Settings.auth = auth;
    Settings.user = data;
    await Session.start();
  },

  logout(reason) {
    Settings.auth = null;
    App.stop();
    $('#app').hidden = true;
    $('#login').hidden = false;
    const err = $('#login-error');
    err.textContent = reason || '';
    err.hidden = !reason;
    $('#login-password').value = '';
    $('#login-username').focus();
  },

  tags() {
    const t = Settings.user?.tags ?? [];
    return Array.isArray(t) ? t : String(t).split(',').map((x) => x.trim()).filter(Boolean);
  },

  async loadVhosts() {
    const list = (await act(() => api.get('/vhosts'))) || [];
    Session.vhosts = list.map((v) => v.name).sort();
    const sel = $('#vhost-filter');
    if (Settings.vhost && !Session.vhosts.includes(Settings.vhost)) Settings.vhost = '';
    sel.replaceChildren(h('option', { value: '' }, 'All'),
      ...Session.vhosts.map((v) => h('option', { value: v, selected: v === Settings.vhost }, v)));
  },

  async start() {
    $('#login').hidden = true;
    $('#app').hidden = false;
    const user = Settings.user;
    $('#whoami').textContent = `${user.name}${Session.tags().length ? ` (${Session.tags().join(', ')})` : ''}`;
    const admin = Session.tags().some((t) => t === 'administrator' || t === 'policymaker');
    $('[data-nav="admin"]').hidden = !admin;
    await Session.loadVhosts();
    App.start();
  },
};

// -------------------------------------------------------------- components

/** A sortable, optionally filterable table that keeps its state across refreshes. */
class DataTable {
  constructor(columns, { empty = 'Nothing to show', filter } = {}) {
    this.columns = columns;
    this.empty = empty;
    this.filterFn = filter;
    this.rows = [];
    this.filterText = '';
    this.sortCol = -1;
    this.dir = 1;
    this.last = null;
    this.tbody = h('tbody');
    this.heads = columns.map((c, i) => h('th', {
      class: c.num ? 'num' : null,
      onclick: c.value ? () => this.sortBy(i) : null,
    }, c.title));
    this.el = h('div', { class: 'table-wrap' }, h('table', { class: 'data' }, h('thead', h('tr', this.heads)), this.tbody));
  }

  update(rows) {
    const key = JSON.stringify(rows);
    if (key === this.last) return;
    this.last = key;
    this.rows = rows || [];
    this.render();
  }

  sortBy(i) {
    this.dir = this.sortCol === i ? -this.dir : 1;
    this.sortCol = i;
    this.heads.forEach((th, j) => { th.dataset.sort = j === i ? (this.dir > 0 ? 'asc' : 'desc') : ''; });
    this.render();
  }

  setFilter(text) { this.filterText = text.toLowerCase(); this.render(); }

  render() {
    let rows = this.rows;
    if (this.filterText && this.filterFn) rows = rows.filter((r) => this.filterFn(r).toLowerCase().includes(this.filterText));
    const col = this.columns[this.sortCol];
    if (col) {
      rows = [...rows].sort((a, b) => {
        const x = col.value(a), y = col.value(b);
        return (typeof x === 'number' && typeof y === 'number' ? x - y : String(x ?? '').localeCompare(String(y ?? ''))) * this.dir;
      });
    }
    this.tbody.replaceChildren(...(rows.length
      ? rows.map((r) => h('tr', this.columns.map((c) =>
        h('td', { class: c.num ? 'num' : null }, c.render ? c.render(r) : c.value(r)))))
      : [h('tr', h('td', { class: 'empty', colspan: this.columns.length }, this.empty))]));
  }
}

/** A list view's toolbar: a filter box wired to a DataTable, plus extras. */
function toolbar(table, ...extras) {
  const box = h('input', { type: 'search', placeholder: 'Filter by name…', class: 'filter', oninput: () => table.setFilter(box.value) });
  return h('div', { class: 'toolbar' }, box, extras);
}

function field(label, input, hint) {
  return h('label', { class: 'field' }, h('span', label), input, hint ? h('small', hint) : null);
}

function select(name, options, value) {
  return h('select', { name }, options.map((o) => {
    const [v, label] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: v === value }, label);
  }));
}

function vhostSelect(name = 'vhost') {
  return select(name, Session.vhosts, Settings.vhost || (Session.vhosts.includes('/') ? '/' : Session.vhosts[0]));
}

function checkbox(name, label, checked = false) {
  return h('label', { class: 'check' }, h('input', { type: 'checkbox', name, checked }), label);
}

/** A JSON textarea with chips that insert common keys. */
function jsonField(name, label, hints = {}, rows = 3) {
  const area = h('textarea', { name, rows, placeholder: '{ }', spellcheck: 'false', class: 'mono' });
  const chips = Object.entries(hints).map(([k, v]) => h('button', {
    type: 'button', class: 'chip', onclick: () => {
      let obj = {};
      try { obj = area.value.trim() ? JSON.parse(area.value) : {}; } catch { return Notify.error(`${label}: not valid JSON`); }
      obj[k] = v;
      area.value = JSON.stringify(obj, null, 1);
    },
  }, k));
  return h('div', { class: 'field wide' }, h('span', label), area, chips.length ? h('div', { class: 'chips' }, chips) : null);
}

/** The parsed object of a JSON field ({} if empty), or an Error naming it. */
function parseJson(text, what) {
  if (!text || !text.trim()) return {};
  let v;
  try { v = JSON.parse(text); } catch (e) { throw new Error(`${what}: invalid JSON (${e.message})`); }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what}: must be a JSON object`);
  return v;
}

function readForm(form) {
  const out = {};
  for (const el of form.elements) {
    if (el.name) out[el.name] = el.type === 'checkbox' ? el.checked : el.value;
  }
  return out;
}

/** A form whose submit runs onSubmit(values, form); errors go to the message area. */
function form(cls, kids, submitLabel, onSubmit, { reset = true } = {}) {
  const f = h('form', { class: `form ${cls}` }, kids, h('div', { class: 'actions' }, h('button', { class: 'btn primary', type: 'submit' }, submitLabel)));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      await onSubmit(readForm(f), f);
      if (reset) f.reset();
    } catch (e) {
      if (!(e instanceof LoggedOut)) Notify.error(e);
    } finally { btn.disabled = false; }
  });
  return f;
}

/** A collapsible panel (<details>) holding a form or anything else. */
function panel(title, body, open = false) {
  return h('details', { class: 'panel', open }, h('summary', title), h('div', { class: 'panel-body' }, body));
}

function section(title, ...kids) {
  return h('section', { class: 'section' }, h('h2', title), kids);
}

function button(label, onclick, cls = '') {
  return h('button', { type: 'button', class: `btn ${cls}`, onclick }, label);
}

/** A small action button: runs fn, disabled while it runs. */
function actionButton(label, fn, cls = 'small') {
  const b = h('button', { type: 'button', class: `btn ${cls}` }, label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    try { await fn(); } finally { b.disabled = false; }
  });
  return b;
}

const Dialog = {
  /** Shows content in the modal dialog; resolves with the closing value. */
  open(title, content, actions = [['Close', 'close']]) {
    const dlg = $('#dialog');
    return new Promise((resolve) => {
      dlg.replaceChildren(h('div', { class: 'dialog-head' }, h('h3', title),
        h('button', { class: 'close', type: 'button', 'aria-label': 'Close', onclick: () => dlg.close('') }, '×')),
      h('div', { class: 'dialog-msgs messages' }), h('div', { class: 'dialog-body' }, content),
      h('div', { class: 'actions' }, actions.map(([label, value, cls]) =>
        h('button', { type: 'button', class: `btn ${cls || ''}`, onclick: () => dlg.close(value) }, label))));
      dlg.addEventListener('close', () => resolve(dlg.returnValue), { once: true });
      dlg.returnValue = '';
      dlg.showModal();
    });
  },
  async confirm(text, okLabel = 'Delete', extra = null) {
    const v = await Dialog.open('Please confirm', [h('p', text), extra], [['Cancel', ''], [okLabel, 'ok', 'danger']]);
    return v === 'ok';
  },
};

/** Confirms, then deletes and reports. */
async function confirmDelete(what, p, after, headers) {
  if (!(await Dialog.confirm(`Delete ${what}?`))) return;
  const ok = await act(async () => { await api.del(p, headers); return true; }, `Deleted ${what}`);
  if (ok && after) await after();
}

/** The publish form, for an exchange (routing key free) or a queue (via the default exchange). */
function publishForm(vhost, exchange, routingKey = '') {
  return form('grid publish-form', [
    field('Routing key', h('input', { name: 'routing_key', value: routingKey, readonly: exchange === '' && routingKey !== '' })),
    field('Delivery mode', select('delivery_mode', [['1', '1 – non-persistent'], ['2', '2 – persistent']], '1')),
    field('Payload encoding', select('payload_encoding', [['string', 'String'], ['base64', 'Base64']], 'string')),
    jsonField('headers', 'Headers', {}, 2),
    jsonField('properties', 'Properties', { content_type: 'text/plain', correlation_id: 'id-1', reply_to: 'replies', expiration: '60000', message_id: 'm-1', priority: 1 }, 2),
    h('label', { class: 'field wide' }, h('span', 'Payload'), h('textarea', { name: 'payload', rows: 4, class: 'mono' })),
  ], 'Publish message', async (v) => {
    const properties = parseJson(v.properties, 'Properties');
    const headers = parseJson(v.headers, 'Headers');
    properties.delivery_mode = Number(v.delivery_mode);
    if (Object.keys(headers).length) properties.headers = headers;
    const r = await api.post(path`/exchanges/${vhost}/${exchange || 'amq.default'}/publish`, {
      properties, routing_key: v.routing_key, payload: v.payload, payload_encoding: v.payload_encoding,
    });
    if (r && r.routed === false) Notify.show('Message published, but not routed.', 'warn');
    else Notify.ok('Message published.');
  }, { reset: false });
}

// ------------------------------------------------------------------ charts

/** An SVG line chart of samples [{t, v: {key: number}}] over a time window. */
class LineChart {
  constructor(title, series, { rate = false, windowMs = 600000 } = {}) {
    this.series = series;
    this.rate = rate;
    this.windowMs = windowMs;
    this.samples = [];
    this.svg = s('svg', { class: 'chart', role: 'img', 'aria-label': title, 'data-points': '0' });
    this.tip = h('div', { class: 'chart-tip', hidden: true });
    this.legend = h('div', { class: 'legend' });
    this.el = h('figure', { class: 'chart-card card' },
      h('figcaption', h('strong', title), this.legend), h('div', { class: 'chart-box' }, this.svg, this.tip));
    this.svg.addEventListener('mousemove', (e) => this.hover(e));
    this.svg.addEventListener('mouseleave', () => { this.tip.hidden = true; this.cursor?.remove(); });
    new ResizeObserver(() => this.draw(this.samples)).observe(this.svg);
  }

  format(n) { return this.rate ? fmt.rate(n) : fmt.num(Math.round(n)); }

  axisLabel(v) { return this.rate ? `${+v.toFixed(3)}/s` : fmt.num(v); }

  /** A round step (1, 2 or 5 times a power of ten) of at least raw. */
  static niceStep(raw, integer) {
    if (!(raw > 0)) raw = integer ? 1 : 0.25;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((m) => m >= raw * 0.999999);
    return integer ? Math.max(1, Math.round(step)) : step;
  }

  draw(samples) {
    this.samples = samples;
    const W = this.svg.clientWidth || 560, H = this.svg.clientHeight || 200;
    const m = { l: 52, r: 10, t: 10, b: 22 };
    const now = samples.length ? Math.max(Date.now(), samples[samples.length - 1].t) : Date.now();
    // the window grows with the history, from 1 minute up to windowMs
    const span = Math.min(this.windowMs, Math.max(60000, now - (samples.length ? samples[0].t : now)));
    const t0 = now - span;
    const top = Math.max(0, ...samples.flatMap((p) => this.series.map((se) => p.v[se.key] || 0)));
    const ystep = LineChart.niceStep(top / 4, !this.rate);
    const max = ystep * 4;
    const x = (t) => m.l + ((t - t0) / span) * (W - m.l - m.r);
    const y = (v) => H - m.b - (v / max) * (H - m.t - m.b);
    this.geom = { x, t0, now, m, W, H };
    const grid = [];
    for (let i = 0; i <= 4; i++) {
      const v = ystep * i;
      grid.push(s('line', { class: 'grid', x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }),
        s('text', { class: 'axis', x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, this.axisLabel(v)));
    }
    const maxLabels = Math.max(2, Math.min(6, Math.floor((W - m.l - m.r) / 80)));
    const xstep = [10, 15, 30, 60, 120, 300, 600].map((x) => x * 1000).find((st) => span / st <= maxLabels) || 600000;
    for (let t = Math.ceil(t0 / xstep) * xstep; t <= now; t += xstep) {
      if (x(t) < m.l + 24 || x(t) > W - m.r - 24) continue;
      grid.push(s('text', { class: 'axis', x: x(t), y: H - 6, 'text-anchor': 'middle' }, fmt.time(t, xstep < 60000)));
    }
    const lines = this.series.map((se) => {
      const pts = samples.map((p) => `${x(p.t).toFixed(1)},${y(p.v[se.key] || 0).toFixed(1)}`);
      if (!pts.length) return null;
      const last = samples[samples.length - 1];
      const area = `M${x(samples[0].t).toFixed(1)},${y(0)} L${pts.join(' L')} L${x(last.t).toFixed(1)},${y(0)} Z`;
      return s('g', { class: 'series', 'data-series': se.key, style: `color:${se.color}` },
        s('path', { class: 'area', d: area }),
        s('path', { class: 'line', d: `M${pts.join(' L')}` }),
        s('circle', { class: 'dot', cx: x(last.t), cy: y(last.v[se.key] || 0), r: 3 }));
    });
    this.svg.replaceChildren(...grid, ...lines.filter(Boolean));
    this.svg.dataset.points = String(samples.length);
    const last = samples[samples.length - 1];
    this.legend.replaceChildren(...this.series.map((se) => h('span', { class: 'legend-item', 'data-series': se.key },
      h('i', { class: 'swatch', style: `background:${se.color}` }), se.label, ' ',
      h('b', { class: 'legend-value' }, last ? this.format(last.v[se.key] || 0) : '–'))));
  }

  hover(e) {
    if (!this.samples.length || !this.geom) return;
    const rect = this.svg.getBoundingClientRect();
    const px = e.clientX - rect.left;
    const { x, m, H } = this.geom;
    let best = this.samples[0];
    for (const p of this.samples) if (Math.abs(x(p.t) - px) < Math.abs(x(best.t) - px)) best = p;
    this.cursor?.remove();
    this.cursor = s('line', { class: 'cursor', x1: x(best.t), x2: x(best.t), y1: m.t, y2: H - m.b });
    this.svg.append(this.cursor);
    this.tip.replaceChildren(h('div', { class: 'muted' }, new Date(best.t).toLocaleTimeString()),
      ...this.series.map((se) => h('div', h('i', { class: 'swatch', style: `background:${se.color}` }), `${se.label}: ${this.format(best.v[se.key] || 0)}`)));
    this.tip.hidden = false;
    this.tip.style.left = `${Math.min(x(best.t) + 12, rect.width - 170)}px`;
  }
}

// --------------------------------------------------------- overview sampler

/** Keeps the last 10 minutes of /api/overview samples for the charts. */
const Stats = {
  windowMs: 10 * 60 * 1000,
  samples: [],
  latest: null,
  COUNTERS: ['publish', 'deliver_get', 'ack'],

  async sample() {
    const o = await api.get('/overview');
    Stats.record(o, Date.now());
    return o;
  },

  /** The latest overview if younger than maxAge ms, else a new sample. */
  async fresh(maxAge) {
    const last = Stats.samples[Stats.samples.length - 1];
    return Stats.latest && last && Date.now() - last.t < maxAge ? Stats.latest : Stats.sample();
  },

  record(o, t) {
    const ms = o.message_stats && !Array.isArray(o.message_stats) ? o.message_stats : {};
    const qt = o.queue_totals && !Array.isArray(o.queue_totals) ? o.queue_totals : {};
    const prev = Stats.samples[Stats.samples.length - 1];
    const v = { ready: qt.messages_ready || 0, unacked: qt.messages_unacknowledged || 0 };
    const counters = {};
    for (const key of Stats.COUNTERS) {
      counters[key] = ms[key];
      const rate = ms[`${key}_details`]?.rate;
      if (typeof rate === 'number') v[key] = rate;
      else if (typeof ms[key] === 'number' && prev && typeof prev.counters[key] === 'number' && t > prev.t) {
        v[key] = Math.max(0, (ms[key] - prev.counters[key]) / ((t - prev.t) / 1000));
      } else v[key] = 0;
    }
    Stats.latest = o;
    Stats.samples.push({ t, v, counters });
    while (Stats.samples.length && Stats.samples[0].t < t - Stats.windowMs) Stats.samples.shift();
  },
};

// ------------------------------------------------------------------- views
//
// A view is {mount(el, params)} returning {refresh()} (called right away and
// on every tick of the refresh loop).  Forms are built once in mount;
// refresh only updates the data parts.

function statCard(label, key) {
  return h('div', { class: 'stat card', 'data-stat': key }, h('span', { class: 'stat-label' }, label), h('span', { class: 'stat-value' }, '–'));
}
function setStats(root, values) {
  for (const [k, v] of Object.entries(values)) {
    const el = root.querySelector(`[data-stat="${k}"] .stat-value`);
    if (el) el.textContent = typeof v === 'number' ? fmt.num(v) : v;
  }
}

const OverviewView = {
  mount(el) {
    const totals = h('div', { class: 'stats' }, ['connections', 'channels', 'exchanges', 'queues', 'consumers'].map((k) => statCard(k[0].toUpperCase() + k.slice(1), k)));
    const qtotals = h('div', { class: 'stats' }, statCard('Ready', 'messages_ready'), statCard('Unacked', 'messages_unacknowledged'), statCard('Total', 'messages'));
    const countChart = new LineChart('Queued messages', [
      { key: 'ready', label: 'Ready', color: '#2563eb' },
      { key: 'unacked', label: 'Unacked', color: '#d97706' }]);
    const rateChart = new LineChart('Message rates', [
      { key: 'publish', label: 'Publish', color: '#7c3aed' },
      { key: 'deliver_get', label: 'Deliver / get', color: '#059669' },
      { key: 'ack', label: 'Ack', color: '#db2777' }], { rate: true });
    const info = h('div', { class: 'muted product' });
    const nodes = h('div', { class: 'nodes' });
    const listeners = new DataTable([
      { title: 'Protocol', value: (l) => l.protocol },
      { title: 'Node', value: (l) => l.node },
      { title: 'Bound to', value: (l) => l.ip_address },
      { title: 'Port', value: (l) => l.port, num: true }], { empty: 'No listeners' });
    el.append(h('div', { class: 'view-head' }, h('h1', 'Overview'), info),
      h('div', { class: 'overview-top' }, section('Totals', totals), section('Queued messages', qtotals)),
      h('div', { class: 'charts' }, countChart.el, rateChart.el),
      section('Nodes', nodes), section('Listeners', listeners.el));

    return {
      async refresh() {
        const o = await Stats.fresh(1500);
        info.textContent = `${o.product_name || 'Warren'} ${o.product_version || ''} · cluster ${o.cluster_name || '–'} · node ${o.node || '–'}`;
        setStats(totals, o.object_totals || {});
        const qt = o.queue_totals && !Array.isArray(o.queue_totals) ? o.queue_totals : {};
        setStats(qtotals, { messages_ready: qt.messages_ready ?? 0, messages_unacknowledged: qt.messages_unacknowledged ?? 0, messages: qt.messages ?? 0 });
        countChart.draw(Stats.samples);
        rateChart.draw(Stats.samples);
        listeners.update(o.listeners || []);
        try {
          nodes.replaceChildren(...(await api.get('/nodes')).map(nodeCard));
        } catch (e) {
          if (e instanceof LoggedOut) throw e;
          nodes.replaceChildren(h('p', { class: 'muted' }, `Node details are not available: ${e.message}`));
        }
      },
    };
  },
};

/** A labelled bar: used of limit, or (invert) free space against its lower limit. */
function meter(label, used, limit, { bytes = false, invert = false, alarm = false } = {}) {
  const f = bytes ? fmt.bytes : fmt.num;
  const ok = typeof used === 'number' && typeof limit === 'number' && limit > 0;
  const pct = !ok ? 0 : Math.min(100, invert ? (limit / Math.max(used, 1)) * 100 : (used / limit) * 100);
  return h('div', { class: `meter${alarm ? ' alarm' : ''}` },
    h('div', { class: 'meter-label' }, h('span', label), h('span', invert ? `${f(used)} free · limit ${f(limit)}` : `${f(used)} / ${f(limit)}`)),
    h('div', { class: 'bar' }, h('i', { style: `width:${pct.toFixed(1)}%` })));
}

function nodeCard(n) {
  return h('div', { class: 'card node' },
    h('div', { class: 'node-head' }, h('strong', n.name), badge(n.running === false ? 'stopped' : 'running', n.running === false ? 'danger' : 'ok'),
      n.mem_alarm ? badge('memory alarm', 'danger') : null, n.disk_free_alarm ? badge('disk alarm', 'danger') : null),
    h('div', { class: 'node-grid' },
      meter('Memory', n.mem_used, n.mem_limit, { bytes: true, alarm: n.mem_alarm }),
      meter('Disk', n.disk_free, n.disk_free_limit, { bytes: true, invert: true, alarm: n.disk_free_alarm }),
      meter('File descriptors', n.fd_used, n.fd_total),
      meter('Sockets', n.sockets_used, n.sockets_total)),
    h('div', { class: 'muted' }, `Uptime ${fmt.duration(n.uptime)} · ${fmt.num(n.processors)} processors · pid ${n.os_pid ?? '–'}`));
}

const ConnectionsView = {
  mount(el) {
    const table = new DataTable([
      { title: 'Name', value: (c) => c.name, render: (c) => h('div', h('div', { class: 'mono' }, c.name), clientName(c) ? h('small', { class: 'muted' }, clientName(c)) : null) },
      { title: 'Virtual host', value: (c) => c.vhost },
      { title: 'User', value: (c) => c.user },
      { title: 'Client', value: (c) => [c.client_properties?.product, c.client_properties?.version].filter(Boolean).join(' ') },
      { title: 'Protocol', value: (c) => c.protocol },
      { title: 'Channels', value: (c) => c.channels, num: true },
      { title: 'State', value: (c) => c.state, render: (c) => badge(c.state || '–', c.state === 'running' ? 'ok' : '') },
      { title: 'From client', value: (c) => c.recv_oct_details?.rate, render: (c) => fmt.bytes(c.recv_oct_details?.rate) + (c.recv_oct_details ? '/s' : ''), num: true },
      { title: 'To client', value: (c) => c.send_oct_details?.rate, render: (c) => fmt.bytes(c.send_oct_details?.rate) + (c.send_oct_details ? '/s' : ''), num: true },
      { title: '', render: (c) => actionButton('Close', () => closeConnection(c, refresh), 'small danger') },
    ], { empty: 'No connections', filter: (c) => `${c.name} ${clientName(c)} ${c.user}` });
    el.append(h('div', { class: 'view-head' }, h('h1', 'Connections')), toolbar(table), table.el);
    const refresh = async () => table.update(await api.get(Settings.vhost ? path`/vhosts/${Settings.vhost}/connections` : '/connections'));
    return { refresh };
  },
};

function clientName(c) { return c.user_provided_name || c.client_properties?.connection_name || ''; }

async function closeConnection(c, after) {
  const reason = h('input', { value: 'Closed via management UI', 'aria-label': 'Reason' });
  if (!(await Dialog.confirm(`Close connection ${c.name}?`, 'Close connection', field('Reason', reason)))) return;
  const ok = await act(async () => { await api.del(path`/connections/${c.name}`, { 'X-Reason': reason.value }); return true; }, 'Connection closed');
  if (ok) await after();
}

const ChannelsView = {
  mount(el) {
    const table = new DataTable([
      { title: 'Channel', value: (c) => c.name, render: (c) => h('span', { class: 'mono' }, c.name) },
      { title: 'Virtual host', value: (c) => c.vhost },
      { title: 'User', value: (c) => c.user },
      { title: 'Mode', value: (c) => `${c.confirm ? 'C' : ''}${c.transactional ? 'T' : ''}`, render: (c) => h('span', c.confirm ? badge('Confirm', 'info') : null, c.transactional ? badge('Tx') : null) },
      { title: 'Prefetch', value: (c) => c.prefetch_count, num: true },
      { title: 'Unacked', value: (c) => c.messages_unacknowledged, num: true },
      { title: 'Consumers', value: (c) => c.consumer_count, num: true },
      { title: 'State', value: (c) => c.state },
      { title: 'Publish', value: (c) => rateOf(c, 'publish'), render: (c) => fmt.rate(rateOf(c, 'publish')), num: true },
      { title: 'Deliver / get', value: (c) => rateOf(c, 'deliver_get'), render: (c) => fmt.rate(rateOf(c, 'deliver_get')), num: true },
    ], { empty: 'No channels', filter: (c) => `${c.name} ${c.user}` });
    el.append(h('div', { class: 'view-head' }, h('h1', 'Channels')), toolbar(table), table.el);
    return { refresh: async () => table.update(await api.get(Settings.vhost ? path`/vhosts/${Settings.vhost}/channels` : '/channels')) };
  },
};

function consumerColumns(withQueue = true) {
  return [
    { title: 'Consumer tag', value: (c) => c.consumer_tag, render: (c) => h('span', { class: 'mono' }, c.consumer_tag) },
    withQueue && { title: 'Queue', value: (c) => c.queue?.name, render: (c) => h('a', { href: queueHref(c.queue.vhost, c.queue.name) }, c.queue.name) },
    { title: 'Channel', value: (c) => c.channel_details?.name, render: (c) => h('span', { class: 'mono' }, c.channel_details?.name ?? '–') },
    { title: 'Ack required', value: (c) => String(!!c.ack_required) },
    { title: 'Exclusive', value: (c) => String(!!c.exclusive) },
    { title: 'Prefetch', value: (c) => c.prefetch_count, num: true },
    { title: 'Active', value: (c) => c.activity_status || String(c.active), render: (c) => badge(c.activity_status || (c.active ? 'up' : 'waiting'), c.active === false ? '' : 'ok') },
    { title: 'Arguments', value: (c) => fmt.json(c.arguments) },
  ].filter(Boolean);
}

const ConsumersView = {
  mount(el) {
    const table = new DataTable(consumerColumns(), { empty: 'No consumers', filter: (c) => `${c.consumer_tag} ${c.queue?.name}` });
    el.append(h('div', { class: 'view-head' }, h('h1', 'Consumers')), toolbar(table), table.el);
    return { refresh: async () => table.update(await api.get(scoped('/consumers'))) };
  },
};

const EXCHANGE_TYPES = ['direct', 'fanout', 'topic', 'headers'];

const ExchangesView = {
  mount(el) {
    const table = new DataTable([
      { title: 'Virtual host', value: (x) => x.vhost },
      { title: 'Name', value: (x) => x.name, render: (x) => h('span', { class: x.name ? '' : 'muted' }, fmt.exchange(x.name)) },
      { title: 'Type', value: (x) => x.type },
      { title: 'Features', value: (x) => `${x.durable}${x.auto_delete}${x.internal}`, render: features },
      { title: 'Rate in', value: (x) => rateOf(x, 'publish_in'), render: (x) => fmt.rate(rateOf(x, 'publish_in')), num: true },
      { title: 'Rate out', value: (x) => rateOf(x, 'publish_out'), render: (x) => fmt.rate(rateOf(x, 'publish_out')), num: true },
      {
        title: '', render: (x) => h('span', { class: 'row-actions' },
          x.internal ? null : actionButton('Publish', () => Dialog.open(`Publish to ${fmt.exchange(x.name)} (${x.vhost})`, publishForm(x.vhost, x.name))),
          x.name === '' || x.name.startsWith('amq.') ? null
            : actionButton('Delete', () => confirmDelete(`exchange ${x.name}`, path`/exchanges/${x.vhost}/${x.name}`, refresh), 'small danger')),
      },
    ], { empty: 'No exchanges', filter: (x) => x.name });
    const types = (Stats.latest?.exchange_types || []).map((t) => t.name);
    const add = form('grid', [
      field('Virtual host', vhostSelect()),
      field('Name', h('input', { name: 'name', required: true })),
      field('Type', select('type', types.length ? types : EXCHANGE_TYPES, 'direct')),
      field('Durability', select('durable', [['true', 'Durable'], ['false', 'Transient']], 'true')),
      field('Auto delete', select('auto_delete', [['false', 'No'], ['true', 'Yes']], 'false')),
      field('Internal', select('internal', [['false', 'No'], ['true', 'Yes']], 'false')),
      jsonField('arguments', 'Arguments', { 'alternate-exchange': 'my-ae' }),
    ], 'Add exchange', async (v) => {
      await api.put(path`/exchanges/${v.vhost}/${v.name}`, {
        type: v.type, durable: v.durable === 'true', auto_delete: v.auto_delete === 'true',
        internal: v.internal === 'true', arguments: parseJson(v.arguments, 'Arguments'),
      });
      Notify.ok(`Exchange ${v.name} added.`);
      await refresh();
    });
    el.append(h('div', { class: 'view-head' }, h('h1', 'Exchanges')), toolbar(table), table.el, panel('Add a new exchange', add));
    const refresh = async () => table.update(await api.get(scoped('/exchanges')));
    return { refresh };
  },
};

const queueHref = (vhost, name) => `#/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`;

const QUEUE_ARGS = {
  'x-message-ttl': 60000, 'x-expires': 1800000, 'x-max-length': 1000, 'x-max-length-bytes': 1048576,
  'x-overflow': 'reject-publish', 'x-dead-letter-exchange': 'dlx', 'x-dead-letter-routing-key': 'dead',
  'x-max-priority': 10, 'x-single-active-consumer': true,
};

const QueuesView = {
  mount(el) {
    let page = 1, pageCount = 1;
    const table = new DataTable([
      { title: 'Virtual host', value: (q) => q.vhost },
      { title: 'Name', value: (q) => q.name, render: (q) => h('a', { href: queueHref(q.vhost, q.name), class: 'queue-link' }, q.name) },
      { title: 'Type', value: (q) => q.type },
      { title: 'Features', value: (q) => `${q.durable}${q.auto_delete}${q.exclusive}`, render: features },
      { title: 'State', value: (q) => q.state, render: (q) => badge(q.state || '–', q.state === 'running' ? 'ok' : '') },
      { title: 'Ready', value: (q) => q.messages_ready, render: (q) => fmt.num(q.messages_ready), num: true },
      { title: 'Unacked', value: (q) => q.messages_unacknowledged, render: (q) => fmt.num(q.messages_unacknowledged), num: true },
      { title: 'Total', value: (q) => q.messages, render: (q) => h('span', { 'data-col': 'messages' }, fmt.num(q.messages)), num: true },
      { title: 'Incoming', value: (q) => rateOf(q, 'publish'), render: (q) => fmt.rate(rateOf(q, 'publish')), num: true },
      { title: 'Deliver / get', value: (q) => rateOf(q, 'deliver_get'), render: (q) => fmt.rate(rateOf(q, 'deliver_get')), num: true },
      { title: 'Consumers', value: (q) => q.consumers, num: true },
    ], { empty: 'No queues' });
    const name = h('input', { type: 'search', placeholder: 'Filter by name…', class: 'filter', oninput: () => { page = 1; refresh(); } });
    const regex = h('input', { type: 'checkbox', onchange: () => { page = 1; refresh(); } });
    const size = select('page_size', ['25', '50', '100', '500'], '100');
    size.addEventListener('change', () => { page = 1; refresh(); });
    const pageInfo = h('span', { class: 'muted' });
    const prev = button('‹ Prev', () => { page = Math.max(1, page - 1); refresh(); }, 'small');
    const next = button('Next ›', () => { page = Math.min(pageCount, page + 1); refresh(); }, 'small');

    const add = form('grid', [
      field('Virtual host', vhostSelect()),
      field('Name', h('input', { name: 'name', required: true })),
      field('Durability', select('durable', [['true', 'Durable'], ['false', 'Transient']], 'true')),
      field('Auto delete', select('auto_delete', [['false', 'No'], ['true', 'Yes']], 'false')),
      jsonField('arguments', 'Arguments', QUEUE_ARGS),
    ], 'Add queue', async (v) => {
      await api.put(path`/queues/${v.vhost}/${v.name}`, {
        durable: v.durable === 'true', auto_delete: v.auto_delete === 'true', arguments: parseJson(v.arguments, 'Arguments'),
      });
      Notify.ok(`Queue ${v.name} added.`);
      await refresh();
    });

    el.append(h('div', { class: 'view-head' }, h('h1', 'Queues')),
      h('div', { class: 'toolbar' }, name, h('label', { class: 'check' }, regex, 'Regex'),
        h('label', { class: 'compact' }, 'Page size', size), h('span', { class: 'pager' }, prev, pageInfo, next)),
      table.el, panel('Add a new queue', add));

    async function refresh() {
      const qs = new URLSearchParams({ page, page_size: size.value, name: name.value, use_regex: regex.checked, pagination: 'true' });
      let r;
      try {
        r = await api.get(`${scoped('/queues')}?${qs}`);
      } catch (e) {
        if (page > 1 && e.status === 400) { page = 1; return refresh(); }
        throw e;
      }
      pageCount = Math.max(1, r.page_count || 1);
      pageInfo.textContent = `Page ${r.page} of ${pageCount} · ${fmt.num(r.filtered_count)} of ${fmt.num(r.total_count)} queues`;
      prev.disabled = page <= 1;
      next.disabled = page >= pageCount;
      table.update(r.items);
    }
    return { refresh };
  },
};

const QueueView = {
  mount(el, [vhost, name]) {
    const qpath = path`/queues/${vhost}/${name}`;
    const stats = h('div', { class: 'stats' }, statCard('Ready', 'messages_ready'), statCard('Unacked', 'messages_unacknowledged'),
      statCard('Total', 'messages'), statCard('Consumers', 'consumers'), statCard('State', 'state'));
    const details = h('div', { class: 'details' });
    const consumers = new DataTable(consumerColumns(false), { empty: 'No consumers' });
    const bindings = new DataTable([
      { title: 'From exchange', value: (b) => b.source, render: (b) => h('span', { class: b.source ? '' : 'muted' }, fmt.exchange(b.source)) },
      { title: 'Routing key', value: (b) => b.routing_key, render: (b) => h('span', { class: 'mono' }, b.routing_key) },
      { title: 'Arguments', value: (b) => fmt.json(b.arguments) },
      {
        title: '', render: (b) => (b.source === '' ? h('small', { class: 'muted' }, 'default binding')
          : actionButton('Unbind', () => confirmDelete(`binding from ${b.source}`,
            path`/bindings/${vhost}/e/${b.source}/q/${name}/${b.properties_key}`, refresh), 'small danger')),
      },
    ], { empty: 'No bindings' });
    const bindForm = form('grid', [
      field('From exchange', h('input', { name: 'source', required: true, list: 'exchange-names' })),
      field('Routing key', h('input', { name: 'routing_key' })),
      jsonField('arguments', 'Arguments', { 'x-match': 'all' }, 2),
      h('datalist', { id: 'exchange-names' }),
    ], 'Bind', async (v) => {
      await api.post(path`/bindings/${vhost}/e/${v.source}/q/${name}`, { routing_key: v.routing_key, arguments: parseJson(v.arguments, 'Arguments') });
      Notify.ok(`Bound to ${v.source}.`);
      await refresh();
    });
    const results = h('div', { class: 'messages-got' });
    const getForm = form('grid get-form', [
      field('Ack mode', select('ackmode', [['ack_requeue_true', 'Nack, requeue'], ['reject_requeue_true', 'Reject, requeue'], ['ack_requeue_false', 'Ack (removes them)']], 'ack_requeue_true')),
      field('Encoding', select('encoding', [['auto', 'Auto string / base64'], ['base64', 'Base64']], 'auto')),
      field('Messages', h('input', { name: 'count', type: 'number', min: 1, value: '1' })),
      field('Truncate at (bytes)', h('input', { name: 'truncate', type: 'number', min: 1, placeholder: 'no limit' })),
    ], 'Get messages', async (v) => {
      const body = { count: Number(v.count) || 1, ackmode: v.ackmode, encoding: v.encoding };
      if (v.truncate) body.truncate = Number(v.truncate);
      const msgs = await api.post(`${qpath}/get`, body);
      results.replaceChildren(...(msgs.length ? msgs.map(messageCard) : [h('p', { class: 'muted' }, 'Queue is empty.')]));
      await refresh();
    }, { reset: false });

    el.append(
      h('div', { class: 'view-head' },
        h('div', h('a', { href: '#/queues', class: 'muted' }, '← Queues'), h('h1', 'Queue ', h('span', { class: 'mono' }, name)), h('span', { class: 'badge' }, `vhost ${vhost}`)),
        h('div', { class: 'row-actions' },
          actionButton('Purge', async () => {
            if (!(await Dialog.confirm(`Purge all ready messages of queue ${name}?`, 'Purge'))) return;
            await act(() => api.del(`${qpath}/contents`), `Queue ${name} purged.`);
            await refresh();
          }, 'warn'),
          actionButton('Delete', () => confirmDelete(`queue ${name}`, qpath, () => { location.hash = '#/queues'; }), 'danger'))),
      stats, section('Details', details),
      section('Consumers', consumers.el),
      section('Bindings', bindings.el, panel('Add binding to this queue', bindForm)),
      panel('Publish message', publishForm(vhost, '', name)),
      panel('Get messages', [h('p', { class: 'muted' }, 'Getting messages with requeue leaves them in the queue (they come back marked redelivered).'), getForm, results], true),
    );

    async function refresh() {
      const q = await api.get(qpath);
      setStats(stats, { messages_ready: q.messages_ready ?? 0, messages_unacknowledged: q.messages_unacknowledged ?? 0, messages: q.messages ?? 0, consumers: q.consumers ?? 0, state: q.state || '–' });
      const info = Object.entries({
        Type: q.type || 'classic', Node: q.node, Durable: q.durable, 'Auto delete': q.auto_delete, Exclusive: q.exclusive,
        Policy: q.policy, 'Effective policy': fmt.json(q.effective_policy_definition),
        'Ready bytes': q.message_bytes_ready != null ? fmt.bytes(q.message_bytes_ready) : null,
        Memory: q.memory ? fmt.bytes(q.memory) : null,
      }).filter(([, v]) => v != null && v !== '');
      details.replaceChildren(h('div', h('h3', 'Properties'), kvTable(Object.fromEntries(info))),
        h('div', h('h3', 'Arguments'), kvTable(q.arguments)));
      const [b, c, x] = await Promise.all([api.get(`${qpath}/bindings`), api.get(path`/consumers/${vhost}`), api.get(path`/exchanges/${vhost}`).catch(() => [])]);
      bindings.update(b);
      consumers.update(c.filter((k) => k.queue?.name === name));
      $('#exchange-names', el).replaceChildren(...x.filter((e) => e.name).map((e) => h('option', { value: e.name })));
    }
    return { refresh };
  },
};

function messageCard(m, i) {
  const props = { ...(m.properties || {}) };
  const headers = props.headers;
  delete props.headers;
  return h('div', { class: 'card message', 'data-message': i },
    h('div', { class: 'message-head' }, h('strong', `Message ${i + 1}`),
      m.redelivered ? badge('redelivered', 'warn') : null,
      h('span', { class: 'muted' }, `exchange ${fmt.exchange(m.exchange)} · routing key ${m.routing_key} · ${fmt.num(m.payload_bytes)} bytes · ${m.payload_encoding} · ${fmt.num(m.message_count)} left`)),
    h('div', { class: 'message-grid' },
      h('div', h('h4', 'Properties'), kvTable(props), h('h4', 'Headers'), kvTable(headers)),
      h('div', h('h4', 'Payload'), h('pre', { class: 'payload' }, m.payload))));
}

const BindingsView = {
  mount(el) {
    const table = new DataTable([
      { title: 'Virtual host', value: (b) => b.vhost },
      { title: 'Source', value: (b) => b.source, render: (b) => h('span', { class: b.source ? '' : 'muted' }, fmt.exchange(b.source)) },
      { title: 'Destination', value: (b) => b.destination, render: (b) => (b.destination_type === 'queue' ? h('a', { href: queueHref(b.vhost, b.destination) }, b.destination) : b.destination) },
      { title: 'Type', value: (b) => b.destination_type },
      { title: 'Routing key', value: (b) => b.routing_key, render: (b) => h('span', { class: 'mono' }, b.routing_key) },
      { title: 'Arguments', value: (b) => fmt.json(b.arguments) },
      {
        title: '', render: (b) => (b.source === '' ? null : actionButton('Unbind', () => confirmDelete(`binding ${b.source} → ${b.destination}`,
          path`/bindings/${b.vhost}/e/${b.source}/${b.destination_type === 'queue' ? 'q' : 'e'}/${b.destination}/${b.properties_key}`, refresh), 'small danger')),
      },
    ], { empty: 'No bindings', filter: (b) => `${b.source} ${b.destination} ${b.routing_key}` });
    el.append(h('div', { class: 'view-head' }, h('h1', 'Bindings')), toolbar(table), table.el);
    const refresh = async () => table.update(await api.get(scoped('/bindings')));
    return { refresh };
  },
};

// Admin: four sub-views behind one tab.

const USER_TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];

const UsersView = {
  mount(el) {
    const table = new DataTable([
      { title: 'Name', value: (u) => u.name },
      { title: 'Tags', value: (u) => [].concat(u.tags).join(','), render: (u) => h('span', [].concat(u.tags || []).flatMap((t) => String(t).split(',')).filter(Boolean).map((t) => badge(t, 'info'))) },
      { title: 'Password', value: (u) => (u.password_hash ? 'yes' : 'no') },
      { title: '', render: (u) => actionButton('Delete', () => confirmDelete(`user ${u.name}`, path`/users/${u.name}`, refresh), 'small danger') },
    ], { empty: 'No users', filter: (u) => u.name });
    const tags = h('input', { name: 'tags', placeholder: 'e.g. administrator' });
    const add = form('grid', [
      field('Username', h('input', { name: 'name', required: true, autocomplete: 'off' })),
      field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password' }), 'Leave empty for a user who cannot log in with a password.'),
      h('div', { class: 'field wide' }, field('Tags', tags), h('div', { class: 'chips' }, USER_TAGS.map((t) =>
        h('button', { type: 'button', class: 'chip', onclick: () => { tags.value = [...new Set([...tags.value.split(',').map((x) => x.trim()).filter(Boolean), t])].join(', '); } }, t)))),
    ], 'Add user', async (v) => {
      const body = { tags: v.tags.split(',').map((t) => t.trim()).filter(Boolean).join(',') };
      if (v.password) body.password = v.password; else body.password_hash = '';
      await api.put(path`/users/${v.name}`, body);
      Notify.ok(`User ${v.name} added.`);
      await refresh();
    });
    el.append(toolbar(table), table.el, panel('Add a user', add, true));
    const refresh = async () => table.update(await api.get('/users'));
    return { refresh };
  },
};

const VhostsView = {
  mount(el) {
    const table = new DataTable([
      { title: 'Name', value: (v) => v.name },
      { title: 'Description', value: (v) => v.description || v.metadata?.description || '' },
      { title: 'Tags', value: (v) => [].concat(v.tags || v.metadata?.tags || []).join(', ') },
      { title: 'Ready', value: (v) => v.messages_ready, render: (v) => fmt.num(v.messages_ready), num: true },
      { title: 'Unacked', value: (v) => v.messages_unacknowledged, render: (v) => fmt.num(v.messages_unacknowledged), num: true },
      { title: 'Total', value: (v) => v.messages, render: (v) => fmt.num(v.messages), num: true },
      { title: '', render: (v) => actionButton('Delete', () => confirmDelete(`virtual host ${v.name}`, path`/vhosts/${v.name}`, async () => { await refresh(); await Session.loadVhosts(); }), 'small danger') },
    ], { empty: 'No virtual hosts', filter: (v) => v.name });
    const add = form('grid', [
      field('Name', h('input', { name: 'name', required: true })),
      field('Description', h('input', { name: 'description' })),
      field('Tags', h('input', { name: 'tags', placeholder: 'comma separated' })),
    ], 'Add virtual host', async (v) => {
      await api.put(path`/vhosts/${v.name}`, { description: v.description, tags: v.tags });
      Notify.ok(`Virtual host ${v.name} added.`);
      await refresh();
      await Session.loadVhosts();
    });
    el.append(toolbar(table), table.el, panel('Add a virtual host', add, true));
    const refresh = async () => table.update(await api.get('/vhosts'));
    return { refresh };
  },
};

const PermissionsView = {
  mount(el) {
    const table = new DataTable([
      { title: 'User', value: (p) => p.user },
      { title: 'Virtual host', value: (p) => p.vhost },
      { title: 'Configure', value: (p) => p.configure, render: (p) => h('code', p.configure) },
      { title: 'Write', value: (p) => p.write, render: (p) => h('code', p.write) },
      { title: 'Read', value: (p) => p.read, render: (p) => h('code', p.read) },
      { title: '', render: (p) => actionButton('Clear', () => confirmDelete(`permissions of ${p.user} in ${p.vhost}`, path`/permissions/${p.vhost}/${p.user}`, refresh), 'small danger') },
    ], { empty: 'No permissions', filter: (p) => `${p.user} ${p.vhost}` });
    const users = h('select', { name: 'user' });
    const add = form('grid', [
      field('User', users), field('Virtual host', vhostSelect()),
      field('Configure regexp', h('input', { name: 'configure', value: '.*' })),
      field('Write regexp', h('input', { name: 'write', value: '.*' })),
      field('Read regexp', h('input', { name: 'read', value: '.*' })),
    ], 'Set permission', async (v) => {
      await api.put(path`/permissions/${v.vhost}/${v.user}`, { configure: v.configure, write: v.write, read: v.read });
      Notify.ok(`Permissions of ${v.user} in ${v.vhost} set.`);
      await refresh();
    }, { reset: false });
    el.append(toolbar(table), table.el, panel('Set permissions', add, true));
    let userList = '';
    const refresh = async () => {
      const [perms, us] = await Promise.all([api.get('/permissions'), api.get('/users')]);
      table.update(perms);
      const names = us.map((u) => u.name).sort();
      if (names.join('\n') !== userList) {
        userList = names.join('\n');
        users.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
      }
    };
    return { refresh };
  },
};

const PoliciesView = {
  mount(el) {
    const status = h('div');
    const table = new DataTable([
      { title: 'Virtual host', value: (p) => p.vhost },
      { title: 'Name', value: (p) => p.name },
      { title: 'Pattern', value: (p) => p.pattern, render: (p) => h('code', p.pattern) },
      { title: 'Apply to', value: (p) => p['apply-to'] },
      { title: 'Definition', value: (p) => fmt.json(p.definition), render: (p) => h('code', fmt.json(p.definition)) },
      { title: 'Priority', value: (p) => p.priority, num: true },
      { title: '', render: (p) => actionButton('Delete', () => confirmDelete(`policy ${p.name}`, path`/policies/${p.vhost}/${p.name}`, refresh), 'small danger') },
    ], { empty: 'No policies', filter: (p) => p.name });
    const add = form('grid', [
      field('Virtual host', vhostSelect()),
      field('Name', h('input', { name: 'name', required: true })),
      field('Pattern', h('input', { name: 'pattern', required: true, placeholder: '^amq\\.' })),
      field('Apply to', select('apply-to', [['all', 'Exchanges and queues'], ['queues', 'Queues'], ['exchanges', 'Exchanges']], 'all')),
      field('Priority', h('input', { name: 'priority', type: 'number', value: '0' })),
      jsonField('definition', 'Definition', { 'message-ttl': 60000, expires: 1800000, 'max-length': 1000, 'max-length-bytes': 1048576, overflow: 'reject-publish', 'dead-letter-exchange': 'dlx', 'dead-letter-routing-key': 'dead', 'alternate-exchange': 'ae' }),
    ], 'Add policy', async (v) => {
      await api.put(path`/policies/${v.vhost}/${v.name}`, { pattern: v.pattern, 'apply-to': v['apply-to'], priority: Number(v.priority) || 0, definition: parseJson(v.definition, 'Definition') });
      Notify.ok(`Policy ${v.name} added.`);
      await refresh();
    });
    el.append(status, toolbar(table), table.el, panel('Add / update a policy', add, true));
    const refresh = async () => {
      try {
        table.update(await api.get(scoped('/policies')));
        status.replaceChildren();
      } catch (e) {
        if (e instanceof LoggedOut) throw e;
        status.replaceChildren(h('p', { class: 'msg error inline' }, `Policies are not available: ${e.message}`));
      }
    };
    return { refresh };
  },
};

const AdminView = {
  sections: { users: ['Users', UsersView], vhosts: ['Virtual hosts', VhostsView], permissions: ['Permissions', PermissionsView], policies: ['Policies', PoliciesView] },
  mount(el, [sub = 'users']) {
    const [title, view] = AdminView.sections[sub] || AdminView.sections.users;
    const tabs = h('nav', { class: 'subnav' }, Object.entries(AdminView.sections).map(([k, [t]]) =>
      h('a', { href: `#/admin/${k}`, class: k === sub ? 'active' : '' }, t)));
    const body = h('div');
    el.append(h('div', { class: 'view-head' }, h('h1', `Admin · ${title}`)), tabs, body);
    return view.mount(body);
  },
};

const DefinitionsView = {
  mount(el) {
    const summary = h('div', { class: 'muted' });
    const vhostOpts = [['', 'All (broker-wide)'], ...Session.vhosts.map((v) => [v, v])];
    const exportForm = form('grid', [field('Virtual host', select('vhost', vhostOpts, ''))], 'Download definitions', async (v) => {
      const defs = await api.get(v.vhost ? path`/definitions/${v.vhost}` : '/definitions');
      const blob = new Blob([JSON.stringify(defs, null, 2)], { type: 'application/json' });
      const a = h('a', { href: URL.createObjectURL(blob), download: `warren-definitions-${new Date().toISOString().slice(0, 10)}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      const count = (k) => (defs[k] || []).length;
      summary.textContent = `Exported ${count('vhosts')} virtual hosts, ${count('users')} users, ${count('queues')} queues, ${count('exchanges')} exchanges, ${count('bindings')} bindings, ${count('policies')} policies.`;
    }, { reset: false });
    const importForm = form('grid', [
      field('Definitions file', h('input', { type: 'file', name: 'file', accept: '.json,application/json', required: true })),
      field('Virtual host', select('vhost', vhostOpts, '')),
    ], 'Upload definitions', async (v, f) => {
      const file = f.elements.file.files[0];
      if (!file) throw new Error('Choose a definitions file first.');
      const text = await file.text();
      parseJson(text, file.name);
      await api.request('POST', v.vhost ? path`/definitions/${v.vhost}` : '/definitions', text);
      Notify.ok(`Definitions from ${file.name} imported.`);
      await Session.loadVhosts();
    });
    el.append(h('div', { class: 'view-head' }, h('h1', 'Definitions')),
      h('div', { class: 'two-col' },
        section('Export', h('p', { class: 'muted' }, 'Users, virtual hosts, permissions, policies, exchanges, queues and bindings as a JSON file (RabbitMQ format).'), exportForm, summary),
        section('Import', h('p', { class: 'muted' }, 'Adds what a definitions file describes; existing objects are kept.'), importForm)));
    return { refresh: async () => {} };
  },
};

// ------------------------------------------------------- router and refresh

const ROUTES = {
  overview: OverviewView, connections: ConnectionsView, channels: ChannelsView, consumers: ConsumersView,
  exchanges: ExchangesView, queues: QueuesView, bindings: BindingsView, admin: AdminView, definitions: DefinitionsView,
};

const App = {
  current: null,
  timer: null,
  busy: false,
  running: false,

  route() {
    const parts = location.hash.replace(/^#\/?/, '').split('/').filter((p, i) => p || i > 0).map(decodeURIComponent);
    const [name = 'overview', ...params] = parts;
    let view = ROUTES[name] || OverviewView;
    if (name === 'queues' && params.length >= 2) view = QueueView;
    document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.dataset.nav === (ROUTES[name] ? name : 'overview')));
    const el = h('div', { class: 'view-body', 'data-view': view === QueueView ? 'queue' : name });
    $('#view').replaceChildren(el);
    document.title = `${view === QueueView ? `Queue ${params[1]}` : (name[0].toUpperCase() + name.slice(1))} · Warren`;
    try {
      App.current = view.mount(el, params);
    } catch (e) {
      App.current = null;
      Notify.error(e);
    }
    App.tick(true);
  },

  /** One refresh: sample the overview (for the charts) and refresh the view. */
  async tick(force = false) {
    if (!App.running || (App.busy && !force)) return;
    App.busy = true;
    try {
      await act(() => (force ? Stats.fresh(1000) : Stats.sample()));
      if (App.current?.refresh) await act(() => App.current.refresh());
      $('#updated').textContent = `Updated ${fmt.time(Date.now())}`;
    } finally { App.busy = false; }
  },

  schedule() {
    clearInterval(App.timer);
    const sec = Settings.refresh;
    if (sec > 0) App.timer = setInterval(() => App.tick(), sec * 1000);
  },

  start() {
    App.running = true;
    App.schedule();
    App.route();
  },

  stop() {
    App.running = false;
    clearInterval(App.timer);
    App.current = null;
    Stats.samples = [];
    Stats.latest = null;
    $('#view').replaceChildren();
    Notify.clear();
  },
};

// -------------------------------------------------------------------- boot

function boot() {
  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('#login-error');
    err.hidden = true;
    const btn = ev.target.querySelector('button');
    btn.disabled = true;
    try {
      await Session.login($('#login-username').value, $('#login-password').value);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    } finally { btn.disabled = false; }
  });
  $('#logout').addEventListener('click', () => Session.logout());
  $('#vhost-filter').addEventListener('change', (e) => { Settings.vhost = e.target.value; App.route(); });
  const refreshSel = $('#refresh-interval');
  refreshSel.value = String(Settings.refresh);
  refreshSel.addEventListener('change', () => { Settings.refresh = Number(refreshSel.value); App.schedule(); });
  window.addEventListener('hashchange', () => { if (App.running) { Notify.clear('error'); App.route(); } });

  if (Settings.auth && Settings.user) {
    api.raw('GET', '/whoami').then(({ res, data }) => {
      if (res.ok) { Settings.user = data; Session.start(); } else Session.logout(data?.reason);
    }, () => Session.logout('The management API is not reachable.'));
  } else {
    Session.logout();
  }
}

document.addEventListener('DOMContentLoaded', boot);
