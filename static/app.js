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
(() => {
  'use strict';
  const body = document.body;
  const intervalMs = Number(body.dataset.intervalMs) || 1000;
  const streamQuery = body.dataset.streamQuery || '';
  const staleAfterMs = Math.max(3 * intervalMs, 5000);
  // A working stream carries an event (or, idle, a heartbeat) at least this
  // often; silence longer than this is checked with one poll.
  const silentMs = (Number(body.dataset.heartbeatMs) || 10000) + Math.max(2 * intervalMs, 2000);
  const rememberMs = 24 * 3600 * 1000; // how long a fallback is remembered
  const transportKey = 'vigil-transport';
  const resortEveryMs = 5000;

  let lastId = body.dataset.lastEventId || '';
  let es = null;
  let transport = 'sse'; // or 'poll'
  let watchdog = 0;
  let heard = false; // an event came on the current stream
  let retryMs = 1000;
  let retryTimer = 0;
  let lastEventAt = 0;
  let conn = 'connecting';
  let paused = false;
  let frame = 0;
  let lastSort = 0;
  let redrawOnSample = false;

  // ---- formatting: the same rules as templates/format.go ----------------
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
  function format(kind, v) {
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

  // Health bands and circle size: the same as templates/format.go.
  const bands = [[1, 'h-ok', '✓', 'healthy'], [5, 'h-warn', '!', 'degraded'], [20, 'h-bad', '!!', 'failing'], [Infinity, 'h-crit', '✕', 'critical']];
  const health = (e) => bands.find((b) => e < b[0]) || bands[bands.length - 1];
  function radius(rate) {
    if (!(rate > 0)) return 6;
    const f = Math.min(1, Math.log10(1 + rate) / 4);
    return Math.round((6 + 24 * Math.sqrt(f)) * 10) / 10;
  }

  // ---- sparklines: the same path as templates.SparkPath ------------------
  function sparkPath(values, cap, top, w, h) {
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

  // ---- the model and its index into the DOM -----------------------------
  // sources: name -> {roots, values: metric -> [el], sparks: metric -> [spark], ts, metrics, dirty}
  const sources = new Map();

  // Only sources on screen are drawn; the others are marked dirty and drawn
  // when they scroll into view. With hundreds of tiles this is most of the
  // saving: a 1280x720 screen shows a dozen.
  const onScreen = new Set();
  const observer = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      const s = sources.get(e.target.dataset.source);
      if (!s) continue;
      if (e.isIntersecting) s.visible++; else s.visible = Math.max(0, s.visible - 1);
      if (s.visible > 0) onScreen.add(s); else onScreen.delete(s);
    }
    schedule();
  }, { rootMargin: '200px' }) : null;

  function indexPage() {
    if (observer) observer.disconnect();
    onScreen.clear();
    sources.clear();
    for (const root of document.querySelectorAll('[data-source]')) {
      const name = root.dataset.source;
      let s = sources.get(name);
      if (!s) {
        s = { name, roots: [], values: new Map(), sparks: new Map(), ts: 0, metrics: null, dirty: false, status: null, visible: 0 };
        sources.set(name, s);
        if (!observer) onScreen.add(s);
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
    const s = sources.get(d.source);
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

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function renderSource(s) {
    const m = s.metrics;
    if (m) {
      for (const [metric, list] of s.values) {
        const v = m[metric];
        if (v === undefined) continue;
        for (const el of list) setText(el, format(el.dataset.fmt, v));
      }
      for (const list of s.sparks.values()) {
        for (const sp of list) {
          const d = sparkPath(sp.values, sp.cap, sp.max, sp.w, sp.h);
          if (sp.path.getAttribute('d') !== d) sp.path.setAttribute('d', d);
        }
      }
      for (const root of s.roots) {
        if (root.dataset.kind !== 'service') continue;
        const rate = m['http.requests_per_sec'] || 0, err = m['http.error_percent'] || 0;
        const b = health(err);
        root.dataset.rate = rate;
        root.dataset.error = err;
        root.dataset.latency = m['http.latency_p99_seconds'] || 0;
        if (!root.classList.contains(b[1])) {
          for (const x of bands) root.classList.remove(x[1]);
          root.classList.add(b[1]);
          const sym = root.querySelector('[data-testid=health-symbol]');
          if (sym) sym.textContent = b[2];
        }
        const c = root.querySelector('.circle circle');
        const r = String(radius(rate));
        if (c && c.getAttribute('r') !== r) c.setAttribute('r', r);
        const svg = root.querySelector('.circle');
        if (svg) svg.setAttribute('aria-label', b[3] + ', ' + format('rate', rate));
      }
    }
    if (s.status) {
      for (const root of s.roots) {
        const el = root.querySelector('[data-testid=status]');
        if (!el) continue;
        const st = s.status.state;
        el.className = 'status status-' + st;
        el.title = s.status.error || '';
        setText(el, st === 'failed' ? 'failing' : st);
      }
    }
    s.dirty = false;
  }

  // ---- rendering, at most once a frame, never while hidden or paused ----
  const perf = { frames: 0, totalMs: 0, maxMs: 0, recent: [] };
  // For tests and benchmarks: render timings, and the formatting rules so a
  // test can check they match the server's.
  window.__vigil = { perf, format, sparkPath, radius };

  function schedule() {
    if (frame || paused || document.hidden) return;
    frame = requestAnimationFrame(render);
  }

  function render() {
    frame = 0;
    if (paused || document.hidden) return;
    const t0 = performance.now();
    for (const s of onScreen) if (s.dirty) renderSource(s);
    if (t0 - lastSort >= resortEveryMs) { sortTiles(false); lastSort = t0; }
    const ms = performance.now() - t0;
    perf.frames++;
    perf.totalMs += ms;
    perf.maxMs = Math.max(perf.maxMs, ms);
    perf.recent.push(ms);
    if (perf.recent.length > 120) perf.recent.shift();
  }

  // ---- sorting: stable, by bands rather than raw values ------------------
  const sortSelect = document.getElementById('sort');
  const filterInput = document.getElementById('filter');
  const pauseButton = document.querySelector('[data-testid=pause]');
  const themeButton = document.querySelector('[data-testid=theme]');

  function bandIndex(e) { return bands.findIndex((b) => e < b[0]); }
  // sticky keeps a tile in its bucket until the value is clearly (by a
  // fifth of a bucket) in another, so values near a boundary do not make
  // tiles trade places back and forth.
  function sticky(s, key, v) {
    const x = Math.log2(1 + Math.max(0, v));
    const prev = s ? s[key] : undefined;
    const b = prev !== undefined && x > prev - 0.2 && x < prev + 1.2 ? prev : Math.floor(x);
    if (s) s[key] = b;
    return b;
  }
  // Keys come from the model, which is current for every tile, drawn or not.
  function sortKey(el, by) {
    const s = sources.get(el.dataset.source);
    const m = s && s.metrics;
    const rate = m ? m['http.requests_per_sec'] || 0 : Number(el.dataset.rate) || 0;
    const err = m ? m['http.error_percent'] || 0 : Number(el.dataset.error) || 0;
    const lat = m ? m['http.latency_p99_seconds'] || 0 : Number(el.dataset.latency) || 0;
    switch (by) {
      case 'name': return [];
      case 'rate': return [-sticky(s, 'rateBucket', rate)];
      case 'latency': return [-sticky(s, 'latBucket', lat * 1000)];
    }
    return [-bandIndex(err), -sticky(s, 'rateBucket', rate)];
  }
  function sortTiles(force) {
    const box = document.querySelector('[data-testid=tiles]');
    if (!box) return;
    const by = sortSelect ? sortSelect.value : 'error';
    const tiles = Array.from(box.children);
    const keyed = tiles.map((el) => ({ el, k: sortKey(el, by), n: el.dataset.source }));
    keyed.sort((a, b) => {
      for (let i = 0; i < a.k.length; i++) if (a.k[i] !== b.k[i]) return a.k[i] - b.k[i];
      return a.n < b.n ? -1 : a.n > b.n ? 1 : 0;
    });
    if (!force && keyed.every((x, i) => x.el === tiles[i])) return;
    // Move only the tiles that are out of place: every move costs a layout.
    for (let i = 0; i < keyed.length; i++) {
      const want = keyed[i].el;
      if (box.children[i] !== want) box.insertBefore(want, box.children[i]);
    }
  }

  // ---- view state in the URL ---------------------------------------------
  function saveView() {
    const q = new URLSearchParams(location.search);
    const set = (k, v) => (v ? q.set(k, v) : q.delete(k));
    set('q', filterInput ? filterInput.value : '');
    set('sort', sortSelect && sortSelect.value !== 'error' ? sortSelect.value : '');
    set('paused', paused ? '1' : '');
    const s = q.toString();
    history.replaceState(null, '', s ? '?' + s : location.pathname);
  }
  function applyFilter() {
    const f = (filterInput ? filterInput.value : '').toLowerCase();
    for (const el of document.querySelectorAll('[data-testid=tile], [data-testid=host-panel]')) {
      el.hidden = f !== '' && !el.dataset.source.toLowerCase().includes(f);
    }
  }
  function setPaused(p) {
    paused = p;
    if (pauseButton) {
      pauseButton.setAttribute('aria-pressed', String(p));
      pauseButton.textContent = p ? 'Resume' : 'Pause';
    }
    showConn();
    saveView();
    if (!p) {
      if (redrawWhenResumed) { redrawWhenResumed = false; redraw(); }
      schedule();
    }
  }

  const themes = ['system', 'dark', 'light'];
  function setTheme(t) {
    if (t === 'system') delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = t;
    try { localStorage.setItem('vigil-theme', t); } catch (_) { /* private mode */ }
    if (themeButton) themeButton.title = 'Theme: ' + (t === 'system' ? 'follows the system' : t) + ' (t)';
  }
  function nextTheme() {
    let cur = 'system';
    try { cur = localStorage.getItem('vigil-theme') || 'system'; } catch (_) { /* ignore */ }
    setTheme(themes[(themes.indexOf(cur) + 1) % themes.length]);
  }

  // ---- the connection and its indicator ----------------------------------
  const connEl = document.querySelector('[data-testid=connection]');
  const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });

  const transportName = { sse: 'SSE', poll: 'long polling' };
  function showConn() {
    if (!connEl) return;
    let state = conn, text;
    const since = lastEventAt ? clock(lastEventAt) : 'page load';
    if (state === 'live' && lastEventAt && Date.now() - lastEventAt > staleAfterMs) state = 'stale';
    if (paused) state = 'paused';
    switch (state) {
      case 'live': text = 'live · ' + transportName[transport]; break;
      case 'paused': text = 'paused · last update ' + since; break;
      case 'stale': text = 'stale since ' + since; break;
      case 'reconnecting': text = 'reconnecting… stale since ' + since; break;
      default: text = 'connecting…';
    }
    connEl.className = 'conn conn-' + state;
    connEl.dataset.state = state;
    connEl.dataset.transport = transport;
    connEl.title = 'Updates by ' + transportName[transport];
    setText(connEl.querySelector('.conn-text'), text);
    body.classList.toggle('is-stale', state === 'stale' || state === 'reconnecting');
  }
  function setConn(state) {
    conn = state;
    showConn();
  }

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
    if (lastId) q.set('after', lastId);
    q.set('timeout', timeout);
    return '/api/v1/poll?' + q;
  }

  // handle applies one event, from either transport.
  function handle(d) {
    if (d.seq) lastId = String(d.seq);
    lastEventAt = Date.now();
    if (conn !== 'live') setConn('live');
    switch (d.type) {
      case 'sample':
        if (redrawOnSample) { redrawOnSample = false; redrawSoon(); }
        applySample(d);
        schedule();
        break;
      case 'source': {
        const s = sources.get(d.source);
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
        if (d.events && d.events.length) redraw(); else redrawOnSample = true;
        break;
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    if (transport === 'poll') { poll(); return; }
    const q = new URLSearchParams(streamQuery);
    if (lastId) q.set('lastEventId', lastId);
    es = new EventSource('/events' + (q.toString() ? '?' + q : ''));
    heard = false;
    armWatchdog();
    es.onopen = () => { retryMs = 1000; if (!lastEventAt) lastEventAt = Date.now(); setConn('live'); armWatchdog(); };
    es.onerror = () => {
      // A network error makes EventSource retry by itself; an answer that
      // is not a 200 event stream (a 502 during a deploy) makes it give up.
      // Either way the screen is not live; in the second case we retry.
      heard = false;
      setConn('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        clearTimeout(watchdog);
        retryTimer = setTimeout(connect, retryMs + Math.random() * retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      }
    };
    const on = (e) => {
      if (!heard) { heard = true; clearTimeout(watchdog); remember('sse'); }
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
    clearTimeout(watchdog);
    watchdog = setTimeout(checkStream, silentMs);
  }
  async function checkStream() {
    if (transport !== 'sse' || heard) return;
    let ans = null;
    try {
      const res = await fetch(pollURL('0s'), { cache: 'no-store' });
      if (res.ok) ans = await res.json();
    } catch (_) { /* server away */ }
    if (transport !== 'sse' || heard) return;
    if (!ans || !ans.events.length) { armWatchdog(); return; }
    es.close();
    transport = 'poll';
    remember('poll');
    for (const d of ans.events) handle(d);
    if (ans.next) lastId = ans.next;
    poll();
  }

  // poll long-polls until the page goes: each answer holds every event
  // after the cursor (or none, after the timeout) and the next cursor.
  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    while (transport === 'poll') {
      try {
        const res = await fetch(pollURL('25s'), { cache: 'no-store' });
        if (res.status === 400) { lastId = ''; continue; } // a cursor it cannot read: start from now
        if (!res.ok) throw new Error('poll: ' + res.status);
        const ans = await res.json();
        retryMs = 1000;
        if (conn !== 'live') setConn('live');
        for (const d of ans.events) handle(d);
        if (ans.next) lastId = ans.next;
      } catch (_) {
        setConn('reconnecting');
        await new Promise((r) => setTimeout(r, retryMs + Math.random() * retryMs));
        retryMs = Math.min(retryMs * 2, 30000);
      }
    }
    polling = false;
  }

  let redrawTimer = 0;
  function redrawSoon() {
    if (!redrawTimer) redrawTimer = setTimeout(() => { redrawTimer = 0; redraw(); }, 500);
  }

  // redraw replaces the page's content with a fresh server rendering: after
  // a reset (a restart, or a gap longer than the replay window) the
  // server's ring buffer is the truth for every sparkline.
  let redrawWhenResumed = false;
  async function redraw() {
    if (paused) { redrawWhenResumed = true; return; } // a paused screen holds still
    try {
      const res = await fetch(location.pathname + location.search, { headers: { Accept: 'text/html' } });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      const fresh = doc.getElementById('main');
      const main = document.getElementById('main');
      if (!fresh || !main) return;
      const model = new Map(Array.from(sources, ([k, s]) => [k, s]));
      main.replaceChildren(...fresh.childNodes);
      indexPage();
      applyFilter();
      // Keep what arrived while the page was fetched; the timestamps skip
      // anything the new rendering already has.
      for (const [k, old] of model) {
        const s = sources.get(k);
        if (s && old.metrics && old.ts > s.ts) applySample({ source: k, ts: new Date(old.ts).toISOString(), metrics: old.metrics });
      }
      schedule();
    } catch (_) { /* the stream goes on; the next reset tries again */ }
  }

  // ---- wiring --------------------------------------------------------------
  function init() {
    indexPage();
    let theme = 'system';
    try { theme = localStorage.getItem('vigil-theme') || 'system'; } catch (_) { /* ignore */ }
    setTheme(theme);
    const q = new URLSearchParams(location.search);
    if (q.get('paused') === '1') setPaused(true);
    applyFilter();

    if (filterInput) filterInput.addEventListener('input', () => { applyFilter(); saveView(); });
    if (sortSelect) sortSelect.addEventListener('change', () => { sortTiles(true); saveView(); });
    if (pauseButton) pauseButton.addEventListener('click', () => setPaused(!paused));
    if (themeButton) themeButton.addEventListener('click', nextTheme);
    const form = document.querySelector('.controls');
    if (form) form.addEventListener('submit', (e) => e.preventDefault());

    document.addEventListener('keydown', (e) => {
      const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.target instanceof HTMLTextAreaElement;
      if (e.key === 'Escape' && e.target === filterInput) {
        filterInput.value = '';
        applyFilter();
        saveView();
        filterInput.blur();
        return;
      }
      if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === '/') { e.preventDefault(); if (filterInput) filterInput.focus(); }
      else if (e.key === 'p') setPaused(!paused);
      else if (e.key === 't') nextTheme();
    });
    document.addEventListener('visibilitychange', () => { if (!document.hidden) schedule(); });
    setInterval(showConn, 1000);
    sortTiles(false);
    transport = recalled();
    connect();
    showConn();
  }

  init();
})();
