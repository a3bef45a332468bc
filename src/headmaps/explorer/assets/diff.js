/* headmaps diff view: hand-written, dependency-free, offline.
 * Reads the JSON payload in #dv-data (see headmaps/explorer/diffview.py): both models' scores
 * per head and relation, the library's "beyond the noise floor" flags, per-head figures and,
 * per head in #dv-sides, both sides' salient operations and positional profiles.
 * Sets window.__headmapsReady once the first render is done. */
(function () {
  'use strict';

  var D = JSON.parse(document.getElementById('dv-data').textContent);
  var L = D.nL, H = D.nH, N = L * H, R = D.relations.length, Q = D.Q, TQ = D.tauQ;
  var REL = D.relations, TOKS = D.toks || [];
  var $ = function (id) { return document.getElementById(id); };
  function u16(b64) {
    var bin = atob(b64), n = bin.length, u8 = new Uint8Array(n);
    for (var i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
    return new Uint16Array(u8.buffer, 0, n >> 1);
  }
  function u8(b64) {
    var bin = atob(b64), n = bin.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  var SC = { rel: [u16(D.scoresA), u16(D.scoresB)], supp: [u16(D.suppA), u16(D.suppB)] };
  var FL = { rel: u16(D.floor), supp: u16(D.suppFloor) };
  var CH = { rel: u8(D.changed), supp: u8(D.suppChanged) };
  var SL = document.getElementById('dv-sides').textContent.split('\n'), SC_ = new Array(N);
  function side(i) {
    var e = SC_[i];
    if (e === undefined) e = SC_[i] = SL[i] ? JSON.parse(SL[i]) : null;
    return e;
  }
  var FIG = D.figures || {}, FIGN = D.figureNames || {}, TY = D.types || {};
  var TYK = Object.keys(TY), FIGK = Object.keys(FIG);
  // view: 'r<k>' a relation, 't:<type>' a head type, 'f:<figure>' a per-head figure
  var state = { view: R ? 'r0' : (TYK.length ? 't:' + TYK[0] : 'f:' + FIGK[0]), mode: 'rel', sel: -1, sort: 'change', dir: -1 };

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;';
    });
  }
  function vis(t) {
    return String(t).replace(/ /g, '\u2423').replace(/\n/g, '\u21b5').replace(/\t/g, '\u21e5')
      .replace(/[\u0000-\u001f\u007f]/g, function (c) { return '\\x' + ('0' + c.charCodeAt(0).toString(16)).slice(-2); });
  }
  function name(i) { return ((i / H) | 0) + '.' + (i % H); }
  function f3(x) { return x === null || x === undefined || isNaN(x) ? '-' : (+x).toFixed(3); }
  function sgn(x) { return x === null || isNaN(x) ? '-' : (x > 0 ? '+' : x < 0 ? '\u2212' : '\u00b1') + Math.abs(x).toFixed(3); }

  // ---------- the view: per head a, b, change, floor, status ----------
  function relView(r, mode) {
    var A = SC[mode][0], B = SC[mode][1], F = FL[mode], C = CH[mode], o = r * N;
    return {
      kind: 'rel', r: r, mode: mode, pair: true,
      label: REL[r] + (mode === 'supp' ? ' (suppression)' : ''),
      a: function (i) { return A[o + i] / Q; }, b: function (i) { return B[o + i] / Q; },
      ch: function (i) { return (B[o + i] - A[o + i]) / Q; },
      floor: function (i) { return F[o + i] / Q; },
      changed: function (i) { return C[o + i] === 1; },
      status: function (i) {
        if (C[o + i] !== 1) return 'same';
        var qa = A[o + i], qb = B[o + i];
        if (qa < TQ && qb >= TQ) return 'gained';
        if (qa >= TQ && qb < TQ) return 'lost';
        return qb > qa ? 'up' : 'down';
      },
      above: function (i, s) { return (s ? B : A)[o + i] >= TQ; },
      max: 1
    };
  }
  function typeView(t) {
    var T = TY[t], mx = 0;
    for (var i = 0; i < N; i++) mx = Math.max(mx, +T.a[i] || 0, +T.b[i] || 0);
    return {
      kind: 'type', t: t, pair: true, label: 'head type: ' + t.replace(/_/g, ' '),
      a: function (i) { return T.a[i]; }, b: function (i) { return T.b[i]; },
      ch: function (i) { return T.b[i] - T.a[i]; }, floor: function () { return null; },
      changed: function (i) { return T.la[i] !== T.lb[i]; },
      status: function (i) { return T.la[i] === T.lb[i] ? 'same' : T.lb[i] ? 'gained' : 'lost'; },
      above: function (i, s) { return !!(s ? T.lb : T.la)[i]; },
      max: mx || 1
    };
  }
  function figView(f) {
    var v = FIG[f], mn = Infinity, mx = -Infinity;
    for (var i = 0; i < N; i++) if (v[i] !== null) { mn = Math.min(mn, v[i]); mx = Math.max(mx, v[i]); }
    if (!isFinite(mn)) { mn = 0; mx = 1; }
    return {
      kind: 'fig', f: f, pair: false, label: FIGN[f] || f, lo: mn, hi: mx === mn ? mn + 1 : mx,
      a: function () { return null; }, b: function () { return null; },
      ch: function (i) { return v[i]; }, floor: function () { return null; },
      changed: function () { return false; }, status: function () { return ''; },
      above: function () { return false; }
    };
  }
  var V = null;
  function makeView() {
    var s = state.view;
    V = s.charAt(0) === 'r' ? relView(+s.slice(1), state.mode) : s.slice(0, 2) === 't:' ? typeView(s.slice(2)) : figView(s.slice(2));
  }

  // ---------- colours ----------
  function lerp(stops, x) {
    x = Math.max(0, Math.min(1, x));
    var j = 1;
    while (j < stops.length - 1 && stops[j][0] < x) j++;
    var a = stops[j - 1], b = stops[j], f = (x - a[0]) / ((b[0] - a[0]) || 1);
    return [0, 1, 2].map(function (m) { return Math.round(a[1][m] + f * (b[1][m] - a[1][m])); });
  }
  var SEQ = [[0, [246, 247, 250]], [0.1, [222, 234, 247]], [0.3, [164, 200, 233]], [0.5, [88, 153, 211]], [0.75, [40, 98, 172]], [1, [10, 44, 100]]];
  var DIV = [[0, [150, 20, 30]], [0.25, [221, 93, 69]], [0.45, [246, 215, 205]], [0.5, [246, 247, 250]], [0.55, [205, 222, 244]], [0.75, [88, 153, 211]], [1, [10, 44, 100]]];
  var NEUTRAL = [246, 247, 250];
  function pale(c) { return c.map(function (x, m) { return Math.round(NEUTRAL[m] + 0.28 * (x - NEUTRAL[m])); }); }
  function changeLimit() {
    var lim = 0.05;
    for (var i = 0; i < N; i++) { var c = V.ch(i); if (c !== null && !isNaN(c)) lim = Math.max(lim, Math.abs(c)); }
    return lim;
  }

  // ---------- grids ----------
  var grids = [], tip = $('dv-tip'), cw = 10, ch = 10, LIM = 1;
  function gridHTML(id, title) {
    var h = ['<div class="dv-grid-box"><h4 title="' + esc(title) + '">' + esc(title) + '</h4><div class="dv-grid" id="' + id + '" role="grid" aria-label="' + esc(title) + '" style="grid-template-columns:28px repeat(' + H + ',' + cw + 'px);grid-template-rows:14px repeat(' + L + ',' + ch + 'px)">'];
    var hs = [1, 2, 4, 5, 8, 10, 16, 20].find(function (s) { return s * cw >= 18; }) || 32;
    var ls = [1, 2, 4, 5, 10, 20].find(function (s) { return s * ch >= 11; }) || 40;
    h.push('<canvas aria-hidden="true" style="left:28px;top:14px;width:' + H * cw + 'px;height:' + L * ch + 'px"></canvas>');
    h.push('<div class="row" role="row"><div class="cl" role="columnheader">L\\H</div>');
    for (var c = 0; c < H; c++) h.push('<div class="cl" role="columnheader">' + (c % hs ? '' : c) + '</div>');
    h.push('</div>');
    for (var l = 0, i = 0; l < L; l++) {
      h.push('<div class="row" role="row"><div class="rl" role="rowheader">' + (l % ls ? '' : l) + '</div>');
      for (c = 0; c < H; c++, i++) h.push('<div class="c" role="gridcell" tabindex="-1" data-head="' + l + '.' + c + '" data-i="' + i + '"></div>');
      h.push('</div>');
    }
    h.push('</div><canvas class="dv-legend" width="240" height="30" aria-hidden="true"></canvas><div class="muted dv-legend-t"></div></div>');
    return h.join('');
  }
  function buildGrids() {
    var n = V.pair ? 3 : 1, avail = Math.min(n === 3 ? 330 : 700, Math.max(200, (window.innerWidth - 720) / n));
    cw = Math.max(7, Math.min(36, Math.floor(avail / H)));
    ch = Math.max(7, Math.min(22, Math.floor(560 / L)));
    var ids = V.pair ? [['dv-grid-a', 'A: ' + D.model_a], ['dv-grid-b', 'B: ' + D.model_b], ['dv-grid-d', 'change B \u2212 A']] : [['dv-grid-d', V.label]];
    $('dv-grids').innerHTML = ids.map(function (x) { return gridHTML(x[0], x[1]); }).join('');
    grids = ids.map(function (x) {
      var el = $(x[0]);
      return { id: x[0], el: el, canvas: el.querySelector('canvas'), cells: Array.prototype.slice.call(el.querySelectorAll('.c')) };
    });
    grids.forEach(function (g) { if (g.cells.length) g.cells[0].tabIndex = 0; bindGrid(g); });
    if (state.sel >= 0) markSel();
  }
  function paint(g, colour) {
    var dpr = window.devicePixelRatio || 1, cv = g.canvas;
    cv.width = Math.round(H * cw * dpr); cv.height = Math.round(L * ch * dpr);
    var small = document.createElement('canvas');
    small.width = Math.max(1, H); small.height = Math.max(1, L);
    var sg = small.getContext('2d'), img = sg.createImageData(small.width, small.height), px = img.data;
    for (var i = 0; i < N; i++) {
      var c = colour(i), o = 4 * i;
      px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = 255;
    }
    sg.putImageData(img, 0, 0);
    var gx = cv.getContext('2d');
    gx.imageSmoothingEnabled = false;
    gx.drawImage(small, 0, 0, cv.width, cv.height);
  }
  function legend(g, stops, lo, hi, text, mid) {
    var cv = g.el.parentNode.querySelector('.dv-legend'), dpr = window.devicePixelRatio || 1, w = 240, hh = 30;
    cv.width = w * dpr; cv.height = hh * dpr; cv.style.width = w + 'px'; cv.style.height = hh + 'px';
    var gx = cv.getContext('2d');
    gx.scale(dpr, dpr);
    for (var k = 0; k < w - 12; k++) { var c = lerp(stops, k / (w - 13)); gx.fillStyle = 'rgb(' + c.join(',') + ')'; gx.fillRect(6 + k, 2, 1, 11); }
    gx.strokeStyle = '#999'; gx.strokeRect(6.5, 2.5, w - 13, 10);
    gx.fillStyle = '#444'; gx.font = '10px system-ui,sans-serif'; gx.textAlign = 'center';
    var ticks = mid ? [lo, 0, hi] : [lo, (lo + hi) / 2, hi];
    ticks.forEach(function (t, k) { gx.fillText(String(+t.toFixed(3)), 6 + k / 2 * (w - 13), 25); });
    g.el.parentNode.querySelector('.dv-legend-t').textContent = text;
  }
  function draw() {
    LIM = changeLimit();
    var gd = grids[grids.length - 1], counts = { gained: 0, lost: 0, up: 0, down: 0, same: 0 };
    if (V.pair) {
      [0, 1].forEach(function (s) {
        var g = grids[s], f = s ? V.b : V.a;
        paint(g, function (i) { var v = f(i); return v === null ? NEUTRAL : lerp(SEQ, v / V.max); });
        g.cells.forEach(function (el, i) { el.classList.toggle('t', V.above(i, s)); });
        legend(g, SEQ, 0, V.max, V.kind === 'rel' ? 'score; outlined: \u2265 \u03c4 = ' + D.tau : 'type score; outlined: labelled', false);
      });
      paint(gd, function (i) {
        var c = V.ch(i), col = lerp(DIV, 0.5 + 0.5 * (c || 0) / LIM);
        return V.changed(i) ? col : pale(col);
      });
      var big = cw >= 9 && ch >= 9;
      gd.cells.forEach(function (el, i) {
        var st = V.status(i);
        counts[st]++;
        el.setAttribute('data-status', st);
        el.classList.toggle('chg', st !== 'same');
        el.textContent = big ? (st === 'gained' ? '\u25b2' : st === 'lost' ? '\u25bc' : '') : '';
      });
      legend(gd, DIV, -LIM, LIM, V.kind === 'rel' ? 'change; outlined: beyond the noise floor (pale: within it)' : 'change; outlined: the label switched (no noise floor)', true);
    } else {
      paint(gd, function (i) { var v = V.ch(i); return v === null ? NEUTRAL : lerp(SEQ, (v - V.lo) / (V.hi - V.lo)); });
      gd.cells.forEach(function (el) { el.removeAttribute('data-status'); el.classList.remove('chg'); el.textContent = ''; });
      legend(gd, SEQ, V.lo, V.hi, V.label + ' (exact: no noise floor)', false);
    }
    var host = $('dv-grids');
    host.setAttribute('data-view', state.view);
    host.setAttribute('data-mode', state.mode);
    host.setAttribute('data-changed', String(counts.gained + counts.lost + counts.up + counts.down));
    $('dv-legend-text').textContent = V.pair ? V.label + ': ' + (counts.gained + counts.lost + counts.up + counts.down) +
      ' heads changed beyond the floor (' + counts.gained + ' gained, ' + counts.lost + ' lost), ' + counts.same + ' unchanged' : V.label;
  }
  function cellOf(t) { return t && t.classList && t.classList.contains('c') ? +t.getAttribute('data-i') : -1; }
  function tipText(i) {
    if (!V.pair) return 'head ' + name(i) + ' \u00b7 ' + V.label + ': ' + f3(V.ch(i));
    var fl = V.floor(i);
    return 'head ' + name(i) + ' \u00b7 ' + V.label + ': A ' + f3(V.a(i)) + ' \u2192 B ' + f3(V.b(i)) + ' (' + sgn(V.ch(i)) +
      (fl !== null ? ', floor ' + f3(fl) : '') + ') \u00b7 ' + statusText(V.status(i));
  }
  function statusText(s) {
    return { gained: 'gained', lost: 'lost', up: 'up beyond the floor', down: 'down beyond the floor', same: 'unchanged' }[s] || '';
  }
  function bindGrid(g) {
    g.el.addEventListener('mousemove', function (ev) {
      var i = cellOf(ev.target);
      if (i < 0) { tip.hidden = true; return; }
      tip.textContent = tipText(i);
      tip.style.left = (ev.clientX + 14) + 'px'; tip.style.top = (ev.clientY + 12) + 'px';
      tip.hidden = false;
    });
    g.el.addEventListener('mouseleave', function () { tip.hidden = true; });
    g.el.addEventListener('click', function (ev) { var i = cellOf(ev.target); if (i >= 0) { openHead(i); g.cells[i].focus(); } });
    g.el.addEventListener('keydown', function (ev) {
      var i = cellOf(ev.target);
      if (i < 0) return;
      var l = (i / H) | 0, h = i % H, k = ev.key;
      if (k === 'Enter' || k === ' ') { ev.preventDefault(); openHead(i); return; }
      if (k === 'ArrowLeft') h = Math.max(0, h - 1);
      else if (k === 'ArrowRight') h = Math.min(H - 1, h + 1);
      else if (k === 'ArrowUp') l = Math.max(0, l - 1);
      else if (k === 'ArrowDown') l = Math.min(L - 1, l + 1);
      else return;
      ev.preventDefault();
      var j = l * H + h;
      g.cells.forEach(function (el) { el.tabIndex = -1; });
      g.cells[j].tabIndex = 0;
      g.cells[j].setAttribute('aria-label', tipText(j));
      g.cells[j].focus();
      if (!panel.hidden) openHead(j);
    });
  }
  function markSel() {
    grids.forEach(function (g) { g.cells.forEach(function (el, i) { el.classList.toggle('sel', i === state.sel); }); });
    $('dv-tbody').querySelectorAll('tr.r').forEach(function (tr) { tr.classList.toggle('sel', +tr.getAttribute('data-i') === state.sel); });
  }

  // ---------- head panel ----------
  var panel = $('dv-panel');
  function openHead(i) {
    if (i < 0 || i >= N) return;
    state.sel = i;
    $('dv-panel-h').textContent = 'Head ' + name(i);
    $('dv-panel-body').innerHTML = panelHTML(i);
    panel.hidden = false;
    panel.setAttribute('data-head', name(i));
    markSel();
  }
  $('dv-panel-close').addEventListener('click', function () { panel.hidden = true; state.sel = -1; markSel(); });
  panel.addEventListener('click', function (ev) {
    var r = ev.target.closest('[data-pick]');
    if (r) pick(r.getAttribute('data-pick'));
  });
  document.addEventListener('keydown', function (ev) {
    if (ev.key === 'Escape' && !panel.hidden) { panel.hidden = true; state.sel = -1; markSel(); }
  });
  function tok(t) { return '<span class="tok">' + esc(vis(TOKS[t])) + '</span>'; }
  function salientHTML(ops, other) {
    if (!ops || !ops.length) return '<p class="muted">none</p>';
    var mine = {}, src = {};
    (other || []).forEach(function (x) { src[TOKS[x[0]]] = 1; for (var k = 0; k < x[2].length; k += 2) mine[TOKS[x[0]] + '\u0000' + TOKS[x[2][k]]] = 1; });
    var o = ['<table class="sal"><thead><tr><th>token</th><th>top mappings</th></tr></thead><tbody>'];
    ops.forEach(function (x) {
      var maps = [];
      for (var k = 0; k < x[2].length; k += 2) {
        var shared = mine[TOKS[x[0]] + '\u0000' + TOKS[x[2][k]]];
        maps.push('<span class="tok' + (shared ? ' shared' : '') + '"' + (shared ? ' data-shared="1"' : '') + '>' + esc(vis(TOKS[x[2][k]])) + '</span>');
      }
      o.push('<tr><td><span class="tok' + (src[TOKS[x[0]]] ? ' shared' : '') + '">' + esc(vis(TOKS[x[0]])) + '</span></td><td class="maps">' + maps.join(' ') + '</td></tr>');
    });
    return o.join('') + '</tbody></table>';
  }
  function profileSVG(wa, wb) {
    var n = Math.max(wa.length, wb.length), bw = Math.max(4, Math.min(14, Math.floor(380 / n))), ph = 64, top = 6, base = top + ph;
    var mx = Math.max.apply(null, wa.concat(wb)) || 1, o = [];
    o.push('<svg class="qk-profile dv-profile" role="img" aria-label="positional profiles of A and B: attention weight by distance" width="' + (n * bw + 40) + '" height="' + (base + 30) + '">');
    for (var d = 0; d < n; d++) {
      [[wa, 'pa', 0], [wb, 'pb', 1]].forEach(function (x) {
        var v = x[0][d] || 0, hg = Math.max(0.5, ph * v / mx);
        o.push('<rect class="' + x[1] + '" x="' + (30 + d * bw + x[2] * (bw - 1) / 2) + '" y="' + (base - hg).toFixed(1) + '" width="' + Math.max(1, (bw - 1) / 2) + '" height="' + hg.toFixed(1) + '"><title>' + (x[2] ? 'B' : 'A') + ' \u0394=' + d + ': ' + v + '</title></rect>');
      });
    }
    o.push('<text x="0" y="' + (top + 8) + '">' + mx.toFixed(2) + '</text><text x="30" y="' + (base + 12) + '">\u0394=0</text><text x="' + (30 + (n - 1) * bw) + '" y="' + (base + 12) + '" text-anchor="end">' + (n - 1) + '</text>');
    o.push('<rect class="pa" x="30" y="' + (base + 19) + '" width="8" height="8"/><text x="41" y="' + (base + 27) + '">A</text><rect class="pb" x="60" y="' + (base + 19) + '" width="8" height="8"/><text x="71" y="' + (base + 27) + '">B</text>');
    return o.join('') + '</svg>';
  }
  function panelHTML(i) {
    var l = (i / H) | 0, h = i % H, out = ['<p class="meta">layer ' + l + ' \u00b7 head ' + h + ' \u00b7 A: ' + esc(D.model_a) + ' \u00b7 B: ' + esc(D.model_b) + '</p>'];
    if (R) {
      out.push('<h4>Relation scores</h4><table class="cmp dv-rels"><thead><tr><th>relation</th><th>A</th><th>B</th><th>change</th><th>floor</th><th>status</th></tr></thead><tbody>');
      for (var r = 0; r < R; r++) {
        var v = relView(r, state.mode), st = v.status(i);
        out.push('<tr data-pick="r' + r + '" data-relation="' + esc(REL[r]) + '" data-status="' + st + '"' + (state.view === 'r' + r ? ' class="on"' : '') + '><td>' + esc(REL[r]) + '</td><td>' + f3(v.a(i)) + '</td><td>' + f3(v.b(i)) + '</td><td>' + sgn(v.ch(i)) + '</td><td>' + f3(v.floor(i)) + '</td><td><span class="st ' + st + '">' + statusText(st) + '</span></td></tr>');
      }
      out.push('</tbody></table><p class="meta">' + (state.mode === 'rel' ? 'Relation' : 'Suppression') + ' scores; click a row to show that relation. \u03c4 = ' + D.tau + '.</p>');
    }
    if (FIGK.length) {
      out.push('<h4>Weights and parts without a noise floor</h4><dl class="figs">');
      FIGK.forEach(function (f) { out.push('<dt>' + esc(FIGN[f] || f) + '</dt><dd data-figure="' + esc(f) + '">' + f3(FIG[f][i]) + '</dd>'); });
      ['prev_mass', 'preferred_distance'].forEach(function (k) {
        var x = D.qk && D.qk[k];
        if (x) out.push('<dt>' + (k === 'prev_mass' ? 'profile weight at \u0394=1' : 'preferred distance') + '</dt><dd>A ' + (k === 'prev_mass' ? f3(x.a[i]) : x.a[i]) + ' \u2192 B ' + (k === 'prev_mass' ? f3(x.b[i]) : x.b[i]) + '</dd>');
      });
      out.push('</dl>');
    }
    if (TYK.length) {
      out.push('<h4>Head types</h4><table class="cmp dv-types"><thead><tr><th>type</th><th>A</th><th>B</th><th>label</th></tr></thead><tbody>');
      TYK.forEach(function (t) {
        var T = TY[t], lab = T.la[i] === T.lb[i] ? (T.la[i] ? 'both' : '-') : (T.lb[i] ? 'gained' : 'lost');
        out.push('<tr data-pick="t:' + esc(t) + '"><td>' + esc(t.replace(/_/g, ' ')) + '</td><td>' + f3(T.a[i]) + '</td><td>' + f3(T.b[i]) + '</td><td>' + lab + '</td></tr>');
      });
      out.push('</tbody></table>');
    }
    var e = side(i) || {};
    out.push('<h4>Salient operations</h4>');
    if (e.sa || e.sb) {
      out.push('<p class="meta">Shared source tokens and mappings are highlighted.</p><div class="sides dv-salient"><div data-side="a"><h5>A: ' + esc(D.model_a) + '</h5>' + salientHTML(e.sa, e.sb) +
        '</div><div data-side="b"><h5>B: ' + esc(D.model_b) + '</h5>' + salientHTML(e.sb, e.sa) + '</div></div>');
    } else out.push('<p class="muted">This diff holds no salient operations (made with --no-salient, or saved before they were kept).</p>');
    out.push('<h4>Positional profile (QK)</h4>');
    if (e.pa && e.pb) out.push(profileSVG(e.pa, e.pb));
    else out.push('<p class="muted">This diff holds no positional profiles (made with --no-qk, or saved before they were kept).</p>');
    return out.join('');
  }

  // ---------- table ----------
  var ST_RANK = { gained: 0, lost: 1, up: 2, down: 3, same: 4, '': 5 };
  function sortKey(i) {
    switch (state.sort) {
      case 'a': return V.a(i) === null ? -1 : V.a(i);
      case 'b': return V.b(i) === null ? -1 : V.b(i);
      case 'change': return V.pair ? Math.abs(V.ch(i) || 0) : (V.ch(i) === null ? -Infinity : V.ch(i));
      case 'floor': return V.floor(i) === null ? -1 : V.floor(i);
      case 'status': return ST_RANK[V.status(i)];
      case 'wvo': return FIG.wvo_change ? FIG.wvo_change[i] : 0;
      case 'overlap': return FIG.salient_mapping_overlap ? FIG.salient_mapping_overlap[i] : 0;
      default: return i;
    }
  }
  function renderTable() {
    var show = $('dv-show').value, order = [];
    for (var i = 0; i < N; i++) {
      var st = V.status(i);
      if (show === 'changed' && (st === 'same' || st === '')) continue;
      if ((show === 'gained' || show === 'lost' || show === 'same') && st !== show) continue;
      order.push(i);
    }
    var keys = {};
    order.forEach(function (i) { keys[i] = sortKey(i); });
    var d = state.dir;
    order.sort(function (a, b) { return keys[a] < keys[b] ? -d : keys[a] > keys[b] ? d : a - b; });
    var wv = FIG.wvo_change, ov = FIG.salient_mapping_overlap;
    $('dv-tbody').innerHTML = order.map(function (i) {
      var st = V.status(i);
      return '<tr class="r' + (i === state.sel ? ' sel' : '') + '" tabindex="0" data-head="' + name(i) + '" data-i="' + i + '" data-status="' + st + '"><td>' + name(i) + '</td><td class="num">' + f3(V.a(i)) + '</td><td class="num">' + f3(V.b(i)) +
        '</td><td class="num">' + (V.pair ? sgn(V.ch(i)) : f3(V.ch(i))) + '</td><td class="num">' + f3(V.floor(i)) + '</td><td>' + (st ? '<span class="st ' + st + '">' + statusText(st) + '</span>' : '-') +
        '</td><td class="num">' + (wv ? f3(wv[i]) : '-') + '</td><td class="num">' + (ov ? f3(ov[i]) : '-') + '</td></tr>';
    }).join('');
    var c = $('dv-count');
    c.textContent = order.length + ' of ' + N + ' heads';
    c.setAttribute('data-count', String(order.length));
  }
  $('dv-tbody').addEventListener('click', function (ev) { var tr = ev.target.closest('tr.r'); if (tr) openHead(+tr.getAttribute('data-i')); });
  $('dv-tbody').addEventListener('keydown', function (ev) {
    var tr = ev.target.closest('tr.r');
    if (tr && (ev.key === 'Enter' || ev.key === ' ')) { ev.preventDefault(); openHead(+tr.getAttribute('data-i')); }
  });
  $('dv-show').addEventListener('change', renderTable);
  document.querySelectorAll('#dv-table thead button').forEach(function (b) {
    b.addEventListener('click', function () {
      var key = b.getAttribute('data-sort');
      if (state.sort === key) state.dir = -state.dir;
      else { state.sort = key; state.dir = key === 'head' || key === 'status' ? 1 : -1; }
      document.querySelectorAll('#dv-table thead th').forEach(function (th) {
        var on = th.querySelector('button').getAttribute('data-sort') === state.sort;
        if (on) th.setAttribute('aria-sort', state.dir > 0 ? 'ascending' : 'descending'); else th.removeAttribute('aria-sort');
      });
      renderTable();
    });
  });

  // ---------- summary ----------
  function headButtons(list) {
    if (!list || !list.length) return '-';
    return list.map(function (h) { var p = h.split('.'); return '<button type="button" class="chip" data-goto="' + (+p[0] * H + +p[1]) + '">' + esc(h) + '</button>'; }).join(' ');
  }
  function summary() {
    var s = D.summary, o = [];
    if (R) {
      o.push('<table class="plain dv-sum"><thead><tr><th>relation</th><th>pairs</th><th>beyond the floor</th><th>gained</th><th>lost</th></tr></thead><tbody>');
      for (var r = 0; r < R; r++) {
        o.push('<tr data-relation="' + esc(REL[r]) + '"><td><button type="button" class="chip" data-pick="r' + r + '">' + esc(REL[r]) + '</button></td><td>' + D.n_pairs[r] + '</td><td>' + s.changed[r] + '</td><td>' + headButtons(s.gained[r]) + '</td><td>' + headButtons(s.lost[r]) + '</td></tr>');
      }
      o.push('</tbody></table>');
    } else o.push('<p class="muted">No relations were diffed.</p>');
    var tk = Object.keys(s.types || {});
    if (tk.length) {
      o.push('<h3>Head types (label switches; no noise floor)</h3><ul class="sumlist">');
      tk.forEach(function (t) { o.push('<li>' + esc(t.replace(/_/g, ' ')) + ': gained ' + headButtons(s.types[t].gained) + '; lost ' + headButtons(s.types[t].lost) + '</li>'); });
      o.push('</ul>');
    }
    var nf = Object.keys(D.noFloor || {});
    if (nf.length) o.push('<p class="muted">No noise floor: ' + nf.map(function (p) { return esc(p) + ' (' + esc(D.noFloor[p]) + ')'; }).join('; ') + '.</p>');
    $('dv-sum').innerHTML = o.join('');
  }
  $('dv-summary').addEventListener('click', function (ev) {
    var b = ev.target.closest('[data-goto]');
    if (b) { openHead(+b.getAttribute('data-goto')); return; }
    var p = ev.target.closest('[data-pick]');
    if (p) pick(p.getAttribute('data-pick'));
  });

  // ---------- controls ----------
  var sel = $('dv-rel');
  (function () {
    var o = [];
    if (R) o.push('<optgroup label="Relations (noise floor: bootstrap over pairs)">' + REL.map(function (r, k) { return '<option value="r' + k + '">' + esc(r) + ' (' + D.n_pairs[k] + ' pairs, ' + D.summary.changed[k] + ' changed)</option>'; }).join('') + '</optgroup>');
    if (TYK.length) o.push('<optgroup label="Head types (no noise floor)">' + TYK.map(function (t) { return '<option value="t:' + esc(t) + '">' + esc(t.replace(/_/g, ' ')) + '</option>'; }).join('') + '</optgroup>');
    if (FIGK.length) o.push('<optgroup label="Per head (exact, no noise floor)">' + FIGK.map(function (f) { return '<option value="f:' + esc(f) + '">' + esc(FIGN[f] || f) + '</option>'; }).join('') + '</optgroup>');
    sel.innerHTML = o.join('');
    sel.value = state.view;
  })();
  sel.addEventListener('change', function () { pick(sel.value); });
  function pick(view) {
    var wasPair = V && V.pair;
    state.view = view;
    if (sel.value !== view) sel.value = view;
    makeView();
    document.querySelectorAll('#dv-map-sec .seg button').forEach(function (b) { b.disabled = V.kind !== 'rel'; });
    if (V.pair !== wasPair) buildGrids();
    refresh();
  }
  document.querySelectorAll('#dv-map-sec .seg button').forEach(function (b) {
    b.addEventListener('click', function () {
      var mode = b.getAttribute('data-mode');
      if (mode === state.mode) return;
      state.mode = mode;
      document.querySelectorAll('#dv-map-sec .seg button').forEach(function (x) {
        var on = x.getAttribute('data-mode') === mode;
        x.setAttribute('aria-checked', on ? 'true' : 'false');
        x.tabIndex = on ? 0 : -1;
      });
      makeView();
      refresh();
    });
  });
  function refresh() {
    draw();
    renderTable();
    if (state.sel >= 0 && !panel.hidden) $('dv-panel-body').innerHTML = panelHTML(state.sel);
  }

  // ---------- start ----------
  makeView();
  document.querySelectorAll('#dv-map-sec .seg button').forEach(function (b) { b.disabled = V.kind !== 'rel'; });
  buildGrids();
  summary();
  refresh();
  var m = /^#head=(\d+)\.(\d+)$/.exec(location.hash);
  if (m && +m[1] < L && +m[2] < H) openHead(+m[1] * H + +m[2]);
  window.__headmapsReady = true;
  document.documentElement.setAttribute('data-ready', '1');
})();
