// Charts as inline SVG built here: a line chart (training curves), a heat map (confusion matrix)
// and probability bars. Colours pass WCAG contrast on white; every chart has a text alternative.

const NS = 'http://www.w3.org/2000/svg';
const PALETTE = ['#1f5fa8', '#b3261e', '#2e7d32', '#8a4f00'];

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function svgRoot(width, height, label) {
  return s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label, preserveAspectRatio: 'xMidYMid meet' });
}

/**
 * series: [{name, points: [[x, y], …]}]; y range from the data (or opts.yMax / yMin). Each line's
 * <path> has id `${opts.id}-${i}`, so it can be found and grows in place as points arrive.
 */
export function lineChart(container, series, opts = {}) {
  const W = 480, H = 240, L = 48, R = 12, T = 12, B = 40;
  const all = series.flatMap((x) => x.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xMax = Math.max(opts.xMax || 1, ...xs, 1);
  const xMin = 1;
  const yMin = opts.yMin ?? Math.min(0, ...ys);
  const yMax = opts.yMax ?? Math.max(...ys, 1e-9) * 1.05;
  const X = (x) => L + ((x - xMin) / Math.max(1e-9, xMax - xMin)) * (W - L - R);
  const Y = (y) => T + (1 - (y - yMin) / Math.max(1e-9, yMax - yMin)) * (H - T - B);
  const desc = series.map((x) => `${x.name}: ${x.points.length ? x.points[x.points.length - 1][1].toFixed(3) : 'no data'}`).join('; ');
  const svg = svgRoot(W, H, `${opts.label || 'chart'} — latest ${desc}`);
  svg.append(s('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#555' }), s('line', { x1: L, y1: T, x2: L, y2: H - B, stroke: '#555' }));
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    svg.append(s('line', { x1: L, y1: Y(v), x2: W - R, y2: Y(v), stroke: '#ddd' }));
    svg.append(s('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#333' }, v.toFixed(2)));
  }
  const step = Math.max(1, Math.ceil((xMax - xMin) / 8));
  for (let x = xMin; x <= xMax; x += step) svg.append(s('text', { x: X(x), y: H - B + 16, 'text-anchor': 'middle', 'font-size': 11, fill: '#333' }, String(x)));
  svg.append(s('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', 'font-size': 12, fill: '#333' }, opts.xLabel || 'epoch'));
  series.forEach((line, i) => {
    const color = PALETTE[i % PALETTE.length];
    const d = line.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
    svg.append(s('path', { id: `${opts.id || 'line'}-${i}`, d, fill: 'none', stroke: color, 'stroke-width': 2, 'stroke-dasharray': i % 2 ? '6 3' : 'none', 'data-points': line.points.length }));
    for (const p of line.points) svg.append(s('circle', { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: color }));
  });
  const legend = document.createElement('ul');
  legend.className = 'legend';
  series.forEach((line, i) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = `swatch s${i % PALETTE.length}${i % 2 ? ' dashed' : ''}`;
    li.append(sw, line.name);
    legend.append(li);
  });
  container.replaceChildren(svg, legend);
}

/** A white→blue scale; the text colour flips where the cell gets dark enough. */
function cellColor(t) {
  const c = (a, b) => Math.round(a + (b - a) * t);
  return { fill: `rgb(${c(255, 21)},${c(255, 67)},${c(255, 140)})`, text: t > 0.5 ? '#fff' : '#111' };
}

/** matrix[true][predicted]; mode 'counts' or 'rows' (each true class's row sums to 100%). */
export function heatmap(container, matrix, labels, mode) {
  const n = labels.length;
  const cell = Math.max(28, Math.min(56, Math.floor(560 / Math.max(1, n))));
  const pad = 110;
  const W = pad + n * cell + 8, H = pad + n * cell + 8;
  const svg = svgRoot(W, H, `Confusion matrix (${mode === 'rows' ? 'row-normalised' : 'counts'}): rows are true classes, columns predicted`);
  svg.setAttribute('id', 'confusion-svg');
  svg.setAttribute('width', W);
  const max = Math.max(1, ...matrix.flat());
  labels.forEach((label, i) => {
    const short = label.length > 14 ? `${label.slice(0, 13)}…` : label;
    svg.append(s('text', { x: pad - 6, y: pad + i * cell + cell / 2 + 4, 'text-anchor': 'end', 'font-size': 12, fill: '#111' }, short));
    const tx = pad + i * cell + cell / 2, ty = pad - 6;
    svg.append(s('text', { x: tx, y: ty, transform: `rotate(-45 ${tx} ${ty})`, 'font-size': 12, fill: '#111' }, short));
  });
  svg.append(s('text', { x: 4, y: 14, 'font-size': 11, fill: '#333' }, 'rows: true · columns: predicted'));
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((v, j) => {
      const t = mode === 'rows' ? (total ? v / total : 0) : v / max;
      const { fill, text } = cellColor(t);
      const label = mode === 'rows' ? (total ? `${Math.round((100 * v) / total)}%` : '–') : String(v);
      const g = s('g', { class: 'cm-cell', 'data-true': labels[i], 'data-predicted': labels[j], 'data-value': v });
      g.append(s('title', {}, `true ${labels[i]}, predicted ${labels[j]}: ${v}${total ? ` (${Math.round((100 * v) / total)}% of ${labels[i]})` : ''}`));
      g.append(s('rect', { x: pad + j * cell, y: pad + i * cell, width: cell - 1, height: cell - 1, fill, stroke: i === j ? '#111' : '#ccc' }));
      g.append(s('text', { x: pad + j * cell + cell / 2, y: pad + i * cell + cell / 2 + 4, 'text-anchor': 'middle', 'font-size': 12, fill: text }, label));
      svg.append(g);
    });
  });
  container.replaceChildren(svg);
}

/** Top-k probability bars: an HTML list with a bar per label (width set through the CSSOM, CSP-safe). */
export function bars(predictions) {
  const ol = document.createElement('ol');
  ol.className = 'bars';
  for (const p of predictions) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'bar-label';
    name.textContent = p.label;
    const track = document.createElement('span');
    track.className = 'bar-track';
    const fill = document.createElement('span');
    fill.className = 'bar-fill';
    fill.style.width = `${Math.max(0.5, p.probability * 100).toFixed(1)}%`;
    track.append(fill);
    const val = document.createElement('span');
    val.className = 'bar-value';
    val.textContent = `${(p.probability * 100).toFixed(1)}%`;
    li.append(name, track, val);
    ol.append(li);
  }
  return ol;
}
