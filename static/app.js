// vigil dashboard: keeps the server-rendered page live from /events.
//
// One EventSource per page; where the stream cannot be held (a proxy that
// buffers it: no event within a heartbeat although the server has some),
// the page falls back to long polling /api/v1/poll with the same ids, and
// remembers for a day that it had to. Events update an in-memory model; rendering
// happens at most once per animation frame, touches only what changed, and
// stops while the tab is hidden or paused (the model keeps up, so a tab that
// comes back catches up at once). The connection indicator never claims
// "live" unless events are arriving.
//
// This is an ES module (layout.templ loads it with type="module"): what it
// shares with the server's templates (format, radius, sparkPath) is
// exported, not put on window. The script finds its elements by ids and
// classes; data-testid attributes are for tests only.

import * as charts from './charts.js';

// ---- settings, from the page -----------------------------------------------
const body = document.body;
const intervalMs = Number(body.dataset.intervalMs) || 1000;
const streamQuery = body.dataset.streamQuery || '';
const staleAfterMs = Math.max(3 * intervalMs, 5000);
// A working stream carries an event (or, idle, a heartbeat) at least this
// often; silence longer than this is checked with one poll.
const silentMs = (Number(body.dataset.heartbeatMs) || 10000) + Math.max(2 * intervalMs, 2000);
const rememberMs = 24 * 3600 * 1000; // how long a fallback is remembered
const transportKey = 'vigil-transport';
const themeKey = 'vigil-theme';
const resortEveryMs = 5000;
// Reconnect delays: the base doubles from firstMs to maxMs; each delay is
// the base plus up to as much again of jitter, so pages that lost the same
// server do not all come back in the same second.
const backoff = { firstMs: 1000, maxMs: 15000 };

// ---- state: everything that changes, in one place ---------------------------
const state = {
  // The model, source name -> {name, roots, values: metric -> [el],
  // sparks: metric -> [spark], ts, metrics, status, dirty, visible, bands}.
  sources: new Map(),
  onScreen: new Set(), // the sources with a tile on (or near) the screen
  // The connection.
  lastId: body.dataset.lastEventId || '', // the position to go on from
  transport: 'sse', // or 'poll'
  conn: 'connecting', // before staleness and pause are applied
  lastEventAt: 0,
  es: null, // the EventSource, on SSE
  heard: false, // an event came on the current stream
  watchdog: 0, // timer: the current stream's silence check
  retryTimer: 0, // timer: the next EventSource after one gave up
  retryMs: backoff.firstMs, // the next reconnect delay's base
  polling: false, // the long-poll loop is running
  // Drawing.
  paused: false,
  frame: 0, // the animation frame requested, if any
  lastSort: 0,
  redrawTimer: 0,
  redrawOnSample: false, // a reset came with nothing to draw yet
  redrawWhenResumed: false, // a redraw waits for the pause to end
  // On a hub: the host table's rows and agents (see indexFleet), or null.
  fleet: null,
};

// The page's own elements (outside #main, which a redraw replaces).
const ui = {
  conn: document.getElementById('conn'),
  filter: document.getElementById('filter'),
  sort: document.getElementById('sort'),
  pause: document.getElementById('pause'),
  theme: document.getElementById('theme'),
  controls: document.querySelector('.controls'),
};

// ---- formatting: the same rules as units.Format ------------------------------
function fixed(v, d) {
  let s = v.toFixed(d);
  if (s.includes('.')) s = s.replace(/0+$/, '').replace(/\.$/, '');
  return s === '-0' ? '0' : s;
}
function binary(v) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? fixed(v, 0) + ' B' : fixed(v, 1) + ' ' + units[i];
}
function si(v) {
  const units = ['', 'k', 'M', 'G', 'T'];
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  if (i === 0) return fixed(v, Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2); // three significant digits, as above a thousand
  return fixed(v, 1) + units[i];
}
function duration(sec) {
  const s = Math.trunc(sec);
  const days = Math.trunc(s / 86400), h = Math.trunc(s / 3600) % 24, m = Math.trunc(s / 60) % 60;
  if (days > 0) return days + 'd ' + h + 'h';
  if (h > 0) return h + 'h ' + m + 'm';
  if (m > 0) return m + 'm ' + (s % 60) + 's';
  return fixed(sec, 0) + 's';
}
export function format(kind, v) {
  if (typeof v !== 'number' || !isFinite(v)) return '–';
  switch (kind) {
    case 'percent': return fixed(v, 1) + '%';
    case 'bytes': return binary(v);
    case 'byterate': return binary(v) + '/s';
    case 'rate': return si(v) + '/s';
    case 'latency': {
      const ms = v * 1000;
      if (ms < 1) return fixed(ms, 2) + ' ms';
      if (ms < 1000) return fixed(ms, 0) + ' ms';
      return fixed(v, 2) + ' s';
    }
    case 'latency-bound': return '≤ ' + format('latency', v);
    case 'duration': return duration(v);
  }
  return si(v);
}

// Health bands by error percentage and the circle's size: the same as
// templates.HealthBands and templates.CircleRadius.
const healthBands = [
  { below: 1, cls: 'h-ok', symbol: '✓', word: 'healthy' },
  { below: 5, cls: 'h-warn', symbol: '!', word: 'degraded' },
  { below: 20, cls: 'h-bad', symbol: '!!', word: 'erroring' },
  { below: Infinity, cls: 'h-crit', symbol: '✕', word: 'critical' },
];
function healthIndex(errPercent) {
  const i = healthBands.findIndex((b) => errPercent < b.below);
  return i < 0 ? healthBands.length - 1 : i;
}
const health = (errPercent) => healthBands[healthIndex(errPercent)];
export function radius(rate) {
  if (!(rate > 0)) return 6;
  const f = Math.min(1, Math.log10(1 + rate) / 4);
  return Math.round((6 + 24 * Math.sqrt(f)) * 10) / 10;
}

