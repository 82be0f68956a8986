// Charts drawn as inline SVG (no library): a line chart of a fine-tune's loss and a bar chart of usage.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

const W = 640;
const H = 220;
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };

function frame(label) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" });
  root.append(svg("title", {}, label));
  return root;
}

function nice(v) {
  return Number.isInteger(v) || Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2);
}

function axes(root, ymin, ymax, xlabels) {
  const plotH = H - PAD.top - PAD.bottom;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.top + (plotH * i) / 4;
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, nice(ymax - ((ymax - ymin) * i) / 4)));
  }
  for (const [x, text] of xlabels) {
    root.append(svg("text", { x, y: H - 8, "text-anchor": "middle", class: "tick" }, text));
  }
}

/** A line chart of `points` ([{x, y}], x ascending). */
export function lineChart(points, label) {
  const root = frame(label);
  if (!points.length) return root;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => PAD.left + ((x - x0) / (x1 - x0 || 1)) * (W - PAD.left - PAD.right);
  const sy = (y) => PAD.top + (1 - (y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  axes(root, y0, y1, [[sx(x0), x0], [sx(x1), x1]]);
  const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join("");
  root.append(svg("path", { d, class: "line" }));
  if (points.length === 1) root.append(svg("circle", { cx: sx(x0), cy: sy(ys[0]), r: 3, class: "dot" }));
  return root;
}

/** A bar chart of `bars` ([{label, value, title}]). */
export function barChart(bars, label) {
  const root = frame(label);
  if (!bars.length) return root;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const step = plotW / bars.length;
  const every = Math.ceil(bars.length / 8);
  axes(root, 0, max, bars.map((b, i) => [PAD.left + step * (i + 0.5), b.label]).filter((_, i) => i % every === 0));
  bars.forEach((b, i) => {
    const hgt = (b.value / max) * plotH;
    const rect = svg("rect", { x: PAD.left + step * i + step * 0.1, y: PAD.top + plotH - hgt, width: Math.max(1, step * 0.8),
      height: hgt, class: "bar" });
    rect.append(svg("title", {}, b.title || `${b.label}: ${b.value}`));
    root.append(rect);
  });
  return root;
}
