// The loss chart of the training panel: raw loss and its EMA, with readable, distinct y-axis labels.

function emaSeries(losses, beta) {
  // The trainer's own recurrence (trainer_core/trainer.py), so the redrawn curve matches the reported EMA.
  const out = new Array(losses.length);
  let ema = null;
  for (let i = 0; i < losses.length; i++) {
    ema = ema === null ? losses[i] : beta * ema + (1 - beta) * losses[i];
    out[i] = ema;
  }
  return out;
}

export function drawLossChart(canvas, run) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) Object.assign(canvas, { width: w, height: h });
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  ctx.save();
  ctx.scale(dpr, dpr);
  const cw = w / dpr;
  const ch = h / dpr;
  const losses = run.losses.filter((v) => isFinite(v));
  ctx.font = "10px sans-serif";
  ctx.fillStyle = "#999";
  if (losses.length < 2) {
    ctx.textAlign = "center";
    ctx.fillText(losses.length ? "waiting for more steps…" : "loss chart: queue the prompt to train", cw / 2, ch / 2);
    ctx.restore();
    return;
  }
  const ema = emaSeries(losses, run.ema_beta ?? 0.95);
  // Early steps and single spikes are far above the rest; clip the top at the 98th percentile so the trend
  // stays readable.
  const sorted = [...losses].sort((a, b) => a - b);
  let lo = Math.min(sorted[0], ...ema);
  let hi = Math.max(sorted[Math.floor(0.98 * (sorted.length - 1))], ...ema);
  if (hi - lo < 1e-9) { hi += 1e-3; lo -= 1e-3; }
  const pad = { l: 46, r: 6, t: 12, b: 14 };
  const pw = cw - pad.l - pad.r;
  const ph = ch - pad.t - pad.b;
  const total = Math.max(run.total ?? 0, losses.length);
  const x = (i) => pad.l + (pw * i) / Math.max(1, total - 1);
  const y = (v) => pad.t + ph * (1 - (Math.min(Math.max(v, lo), hi) - lo) / (hi - lo));

  ctx.strokeStyle = "#ffffff22";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  // One digit finer than the tick spacing, so neighbouring labels never read the same (a flat early curve
  // printed "0.123" three times with toPrecision).
  const digits = Math.max(0, Math.min(8, 1 - Math.floor(Math.log10((hi - lo) / 3))));
  for (let k = 0; k <= 3; k++) {
    const v = lo + ((hi - lo) * k) / 3;
    const yy = y(v);
    ctx.beginPath();
    ctx.moveTo(pad.l, yy);
    ctx.lineTo(cw - pad.r, yy);
    ctx.stroke();
    ctx.fillText(v.toFixed(digits), pad.l - 4, yy + 3);
  }
  canvas.dataset.yLabels = [0, 1, 2, 3].map((k) => (lo + ((hi - lo) * k) / 3).toFixed(digits)).join(",");
  ctx.textAlign = "left";
  ctx.fillText("1", pad.l, ch - 2);
  ctx.textAlign = "right";
  ctx.fillText(String(total), cw - pad.r, ch - 2);

  drawLine(ctx, losses, x, y, pw, "rgba(140,170,220,0.45)", 1);
  drawLine(ctx, ema, x, y, pw, "#4a9eff", 2);
  ctx.textAlign = "left";
  ctx.fillStyle = "rgba(140,170,220,0.9)";
  ctx.fillText("loss", pad.l + 4, pad.t - 2);
  ctx.fillStyle = "#4a9eff";
  ctx.fillText("EMA", pad.l + 34, pad.t - 2);
  ctx.restore();
}

function drawLine(ctx, values, x, y, pw, color, width) {
  // Long runs have more steps than pixels: draw every column's min..max instead of thousands of segments.
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.beginPath();
  const stride = Math.max(1, Math.floor(values.length / Math.max(1, pw)));
  for (let i = 0; i < values.length; i += stride) {
    const chunk = values.slice(i, i + stride);
    const xx = x(i);
    if (i === 0) ctx.moveTo(xx, y(chunk[0]));
    if (stride > 1) {
      ctx.lineTo(xx, y(Math.min(...chunk)));
      ctx.lineTo(xx, y(Math.max(...chunk)));
    } else {
      ctx.lineTo(xx, y(chunk[0]));
    }
  }
  ctx.stroke();
}