// ---- sparklines: the same path as templates.SparkPath -------------------------
export function sparkPath(values, cap, top, w, h) {
  if (!values.length) return '';
  if (cap < 2) cap = 2;
  if (values.length > cap) values = values.slice(values.length - cap);
  if (!(top > 0)) {
    top = 0;
    for (const v of values) if (v > top) top = v;
    if (!(top > 0)) top = 1;
  }
  const step = w / (cap - 1);
  const x0 = w - step * (values.length - 1);
  let d = '';
  for (let i = 0; i < values.length; i++) {
    const v = Math.min(Math.max(values[i], 0), top);
    d += (i ? 'L' : 'M') + (x0 + step * i).toFixed(1) + ',' + (h - h * v / top).toFixed(1);
  }
  return d;
}

// ---- the model and its index into the DOM -------------------------------------

// Only sources on screen are drawn; the others are marked dirty and drawn
// when they scroll into view. With hundreds of tiles this is most of the
// saving: a 1280x720 screen shows a dozen.
const observer = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
  for (const e of entries) {
    const s = state.sources.get(e.target.dataset.source);
    if (!s) continue;
    if (e.isIntersecting) s.visible++; else s.visible = Math.max(0, s.visible - 1);
    if (s.visible > 0) state.onScreen.add(s); else state.onScreen.delete(s);
  }
  schedule();
}, { rootMargin: '200px' }) : null;

function indexPage() {
  if (observer) observer.disconnect();
  state.onScreen.clear();
  state.sources.clear();
  for (const root of document.querySelectorAll('[data-source]')) {
    const name = root.dataset.source;
    let s = state.sources.get(name);
    if (!s) {
      s = { name, roots: [], values: new Map(), sparks: new Map(), ts: 0, metrics: null, dirty: false, status: null, visible: 0, bands: {} };
      state.sources.set(name, s);
      if (!observer) state.onScreen.add(s);
    }
    s.roots.push(root);
    if (observer) observer.observe(root);
    for (const el of root.querySelectorAll('[data-metric]')) {
      const list = s.values.get(el.dataset.metric) || [];
      list.push(el);
      s.values.set(el.dataset.metric, list);
    }
    for (const svg of root.querySelectorAll('svg[data-spark]')) {
      const sp = readSpark(svg);
      const list = s.sparks.get(svg.dataset.spark) || [];
      list.push(sp);
      s.sparks.set(svg.dataset.spark, list);
    }
  }
}

// readSpark is a sparkline as the server drew it: its path, values, and
// the capacity, top and size it was drawn with.
function readSpark(svg) {
  const raw = svg.dataset.values.trim();
  return {
    path: svg.querySelector('path'),
    values: raw ? raw.split(' ').map(Number) : [],
    cap: Number(svg.dataset.cap) || 2,
    max: Number(svg.dataset.max) || 0,
    w: Number(svg.dataset.w), h: Number(svg.dataset.h),
  };
}

function applySample(d) {
  const s = state.sources.get(d.source);
  if (!s) { // a source that appeared after the page was rendered
    if (!streamQuery) redrawSoon();
    return;
  }
  const ts = Date.parse(d.ts);
  if (ts <= s.ts) return; // already drawn (the page was rendered after it)
  if (!streamQuery && 'http.requests_per_sec' in d.metrics && s.roots.some((r) => r.dataset.kind === 'generic')) {
    redrawSoon(); // it turned out to be a service: draw it as one
  }
  s.ts = ts;
  s.metrics = d.metrics;
  if (streamQuery) charts.sample(ts, d.metrics);
  for (const [metric, list] of s.sparks) {
    const v = d.metrics[metric];
    if (typeof v !== 'number') continue;
    for (const sp of list) {
      sp.values.push(v);
      if (sp.values.length > sp.cap) sp.values.splice(0, sp.values.length - sp.cap);
    }
  }
  s.dirty = true;
}

