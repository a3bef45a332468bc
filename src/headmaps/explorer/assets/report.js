/* headmaps report explorer: hand-written, dependency-free, offline.
 * Reads the JSON payload in #hm-data (see headmaps/explorer/encode.py) and draws the
 * heatmap (a light DOM grid), the virtualised table, the head panel and the summaries.
 * Sets window.__headmapsReady (and __headmapsReadyMs) once the first render is done. */
(function () {
  'use strict';

  var mark = function (m) { if (performance.mark) performance.mark('hm-' + m); };
  mark('start');
  var D = JSON.parse(document.getElementById('hm-data').textContent);
  mark('parsed');
  var L = D.nL, H = D.nH, R = D.relations.length, N = L * H;
  var Q = D.Q, TQ = D.tauQ, G = D.summary.kv_group || 1;
  var REL = D.relations, TOKS = D.toks;
  // Per-head extras: one JSON text per line, parsed when a head is first needed.
  var EXL = document.getElementById('hm-ex').textContent.split('\n'), EXC = new Array(N);
  function ex(i) {
    var e = EXC[i];
    if (e === undefined) e = EXC[i] = EXL[i] ? JSON.parse(EXL[i]) : null;
    return e;
  }
  var CTX = D.ctx || null;
  var S0 = u16(D.scores), P0 = u16(D.supp), S = S0, P = P0;
  var SC = CTX ? u16(CTX.scores) : null, PC = CTX ? u16(CTX.supp) : null, TQ0 = TQ;
  var $ = function (id) { return document.getElementById(id); };

  // rel -1 is the overview (each head's best relation, coloured by family): the first view.
  var state = { rel: -1, mode: 'rel', sel: -1, sort: 'head', dir: 1, ctx: false };

  // ---------- data helpers ----------
  function u16(b64) {
    var bin = atob(b64), n = bin.length, u8 = new Uint8Array(n);
    for (var i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
    return new Uint16Array(u8.buffer, 0, n >> 1);
  }
  // Per head: relations implemented / suppressed, best scores; and the max-over-relations arrays.
  var nrel = new Uint16Array(N), nsupp = new Uint16Array(N);
  var maxS = new Uint16Array(N), maxP = new Uint16Array(N);
  function recount() {
    nrel.fill(0); nsupp.fill(0); maxS.fill(0); maxP.fill(0);
    for (var r = 0; r < R; r++) {
      var o = r * N;
      for (var i = 0; i < N; i++) {
        var s = S[o + i], p = P[o + i];
        if (s >= TQ) nrel[i]++;
        if (p >= TQ) nsupp[i]++;
        if (s > maxS[i]) maxS[i] = s;
        if (p > maxP[i]) maxP[i] = p;
      }
    }
  }
  recount();
  function arr() { return state.mode === 'rel' ? S : P; }
  function q(i, r, mode) {
    var a = (mode || state.mode) === 'rel' ? S : P;
    if (r === undefined) r = state.rel;
    if (r < 0) return (mode || state.mode) === 'rel' ? maxS[i] : maxP[i];
    return a[r * N + i];
  }
  function fmt(qv) { return (qv / Q).toFixed(3); }
  function relsOf(i, a) {
    var out = [];
    for (var r = 0; r < R; r++) if (a[r * N + i] >= TQ) out.push(REL[r]);
    return out;
  }
  function name(i) { return ((i / H) | 0) + '.' + (i % H); }
  // Head types (payload "types": one ascending list of head indices per type name).
  var TYN = (D.types && D.types.names) || [], TYH = new Array(N);
  var TYW = {};  // "k,i" -> the label's evidence (score, z, percentile, confidence, rule)
  TYN.forEach(function (t, k) { D.types.heads[k].forEach(function (i, n) { (TYH[i] = TYH[i] || []).push(k); if (D.types.why) TYW[k + ',' + i] = D.types.why[k][n]; }); });
  function typeLabel(t) { return String(t).replace(/_/g, ' '); }
  function typeBadges(i) {
    return (TYH[i] || []).map(function (k) {
      return ' <span class="badge htype" data-type="' + esc(TYN[k]) + '" title="' + esc(TYW[k + ',' + i] || 'head type (from parameters)') + '">' +
        esc(typeLabel(TYN[k])) + '</span>';
    }).join('');
  }
  function hasType(i, k) { return !!TYH[i] && TYH[i].indexOf(k) >= 0; }
  function relName() { return state.rel < 0 ? 'best relation' : REL[state.rel]; }
  function cov(i) {
    var e = ex(i);
    if (!e) return 'none';
    if (e.u) return 'unclear';
    return e.d ? 'described' : 'none';
  }
  // Description scores (extras "ds"): the score on held-out tokens and its shuffled baseline.
  var DSC = D.dscored || 0, NCOL = DSC ? 9 : 8;
  function dscore(i) { var e = ex(i); return e && e.ds && e.ds.s !== null && e.ds.s !== undefined ? e.ds.s : null; }
  function dscoreHTML(e) {
    var d = e.ds;
    if (!d) return '';
    if (d.s === null || d.s === undefined) return '<p class="meta dscore" data-score="none">Description score: not measured (' + esc(d.r || d.m) + ')</p>';
    return '<p class="meta dscore" data-score="' + d.s + '">Description score <b>' + d.s.toFixed(2) + '</b> vs baseline <b>' +
      (d.b === null || d.b === undefined ? '-' : d.b.toFixed(2)) + '</b> <span class="muted">(' + esc(d.m) + ', ' + d.n + ' held-out tokens, hit = a prediction in the top ' + d.k +
      '; baseline: the same description on other heads)</span></p>';
  }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;';
    });
  }
  function vis(t) {  // a token, with its spaces and control characters made visible
    return String(t).replace(/ /g, '\u2423').replace(/\n/g, '\u21b5').replace(/\t/g, '\u21e5')
      .replace(/[\u0000-\u001f\u007f]/g, function (c) { return '\\x' + ('0' + c.charCodeAt(0).toString(16)).slice(-2); });
  }
  function tok(t) { return '<span class="tok">' + esc(vis(TOKS[t])) + '</span>'; }
  function mappingsText(i, n) {
    var e = ex(i);
    if (!e || !e.s) return '';
    var out = [];
    for (var k = 0; k < Math.min(n, e.s.length); k++) {
      var s = e.s[k], t = s[2];
      out.push(vis(TOKS[s[0]]) + '\u2192' + (t.length ? vis(TOKS[t[0]]) : '?'));
    }
    return out.join(', ');
  }

  // ---------- colours ----------
  function lut(stops) {  // 256 colours: {css: ['rgb(..)'], rgb: Uint8Array(768)}
    var css = new Array(256), rgb = new Uint8Array(768);
    for (var k = 0; k < 256; k++) {
      var x = k / 255, j = 1;
      while (j < stops.length - 1 && stops[j][0] < x) j++;
      var a = stops[j - 1], b = stops[j], f = (x - a[0]) / (b[0] - a[0]);
      for (var m = 0; m < 3; m++) rgb[3 * k + m] = Math.round(a[1][m] + f * (b[1][m] - a[1][m]));
      css[k] = 'rgb(' + rgb[3 * k] + ',' + rgb[3 * k + 1] + ',' + rgb[3 * k + 2] + ')';
    }
    return { css: css, rgb: rgb };
  }
  var LUT = {
    rel: lut([[0, [246, 247, 250]], [0.1, [222, 234, 247]], [0.3, [164, 200, 233]], [0.5, [88, 153, 211]],
      [0.75, [40, 98, 172]], [1, [10, 44, 100]]]),
    supp: lut([[0, [246, 247, 250]], [0.1, [250, 226, 218]], [0.3, [241, 167, 142]], [0.5, [221, 93, 69]],
      [0.75, [176, 40, 38]], [1, [92, 10, 20]]])
  };

  // ---------- overview: each head's best relation, coloured by its family ----------
  // The families, their colours and each head's best relation come from Python (encode.py).
  var FAMS = D.families || [], FAM = D.fam || [];
  var BEST0 = { rel: D.best || [], supp: D.bestSupp || [] }, BEST = BEST0;
  // In-context scores (phi_ctx), when the scan has them: the "in context" toggle swaps them in.
  var BESTC = CTX ? { rel: CTX.best, supp: CTX.bestSupp } : null;
  var FRGB = (D.famColours || []).map(function (c) {
    return [1, 3, 5].map(function (k) { return parseInt(c.slice(k, k + 2), 16); });
  });
  var BASE = [246, 247, 250], NEUTRAL = [226, 229, 234];
  // Best relation of head i in the current mode, or -1 when none reaches tau.
  function bestOf(i) {
    var b = BEST[state.mode][i];
    return b >= 0 && b < R && q(i, b) >= TQ ? b : -1;
  }
  // Colour of head i in the overview: its family's colour, paler for a lower score.
  function overviewRGB(i) {
    var b = bestOf(i);
    if (b < 0) return NEUTRAL;
    var f = FRGB[FAM[b]], t = Math.min(1, Math.max(0, (q(i, b) / Q - D.tau) / Math.max(1e-9, 1 - D.tau)));
    var a = 0.35 + 0.65 * t;
    return [0, 1, 2].map(function (m) { return Math.round(BASE[m] + a * (f[m] - BASE[m])); });
  }
  function overviewText(i) {
    var b = BEST[state.mode][i], what = state.mode === 'rel' ? 'best relation' : 'most suppressed';
    if (!(b >= 0 && b < R)) return 'head ' + name(i) + ' \u00b7 no relations scored';
    var sc = fmt(q(i, b));
    if (bestOf(i) < 0) return 'head ' + name(i) + ' \u00b7 no relation \u2265 \u03c4 (' + what + ': ' + REL[b] + ' ' + sc + ')';
    return 'head ' + name(i) + ' \u00b7 ' + what + ': ' + REL[b] + ' (' + FAMS[FAM[b]] + ') \u00b7 ' +
      (state.mode === 'rel' ? '\u03c6 ' : 'suppression ') + sc;
  }
  function familyLegend() {
    var n = FAMS.map(function () { return 0; }), none = 0;
    for (var i = 0; i < N; i++) { var b = bestOf(i); if (b < 0) none++; else n[FAM[b]]++; }
    var item = function (fam, rgb, k) {
      return '<span class="fam" data-family="' + esc(fam) + '"><i style="background:rgb(' + rgb.join(',') + ')"></i>' +
        esc(fam) + ' <small>' + k + '</small></span>';
    };
    $('hm-fam-legend').innerHTML = FAMS.map(function (f, k) { return item(f, FRGB[k], n[k]); }).join('') +
      item('none \u2265 \u03c4', NEUTRAL, none);
  }

  // ---------- heatmap ----------
  // Colours are painted on a canvas (one pixel per head, scaled up); the transparent DOM
  // cells above it carry data-head, focus, clicks and the tau outline.
  var grid = $('hm-grid'), cells = [], draws = 0, canvas = null, cw = 10, ch = 10;
  var small = document.createElement('canvas');
  function buildGrid() {
    var avail = Math.min(780, Math.max(360, window.innerWidth * 0.56));
    cw = Math.max(7, Math.min(40, Math.floor(avail / H)));
    ch = Math.max(7, Math.min(24, Math.floor(660 / L)));
    var hs = [1, 2, 4, 5, 8, 10, 16, 20].find(function (s) { return s * cw >= 18; }) || 32;
    var ls = [1, 2, 4, 5, 10, 20].find(function (s) { return s * ch >= 11; }) || 40;
    grid.style.gridTemplateColumns = '28px repeat(' + H + ',' + cw + 'px)';
    grid.style.gridTemplateRows = '14px repeat(' + L + ',' + ch + 'px)';
    var h = ['<div class="row" role="row"><div class="cl" role="columnheader">L\\H</div>'];
    for (var c = 0; c < H; c++) h.push('<div class="cl" role="columnheader">' + (c % hs ? '' : c) + '</div>');
    h.push('</div>');
    for (var l = 0, i = 0; l < L; l++) {
      h.push('<div class="row" role="row"><div class="rl" role="rowheader">' + (l % ls ? '' : l) + '</div>');
      for (c = 0; c < H; c++, i++) h.push('<div class="c" role="gridcell" tabindex="-1" data-head="' + l + '.' + c + '" data-i="' + i + '"></div>');
      h.push('</div>');
    }
    grid.innerHTML = '<canvas id="hm-canvas" aria-hidden="true"></canvas>' + h.join('');
    canvas = $('hm-canvas');
    var dpr = window.devicePixelRatio || 1;
    canvas.style.left = '28px'; canvas.style.top = '14px';
    canvas.style.width = H * cw + 'px'; canvas.style.height = L * ch + 'px';
    canvas.width = Math.round(H * cw * dpr); canvas.height = Math.round(L * ch * dpr);
    small.width = Math.max(1, H); small.height = Math.max(1, L);
    cells = Array.prototype.slice.call(grid.querySelectorAll('.c'));
    if (N) cells[0].tabIndex = 0;
  }
  function draw() {
    var a = arr(), base = state.rel * N, rgb = LUT[state.mode].rgb, useMax = state.rel < 0;
    var mx = state.mode === 'rel' ? maxS : maxP;
    var sg = small.getContext('2d'), img = sg.createImageData(Math.max(1, H), Math.max(1, L)), px = img.data;
    for (var i = 0; i < N; i++) {
      var v = useMax ? mx[i] : a[base + i], k = 3 * ((v * 255 / Q + 0.5) | 0), o = 4 * i;
      if (useMax) {
        var c = overviewRGB(i);
        px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2];
      } else { px[o] = rgb[k]; px[o + 1] = rgb[k + 1]; px[o + 2] = rgb[k + 2]; }
      px[o + 3] = 255;
      var el = cells[i], t = v >= TQ;
      if (t !== el.classList.contains('t')) el.classList.toggle('t', t);
    }
    sg.putImageData(img, 0, 0);
    var g = canvas.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(small, 0, 0, canvas.width, canvas.height);
    if (G > 1) {  // thin lines between KV-head groups
      var sx = canvas.width / H, lw = Math.max(1, Math.round(window.devicePixelRatio || 1));
      g.fillStyle = 'rgba(90,100,115,0.6)';
      for (var c = G; c < H; c += G) g.fillRect(Math.round(c * sx - lw / 2), 0, lw, canvas.height);
    }
    grid.setAttribute('data-relation', useMax ? 'overview' : relName());
    grid.setAttribute('data-mode', state.mode);
    grid.setAttribute('data-draws', String(++draws));
  }
  function setMode(mode) {
    if (mode === state.mode) return;
    state.mode = mode;
    document.querySelectorAll('.seg button[data-mode]').forEach(function (b) {
      var on = b.getAttribute('data-mode') === mode;
      b.setAttribute('aria-checked', on ? 'true' : 'false');
      b.tabIndex = on ? 0 : -1;
    });
    refresh();
  }
  function drawLegend() {
    var ov = state.rel < 0;
    $('hm-fam-legend').hidden = !ov;
    $('hm-legend').parentNode.hidden = ov;
    if (ov) {
      familyLegend();
      $('hm-legend-text').textContent = (state.mode === 'rel' ? 'Overview: each head\u2019s best relation' :
        'Overview: the relation each head suppresses most') + ', coloured by family, paler for a lower score (\u03c4 = ' + D.tau + ')';
      return;
    }
    var cv = $('hm-legend'), dpr = window.devicePixelRatio || 1, w = 240, hgt = 34;
    cv.width = w * dpr; cv.height = hgt * dpr;
    var g = cv.getContext('2d');
    g.scale(dpr, dpr);
    var lt = LUT[state.mode].css, x0 = 6, bw = w - 12;
    for (var k = 0; k < bw; k++) { g.fillStyle = lt[Math.round(k / (bw - 1) * 255)]; g.fillRect(x0 + k, 2, 1, 12); }
    g.strokeStyle = '#999'; g.strokeRect(x0 + 0.5, 2.5, bw - 1, 11);
    g.fillStyle = '#444'; g.font = '10px system-ui,sans-serif'; g.textAlign = 'center';
    [0, 0.25, 0.5, 0.75, 1].forEach(function (t) { g.fillRect(x0 + t * (bw - 1), 14, 1, 3); g.fillText(String(t), x0 + t * (bw - 1), 27); });
    var tx = x0 + D.tau * (bw - 1);
    g.fillStyle = '#111'; g.fillRect(tx - 1, 0, 2, 17);
    g.fillText('\u03c4', tx, 33);
    $('hm-legend-text').textContent = (state.mode === 'rel' ? 'relation score \u03c6' : 'suppression score') +
      (state.ctx ? ' in context (\u03c6_ctx)' : '') + ' of ' + relName() + ' (\u03c4 = ' +
      (state.ctx ? CTX.tau : D.tau) + ')';
  }
  var tip = $('hm-tip');
  function cellOf(t) { return t && t.classList && t.classList.contains('c') ? +t.getAttribute('data-i') : -1; }
  grid.addEventListener('mousemove', function (ev) {
    var i = cellOf(ev.target);
    if (i < 0) { tip.hidden = true; return; }
    tip.textContent = state.rel < 0 ? overviewText(i) : 'head ' + name(i) + ' \u00b7 ' + relName() + ': ' +
      fmt(q(i, state.rel, 'rel')) + ' \u00b7 suppression ' + fmt(q(i, state.rel, 'supp')) +
      (state.ctx ? ' (in context)' : '');
    tip.style.left = (ev.clientX + 14) + 'px'; tip.style.top = (ev.clientY + 12) + 'px';
    tip.hidden = false;
  });
  grid.addEventListener('mouseleave', function () { tip.hidden = true; });
  grid.addEventListener('click', function (ev) {
    var i = cellOf(ev.target);
    if (i >= 0) { focusCell(i); openHead(i); }
  });
  grid.addEventListener('focusin', function (ev) {
    var i = cellOf(ev.target);
    if (i >= 0) rove(i);
  });
  var roving = 0;
  function rove(i) {
    if (roving !== i && cells[roving]) cells[roving].tabIndex = -1;
    roving = i;
    var el = cells[i];
    el.tabIndex = 0;
    el.setAttribute('aria-label', state.rel < 0 ? overviewText(i) : 'head ' + name(i) + ', ' + relName() + ' ' + fmt(q(i)));
  }
  function focusCell(i) { rove(i); cells[i].focus({ preventScroll: false }); }
  grid.addEventListener('keydown', function (ev) {
    var i = cellOf(ev.target);
    if (i < 0) return;
    var l = (i / H) | 0, h = i % H, k = ev.key;
    if (k === 'Enter' || k === ' ') { ev.preventDefault(); openHead(i); return; }
    if (k === 'ArrowLeft') h = Math.max(0, h - 1);
    else if (k === 'ArrowRight') h = Math.min(H - 1, h + 1);
    else if (k === 'ArrowUp') l = Math.max(0, l - 1);
    else if (k === 'ArrowDown') l = Math.min(L - 1, l + 1);
    else if (k === 'PageUp') l = Math.max(0, l - 5);
    else if (k === 'PageDown') l = Math.min(L - 1, l + 5);
    else if (k === 'Home') { h = 0; if (ev.ctrlKey) l = 0; }
    else if (k === 'End') { h = H - 1; if (ev.ctrlKey) l = L - 1; }
    else return;
    ev.preventDefault();
    focusCell(l * H + h);
    if (!$('hm-panel').hidden) openHead(l * H + h);
  });

  // ---------- head panel ----------
  var panel = $('hm-panel'), lastFocus = null;
  function openHead(i) {
    if (i < 0 || i >= N) return;
    if (!panel.contains(document.activeElement)) lastFocus = document.activeElement;
    var prev = state.sel;
    state.sel = i;
    if (prev >= 0 && cells[prev]) cells[prev].classList.remove('sel');
    cells[i].classList.add('sel');
    $('hm-panel-h').textContent = 'Head ' + name(i);
    $('hm-panel-body').innerHTML = panelHTML(i);
    panel.hidden = false;
    panel.setAttribute('data-head', name(i));
    markRows();
  }
  function closePanel() {
    if (panel.hidden) return;
    panel.hidden = true;
    if (state.sel >= 0) cells[state.sel].classList.remove('sel');
    state.sel = -1;
    markRows();
    if (lastFocus && document.contains(lastFocus)) lastFocus.focus();
  }
  $('hm-panel-close').addEventListener('click', closePanel);
  panel.addEventListener('click', function (ev) {
    var b = ev.target.closest('[data-goto]');
    if (b) { openHead(+b.getAttribute('data-goto')); return; }
    var r = ev.target.closest('[data-pick]');
    if (r) pickRelation(+r.getAttribute('data-pick'));
  });
  document.addEventListener('keydown', function (ev) {
    if (ev.key === 'Escape' && !panel.hidden) { ev.preventDefault(); closePanel(); }
  });
  function panelHTML(i) {
    var l = (i / H) | 0, h = i % H, e = ex(i) || {}, c = cov(i), out = [];
    var meta = 'layer ' + l + ' \u00b7 head ' + h;
    if (G > 1) meta += ' \u00b7 KV head ' + ((h / G) | 0) + ' of ' + (H / G);
    out.push('<p class="meta">' + meta + ' <span class="badge ' + c + '">' + c + '</span>' + typeBadges(i) + '</p>');
    if (CTX && state.rel >= 0) {  // both reads of the head for the picked relation
      var at = state.rel * N + i;
      out.push('<p class="meta" id="hm-both">' + esc(relName()) + ': \u03c6 ' + fmt(S0[at]) + ' alone \u00b7 ' +
        '\u03c6_ctx ' + fmt(SC[at]) + ' in context (suppression ' + fmt(P0[at]) + ' \u00b7 ' + fmt(PC[at]) + ')</p>');
    }
    if (G > 1) {
      var g0 = ((h / G) | 0) * G, sib = [];
      for (var s = g0; s < g0 + G; s++) {
        var j = l * H + s;
        sib.push('<button type="button" class="' + (j === i ? 'chip on' : 'chip') + '" data-goto="' + j + '" title="' +
          esc(relName()) + ' score">' + name(j) + ' <small>' + fmt(q(j, state.rel, 'rel')) + '</small></button>');
      }
      out.push('<div class="kv">Shares its KV head with: ' + sib.join('') + '</div>');
    }
    out.push('<h4>Description</h4>');
    if (e.d || e.u) {
      out.push('<div class="desc' + (e.u ? ' unclear' : '') + '">' + esc(e.d || 'No clear pattern (unclear).') + '</div>' + dscoreHTML(e));
      if (e.c !== undefined) out.push('<p class="meta">confidence ' + e.c + '</p>');
      if (e.e && e.e.length) {
        var li = function (x) { return '<li>' + esc(x) + '</li>'; };
        out.push('<p class="meta">Evidence:</p><ul class="ev">' + e.e.slice(0, 4).map(li).join('') + '</ul>');
        if (e.e.length > 4) out.push('<details class="ev-more"><summary>' + (e.e.length - 4) + ' more</summary><ul class="ev">' + e.e.slice(4).map(li).join('') + '</ul></details>');
      }
    } else out.push('<p class="muted">No description for this head.</p>');
    out.push('<h4>Salient operations</h4>');
    if (e.s && e.s.length) {
      var smax = Math.max.apply(null, e.s.map(function (x) { return x[1]; })) || 1;
      out.push('<table class="sal"><thead><tr><th>token</th><th>saliency</th><th>top mappings</th></tr></thead><tbody>');
      e.s.forEach(function (x) {
        var maps = [];
        for (var k = 0; k < x[2].length; k += 2) maps.push(tok(x[2][k]) + '<small>' + x[2][k + 1] + '</small>');
        out.push('<tr><td>' + tok(x[0]) + '</td><td><span class="sbar" style="width:' + Math.max(2, Math.round(48 * x[1] / smax)) +
          'px"></span>' + x[1] + '</td><td class="maps">' + maps.join(' ') + '</td></tr>');
      });
      out.push('</tbody></table>');
    } else out.push('<p class="muted">No salient operations in this report.</p>');
    if (e.a) out.push(attentionHTML(e.a));
    out.push('<h4>Scores for every relation</h4>' + barsSVG(i));
    return out.join('');
  }
  // The QK half (extras "a"): one line, key-side preferences and the positional profile.
  function attentionHTML(a) {
    var o = ['<h4>What it attends to</h4><div class="qk">'];
    if (a.t) o.push('<p class="qk-sum">' + esc(a.t) + '</p>');
    if (a.k && a.k.length) {
      var ks = [];
      for (var k = 0; k < a.k.length; k += 2) ks.push(tok(a.k[k]) + '<small>' + a.k[k + 1] + '</small>');
      o.push('<p class="meta">Key tokens any query favours: </p><div class="maps qk-keys">' + ks.join(' ') + '</div>');
    }
    if (a.w && a.w.length > 1) o.push(profileSVG(a.w));
    return o.join('') + '</div>';
  }
  function profileSVG(w) {  // bars of attention weight by distance, Δ = 0 on the left
    var n = w.length, bw = Math.max(3, Math.min(12, Math.floor(360 / n))), ph = 64, top = 6, base = top + ph;
    var mx = Math.max.apply(null, w) || 1, o = [];
    o.push('<svg class="qk-profile" role="img" aria-label="positional profile: attention weight by distance" width="' +
      (n * bw + 40) + '" height="' + (base + 18) + '">');
    for (var d = 0; d < n; d++) {
      var hgt = Math.max(0.5, ph * w[d] / mx);
      o.push('<rect x="' + (30 + d * bw) + '" y="' + (base - hgt).toFixed(1) + '" width="' + (bw - 1) + '" height="' +
        hgt.toFixed(1) + '"><title>\u0394=' + d + ': ' + w[d] + '</title></rect>');
    }
    o.push('<text x="0" y="' + (top + 8) + '">' + mx.toFixed(2) + '</text><text x="30" y="' + (base + 14) +
      '">\u0394=0</text><text x="' + (30 + (n - 1) * bw) + '" y="' + (base + 14) + '" text-anchor="end">' + (n - 1) + '</text>');
    return o.join('') + '</svg>';
  }
  function barsSVG(i) {
    if (!R) return '<p class="muted">No relations were scored.</p>';
    var lw = 168, bw = 300, rh = 20, w = lw + bw + 56, hgt = R * rh + 26, x = function (v) { return lw + v * bw; };
    var o = ['<svg class="bars" viewBox="0 0 ' + w + ' ' + hgt + '" width="' + w + '" height="' + hgt + '" role="img" aria-label="relation and suppression scores of head ' + name(i) + '">'];
    for (var r = 0; r < R; r++) {
      var y = r * rh + 4, s = S[r * N + i] / Q, p = P[r * N + i] / Q, bold = r === state.rel ? ' font-weight="700"' : '';
      o.push('<g data-pick="' + r + '" style="cursor:pointer"><title>' + esc(REL[r]) + ': relation ' + s.toFixed(3) + ', suppression ' + p.toFixed(3) + '</title>' +
        '<text x="' + (lw - 6) + '" y="' + (y + 11) + '" text-anchor="end"' + bold + '>' + esc(REL[r]) + '</text>' +
        '<rect x="' + lw + '" y="' + (y + 1) + '" width="' + Math.max(0.5, s * bw) + '" height="7" fill="#2f6db5"/>' +
        '<rect x="' + lw + '" y="' + (y + 9) + '" width="' + Math.max(0.5, p * bw) + '" height="5" fill="#c23b34"/>' +
        '<text x="' + (x(Math.max(s, p)) + 4) + '" y="' + (y + 11) + '"' + (S[r * N + i] >= TQ ? ' font-weight="700"' : '') + '>' + s.toFixed(2) + (p >= 0.005 ? ' / ' + p.toFixed(2) : '') + '</text></g>');
    }
    var yb = R * rh + 6;
    o.push('<line x1="' + x(D.tau) + '" x2="' + x(D.tau) + '" y1="0" y2="' + yb + '" stroke="#111" stroke-dasharray="3 2"/>');
    [0, 0.5, 1].forEach(function (t) { o.push('<text x="' + x(t) + '" y="' + (yb + 12) + '" text-anchor="middle">' + t + '</text>'); });
    o.push('<text x="' + x(D.tau) + '" y="' + (yb + 12) + '" text-anchor="middle">\u03c4</text>');
    o.push('<rect x="2" y="' + (yb + 3) + '" width="8" height="7" fill="#2f6db5"/><text x="13" y="' + (yb + 10) + '">relation</text>');
    o.push('<rect x="62" y="' + (yb + 3) + '" width="8" height="5" fill="#c23b34"/><text x="73" y="' + (yb + 10) + '">suppression</text>');
    o.push('</svg>');
    return o.join('');
  }

  // ---------- table ----------
  var scroller = $('hm-scroll'), tbody = $('hm-tbody'), RH = 30, order = [], range = [-1, -1], searchCache = null;
  var COVRANK = { described: 0, unclear: 1, none: 2 };
  function searchText(i) {
    if (!searchCache) searchCache = new Array(N);
    var s = searchCache[i];
    if (s === undefined) {
      var e = ex(i) || {}, parts = [name(i), relsOf(i, S).join(' '), relsOf(i, P).join(' '), cov(i), e.d || '', (e.e || []).join(' ')];
      (TYH[i] || []).forEach(function (k) { parts.push(typeLabel(TYN[k])); });
      if (e.s) e.s.forEach(function (x) {
        parts.push(TOKS[x[0]]);
        for (var k = 0; k < x[2].length; k += 2) parts.push(TOKS[x[2][k]]);
      });
      s = searchCache[i] = parts.join(' ').toLowerCase();
    }
    return s;
  }
  function sortKey(i) {
    switch (state.sort) {
      case 'cur': return q(i);
      case 'nrel': return nrel[i] * 65536 + maxS[i];
      case 'nsupp': return nsupp[i] * 65536 + maxP[i];
      case 'max': return maxS[i];
      case 'sal': return mappingsText(i, 1).toLowerCase();
      case 'desc': return ((ex(i) || {}).d || '\uffff').toLowerCase();
      case 'cov': return COVRANK[cov(i)];
      case 'dscore': var v = dscore(i); return v === null ? -1 : v;
      default: return i;
    }
  }
  function sortOrder() {
    var keys = new Array(N);
    order.forEach(function (i) { keys[i] = sortKey(i); });
    var d = state.dir;
    order.sort(function (a, b) { return keys[a] < keys[b] ? -d : keys[a] > keys[b] ? d : a - b; });
  }
  function applyFilter() {
    var terms = $('hm-filter').value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    var show = $('hm-show').value, cv = $('hm-cov').value, out = [];
    var tyk = TYN.indexOf($('hm-type').value), dmin = DSC ? parseFloat($('hm-dscore').value) : NaN;
    for (var i = 0; i < N; i++) {
      if (show === 'any' && !nrel[i]) continue;
      if (show === 'supp' && !nsupp[i]) continue;
      if (show === 'multi' && nrel[i] < 2) continue;
      if (show === 'cur' && q(i, state.rel, 'rel') < TQ) continue;
      if (cv !== 'all' && cov(i) !== cv) continue;
      if (tyk >= 0 && !hasType(i, tyk)) continue;
      if (!isNaN(dmin)) { var dv = dscore(i); if (dv === null || dv < dmin) continue; }
      if (terms.length) {
        var t = searchText(i), ok = true;
        for (var k = 0; k < terms.length && ok; k++) ok = t.indexOf(terms[k]) >= 0;
        if (!ok) continue;
      }
      out.push(i);
    }
    order = out;
    sortOrder();
    var c = $('hm-count');
    c.textContent = order.length + ' of ' + N + ' heads';
    c.setAttribute('data-count', String(order.length));
    scroller.scrollTop = 0;
    renderRows(true);
  }
  function rowHTML(i, pos) {
    var e = ex(i) || {}, rl = relsOf(i, S).join(', '), sl = relsOf(i, P).join(', '), m = mappingsText(i, 3), c = cov(i);
    return '<tr class="r' + (i === state.sel ? ' sel' : '') + '" tabindex="-1" data-head="' + name(i) + '" data-i="' + i + '" aria-rowindex="' + (pos + 2) + '">' +
      '<td class="hname" title="' + esc((TYH[i] || []).map(function (k) { return typeLabel(TYN[k]); }).join(', ')) + '">' +
      name(i) + typeBadges(i) + '</td><td class="num">' + fmt(q(i)) + '</td>' +
      '<td title="' + esc(rl) + '">' + esc(rl) + '</td><td title="' + esc(sl) + '">' + esc(sl) + '</td>' +
      '<td class="num">' + fmt(maxS[i]) + '</td><td title="' + esc(m) + '">' + esc(m) + '</td>' +
      '<td title="' + esc(e.d || '') + '">' + esc(e.d || '') + '</td>' + (DSC ? dscoreCell(e) : '') + '<td><span class="badge ' + c + '">' + c + '</span></td></tr>';
  }
  function dscoreCell(e) {
    var d = e.ds;
    if (!d) return '<td class="num"></td>';
    if (d.s === null || d.s === undefined) return '<td class="num muted" title="not measured: ' + esc(d.r || d.m) + '">-</td>';
    var b = d.b === null || d.b === undefined ? '-' : d.b.toFixed(2);
    return '<td class="num" data-score="' + d.s + '" title="score ' + d.s + ' vs baseline ' + b + ' (' + esc(d.m) + ', n=' + d.n + ')">' + d.s.toFixed(2) + ' <small class="muted">/ ' + b + '</small></td>';
  }
  function renderRows(force) {
    var n = order.length, vis = Math.ceil((scroller.clientHeight || 460) / RH);
    var start = Math.max(0, Math.floor(scroller.scrollTop / RH) - 8), end = Math.min(n, start + vis + 16);
    if (!force && start === range[0] && end === range[1]) return;
    range = [start, end];
    var fa = document.activeElement, keep = fa && fa.parentNode === tbody ? fa.getAttribute('data-i') : null;
    var h = ['<tr class="sp" aria-hidden="true"><td colspan="' + NCOL + '" style="height:' + start * RH + 'px"></td></tr>'];
    for (var k = start; k < end; k++) h.push(rowHTML(order[k], k));
    h.push('<tr class="sp" aria-hidden="true"><td colspan="' + NCOL + '" style="height:' + (n - end) * RH + 'px"></td></tr>');
    tbody.innerHTML = h.join('');
    $('hm-table').setAttribute('aria-rowcount', String(n + 1));
    // Roving tabindex: one row is in the tab order (the last one focused, else the first shown).
    var act = tbody.querySelector('tr[data-i="' + activeRow + '"]') || tbody.querySelector('tr.r');
    if (act) act.tabIndex = 0;
    if (keep !== null) {
      var el = tbody.querySelector('tr[data-i="' + keep + '"]');
      if (el) el.focus({ preventScroll: true });
    }
  }
  function markRows() {
    tbody.querySelectorAll('tr.r').forEach(function (tr) { tr.classList.toggle('sel', +tr.getAttribute('data-i') === state.sel); });
  }
  var ticking = false;
  scroller.addEventListener('scroll', function () {
    if (ticking) return;
    ticking = true;
    requestAnimationFrame(function () { ticking = false; renderRows(false); });
  });
  var activeRow = -1;
  tbody.addEventListener('focusin', function (ev) {
    var tr = ev.target.closest('tr.r');
    if (!tr) return;
    activeRow = +tr.getAttribute('data-i');
    tbody.querySelectorAll('tr.r').forEach(function (r) { r.tabIndex = r === tr ? 0 : -1; });
  });
  tbody.addEventListener('click', function (ev) {
    var tr = ev.target.closest('tr.r');
    if (tr) openHead(+tr.getAttribute('data-i'));
  });
  tbody.addEventListener('keydown', function (ev) {
    var tr = ev.target.closest('tr.r');
    if (!tr) return;
    var i = +tr.getAttribute('data-i'), pos = order.indexOf(i), k = ev.key;
    if (k === 'Enter' || k === ' ') { ev.preventDefault(); openHead(i); return; }
    var to = k === 'ArrowDown' ? pos + 1 : k === 'ArrowUp' ? pos - 1 : k === 'PageDown' ? pos + 10 : k === 'PageUp' ? pos - 10 :
      k === 'Home' ? 0 : k === 'End' ? order.length - 1 : null;
    if (to === null) return;
    ev.preventDefault();
    focusRow(Math.max(0, Math.min(order.length - 1, to)));
  });
  function focusRow(pos) {
    var top = pos * RH, view = scroller.clientHeight - 34;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (top + RH > scroller.scrollTop + view) scroller.scrollTop = top + RH - view;
    renderRows(false);
    var el = tbody.querySelector('tr[data-i="' + order[pos] + '"]');
    if (el) el.focus({ preventScroll: true });
  }
  var timer = 0;
  $('hm-filter').addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(applyFilter, 150); });
  $('hm-show').addEventListener('change', applyFilter);
  $('hm-cov').addEventListener('change', applyFilter);
  (function () {  // the description-score column and filter: only when some head has a score
    $('hm-dscore-l').hidden = !DSC;
    if (!DSC) {
      var th = $('hm-dscore-col'), col = document.querySelector('#hm-table col.w-dscore');
      th.parentNode.removeChild(th);
      col.parentNode.removeChild(col);
    }
    $('hm-dscore').addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(applyFilter, 150); });
  })();
  (function () {  // the type filter: shown only when the report has head types
    var sel = $('hm-type');
    TYN.forEach(function (t, k) {
      var o = document.createElement('option');
      o.value = t;
      o.textContent = typeLabel(t) + ' (' + D.types.heads[k].length + ')';
      sel.appendChild(o);
    });
    $('hm-type-l').hidden = !TYN.length;
    if (TYN.length) document.querySelector('#hm-table col.w-head').classList.add('typed');
    sel.addEventListener('change', applyFilter);
  })();
  document.querySelectorAll('#hm-table thead button').forEach(function (b) {
    b.addEventListener('click', function () {
      var key = b.getAttribute('data-sort');
      if (state.sort === key) state.dir = -state.dir;
      else { state.sort = key; state.dir = (key === 'head' || key === 'sal' || key === 'desc' || key === 'cov') ? 1 : -1; }
      document.querySelectorAll('#hm-table thead th').forEach(function (th) {
        var on = th.querySelector('button').getAttribute('data-sort') === state.sort;
        if (on) th.setAttribute('aria-sort', state.dir > 0 ? 'ascending' : 'descending'); else th.removeAttribute('aria-sort');
      });
      sortOrder();
      renderRows(true);
    });
  });

  // ---------- summaries ----------
  function axisTicks(max) {
    var step = Math.max(1, Math.ceil(max / 4)), out = [];
    for (var v = 0; v <= max; v += step) out.push(v);
    return out;
  }
  function layerBars() {
    var anyC = state.mode === 'rel' ? D.summary.any_per_layer : D.summary.supp_any_per_layer, cur = new Array(L).fill(0);
    for (var i = 0; i < N; i++) if (q(i) >= TQ) cur[(i / H) | 0]++;
    var w = 440, hgt = 170, x0 = 30, y0 = 12, pw = w - x0 - 8, ph = hgt - y0 - 38, bw = pw / Math.max(1, L);
    var mx = Math.max(1, Math.max.apply(null, anyC.concat(cur)));
    var y = function (v) { return y0 + ph - v / mx * ph; }, col = state.mode === 'rel' ? '#2f6db5' : '#c23b34';
    var o = ['<svg viewBox="0 0 ' + w + ' ' + hgt + '" width="' + w + '" height="' + hgt + '" role="img" aria-label="heads per layer with score at least tau">'];
    axisTicks(mx).forEach(function (v) {
      o.push('<line x1="' + x0 + '" x2="' + (w - 8) + '" y1="' + y(v) + '" y2="' + y(v) + '" stroke="#e5e7eb"/><text x="' + (x0 - 4) + '" y="' + (y(v) + 3) + '" text-anchor="end">' + v + '</text>');
    });
    var ls = Math.max(1, Math.ceil(L / 16));
    for (var l = 0; l < L; l++) {
      var bx = x0 + l * bw;
      o.push('<g><title>layer ' + l + ': ' + anyC[l] + ' heads ' + (state.mode === 'rel' ? 'implement' : 'suppress') + ' any relation, ' + cur[l] + ' ' + esc(relName()) + '</title>' +
        '<rect x="' + (bx + 0.5) + '" y="' + y(anyC[l]) + '" width="' + Math.max(1, bw - 1) + '" height="' + (y0 + ph - y(anyC[l])) + '" fill="#c9ced6"/>' +
        '<rect x="' + (bx + bw * 0.2) + '" y="' + y(cur[l]) + '" width="' + Math.max(1, bw * 0.6) + '" height="' + (y0 + ph - y(cur[l])) + '" fill="' + col + '"/></g>');
      if (l % ls === 0) o.push('<text x="' + (bx + bw / 2) + '" y="' + (y0 + ph + 11) + '" text-anchor="middle">' + l + '</text>');
    }
    o.push('<text x="' + (x0 + pw / 2) + '" y="' + (hgt - 14) + '" text-anchor="middle">layer</text>');
    o.push('<rect x="' + x0 + '" y="' + (hgt - 9) + '" width="9" height="8" fill="#c9ced6"/><text x="' + (x0 + 12) + '" y="' + (hgt - 2) + '">any relation</text>');
    o.push('<rect x="' + (x0 + 90) + '" y="' + (hgt - 9) + '" width="9" height="8" fill="' + col + '"/><text x="' + (x0 + 102) + '" y="' + (hgt - 2) + '">' + esc(relName()) + '</text></svg>');
    $('hm-sum-layers').innerHTML = o.join('');
  }
  function matrix() {
    if (!R) { $('hm-sum-matrix').innerHTML = '<p class="muted">No relations were scored.</p>'; return; }
    var pl = D.summary.per_layer, lw = 150, cw = Math.max(3, Math.min(16, Math.floor(280 / L))), rh = 13;
    var w = lw + L * cw + 4, hgt = R * rh + 18, mx = 1;
    pl.forEach(function (row) { row.forEach(function (v) { if (v > mx) mx = v; }); });
    var o = ['<svg viewBox="0 0 ' + w + ' ' + hgt + '" width="' + w + '" height="' + hgt + '" role="img" aria-label="relation heads per relation and layer">'];
    for (var r = 0; r < R; r++) {
      o.push('<text class="mrow" x="' + (lw - 4) + '" y="' + (r * rh + 10) + '" text-anchor="end">' + esc(REL[r]) + '</text>');
      for (var l = 0; l < L; l++) {
        var v = pl[r][l];
        if (v) o.push('<rect x="' + (lw + l * cw) + '" y="' + (r * rh + 1) + '" width="' + cw + '" height="' + (rh - 1) + '" fill="' + LUT.rel.css[Math.round(40 + 215 * v / mx)] + '"><title>' + esc(REL[r]) + ', layer ' + l + ': ' + v + ' heads</title></rect>');
      }
    }
    o.push('<rect x="' + lw + '" y="0" width="' + L * cw + '" height="' + R * rh + '" fill="none" stroke="#ccc"/>');
    o.push('<text x="' + lw + '" y="' + (hgt - 4) + '">layer 0</text><text x="' + (lw + L * cw) + '" y="' + (hgt - 4) + '" text-anchor="end">' + (L - 1) + '</text></svg>');
    $('hm-sum-matrix').innerHTML = o.join('') + '<p class="muted">Darker: more heads of the layer with score \u2265 \u03c4 (max ' + mx + ').</p>';
    matrixRows = document.querySelectorAll('#hm-sum-matrix text.mrow');
  }
  var matrixRows = [];
  function markMatrix() {
    for (var r = 0; r < matrixRows.length; r++) matrixRows[r].setAttribute('font-weight', r === state.rel ? '700' : '400');
  }
  function multi() {
    var m = D.summary.multi, el = $('hm-sum-multi');
    if (!m.length) { el.innerHTML = '<p class="muted">No head implements two or more relations.</p>'; return; }
    var idx = function (s) { var p = s.split('.'); return +p[0] * H + +p[1]; };
    el.innerHTML = '<p class="muted">' + D.summary.n_multi + ' heads implement two or more relations' + (D.summary.n_multi > m.length ? '; the first ' + m.length + ':' : ':') + '</p><ul class="multi">' +
      m.map(function (x) {
        return '<li><button type="button" class="chip" data-goto="' + idx(x.head) + '">' + x.head + '</button> <b>' + x.relations.length + '</b> <span class="rels">' + esc(x.relations.join(', ')) + '</span></li>';
      }).join('') + '</ul>';
  }
  function gqa() {
    var el = $('hm-sum-gqa'), g = D.summary.gqa;
    if (G <= 1) { el.innerHTML = '<p class="muted">Every query head has its own KV head: there are no groups to compare.</p>'; return; }
    var rows = g.map(function (x) {
      var hi = x.groups && x.share > 1.5 * x.chance ? ' class="hi"' : '';
      return '<tr><td>' + esc(x.relation) + '</td><td class="num">' + x.heads + '</td><td class="num">' + x.groups + '</td><td class="num"' + hi + '>' + x.share.toFixed(2) + '</td><td class="num">' + x.chance.toFixed(2) + '</td></tr>';
    });
    el.innerHTML = '<p class="muted">' + G + ' query heads share each KV head. <i>share</i>: of the KV groups holding a relation head, the mean fraction of their heads that implement the relation; <i>chance</i>: the same if the relation heads of each layer were placed at random.</p>' +
      '<div style="max-height:300px;overflow:auto"><table class="plain gqa"><thead><tr><th>relation</th><th class="num">heads</th><th class="num">groups</th><th class="num">share</th><th class="num">chance</th></tr></thead><tbody>' + rows.join('') + '</tbody></table></div>';
  }
  function coverage() {
    var c = D.summary.coverage, el = $('hm-sum-cov');
    if (!c) { el.innerHTML = '<p class="muted">No descriptions in this report (build it with <code>--describe pattern</code> or <code>--describe llm</code>).</p>'; return; }
    var w = 440, hgt = 150, x0 = 30, y0 = 8, pw = w - x0 - 8, ph = hgt - y0 - 36, bw = pw / L;
    var cols = { described: '#3a9a5b', unclear: '#e0b84c', none: '#e3e6ea' }, o = ['<svg viewBox="0 0 ' + w + ' ' + hgt + '" width="' + w + '" height="' + hgt + '" role="img" aria-label="description coverage per layer">'];
    [0, 0.5, 1].forEach(function (t) { o.push('<text x="' + (x0 - 4) + '" y="' + (y0 + ph - t * ph + 3) + '" text-anchor="end">' + (t * 100) + '%</text>'); });
    var ls = Math.max(1, Math.ceil(L / 16)), tot = 0;
    for (var l = 0; l < L; l++) {
      var y = y0 + ph, bx = x0 + l * bw;
      tot += c.described[l];
      o.push('<g><title>layer ' + l + ': ' + c.described[l] + ' described, ' + c.unclear[l] + ' unclear, ' + c.none[l] + ' not described</title>');
      ['described', 'unclear', 'none'].forEach(function (k) {
        var hh = c[k][l] / H * ph;
        y -= hh;
        o.push('<rect x="' + (bx + 0.5) + '" y="' + y + '" width="' + Math.max(1, bw - 1) + '" height="' + hh + '" fill="' + cols[k] + '"/>');
      });
      o.push('</g>');
      if (l % ls === 0) o.push('<text x="' + (bx + bw / 2) + '" y="' + (y0 + ph + 11) + '" text-anchor="middle">' + l + '</text>');
    }
    var lx = x0;
    ['described', 'unclear', 'none'].forEach(function (k) { o.push('<rect x="' + lx + '" y="' + (hgt - 10) + '" width="9" height="8" fill="' + cols[k] + '"/><text x="' + (lx + 12) + '" y="' + (hgt - 3) + '">' + k + '</text>'); lx += 80; });
    o.push('</svg>');
    el.innerHTML = o.join('') + '<p class="muted">' + tot + ' of ' + N + ' heads (' + (100 * tot / N).toFixed(1) + '%) have a clear description.</p>';
  }
  $('hm-summary').addEventListener('click', function (ev) {
    var b = ev.target.closest('[data-goto]');
    if (b) { openHead(+b.getAttribute('data-goto')); focusCell(+b.getAttribute('data-goto')); }
  });

  // ---------- controls ----------
  var sel = $('hm-rel');
  sel.innerHTML = '<option value="-1">' + (R ? 'overview: best relation per head' : '(no relations scored)') + '</option>' +
    REL.map(function (r, k) { return '<option value="' + k + '">' + esc(r) + ' (' + D.n_pairs[k] + ' pairs, k=' + D.k[k] + ')</option>'; }).join('');
  sel.value = String(state.rel);
  sel.addEventListener('change', function () { pickRelation(+sel.value); });
  function pickRelation(r) {
    if (String(r) !== sel.value) sel.value = String(r);
    state.rel = r;
    refresh();
  }
  // alone (phi) or in context (phi_ctx): the same views on the other score
  function setCtx(on) {
    if (on === state.ctx || !CTX) return;
    state.ctx = on;
    S = on ? SC : S0; P = on ? PC : P0; BEST = on ? BESTC : BEST0; TQ = on ? CTX.tauQ : TQ0;
    recount();
    document.querySelectorAll('.seg button[data-ctx]').forEach(function (b) {
      var yes = (b.getAttribute('data-ctx') === '1') === on;
      b.setAttribute('aria-checked', yes ? 'true' : 'false');
      b.tabIndex = yes ? 0 : -1;
    });
    $('hm-grid').setAttribute('data-ctx', on ? '1' : '0');
    refresh();
  }
  if (CTX) {
    $('hm-ctx').hidden = false;
    document.querySelectorAll('.seg button[data-ctx]').forEach(function (b) {
      b.addEventListener('click', function () { setCtx(b.getAttribute('data-ctx') === '1'); });
      b.addEventListener('keydown', function (ev) {
        if (['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown'].indexOf(ev.key) < 0) return;
        ev.preventDefault();
        setCtx(!state.ctx);
        $(state.ctx ? 'hm-ctx-in' : 'hm-ctx-alone').focus();
      });
    });
  }
  var seg = document.querySelectorAll('.seg button[data-mode]');
  seg.forEach(function (b) {
    b.addEventListener('click', function () { setMode(b.getAttribute('data-mode')); });
    b.addEventListener('keydown', function (ev) {
      if (['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown'].indexOf(ev.key) < 0) return;
      ev.preventDefault();
      var next = state.mode === 'rel' ? 'supp' : 'rel';
      setMode(next);
      $(next === 'rel' ? 'hm-mode-rel' : 'hm-mode-supp').focus();
    });
  });
  function refresh() {
    draw();
    drawLegend();
    layerBars();
    markMatrix();
    $('hm-cur-col').title = (state.mode === 'rel' ? 'relation' : 'suppression') + ' score for ' + relName();
    if ($('hm-show').value === 'cur') applyFilter();
    else if (state.sort === 'cur') { sortOrder(); renderRows(true); } else renderRows(true);
    if (state.sel >= 0) $('hm-panel-body').innerHTML = panelHTML(state.sel);
    if (cells[roving]) rove(roving);
  }

  // ---------- start ----------
  buildGrid();
  mark('grid');
  matrix();
  multi();
  gqa();
  coverage();
  order = [];
  for (var i0 = 0; i0 < N; i0++) order.push(i0);
  refresh();
  mark('drawn');
  applyFilter();
  mark('table');
  var m = /^#head=(\d+)\.(\d+)$/.exec(location.hash);
  if (m && +m[1] < L && +m[2] < H) openHead(+m[1] * H + +m[2]);
  function warm(from) {  // build the filter's search texts in the background, in slices
    if (from >= N) return;
    for (var k = from; k < Math.min(N, from + 256); k++) searchText(k);
    setTimeout(function () { warm(from + 256); }, 0);
  }
  setTimeout(function () { warm(0); }, 50);
  if (G > 1) document.querySelector('#hm-map-sec .hint').textContent += ' Thin vertical lines separate the heads of one KV group.';
  window.__headmapsReadyMs = performance.now();
  window.__headmapsReady = true;
  document.documentElement.setAttribute('data-ready', '1');
})();
