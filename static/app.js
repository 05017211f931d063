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
  if (i === 0) return Math.abs(v) >= 100 ? fixed(v, 0) : fixed(v, 2);
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
    case 'duration': return duration(v);
  }
  return si(v);
}

// Health bands by error percentage and the circle's size: the same as
// templates.HealthBands and templates.CircleRadius.
const healthBands = [
  { below: 1, cls: 'h-ok', symbol: '✓', word: 'healthy' },
  { below: 5, cls: 'h-warn', symbol: '!', word: 'degraded' },
  { below: 20, cls: 'h-bad', symbol: '!!', word: 'failing' },
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
      const raw = svg.dataset.values.trim();
      const sp = {
        path: svg.querySelector('path'),
        values: raw ? raw.split(' ').map(Number) : [],
        cap: Number(svg.dataset.cap) || 2,
        max: Number(svg.dataset.max) || 0,
        w: Number(svg.dataset.w), h: Number(svg.dataset.h),
      };
      const list = s.sparks.get(svg.dataset.spark) || [];
      list.push(sp);
      s.sparks.set(svg.dataset.spark, list);
    }
  }
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
  if (now - state.lastSort >= resortEveryMs) { sortTiles(false); state.lastSort = now; }
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

// ---- view state in the URL ----------------------------------------------------
function saveView() {
  const q = new URLSearchParams(location.search);
  const set = (k, v) => (v ? q.set(k, v) : q.delete(k));
  set('q', ui.filter ? ui.filter.value : '');
  set('sort', ui.sort && ui.sort.value !== 'error' ? ui.sort.value : '');
  set('paused', state.paused ? '1' : '');
  const s = q.toString();
  history.replaceState(null, '', s ? '?' + s : location.pathname);
}
function applyFilter() {
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
      applySample(d);
      schedule();
      break;
    case 'source': {
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
    main.replaceChildren(...fresh.childNodes);
    indexPage();
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

function init() {
  indexPage();
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
  state.transport = recalled();
  connect();
  showConn();
}

init();
