// A training loss curve as an inline SVG line chart.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));

// values: the loss per step (or a downsampled curve). totalSteps labels the x axis.
export function lossChart(values, { totalSteps = values.length, width = 320, height = 120 } = {}) {
  const pad = { left: 44, right: 8, top: 8, bottom: 20 };
  const w = width - pad.left - pad.right;
  const hgt = height - pad.top - pad.bottom;
  const finite = values.filter(Number.isFinite);
  const last = finite.length ? finite[finite.length - 1] : null;
  const root = svg('svg', {
    class: 'loss-chart',
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': last === null ? 'Loss curve: no data yet' : `Loss curve over ${totalSteps} steps, last ${fmt(last)}`,
  });
  root.append(svg('title', {}, 'Training loss'));
  if (!finite.length) return root;

  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi - lo < 1e-12) {
    hi += 0.5 * (Math.abs(hi) || 1);
    lo -= 0.5 * (Math.abs(lo) || 1);
  }
  const n = values.length;
  const x = (i) => pad.left + (n > 1 ? (i / (n - 1)) * w : w / 2);
  const y = (v) => pad.top + (1 - (v - lo) / (hi - lo)) * hgt;
  const points = values
    .map((v, i) => (Number.isFinite(v) ? `${x(i).toFixed(1)},${y(v).toFixed(1)}` : null))
    .filter(Boolean)
    .join(' ');

  root.append(
    svg('rect', { class: 'frame', x: pad.left, y: pad.top, width: w, height: hgt }),
    svg('text', { class: 'tick', x: pad.left - 4, y: pad.top + 8, 'text-anchor': 'end' }, fmt(hi)),
    svg('text', { class: 'tick', x: pad.left - 4, y: pad.top + hgt, 'text-anchor': 'end' }, fmt(lo)),
    svg('text', { class: 'tick', x: pad.left, y: height - 4 }, 'step 1'),
    svg('text', { class: 'tick', x: width - pad.right, y: height - 4, 'text-anchor': 'end' }, `${totalSteps}`),
    svg('polyline', { class: 'line', points, fill: 'none' }),
  );
  if (n === 1) root.append(svg('circle', { class: 'dot', cx: x(0), cy: y(finite[0]), r: 2.5 }));
  return root;
}