// serviceNumbers are what a service tile's circle and sort order go by:
// from the model, or (before the first sample) from the rendered tile.
function serviceNumbers(s, el) {
  const m = s && s.metrics;
  if (m) return { rate: m['http.requests_per_sec'] || 0, error: m['http.error_percent'] || 0, latency: m['http.latency_p99_seconds'] || 0 };
  return { rate: Number(el.dataset.rate) || 0, error: Number(el.dataset.error) || 0, latency: Number(el.dataset.latency) || 0 };
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function renderSource(s) {
  if (s.metrics) {
    for (const [metric, list] of s.values) {
      const v = s.metrics[metric];
      if (v === undefined) continue;
      for (const el of list) setText(el, format(el.dataset.fmt, v));
    }
    for (const list of s.sparks.values()) {
      for (const sp of list) {
        const d = sparkPath(sp.values, sp.cap, sp.max, sp.w, sp.h);
        if (sp.path.getAttribute('d') !== d) sp.path.setAttribute('d', d);
      }
    }
    for (const root of s.roots) if (root.dataset.kind === 'service') renderService(root, serviceNumbers(s, root));
  }
  if (s.status) for (const root of s.roots) renderStatus(root, s.status);
  s.dirty = false;
}

function renderService(root, n) {
  const b = health(n.error);
  root.dataset.rate = n.rate;
  root.dataset.error = n.error;
  root.dataset.latency = n.latency;
  if (!root.classList.contains(b.cls)) {
    for (const x of healthBands) root.classList.remove(x.cls);
    root.classList.add(b.cls);
    const sym = root.querySelector('.circle .sym');
    if (sym) sym.textContent = b.symbol;
  }
  const svg = root.querySelector('.circle');
  if (!svg) return;
  const c = svg.querySelector('circle');
  const r = String(radius(n.rate));
  if (c && c.getAttribute('r') !== r) c.setAttribute('r', r);
  svg.setAttribute('aria-label', b.word + ', ' + format('rate', n.rate));
}

function renderStatus(root, status) {
  const el = root.querySelector('.status');
  if (!el) return;
  const st = status.state;
  el.className = 'status status-' + st;
  el.title = status.error || '';
  setText(el, st === 'failed' ? 'failing' : st);
}

// ---- rendering, at most once a frame, never while hidden or paused ----------
function schedule() {
  if (state.frame || state.paused || document.hidden) return;
  state.frame = requestAnimationFrame(render);
}

function render(now) {
  state.frame = 0;
  if (state.paused || document.hidden) return;
  for (const s of state.onScreen) if (s.dirty) renderSource(s);
  if (state.fleet) renderFleet();
  charts.draw();
  if (now - state.lastSort >= resortEveryMs) {
    sortTiles(false);
    if (state.fleet) sortFleet();
    state.lastSort = now;
  }
}

// ---- sorting: stable, by bands rather than raw values -------------------------
// A tile sorts by the band its value is in, so that small changes do not
// make tiles trade places (dashboard/pages.go sortTiles orders the first
// rendering the same way). Health bands are fixed; the others are powers
// of two, and sticky: a tile keeps its band until the value is clearly (by
// a fifth of a band) in another, so values near a boundary do not make
// tiles swap back and forth.
const sortBands = {
  health: { of: (n) => n.error, fixed: healthIndex },
  rate: { of: (n) => n.rate },
  latency: { of: (n) => n.latency * 1000 }, // ms
};
// Sort orders by templates.Sorts key: the bands compared, most significant
// first (the higher band first); ties go by source name.
const sortOrders = {
  error: ['health', 'rate'],
  name: [],
  rate: ['rate'],
  latency: ['latency'],
};

function bandOf(s, name, n) {
  const band = sortBands[name];
  const v = band.of(n);
  if (band.fixed) return band.fixed(v);
  const x = Math.log2(1 + Math.max(0, v));
  const prev = s ? s.bands[name] : undefined;
  const b = prev !== undefined && x > prev - 0.2 && x < prev + 1.2 ? prev : Math.floor(x);
  if (s) s.bands[name] = b;
  return b;
}

function sortTiles(force) {
  const box = document.getElementById('tiles');
  if (!box) return;
  const order = sortOrders[ui.sort ? ui.sort.value : 'error'] || sortOrders.error;
  const tiles = Array.from(box.children);
  // Keys come from the model, which is current for every tile, drawn or not.
  const keyed = tiles.map((el) => {
    const s = state.sources.get(el.dataset.source);
    const n = serviceNumbers(s, el);
    return { el, k: order.map((name) => bandOf(s, name, n)), n: el.dataset.source };
  });
  keyed.sort((a, b) => {
    for (let i = 0; i < a.k.length; i++) if (a.k[i] !== b.k[i]) return b.k[i] - a.k[i];
    return a.n < b.n ? -1 : a.n > b.n ? 1 : 0;
  });
  if (!force && keyed.every((x, i) => x.el === tiles[i])) return;
  // Move only the tiles that are out of place: every move costs a layout.
  for (let i = 0; i < keyed.length; i++) {
    const want = keyed[i].el;
    if (box.children[i] !== want) box.insertBefore(want, box.children[i]);
  }
}

// ---- the fleet table: a hub's hosts, one row each -------------------------------
// A hub follows hundreds of agents; their hosts are rows of one table
// (templates.FleetTable). Each row has a model, updated by every event of
// its host (host/<name>) and of its agent (upstream/<name>); only rows on
// (or near) the screen are drawn, each touching the cells whose text
// changed. Sorting, grouping and the filter work on the models and move
// only the rows out of place.
const fleetSorts = ['worst', 'name', 'cpu', 'mem', 'disk', 'net', 'load', 'uptime'];
const stateRank = { unreachable: 0, failed: 1, waiting: 2, up: 3 };
const unreachableRe = /^unreachable since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)): (.*)$/s;

// Rows are content-visibility: auto (app.css): the browser renders only
// those on or near the screen, and says when one starts or stops being
// skipped, which is how the table knows which rows to draw. Where that
// event is missing, an IntersectionObserver tells instead (it costs more:
// it looks at every row every frame).
const skipEvents = 'ContentVisibilityAutoStateChangeEvent' in window && 'checkVisibility' in Element.prototype;
function onSkip(e) {
  const f = state.fleet;
  if (!f || !e.target.classList || !e.target.classList.contains('fleet-row')) return;
  const r = f.rows.get(e.target.dataset.host);
  if (!r || r.el !== e.target) return;
  if (e.skipped) f.onScreen.delete(r); else f.onScreen.add(r);
  schedule();
}
const fleetObserver = !skipEvents && 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
  const f = state.fleet;
  if (!f) return;
  for (const e of entries) {
    const r = f.rows.get(e.target.dataset.host);
    if (!r || r.el !== e.target) continue;
    if (e.isIntersecting) f.onScreen.add(r); else f.onScreen.delete(r);
  }
  schedule();
}, { rootMargin: '200px' }) : null;

const numAttr = (s) => (s === undefined || s === '' ? null : Number(s));

