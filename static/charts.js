// vigil drill-down charts: each chart the server drew as an SVG
// (templates.PlotView) is drawn again with uPlot (static/vendor/uplot),
// from the series API, at full resolution: a time axis in the browser's
// local time, a value axis in the chart's unit, a crosshair whose time and
// values show in the legend and move on every chart of the page at once,
// drag to zoom (kept in the URL as ?from=&to=), alert transitions as
// marks, and, while the range ends at now, live from the page's stream.
//
// app.js owns the page and the stream; it calls mount() when the page is
// (re)drawn, sample() with each sample of the page's source, and draw()
// once a frame. A chart is fetched and drawn when it comes near the screen.

const syncKey = 'vigil-charts';
const colorCount = 8; // c0..c7 in app.css, as templates.plotColors
const chartHeight = 180;
const markColors = { firing: '--crit', pending: '--warn', resolved: '--ok', nodata: '--muted', acknowledged: '--accent', inactive: '--muted' };

// The charts of the page now; mount() replaces them.
const page = {
  section: null, // the [data-testid=charts] element
  source: '',
  from: 0, to: 0, // ms: the range
  span: 0, // ms: the range's length, kept while live
  live: false,
  charts: [], // {fig, series, unit, max, u, step, data, dirty}
  marks: [], // {at (s), kind, rule}
  observer: null,
  resize: null,
  format: null,
  epoch: 0, // bumps on each mount: answers for an older page are dropped
};

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

// seriesURL is a series' URL: source and metric as they are, with
// what a path cannot carry escaped (GET /api/v1/series/{source}/{metric}).
function seriesURL(source, metric, from, to) {
  const path = encodeURI(source + '/' + metric).replace(/[?#]/g, encodeURIComponent);
  return '/api/v1/series/' + path + '?from=' + from / 1000 + '&to=' + to / 1000;
}

async function getJSON(url) {
  const res = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!res.ok) throw new Error(url + ': ' + res.status);
  return res.json();
}

// mount takes over the charts of section (or of none, when null).
export function mount(section, { source, format }) {
  for (const c of page.charts) if (c.u) c.u.destroy();
  if (page.observer) page.observer.disconnect();
  if (page.resize) page.resize.disconnect();
  page.epoch++;
  page.charts = [];
  page.marks = [];
  page.section = section;
  if (!section || !window.uPlot) return;
  page.source = source;
  page.format = format;
  page.from = Number(section.dataset.from);
  page.to = Number(section.dataset.to);
  page.span = page.to - page.from;
  page.live = 'live' in section.dataset;
  for (const fig of section.querySelectorAll('figure.plot')) {
    page.charts.push({
      fig, unit: fig.dataset.unit, max: Number(fig.dataset.max) || 0,
      series: JSON.parse(fig.dataset.series || '[]'), u: null, step: 0, data: null, dirty: false, loading: false, marks: [],
    });
  }
  loadMarks(page.epoch);
  page.observer = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
    for (const e of entries) if (e.isIntersecting) load(page.charts.find((c) => c.fig === e.target));
  }, { rootMargin: '300px' }) : null;
  page.resize = 'ResizeObserver' in window ? new ResizeObserver(() => {
    for (const c of page.charts) if (c.u) c.u.setSize({ width: width(c.fig), height: chartHeight });
  }) : null;
  for (const c of page.charts) {
    if (page.observer) page.observer.observe(c.fig); else load(c);
  }
  if (page.resize) page.resize.observe(section);
}

async function loadMarks(epoch) {
  try {
    const ans = await getJSON('/api/v1/alerts/transitions?source=' + encodeURIComponent(page.source) + '&from=' + page.from / 1000 + '&to=' + page.to / 1000);
    if (epoch !== page.epoch) return;
    page.marks = ans.transitions.map((m) => ({ at: Date.parse(m.at) / 1000, kind: m.kind, rule: m.rule, metric: m.metric }));
    page.section.dataset.marks = String(page.marks.length);
    placeMarks();
    for (const c of page.charts) if (c.u) c.u.redraw(false);
  } catch (_) { /* the SVGs have them */ }
}

// load fetches a chart's series and draws it; the SVG stays if it cannot.
async function load(c) {
  if (!c || c.u || c.loading) return;
  c.loading = true;
  const epoch = page.epoch;
  try {
    const answers = await Promise.all(c.series.map((s) => getJSON(seriesURL(page.source, s.metric, page.from, page.to))));
    if (epoch !== page.epoch) return;
    const tables = answers.map((a) => [a.points.map((p) => p[0] / 1000), a.points.map((p) => p[1])]);
    c.data = tables.length ? window.uPlot.join(tables) : [[]];
    c.step = parseStep(answers[0] && answers[0].step);
    draw1(c);
  } catch (err) {
    c.fig.dataset.failed = String(err);
  } finally {
    c.loading = false;
  }
}

