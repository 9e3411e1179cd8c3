'use strict';
// Small line charts on <canvas>: time on x (the last `window` seconds), one or more series on y.
// Each canvas records what it drew in data attributes (points, total, last), for people and tests.
(function () {
  const colors = ['#2f6fde', '#f05138', '#1f9d55', '#8e44ad'];

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function label(v) {
    if (v === 0) return '0';
    if (Math.abs(v) >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + 'k';
    if (Math.abs(v) >= 10) return v.toFixed(0);
    if (Math.abs(v) >= 1) return v.toFixed(1).replace(/\.0$/, '');
    return v.toPrecision(2).replace(/0+$/, '').replace(/\.$/, '');
  }

  function ago(s) {
    if (s <= 0) return 'now';
    return s >= 60 && s % 60 === 0 ? '-' + s / 60 + 'm' : '-' + s + 's';
  }

  // series: [{name, values}], times: unix seconds (same length as values), end: unix seconds.
  function draw(canvas, series, times, end, windowSeconds) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(120, canvas.clientWidth || 300);
    const h = Math.max(80, canvas.clientHeight || 160);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 40, r: 10, t: 8, b: 20 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    const start = end - windowSeconds;
    const inWindow = [];
    times.forEach((t, i) => { if (t >= start && t <= end) inWindow.push(i); });

    let max = 0;
    for (const s of series) for (const i of inWindow) {
      const v = s.values[i];
      if (v != null && isFinite(v)) max = Math.max(max, v);
    }
    const top = niceMax(max);

    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#667085';
    ctx.strokeStyle = '#e2e5eb';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let k = 0; k <= 4; k++) {
      const y = pad.t + ph - (ph * k) / 4;
      ctx.beginPath();
      ctx.moveTo(pad.l, Math.round(y) + 0.5);
      ctx.lineTo(w - pad.r, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillText(label((top * k) / 4), pad.l - 6, y);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const step = windowSeconds <= 60 ? 15 : 60;
    for (let s = windowSeconds; s >= 0; s -= step) {
      const x = pad.l + pw * (1 - s / windowSeconds);
      ctx.textAlign = s === windowSeconds ? 'left' : s === 0 ? 'right' : 'center';
      ctx.fillText(ago(s), x, pad.t + ph + 5);
    }

    series.forEach((s, n) => {
      ctx.strokeStyle = s.color || colors[n % colors.length];
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.beginPath();
      let pen = false;
      for (const i of inWindow) {
        const v = s.values[i];
        if (v == null || !isFinite(v)) { pen = false; continue; }
        const x = pad.l + (pw * (times[i] - start)) / windowSeconds;
        const y = pad.t + ph - (ph * v) / top;
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        pen = true;
      }
      ctx.stroke();
    });

    const first = series[0] ? series[0].values : [];
    const drawn = inWindow.filter((i) => first[i] != null && isFinite(first[i]));
    canvas.dataset.points = String(drawn.length);
    canvas.dataset.total = String(Math.round(drawn.reduce((a, i) => a + first[i], 0) * 1000) / 1000);
    canvas.dataset.last = drawn.length ? String(first[drawn[drawn.length - 1]]) : '';
    canvas.dataset.max = String(max);
  }

  function legend(el, series) {
    if (!el || el.childElementCount) return;
    series.forEach((s, n) => {
      const item = document.createElement('span');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = s.color || colors[n % colors.length];
      item.append(sw, document.createTextNode(s.name));
      el.append(item);
    });
  }

  window.SwiftletChart = { draw, legend, colors };
})();