// indexFleet builds the rows' models from the rendered table.
function indexFleet() {
  if (fleetObserver) fleetObserver.disconnect();
  const table = document.getElementById('fleet-table');
  if (!table) { state.fleet = null; return; }
  const params = new URLSearchParams(location.search);
  const sort = params.get('sort');
  const f = {
    table, rows: new Map(), ups: new Map(), onScreen: new Set(),
    sort: fleetSorts.includes(sort) ? sort : 'worst',
    group: params.get('group') || '',
    cap: Number(document.getElementById('fleet').dataset.cap) || 60,
    counted: false, // the counts shown are current
  };
  state.fleet = f;
  for (const el of table.querySelectorAll('tr.fleet-row')) {
    const ds = el.dataset;
    let labels = {};
    try { labels = JSON.parse(ds.labels || '{}'); } catch (_) { /* none */ }
    const svg = el.querySelector('.c-spark svg');
    const since = ds.since ? Date.parse(ds.since) : 0;
    const st = ds.state;
    const title = el.cells[0] ? el.cells[0].title : '';
    const fig = { cpu: numAttr(ds.cpu), mem: numAttr(ds.mem), disk: numAttr(ds.disk), net: numAttr(ds.net), load: numAttr(ds.load), uptime: numAttr(ds.uptime) };
    const r = {
      el, source: ds.host, name: el.querySelector('.c-name a').textContent, upstream: ds.upstream || '', labels,
      // Lower-cased, for the filter.
      find: [ds.host.slice(ds.host.indexOf('/') + 1), ds.upstream || '', ...Object.values(labels)].map((s) => s.toLowerCase()),
      fig, hasData: Object.values(fig).some((v) => v !== null), ts: Number(ds.ts) || 0, // the rendering's sample
      hostState: st === 'failed' ? 'failed' : '', hostError: st === 'failed' ? title : '', hostSince: st === 'failed' ? since : 0,
      state: st, since, error: title, drawn: null, cells: null, dirty: false, band: undefined,
      spark: svg ? readSpark(svg) : { path: null, values: [], cap: f.cap },
    };
    f.rows.set(r.source, r);
    if (r.upstream) {
      let u = f.ups.get(r.upstream);
      if (!u) {
        // What the rendering says of the agent, until its events say more.
        u = { rows: [], connected: st === 'waiting' ? null : st !== 'unreachable', waiting: false, since: 0, error: '', refused: '' };
        if (st === 'unreachable') { u.since = since; u.error = title; }
        f.ups.set(r.upstream, u);
      }
      u.rows.push(r);
      r.up = u;
    }
    // A row on the screen now is drawn from the start, not only once an
    // event says so: Chromium sends one for a row's first state too, but
    // the specification speaks only of changes.
    if (fleetObserver) fleetObserver.observe(el);
    else if (!skipEvents || el.cells[0].checkVisibility({ contentVisibilityAuto: true })) f.onScreen.add(r);
  }
}

// hostFigures are a row's numbers from a host's sample, as the server's
// (dashboard/fleet.go hostFigures).
function hostFigures(m) {
  const num = (k) => (typeof m[k] === 'number' ? m[k] : null);
  let disk = null;
  for (const k in m) if (k.startsWith('fs.used_percent{') && (disk === null || m[k] > disk)) disk = m[k];
  const rx = num('net.rx_bytes_per_sec'), tx = num('net.tx_bytes_per_sec');
  let load = num('load.5_per_core');
  if (load === null) load = num('load.1');
  return {
    cpu: num('cpu.percent'), mem: num('mem.used_percent'), disk,
    net: rx === null && tx === null ? null : (rx || 0) + (tx || 0), load, uptime: num('host.uptime_seconds'),
  };
}

// rowState works out a row's state, as the server does (dashboard/fleet.go
// hostRow): its agent first, then its host.
function rowState(r) {
  const u = r.up;
  let st = 'up', since = 0, error = '';
  if (u && u.connected === false) {
    st = u.waiting ? 'waiting' : 'unreachable';
    since = u.since; error = u.error;
  } else if (u && u.refused) {
    st = 'failed'; error = u.refused;
  } else if (r.hostState === 'failed') {
    st = 'failed'; since = r.hostSince; error = r.hostError;
  } else if (!r.hasData) {
    st = 'waiting';
  }
  if (st !== r.state || since !== r.since || error !== r.error) {
    if (st !== r.state) state.fleet.counted = false;
    r.state = st; r.since = since; r.error = error;
    r.dirty = true;
  }
}

// fleetSample takes a host's sample; false when the table has no row for
// it (a host that appeared after the page was rendered).
function fleetSample(d) {
  const r = state.fleet.rows.get(d.source);
  if (!r) return false;
  const ts = Date.parse(d.ts);
  if (ts <= r.ts) return true;
  r.ts = ts;
  r.fig = hostFigures(d.metrics);
  r.hasData = true;
  const cpu = d.metrics['cpu.percent'];
  if (typeof cpu === 'number') {
    const v = r.spark.values;
    v.push(cpu);
    if (v.length > r.spark.cap) v.splice(0, v.length - r.spark.cap);
  }
  r.dirty = true;
  rowState(r);
  return true;
}

// fleetUpstream takes an agent's connection sample or source event;
// false when no row belongs to it.
function fleetUpstream(d) {
  const u = state.fleet.ups.get(d.source.slice('upstream/'.length));
  if (!u) return false;
  if (d.type === 'sample') {
    const up = d.metrics['upstream.up'];
    if (up === 1 && u.connected !== true) { u.connected = true; u.waiting = false; u.error = ''; }
    if (up === 0 && u.connected !== false) {
      u.connected = false;
      u.since = Date.parse(d.ts) - 1000 * (d.metrics['upstream.down_seconds'] || 0);
    }
  } else if (d.state === 'gone') {
    return false; // no longer followed: draw the table afresh
  } else if (d.state === 'failed' && unreachableRe.test(d.error || '')) {
    const [, at, why] = unreachableRe.exec(d.error);
    u.connected = false;
    u.since = Date.parse(at);
    u.waiting = why === 'not connected yet';
    u.error = d.error;
  } else if (d.state === 'failed') {
    u.connected = true; u.refused = d.error || 'failed';
  } else if (d.state === 'up' && !d.gap) {
    u.connected = true; u.waiting = false; u.refused = ''; u.error = '';
  }
  for (const r of u.rows) rowState(r);
  return true;
}

function fleetSource(d) {
  const r = state.fleet.rows.get(d.source);
  if (!r || d.state === 'gone') return false;
  r.hostState = d.state;
  r.hostError = d.error || '';
  r.hostSince = Date.parse(d.ts);
  rowState(r);
  return true;
}

const stateWord = (st) => (st === 'failed' ? 'failing' : st);
const columns = ['cpu', 'mem', 'disk', 'net', 'load', 'uptime'];
const columnFormat = { cpu: 'percent', mem: 'percent', disk: 'percent', net: 'byterate', load: 'number', uptime: 'duration' };