function parseStep(s) { // Go's time.Duration text: 1s, 10s, 1m0s, 1h10m0s
  let sec = 0;
  for (const [, n, unit] of String(s || '').matchAll(/([\d.]+)(h|ms|m|s)/g)) sec += Number(n) * { h: 3600, m: 60, s: 1, ms: 0.001 }[unit];
  return sec || 1;
}

function width(fig) { return Math.max(200, fig.clientWidth); }

function last(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
  return null;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });

function draw1(c) {
  const fmt = (v) => page.format(c.unit, v);
  const opts = {
    width: width(c.fig), height: chartHeight,
    cursor: { sync: { key: syncKey }, drag: { x: true, y: false, setScale: false }, points: { size: 6 } },
    select: { show: true },
    scales: {
      x: { time: true, range: () => [page.from / 1000, page.to / 1000] },
      y: { range: (u, lo, hi) => [0, c.max > 0 ? c.max : niceTop(c.unit, hi)] },
    },
    axes: [
      { stroke: css('--muted'), grid: { stroke: css('--line'), width: 1 }, ticks: { stroke: css('--line') }, space: 90,
        values: (u, splits) => splits.map(timeTick(u.scales.x.max - u.scales.x.min)) },
      { stroke: css('--muted'), grid: { stroke: css('--line'), width: 1 }, ticks: { stroke: css('--line') },
        incrs: incrsFor(c.unit), size: axisSize, values: (u, splits) => splits.map((v) => valueTick(c.unit, v)) },
    ],
    series: [
      { label: 'Time', value: (u, ts) => ts == null ? 'now' : timeFormat.format(new Date(ts * 1000)) },
      ...c.series.map((s, i) => ({
        label: s.label, stroke: css('--c' + (i % colorCount)), width: 1, points: { show: false }, // 1 px: the canvas' fast path (docs/BENCHMARKS.md, Charts)
        value: (u, v, si, idx) => fmt(idx == null ? last(u.data[si]) : v),
      })),
    ],
    legend: { live: true },
    hooks: { setSelect: [zoom], draw: [(u) => drawMarks(u, c.marks)] },
  };
  c.u = new window.uPlot(opts, c.data, c.fig);
  c.fig.classList.add('drawn');
  c.fig.dataset.points = String(c.data[0].length);
}

// timeTick labels the time axis in the browser's own language and zone:
// times of day, with the date once the range spans days.
const tickFormats = {
  time: new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' }),
  seconds: new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' }),
  day: new Intl.DateTimeFormat(undefined, { weekday: 'short', hour: '2-digit', minute: '2-digit' }),
  date: new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' }),
};
function timeTick(spanSec) {
  const f = spanSec > 3 * 86400 ? tickFormats.date : spanSec > 86400 ? tickFormats.day : spanSec < 300 ? tickFormats.seconds : tickFormats.time;
  return (ts) => f.format(new Date(ts * 1000));
}

// valueTick labels the value axis in the chart's unit; a percentage, a
// plain number or milliseconds with the digits they have (2.5, 0.05%,
// 2.5 ms), as templates.tickLabel.
function valueTick(unit, v) {
  if (unit === 'percent' || unit === 'number') return String(Number(v.toPrecision(6))) + (unit === 'percent' ? '%' : '');
  if (unit === 'latency' && v > 0 && v < 1) return String(Number((v * 1000).toPrecision(3))) + ' ms';
  return page.format(unit, v);
}

// The steps between value ticks: bytes in powers of two (16 MiB, 32 MiB),
// durations in whole units; others uPlot's own (1, 2, 5 times a power of
// ten).
const binaryIncrs = Array.from({ length: 51 }, (_, e) => 2 ** e);
const durationIncrs = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 2 * 86400, 7 * 86400,
  14 * 86400, 30 * 86400, 90 * 86400, 180 * 86400, 365 * 86400];
function incrsFor(unit) {
  if (unit === 'bytes' || unit === 'byterate') return binaryIncrs;
  if (unit === 'duration') return durationIncrs;
  return undefined;
}

// niceTop is the top of a value axis: as templates.niceTop, a round
// number of the unit above the highest value.
function niceTop(unit, hi) {
  if (unit === 'bytes' || unit === 'byterate') return 2 ** Math.ceil(Math.log2(Math.max(hi, 1024)));
  if (unit === 'duration') {
    const d = durationIncrs.find((x) => x >= 60 && hi <= x);
    if (d) return d;
  }
  if (!(hi > 0)) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(hi)));
  for (const f of [1, 2, 5, 10]) if (hi <= f * mag * (1 + 1e-9)) return f * mag;
  return 10 * mag;
}

// axisSize makes the value axis wide enough for its longest label ("47.7
// MiB/s"), and 80 px at least.
const measure = document.createElement('canvas').getContext('2d');
function axisSize(u, values) {
  if (!values) return 48;
  measure.font = '12px ' + getComputedStyle(document.body).fontFamily;
  let w = 0;
  for (const v of values) w = Math.max(w, measure.measureText(v).width);
  return Math.max(80, Math.ceil(w) + 18); // the same on most charts, so their times line up
}

