/* headmaps timeline view: hand-written, dependency-free, offline.
 * Reads the JSON payload in #tl-data (see headmaps/explorer/timeline.py): per series
 * (relation or head type) the quantised scores of every checkpoint and head, and the
 * checkpoint at which each head first passes its rule (the library's, never recomputed).
 * Sets window.__headmapsReady once drawn. */
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('tl-data').textContent);
  var L = D.nL, H = D.nH, N = L * H, C = D.steps.length, SER = D.series;
  var $ = function (id) { return document.getElementById(id); };
  var state = { s: 0, sel: -1 };
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]; }); }
  function u16(b64) {
    var bin = atob(b64), n = bin.length, u8 = new Uint8Array(n);
    for (var i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
    return new Uint16Array(u8.buffer, 0, n >> 1);
  }
  var cache = {};
  function scores(s) { return cache[s] || (cache[s] = u16(SER[s].scores)); }
  // score of head i at checkpoint c in series s, or null (failed checkpoint)
  function val(s, c, i) {
    var q = scores(s)[c * N + i], S = SER[s];
    return q === D.NANQ ? null : S.lo + q / D.MAXQ * (S.hi - S.lo);
  }
  function name(i) { return ((i / H) | 0) + '.' + (i % H); }
  function colour(c) {  // earlier crossings darker: dark blue -> pale yellow
    var t = C > 1 ? c / (C - 1) : 0;
    var a = [37, 52, 148], b = [237, 248, 177];
    return 'rgb(' + [0, 1, 2].map(function (k) { return Math.round(a[k] + t * (b[k] - a[k])); }).join(',') + ')';
  }
  var sel = $('tl-series');
  sel.innerHTML = SER.map(function (S, k) {
    return '<option value="' + k + '">' + (S.kind === 'type' ? 'head type: ' : 'relation: ') + esc(S.name) + '</option>';
  }).join('');
  sel.addEventListener('change', function () { state.s = +sel.value; draw(); if (state.sel >= 0) chart(state.sel); });
  var grid = $('tl-grid');
  grid.style.gridTemplateColumns = '28px repeat(' + H + ', 22px)';
  function draw() {
    var S = SER[state.s], o = [], n = 0;
    for (var l = 0; l < L; l++) {
      o.push('<div class="lab">' + l + '</div>');
      for (var h = 0; h < H; h++) {
        var i = l * H + h, f = S.first[i];
        if (f >= 0) n++;
        o.push('<div class="c' + (i === state.sel ? ' on' : '') + '" role="gridcell" data-i="' + i + '" data-head="' + name(i) +
          '" data-first="' + f + '" style="background:' + (f >= 0 ? colour(f) : '#e2e5ea') + '" title="head ' + name(i) +
          (f >= 0 ? ': first passes at step ' + D.steps[f] : ': never passes') + '"></div>');
      }
    }
    grid.innerHTML = o.join('');
    grid.setAttribute('data-series', S.name);
    $('tl-legend').textContent = n + ' of ' + N + ' heads pass at some step' +
      (S.threshold !== null ? ' (\u03c4 = ' + S.threshold + ')' : ' (the type\u2019s label rule)');
    table();
  }
  function table() {
    var S = SER[state.s], rows = [];
    for (var i = 0; i < N; i++) if (S.first[i] >= 0) rows.push(i);
    rows.sort(function (a, b) { return S.first[a] - S.first[b] || a - b; });
    $('tl-tbody').innerHTML = rows.map(function (i) {
      var f = S.first[i], v0 = val(state.s, f, i), v1 = val(state.s, C - 1, i);
      return '<tr data-head="' + name(i) + '"><td>' + name(i) + '</td><td>' + D.steps[f] + '</td><td>' +
        (v0 === null ? '\u2013' : v0.toFixed(3)) + '</td><td>' + (v1 === null ? '\u2013' : v1.toFixed(3)) + '</td></tr>';
    }).join('');
  }
  function chart(i) {
    var S = SER[state.s], w = 640, h = 240, m = 36, pts = [], lo = Infinity, hi = -Infinity;
    for (var c = 0; c < C; c++) { var v = val(state.s, c, i); if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
    if (S.threshold !== null) { lo = Math.min(lo, S.threshold); hi = Math.max(hi, S.threshold); }
    if (!(hi > lo)) { hi = lo + 1; }
    var s0 = D.steps[0], s1 = D.steps[C - 1] > s0 ? D.steps[C - 1] : s0 + 1;
    var x = function (s) { return m + (s - s0) / (s1 - s0) * (w - 2 * m); };
    var y = function (v) { return h - m - (v - lo) / (hi - lo) * (h - 2 * m); };
    var path = [], pen = 'M';
    for (c = 0; c < C; c++) {
      v = val(state.s, c, i);
      if (v === null) { pen = 'M'; continue; }
      path.push(pen + x(D.steps[c]).toFixed(1) + ' ' + y(v).toFixed(1)); pen = 'L';
      pts.push('<circle cx="' + x(D.steps[c]).toFixed(1) + '" cy="' + y(v).toFixed(1) + '" r="3" class="pt"><title>step ' + D.steps[c] + ': ' + v.toFixed(3) + '</title></circle>');
    }
    var o = ['<svg viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="score of head ' + name(i) + ' over the steps">',
      '<line x1="' + m + '" y1="' + (h - m) + '" x2="' + (w - m) + '" y2="' + (h - m) + '" stroke="#99a"/>',
      '<text x="' + m + '" y="' + (h - 10) + '" font-size="11">step ' + s0 + '</text>',
      '<text x="' + (w - m) + '" y="' + (h - 10) + '" font-size="11" text-anchor="end">step ' + D.steps[C - 1] + '</text>',
      '<text x="4" y="' + (m - 8) + '" font-size="11">' + hi.toFixed(2) + '</text>',
      '<text x="4" y="' + (h - m) + '" font-size="11">' + lo.toFixed(2) + '</text>'];
    if (S.threshold !== null) o.push('<line class="tau" x1="' + m + '" x2="' + (w - m) + '" y1="' + y(S.threshold) + '" y2="' + y(S.threshold) + '" stroke="#c23b34" stroke-dasharray="4 3"/>');
    var f = S.first[i];
    if (f >= 0) o.push('<line class="cross" x1="' + x(D.steps[f]) + '" x2="' + x(D.steps[f]) + '" y1="' + m + '" y2="' + (h - m) + '" stroke="#2f6db5" stroke-dasharray="2 2"/>');
    o.push('<path d="' + path.join(' ') + '" fill="none" stroke="#253494" stroke-width="2"/>', pts.join(''), '</svg>');
    $('tl-chart').innerHTML = o.join('');
    $('tl-panel-h').textContent = 'Head ' + name(i) + ' \u00b7 ' + S.name;
    $('tl-panel-text').textContent = f >= 0 ? 'First passes its rule at step ' + D.steps[f] + '.' : 'Never passes its rule in this series.';
    $('tl-panel').hidden = false;
  }
  grid.addEventListener('click', function (ev) {
    var t = ev.target;
    if (!t.classList || !t.classList.contains('c')) return;
    state.sel = +t.getAttribute('data-i');
    draw();
    chart(state.sel);
  });
  draw();
  window.__headmapsReady = true;
})();