function renderRow(r) {
  const el = r.el;
  if (!r.cells) {
    const c = el.cells;
    r.cells = { state: c[0], word: c[0].querySelector('.st'), since: c[0].querySelector('.since'), cpu: c[2], mem: c[3], disk: c[4], net: c[5], load: c[6], uptime: c[7] };
  }
  const c = r.cells;
  if (r.drawn !== r.state) {
    el.className = 'fleet-row row-' + r.state;
    el.dataset.state = r.state;
    setText(c.word, stateWord(r.state));
    r.drawn = r.state;
  }
  const since = (r.state === 'unreachable' || r.state === 'failed') && r.since ? 'since ' + clock(r.since) : '';
  setText(c.since, since);
  if (c.state.title !== r.error) c.state.title = r.error;
  for (const k of columns) setText(c[k], format(columnFormat[k], r.fig[k]));
  if (r.spark.path) {
    const d = sparkPath(r.spark.values, r.spark.cap, r.spark.max, r.spark.w, r.spark.h);
    if (r.spark.path.getAttribute('d') !== d) r.spark.path.setAttribute('d', d);
  }
  r.dirty = false;
}

// ---- the fleet table: sorting, grouping, filtering --------------------------------
// pressure is the highest of CPU, memory and disk, in bands of ten points
// that are sticky, as the tiles' bands are: a row keeps its band until its
// value is clearly (two points) in another.
function pressureBand(r) {
  let p = -1;
  for (const k of ['cpu', 'mem', 'disk']) if (r.fig[k] !== null && r.fig[k] > p) p = r.fig[k];
  if (p < 0) { r.band = undefined; return null; }
  const prev = r.band;
  r.band = prev !== undefined && p > prev * 10 - 2 && p < prev * 10 + 12 ? prev : Math.floor(p / 10);
  return r.band;
}

// rowKey is a row's value in an order, null when not known (nor known
// since its agent became unreachable), as dashboard/fleet.go sortKey.
function rowKey(r, by) {
  if (r.state === 'unreachable') return null;
  if (by === 'worst') return pressureBand(r);
  return r.fig[by];
}

// compareRows orders rows as dashboard/fleet.go sortRows does.
function compareRows(a, b, by) {
  if (by === 'worst' && a.state !== b.state) return stateRank[a.state] - stateRank[b.state];
  if (by !== 'name') {
    const ka = a.key, kb = b.key;
    if (ka !== null && kb === null) return -1;
    if (kb !== null && ka === null) return 1;
    if (ka !== null && ka !== kb) return kb - ka;
  }
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return a.source < b.source ? -1 : a.source > b.source ? 1 : 0;
}

// sortFleet puts each group's rows in order, moving only those out of
// place: every move costs a layout.
function sortFleet() {
  const f = state.fleet;
  for (const r of f.rows.values()) r.key = rowKey(r, f.sort);
  for (const tb of f.table.tBodies) {
    const head = tb.rows[0] && tb.rows[0].classList.contains('group-head') ? 1 : 0;
    const rows = [];
    for (let i = head; i < tb.rows.length; i++) {
      const r = f.rows.get(tb.rows[i].dataset.host);
      if (r) rows.push(r);
    }
    rows.sort((a, b) => compareRows(a, b, f.sort));
    for (let i = 0; i < rows.length; i++) {
      const at = tb.rows[head + i];
      if (at !== rows[i].el) tb.insertBefore(rows[i].el, at || null);
    }
  }
}

function setFleetSort(key) {
  const f = state.fleet;
  f.sort = key;
  for (const th of f.table.tHead.rows[0].cells) {
    const a = th.querySelector('a.sort-by');
    if (!a) continue;
    th.setAttribute('aria-sort', a.dataset.sort !== key ? 'none' : key === 'name' ? 'ascending' : 'descending');
  }
  sortFleet();
  state.lastSort = performance.now();
  saveView();
}

function groupTitle(key, value) {
  return value === '' ? 'no ' + key : key + ' = ' + value;
}

// groupFleet puts the rows in one group per value of a label (none: one
// group), the groups by value and those without the label last.
function groupFleet(key) {
  const f = state.fleet;
  f.group = key;
  const groups = new Map();
  for (const r of f.rows.values()) {
    const v = key && Object.prototype.hasOwnProperty.call(r.labels, key) ? String(r.labels[key]) : '';
    if (!groups.has(v)) groups.set(v, []);
    groups.get(v).push(r);
  }
  const values = Array.from(groups.keys()).sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a < b ? -1 : a > b ? 1 : 0));
  const bodies = values.map((v) => {
    const tb = document.createElement('tbody');
    tb.className = 'fleet-group';
    tb.dataset.group = v;
    tb.dataset.testid = 'fleet-group';
    if (key) {
      const tr = document.createElement('tr');
      tr.className = 'group-head';
      const th = document.createElement('th');
      th.colSpan = 9;
      th.scope = 'rowgroup';
      th.dir = 'auto';
      const count = document.createElement('span');
      count.className = 'group-count';
      th.append(groupTitle(key, v) + ' ', count);
      tr.append(th);
      tb.append(tr);
    }
    tb.append(...groups.get(v).map((r) => r.el));
    return tb;
  });
  for (const tb of Array.from(f.table.tBodies)) tb.remove();
  f.table.append(...bodies);
  sortFleet();
  f.counted = false;
  schedule();
}

// hostMatches is templates.HostMatches: every word of the filter must
// match, "key=value" a label exactly, any other word part of the name,
// the agent's name or a label's value.
function hostMatches(words, r) {
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq > 0) {
      const k = w.slice(0, eq);
      let v = '';
      for (const lk in r.labels) if (lk.toLowerCase() === k) v = String(r.labels[lk]);
      if (v.toLowerCase() !== w.slice(eq + 1)) return false;
    } else if (!r.find.some((s) => s.includes(w))) return false;
  }
  return true;
}

function filterFleet(filter) {
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const f = state.fleet;
  for (const r of f.rows.values()) {
    const hide = !hostMatches(words, r);
    if (r.el.hidden !== hide) r.el.hidden = hide;
  }
  // On a hub a tile has no labels: only the other words filter tiles.
  const plain = words.filter((w) => !(w.indexOf('=') > 0));
  for (const el of document.querySelectorAll('.tile')) {
    const name = el.dataset.source.toLowerCase();
    el.hidden = !plain.every((w) => name.includes(w));
  }
  f.counted = false;
  schedule();
}