// zoom makes a dragged span the page's range: in the URL (so a reload or a
// link shows the same), and on every chart at the resolution it deserves.
function zoom(u) {
  if (u.select.width < 2) return;
  const from = Math.floor(u.posToVal(u.select.left, 'x') * 1000);
  const to = Math.ceil(u.posToVal(u.select.left + u.select.width, 'x') * 1000);
  u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
  if (!(to - from >= 1000)) return;
  const q = new URLSearchParams(location.search);
  q.delete('range');
  q.set('from', String(from / 1000));
  q.set('to', String(to / 1000));
  history.pushState(null, '', '?' + q.toString());
  setRange(from, to);
}

// setRange draws every chart over the zoomed span [from, to] afresh, and
// says it beside the range picker, as the server does for a zoomed URL.
function setRange(from, to) {
  const s = page.section;
  if (!s) return;
  s.dataset.from = String(from);
  s.dataset.to = String(to);
  delete s.dataset.live;
  delete s.dataset.range;
  const picker = s.querySelector('.ranges');
  if (picker) {
    for (const a of picker.querySelectorAll('a')) a.removeAttribute('aria-current');
    const z = picker.querySelector('.zoomed') || picker.appendChild(Object.assign(document.createElement('span'), { className: 'zoomed' }));
    z.textContent = timeFormat.format(new Date(from)) + ' – ' + timeFormat.format(new Date(to));
  }
  mount(s, { source: page.source, format: page.format });
}

// fromURL follows the back and forward buttons between zoomed ranges.
export function fromURL() {
  const q = new URLSearchParams(location.search);
  const from = Number(q.get('from')) * 1000, to = Number(q.get('to')) * 1000;
  if (from > 0 && to > from) { setRange(from, to); return true; }
  return false;
}

// placeMarks gives each chart the marks it shows, once they are read: its
// metrics' alerts', as dashboard.markOn puts them on the SVGs (the first
// chart has those no chart shows).
function placeMarks() {
  const shown = (m) => page.charts.some((c) => c.series.some((s) => s.metric === m.metric));
  for (const c of page.charts) {
    c.marks = page.marks.filter((m) => c.series.some((s) => s.metric === m.metric) || (c === page.charts[0] && !shown(m)));
  }
}

function drawMarks(u, marks) {
  if (!marks.length) return;
  const ctx = u.ctx, { top, height } = u.bbox, ratio = window.devicePixelRatio || 1;
  ctx.save();
  ctx.lineWidth = ratio;
  ctx.setLineDash([4 * ratio, 3 * ratio]);
  ctx.font = (11 * ratio) + 'px system-ui, sans-serif';
  ctx.textBaseline = 'top';
  ctx.textAlign = 'left'; // uPlot leaves it right-aligned: a label starts at its line
  let free = -Infinity; // where the last label ends: a label that would overlap it is left out
  for (const m of marks) {
    const [lo, hi] = [u.scales.x.min, u.scales.x.max];
    if (m.at < lo || m.at > hi) continue;
    const x = Math.round(u.valToPos(m.at, 'x', true));
    ctx.strokeStyle = ctx.fillStyle = css(markColors[m.kind] || '--muted');
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, top + height);
    ctx.stroke();
    const label = m.rule + ' ' + m.kind;
    const w = ctx.measureText(label).width;
    // After its line, or before it where it would run past the plot.
    const start = x + 3 * ratio + w <= u.bbox.left + u.bbox.width ? x + 3 * ratio : x - 3 * ratio - w;
    if (start >= free) {
      ctx.fillText(label, start, top + 2 * ratio);
      free = start + w + 6 * ratio;
    }
  }
  ctx.restore();
}

// sample takes a sample of the page's source: while live, each chart gains
// a point a step (the newest value of the step), and the range slides.
export function sample(ts, metrics) {
  if (!page.live || !page.charts.length) return;
  const t = ts / 1000;
  page.to = Math.max(page.to, ts);
  page.from = page.to - page.span;
  for (const c of page.charts) {
    if (!c.u) continue;
    const xs = c.data[0];
    const vals = c.series.map((s) => (typeof metrics[s.metric] === 'number' ? metrics[s.metric] : null));
    if (xs.length && t < xs[xs.length - 1] + c.step) {
      if (c.step <= 1) continue; // already has it
      for (let i = 0; i < vals.length; i++) if (vals[i] != null) c.data[i + 1][xs.length - 1] = vals[i];
    } else {
      xs.push(t);
      for (let i = 0; i < vals.length; i++) c.data[i + 1].push(vals[i]);
    }
    let cut = 0;
    while (cut < xs.length && xs[cut] < page.from / 1000) cut++;
    if (cut) for (const col of c.data) col.splice(0, cut);
    c.dirty = true;
  }
}

// draw redraws the charts that changed; app.js calls it once a frame.
export function draw() {
  for (const c of page.charts) {
    if (!c.dirty) continue;
    c.dirty = false;
    c.u.setData(c.data, true);
    c.fig.dataset.points = String(c.data[0].length);
  }
}
