// A small line chart drawn on a canvas (no library): lines, dashed lines and dots over linear
// axes with round-number ticks. series: [{color, points: [[x, y], ...], dash, dots}].

const MARGIN = { left: 48, right: 12, top: 10, bottom: 30 };

function ticks(low, high, count) {
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const values = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) {
    values.push(Number(value.toPrecision(12)));
  }
  return values;
}

function extent(values, fallback) {
  if (!values.length) return fallback;
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (low === high) {
    low -= 0.5;
    high += 0.5;
  }
  return [low, high];
}

export function drawChart(canvas, series, { xLabel = "epoch", yFrom = null } = {}) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const all = series.flatMap((s) => s.points);
  canvas.dataset.points = String(all.length);
  const [x0, x1] = extent(all.map((p) => p[0]).concat([0]), [0, 1]);
  let [y0, y1] = extent(all.map((p) => p[1]), [0, 1]);
  if (yFrom !== null) y0 = Math.min(y0, yFrom);
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = height - MARGIN.top - MARGIN.bottom;
  const px = (x) => MARGIN.left + ((x - x0) / (x1 - x0)) * plotWidth;
  const py = (y) => MARGIN.top + (1 - (y - y0) / (y1 - y0)) * plotHeight;

  context.font = "11px system-ui, sans-serif";
  context.strokeStyle = "#ddd";
  context.fillStyle = "#555";
  context.lineWidth = 1;
  context.textAlign = "right";
  context.textBaseline = "middle";
  for (const y of ticks(y0, y1, 4)) {
    context.beginPath();
    context.moveTo(MARGIN.left, Math.round(py(y)) + 0.5);
    context.lineTo(width - MARGIN.right, Math.round(py(y)) + 0.5);
    context.stroke();
    context.fillText(String(y), MARGIN.left - 4, py(y));
  }
  context.textAlign = "center";
  context.textBaseline = "top";
  for (const x of ticks(x0, x1, 6)) {
    context.fillText(String(x), px(x), height - MARGIN.bottom + 4);
  }
  context.fillText(xLabel, MARGIN.left + plotWidth / 2, height - 14);

  for (const { color, points, dash, dots } of series) {
    context.strokeStyle = color;
    context.fillStyle = color;
    context.lineWidth = 1.5;
    context.setLineDash(dash ? [5, 4] : []);
    context.beginPath();
    points.forEach(([x, y], i) => (i ? context.lineTo(px(x), py(y)) : context.moveTo(px(x), py(y))));
    context.stroke();
    if (dots) {
      for (const [x, y] of points) {
        context.beginPath();
        context.arc(px(x), py(y), 2.5, 0, 2 * Math.PI);
        context.fill();
      }
    }
  }
  context.setLineDash([]);
}