// countFleet writes the counts: hosts shown, unreachable and failing, and
// each group's hosts shown.
function countFleet() {
  const f = state.fleet;
  let shown = 0, unreachable = 0, failed = 0;
  for (const r of f.rows.values()) {
    if (!r.el.hidden) shown++;
    if (r.state === 'unreachable') unreachable++;
    else if (r.state === 'failed') failed++;
  }
  const total = f.rows.size;
  const plural = (n, one, many) => n + ' ' + (n === 1 ? one : many);
  const count = document.getElementById('fleet-count');
  if (count) setText(count, shown === total ? String(total) : shown + ' of ' + total);
  const sum = document.getElementById('fleet-sum');
  if (sum) {
    setText(sum.querySelector('.n-unreachable'), plural(unreachable, 'unreachable', 'unreachable'));
    setText(sum.querySelector('.n-failed'), plural(failed, 'failing', 'failing'));
  }
  for (const tb of f.table.tBodies) {
    const c = tb.querySelector('.group-count');
    if (!c) continue;
    let n = 0;
    for (const tr of tb.rows) if (tr.classList.contains('fleet-row') && !tr.hidden) n++;
    setText(c, plural(n, 'host', 'hosts'));
  }
  f.counted = true;
}

function renderFleet() {
  const f = state.fleet;
  for (const r of f.onScreen) if (r.dirty) renderRow(r);
  if (!f.counted) countFleet();
}

// fleetLinks keeps the column headers' links (for a new tab, or a copy)
// in step with the view.
function fleetLinks() {
  const f = state.fleet;
  for (const a of f.table.tHead.querySelectorAll('a.sort-by')) {
    const q = new URLSearchParams(location.search);
    if (a.dataset.sort === 'worst') q.delete('sort'); else q.set('sort', a.dataset.sort);
    const s = q.toString();
    a.href = s ? '?' + s : location.pathname;
  }
}

// keepFleet carries what the old models knew and the new rendering does
// not yet (samples that came while it was fetched) into the new ones.
function keepFleet(old) {
  if (!old || !state.fleet) return;
  for (const [k, o] of old.rows) {
    const r = state.fleet.rows.get(k);
    if (r && o.ts > r.ts) {
      r.ts = o.ts; r.fig = o.fig; r.hasData = o.hasData; r.spark.values = o.spark.values;
      r.dirty = true;
      rowState(r);
    }
  }
}

// fleetEvent applies an event of a hub's host or agent to the table; false
// when it is not one of those. One the table has no row for makes it draw
// afresh (a new agent, a new host, one no longer followed).
function fleetEvent(d) {
  if (!state.fleet || !d.source) return false;
  let known;
  if (d.source.startsWith('host/')) known = d.type === 'sample' ? fleetSample(d) : fleetSource(d);
  else if (d.source.startsWith('upstream/')) known = fleetUpstream(d);
  else return false;
  if (!known) redrawSoon();
  return true;
}

// The table's controls are in #main, which a redraw replaces: their
// events are taken where they bubble to.
function wireFleet(main) {
  if (skipEvents) main.addEventListener('contentvisibilityautostatechange', onSkip, true); // it does not bubble
  main.addEventListener('click', (e) => {
    const a = e.target.closest('#fleet-table a.sort-by');
    if (!a || !state.fleet || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    setFleetSort(a.dataset.sort);
  });
  main.addEventListener('change', (e) => {
    if (e.target.id !== 'group' || !state.fleet) return;
    groupFleet(e.target.value);
    saveView();
  });
  main.addEventListener('submit', (e) => { if (e.target.closest('.fleet-controls')) e.preventDefault(); });
}

// ---- view state in the URL ----------------------------------------------------
function saveView() {
  const q = new URLSearchParams(location.search);
  const set = (k, v) => (v ? q.set(k, v) : q.delete(k));
  set('q', ui.filter ? ui.filter.value : '');
  if (ui.sort) set(ui.sort.name, ui.sort.value !== 'error' ? ui.sort.value : ''); // ?tiles= on a hub
  if (state.fleet) {
    set('sort', state.fleet.sort !== 'worst' ? state.fleet.sort : '');
    set('group', state.fleet.group);
  }
  set('paused', state.paused ? '1' : '');
  const s = q.toString();
  history.replaceState(null, '', s ? '?' + s : location.pathname);
  if (state.fleet) fleetLinks();
}
function applyFilter() {
  if (state.fleet) { filterFleet(ui.filter ? ui.filter.value : ''); return; }
  const f = (ui.filter ? ui.filter.value : '').toLowerCase();
  for (const el of document.querySelectorAll('.tile, .host')) {
    el.hidden = f !== '' && !el.dataset.source.toLowerCase().includes(f);
  }
}
function setPaused(p) {
  state.paused = p;
  if (ui.pause) {
    ui.pause.setAttribute('aria-pressed', String(p));
    ui.pause.textContent = p ? 'Resume' : 'Pause';
  }
  showConn();
  saveView();
  if (!p) {
    if (state.redrawWhenResumed) { state.redrawWhenResumed = false; redraw(); }
    schedule();
  }
}

const themes = ['system', 'dark', 'light'];
function savedTheme() {
  try { return localStorage.getItem(themeKey) || 'system'; } catch (_) { return 'system'; }
}
function setTheme(t) {
  if (t === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  try { localStorage.setItem(themeKey, t); } catch (_) { /* private mode */ }
  if (ui.theme) ui.theme.title = 'Theme: ' + (t === 'system' ? 'follows the system' : t) + ' (t)';
}
function nextTheme() {
  setTheme(themes[(themes.indexOf(savedTheme()) + 1) % themes.length]);
  mountCharts(); // the canvas takes its colours when drawn
}

// ---- the connection and its indicator ----------------------------------------
const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
const transportName = { sse: 'SSE', poll: 'long polling' };

function showConn() {
  if (!ui.conn) return;
  let shown = state.conn, text;
  const since = state.lastEventAt ? clock(state.lastEventAt) : 'page load';
  if (shown === 'live' && state.lastEventAt && Date.now() - state.lastEventAt > staleAfterMs) shown = 'stale';
  if (state.paused) shown = 'paused';
  switch (shown) {
    case 'live': text = 'live · ' + transportName[state.transport]; break;
    case 'paused': text = 'paused · last update ' + since; break;
    case 'stale': text = 'stale since ' + since; break;
    case 'reconnecting': text = 'reconnecting… stale since ' + since; break;
    default: text = 'connecting…';
  }
  ui.conn.className = 'conn conn-' + shown;
  ui.conn.dataset.state = shown;
  ui.conn.dataset.transport = state.transport;
  ui.conn.title = 'Updates by ' + transportName[state.transport];
  setText(ui.conn.querySelector('.conn-text'), text);
  body.classList.toggle('is-stale', shown === 'stale' || shown === 'reconnecting');
}
function setConn(c) {
  state.conn = c;
  showConn();
}

// nextDelay is how long to wait before the next reconnect, on every path
// that reconnects; connected starts the delays over.
function nextDelay() {
  const base = state.retryMs;
  state.retryMs = Math.min(base * 2, backoff.maxMs);
  return base + Math.random() * base;
}
function connected() {
  state.retryMs = backoff.firstMs;
}
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

// remember stores the transport that worked; recalled says which to
// start with: long polling if it was needed within the last day.
function remember(t) {
  try { localStorage.setItem(transportKey, JSON.stringify({ t, at: Date.now() })); } catch (_) { /* private mode */ }
}
function recalled() {
  try {
    const v = JSON.parse(localStorage.getItem(transportKey) || 'null');
    if (v && v.t === 'poll' && Date.now() - v.at < rememberMs) return 'poll';
  } catch (_) { /* ignore */ }
  return 'sse';
}

function pollURL(timeout) {
  const q = new URLSearchParams(streamQuery);
  if (state.lastId) q.set('after', state.lastId);
  q.set('timeout', timeout);
  return '/api/v1/poll?' + q;
}

// handle applies one event, from either transport.
function handle(d) {
  if (d.seq) state.lastId = String(d.seq);
  state.lastEventAt = Date.now();
  if (state.conn !== 'live') setConn('live');
  switch (d.type) {
    case 'sample':
      if (state.redrawOnSample) { state.redrawOnSample = false; redrawSoon(); }
      if (!fleetEvent(d)) applySample(d);
      schedule();
      break;
    case 'source': {
      if (fleetEvent(d)) { schedule(); break; }
      const s = state.sources.get(d.source);
      if (s) { s.status = d; s.dirty = true; schedule(); }
      break;
    }
    case 'alert':
      redrawSoon(); // alerts are rare: draw the panel and tile states afresh
      break;
    case 'reset':
      // Right after a restart the server has nothing to draw yet: keep
      // the old picture (greyed until live) and redraw on the first
      // sample.
      if (d.events && d.events.length) redraw(); else state.redrawOnSample = true;
      break;
  }
}

function connect() {
  clearTimeout(state.retryTimer);
  if (state.transport === 'poll') { poll(); return; }
  const q = new URLSearchParams(streamQuery);
  if (state.lastId) q.set('lastEventId', state.lastId);
  const es = new EventSource('/events' + (q.toString() ? '?' + q : ''));
  state.es = es;
  state.heard = false;
  armWatchdog();
  es.onopen = () => {
    connected();
    if (!state.lastEventAt) state.lastEventAt = Date.now();
    setConn('live');
    armWatchdog();
  };
  es.onerror = () => {
    // A network error makes EventSource retry by itself; an answer that
    // is not a 200 event stream (a 502 during a deploy) makes it give up.
    // Either way the screen is not live; in the second case we retry.
    state.heard = false;
    setConn('reconnecting');
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      clearTimeout(state.watchdog);
      state.retryTimer = setTimeout(connect, nextDelay());
    }
  };
  const on = (e) => {
    if (!state.heard) { state.heard = true; clearTimeout(state.watchdog); remember('sse'); }
    handle(JSON.parse(e.data));
  };
  for (const t of ['sample', 'source', 'alert', 'reset']) es.addEventListener(t, on);
}

// The stream has been silent for longer than a heartbeat. One poll from
// the same position tells why: if it has events, they are stuck on the
// way (a buffering proxy) and the page switches to long polling; if not,
// there is nothing to show yet; if it fails, the server is away and the
// stream's own reconnects carry on.
function armWatchdog() {
  clearTimeout(state.watchdog);
  state.watchdog = setTimeout(checkStream, silentMs);
}
async function checkStream() {
  if (state.transport !== 'sse' || state.heard) return;
  let ans = null;
  try {
    const res = await fetch(pollURL('0s'), { cache: 'no-store' });
    if (res.ok) ans = await res.json();
  } catch (_) { /* server away */ }
  if (state.transport !== 'sse' || state.heard) return;
  if (!ans || !ans.events.length) { armWatchdog(); return; }
  state.es.close();
  state.transport = 'poll';
  remember('poll');
  for (const d of ans.events) handle(d);
  if (ans.next) state.lastId = ans.next;
  poll();
}

// poll long-polls until the page goes: each answer holds every event
// after the cursor (or none, after the timeout) and the next cursor.
async function poll() {
  if (state.polling) return;
  state.polling = true;
  while (state.transport === 'poll') {
    try {
      const res = await fetch(pollURL('25s'), { cache: 'no-store' });
      if (res.status === 400) {
        // The server cannot read the cursor or the filter: asking again
        // at once would get the same answer.
        setConn('reconnecting');
        await lostPosition();
        await sleep(nextDelay());
        continue;
      }
      if (!res.ok) throw new Error('poll: ' + res.status);
      const ans = await res.json();
      connected();
      if (state.conn !== 'live') setConn('live');
      for (const d of ans.events) handle(d);
      if (ans.next) state.lastId = ans.next;
    } catch (_) {
      setConn('reconnecting');
      await sleep(nextDelay());
    }
  }
  state.polling = false;
}

// lostPosition starts over from a fresh rendering, as a reset does: the
// page is drawn afresh and the stream followed from the position that
// rendering was made at (or, while paused, from now).
async function lostPosition() {
  state.lastId = '';
  await redraw();
}

function redrawSoon() {
  if (!state.redrawTimer) state.redrawTimer = setTimeout(() => { state.redrawTimer = 0; redraw(); }, 500);
}

// redraw replaces the page's content with a fresh server rendering: after
// a reset (a restart, or a gap longer than the replay window) the
// server's ring buffer is the truth for every sparkline.
async function redraw() {
  if (state.paused) { state.redrawWhenResumed = true; return; } // a paused screen holds still
  try {
    const res = await fetch(location.pathname + location.search, { headers: { Accept: 'text/html' } });
    if (!res.ok) return;
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
    const fresh = doc.getElementById('main');
    const main = document.getElementById('main');
    if (!fresh || !main) return;
    if (!state.lastId) state.lastId = doc.body.dataset.lastEventId || '';
    const model = new Map(state.sources);
    const fleet = state.fleet;
    main.replaceChildren(...fresh.childNodes);
    mountCharts();
    indexPage();
    indexFleet();
    keepFleet(fleet);
    applyFilter();
    // Keep what arrived while the page was fetched; the timestamps skip
    // anything the new rendering already has.
    for (const [k, old] of model) {
      const s = state.sources.get(k);
      if (s && old.metrics && old.ts > s.ts) applySample({ source: k, ts: new Date(old.ts).toISOString(), metrics: old.metrics });
    }
    schedule();
  } catch (_) { /* the stream goes on; the next reset tries again */ }
}

// ---- wiring ---------------------------------------------------------------------
function onKey(e) {
  if (e.key === 'Escape' && e.target === ui.filter) {
    ui.filter.value = '';
    applyFilter();
    saveView();
    ui.filter.blur();
    return;
  }
  const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.target instanceof HTMLTextAreaElement;
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === '/') { e.preventDefault(); if (ui.filter) ui.filter.focus(); }
  else if (e.key === 'p') setPaused(!state.paused);
  else if (e.key === 't') nextTheme();
}

// mountCharts hands a drill-down's charts to charts.js, which draws them
// with uPlot over the SVGs the server drew.
function mountCharts() {
  const section = document.querySelector('section.plots');
  const root = section && section.closest('[data-source]');
  charts.mount(section, { source: root ? root.dataset.source : '', format });
}

// ---- browser notifications (Web Push) --------------------------------------
// "Notify me" subscribes this browser to vigil's pushes: the service
// worker (sw.js) shows firing alerts that match the choice as the
// browser's notifications, with the tab closed. The subscription is a
// receiver on vigil's side, made and removed with the page's session.
const notifyMatch = { critical: ['severity="critical"'], all: [] };

function pushKey(b64) {
  const s = atob(b64.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

async function sendJSON(method, path, body) {
  const res = await fetch(path, { method, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || res.statusText);
  return res.status === 204 ? null : res.json();
}

async function wireNotify() {
  const box = document.getElementById('notify');
  if (!box || !('serviceWorker' in navigator) || !('PushManager' in window) || !window.isSecureContext) return;
  const button = document.getElementById('notify-toggle');
  const which = document.getElementById('notify-which');
  let reg;
  try {
    reg = await navigator.serviceWorker.register('/static/sw.js', { scope: '/' });
  } catch {
    return; // no service worker here (a private window, a policy): no button
  }
  const show = (sub) => {
    button.textContent = sub ? 'Stop notifications' : 'Notify me';
    button.setAttribute('aria-pressed', sub ? 'true' : 'false');
    which.disabled = !!sub;
  };
  show(await reg.pushManager.getSubscription());
  box.hidden = false;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const sub = await reg.pushManager.getSubscription();
      if (sub) {
        // vigil may have removed it already (the push service said it
        // expired): the browser's is removed all the same.
        await sendJSON('DELETE', '/api/v1/push/subscriptions', { endpoint: sub.endpoint }).catch((err) => {
          if (!/no push subscription/.test(err.message)) throw err;
        });
        await sub.unsubscribe();
        show(null);
        return;
      }
      if (Notification.permission !== 'granted' && (await Notification.requestPermission()) !== 'granted') {
        button.title = 'This browser does not allow vigil notifications (see its site settings)';
        return;
      }
      const key = await (await fetch('/api/v1/push/key')).json();
      const fresh = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: pushKey(key.public_key) });
      let rcv;
      try {
        rcv = await sendJSON('POST', '/api/v1/push/subscriptions', { ...fresh.toJSON(), match: notifyMatch[which.value] || [] });
      } catch (err) {
        await fresh.unsubscribe(); // vigil does not have it: neither does the browser
        throw err;
      }
      show(fresh);
      await sendJSON('POST', '/api/v1/receivers/' + encodeURIComponent(rcv.id) + '/test', {}).catch(() => {}); // one to see it works
    } catch (err) {
      button.title = 'Notifications: ' + err.message;
    } finally {
      button.disabled = false;
    }
  });
}

function init() {
  mountCharts();
  wireNotify();
  window.addEventListener('popstate', () => { if (!charts.fromURL()) location.reload(); });
  indexPage();
  indexFleet();
  if (state.fleet) wireFleet(document.getElementById('main'));
  setTheme(savedTheme());
  if (new URLSearchParams(location.search).get('paused') === '1') setPaused(true);
  applyFilter();

  if (ui.filter) ui.filter.addEventListener('input', () => { applyFilter(); saveView(); });
  if (ui.sort) ui.sort.addEventListener('change', () => { sortTiles(true); saveView(); });
  if (ui.pause) ui.pause.addEventListener('click', () => setPaused(!state.paused));
  if (ui.theme) ui.theme.addEventListener('click', nextTheme);
  if (ui.controls) ui.controls.addEventListener('submit', (e) => e.preventDefault());
  document.addEventListener('keydown', onKey);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) schedule(); });
  setInterval(showConn, 1000);
  sortTiles(false);
  if (state.fleet) sortFleet();
  state.transport = recalled();
  connect();
  showConn();
}

init();
