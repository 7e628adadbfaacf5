// LiveMix console: lists sources and recordings from the management API, plays them from the VOD API with hls.js
// (or the browser's own HLS, as in Safari), and starts and stops streaming and recordings. A source's view draws what
// was recorded of it (spans and gaps) over the last hours, plays and exports any range of it, and switches its
// recording mode; recordings verify and export from their row.
//
// The management token is kept in sessionStorage (or localStorage when "remember" is ticked) and only ever sent
// in the Authorization header of same-origin API calls, never in a URL. Text from the API is put in the page with
// textContent only, so no name or description can inject markup.
(() => {
  'use strict';

  const TOKEN_KEY = 'livemix-management-token';
  const REFRESH_MS = 4000;
  /** The newest recordings the page lists (and asks the storage of); a fleet keeps thousands. */
  const MAX_RECORDINGS = 200;
  /** The sources the page lists at once (and asks the live state and storage of); the filter narrows them. */
  const MAX_SOURCES = 100;
  const SVG = 'http://www.w3.org/2000/svg';
  const vodUrl = document.querySelector('meta[name="livemix-vod-url"]').content;
  /** How long a minted playback URL stays valid: a long viewing session. */
  const PLAYBACK_TTL_SECS = 12 * 3600;
  /** How long the page uses a minted URL before minting another: well within its life. */
  const MINTED_FRESH_MS = 3600e3;
  /** The longest time range the VOD API plays or exports (LIVEMIX_MAX_RANGE's default). */
  const MAX_RANGE_MS = 24 * 3600e3;
  const $ = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY);
  let timer = null;
  let hls = null;
  // Where the error on display came from: a refresh error goes away with the next good refresh, an action's
  // stays until the next action.
  let errorFrom = null;
  // The last data fetched, so typing in the filter re-renders at once.
  let last = null;
  const sourceRows = new Map();
  const recordingRows = new Map();

  class ApiError extends Error {
    constructor(status, message, requestId) {
      super(message);
      this.status = status;
      this.requestId = requestId;
    }
  }

  /** Calls the management API; a reply that is not a success becomes an ApiError with the API's message. */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, `the management API cannot be reached (${err.message})`, null);
    }
    let json = null;
    try {
      json = await resp.json();
    } catch {
      // Not JSON: a proxy's error page, say. The status tells.
    }
    if (!resp.ok || !json || json.success === false) {
      const message = json?.error?.message ?? `HTTP ${resp.status} ${resp.statusText}`.trim();
      throw new ApiError(resp.status, message, json?.request_id ?? resp.headers.get('x-request-id'));
    }
    return json;
  }

  function showError(what, err, from = 'action') {
    const details = [];
    if (err.status) details.push(`HTTP ${err.status}`);
    if (err.requestId) details.push(`request ${err.requestId}`);
    const box = $('error');
    box.textContent = `${what}: ${err.message}${details.length ? ` (${details.join(', ')})` : ''}`;
    box.hidden = false;
    errorFrom = from;
  }

  function clearError(from) {
    if (from && errorFrom !== from) return;
    $('error').hidden = true;
    $('error').textContent = '';
    errorFrom = null;
  }

  // ---- formatting ----

  const timeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });
  const clockFmt = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

  function when(ts) {
    return ts ? timeFmt.format(new Date(ts)) : '—';
  }

  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function ago(ts) {
    return ts ? `${duration(Date.now() - Date.parse(ts))} ago` : 'never';
  }

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setState(cell, text, cls) {
    cell.textContent = text;
    cell.className = cls;
  }

  function recordingLabel(r) {
    return r.alias || r.id;
  }

  // ---- sign-in ----

  function showApp(signedIn) {
    $('login').hidden = signedIn;
    $('app').hidden = !signedIn;
    $('logout').hidden = !signedIn;
  }

  function signOut(message) {
    clearInterval(timer);
    timer = null;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(TOKEN_KEY);
    stopPlayer();
    closeSourceView();
    showApp(false);
    $('token').value = '';
    $('token').focus();
    if (message) showError('Signed out', new ApiError(0, message, null));
  }

  async function signIn(event) {
    event.preventDefault();
    const button = event.submitter ?? event.target.querySelector('button');
    button.disabled = true;
    clearError();
    token = $('token').value.trim() || null;
    try {
      await api('GET', '/v1/source');
      const keep = $('remember').checked ? localStorage : sessionStorage;
      keep.setItem(TOKEN_KEY, token ?? ''); // '' for an API without a token
      start();
    } catch (err) {
      token = null;
      const what = err.status === 401 ? 'Sign-in failed, the token was refused' : 'Sign-in failed';
      showError(what, err);
      $('token').focus();
    } finally {
      button.disabled = false;
    }
  }

  function start() {
    showApp(true);
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, REFRESH_MS);
  }

  // ---- data ----

  async function refresh() {
    try {
      const [{ sources }, { recordings: all }] = await Promise.all([
        api('GET', '/v1/source'),
        api('GET', '/v1/recording'),
      ]);
      // Recording ids are ULIDs: their order is their start order.
      const recordings = [...all].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)).slice(0, MAX_RECORDINGS);
      // A source deleted meanwhile has no summary: show what is known rather than fail the whole page. Only the
      // sources the page shows are asked about.
      const listed = shownSources(sources);
      const [lives, stored, recordingsStored] = await Promise.all([
        Promise.all(listed.map((s) => api('GET', `/v1/source/${s.id}/live`).then((r) => r.live, () => null))),
        Promise.all(listed.map((s) => api('GET', `/v1/source/${s.id}/storage`).then((r) => r.storage, () => null))),
        Promise.all(recordings.map(recordingStorage)),
      ]);
      const details = new Map(listed.map((s, i) => [s.id, { live: lives[i], stored: stored[i] }]));
      last = { sources, details, recordings, recordingsStored, recordingsTotal: all.length };
      render();
      renderSourceView();
      loadCoverage();
      clearError('refresh');
    } catch (err) {
      if (err.status === 401) {
        signOut(`the management API refused the token (${err.message})`);
        return;
      }
      showError('Refreshing failed', err, 'refresh');
    }
  }

  /** What a recording stores; a finished one changes rarely, so its answer is kept for a minute. */
  const storageCache = new Map();
  async function recordingStorage(r) {
    const cached = storageCache.get(r.id);
    const finished = !(r.active === 1 || r.active === true);
    if (cached && finished && Date.now() - cached.at < 60e3) return cached.storage;
    const storage = await api('GET', `/v1/recording/${r.id}/storage`).then((b) => b.storage, () => null);
    storageCache.set(r.id, { at: Date.now(), storage });
    return storage;
  }

  /** Bytes for people: 1.5 MB, 20 GB. */
  function bytes(n) {
    const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) {
      n /= 1000;
      i += 1;
    }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function storedText(storage) {
    if (!storage) return '?';
    return `${bytes(storage.bytes)} in ${storage.segments} segment${storage.segments === 1 ? '' : 's'}`;
  }

  /** Shows the sources whose name contains the filter's text (any case), and their recordings (also those kept
   * after their source was deleted, by the name they were made under). */
  function shownSources(sources) {
    const needle = $('filter').value.trim().toLowerCase();
    return sources.filter((s) => s.name.toLowerCase().includes(needle)).slice(0, MAX_SOURCES);
  }

  function render() {
    if (!last) return;
    const needle = $('filter').value.trim().toLowerCase();
    const shown = shownSources(last.sources)
      .map((s) => [s, last.details.get(s.id)?.live ?? null, last.details.get(s.id)?.stored ?? null]);
    const ids = new Set(shown.map(([s]) => s.id));
    const known = new Set(last.sources.map((s) => s.id));
    const kept = last.recordings.map((r, i) => [r, last.recordingsStored[i]]).filter(([r]) => ids.has(r.source) ||
      (!known.has(r.source) && (r.source_name ?? '').toLowerCase().includes(needle)));
    renderSources(shown.map(([s]) => s), shown.map(([, live]) => live), shown.map(([, , st]) => st),
      kept.map(([r]) => r), last.sources.length);
    renderRecordings(kept.map(([r]) => r), kept.map(([, st]) => st), last.sources);
  }

  /** Runs an action from a button, shows its error, then refreshes. */
  async function act(button, what, action) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    clearError();
    try {
      await action();
    } catch (err) {
      showError(what, err);
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
    await refresh();
  }

  // ---- sources ----

  function sourceRow(id) {
    let row = sourceRows.get(id);
    if (row) return row;
    const tr = el('tr', { 'data-source-id': id });
    const cells = {};
    for (const [key, label] of [
      ['name', 'Source'], ['streaming', 'Streaming'], ['edge', 'Edge'], ['live', 'Live segments'],
      ['last', 'Last segment'], ['timeline', 'Recordings'], ['stored', 'Stored'], ['actions', 'Actions'],
    ]) {
      cells[key] = el('td', { 'data-label': label });
      tr.append(cells[key]);
    }
    const name = el('span', { class: 'name' });
    const idText = el('div', { class: 'id' }, id);
    cells.name.append(name, idText);
    const watch = el('button', { type: 'button', class: 'secondary' }, 'Watch live');
    const stream = el('button', { type: 'button' });
    const record = el('button', { type: 'button' });
    const recorded = el('button', { type: 'button', class: 'secondary' }, 'Timeline');
    cells.actions.append(watch, stream, record, recorded);
    const mode = el('div', { class: 'hint' });
    row = { tr, cells, name, watch, stream, record, recorded, mode, source: null, active: null };
    recorded.addEventListener('click', () => openSourceView(row.source));
    watch.addEventListener('click', () => {
      const s = row.source;
      play(`/v1/vod/live/${s.id}/vid.m3u8`, `Live: ${s.name}`, 'live');
    });
    stream.addEventListener('click', () => {
      const s = row.source;
      const on = !s.streaming;
      act(stream, `${on ? 'Starting' : 'Stopping'} streaming of ${s.name}`, () =>
        api('PUT', `/v1/source/${s.id}/streaming?new_state=${on}`));
    });
    record.addEventListener('click', () => {
      const s = row.source;
      if (row.active) {
        const r = row.active;
        act(record, `Stopping recording ${recordingLabel(r)}`, () => api('POST', `/v1/recording/${r.id}/stop`));
      } else {
        act(record, `Starting a recording of ${s.name}`, () => api('POST', `/v1/source/${s.id}/recording`, {}));
      }
    });
    sourceRows.set(id, row);
    return row;
  }

  function renderSources(sources, lives, stored, recordings, total) {
    const tbody = $('sources').tBodies[0];
    const seen = new Set();
    sources.forEach((s, i) => {
      seen.add(s.id);
      const row = sourceRow(s.id);
      const live = lives[i];
      const own = recordings.filter((r) => r.source === s.id);
      row.source = { ...s, streaming: s.streaming === 1 || s.streaming === true };
      // The continuous recording goes with the source's recording mode, not with this button.
      row.active = own.find((r) => (r.active === 1 || r.active === true) && !r.continuous) ?? null;
      row.name.textContent = s.name;
      if (s.description) row.name.title = s.description;
      const streaming = row.source.streaming;
      setState(row.cells.streaming, streaming ? 'on' : 'off', streaming ? 'state-on' : 'state-off');
      setState(row.cells.edge, s.reachable ? `reachable, seen ${ago(s.last_seen)}` :
        `unreachable, seen ${ago(s.last_seen)}`, s.reachable ? 'state-on' : 'state-bad');
      row.cells.live.textContent = live ? String(live.segments) : '?';
      row.cells.last.textContent = live?.last_segment_at ? `${when(live.last_segment_at)} (${ago(live.last_segment_at)})` : 'none yet';
      row.mode.textContent = s.recording === 'continuous' ? 'recording continuously' : '';
      row.cells.timeline.replaceChildren(timeline(s, own), row.mode);
      row.cells.stored.textContent = storedText(stored[i]);
      const retention = [s.retention?.max_age_secs && `kept ${duration(s.retention.max_age_secs * 1000)}`,
        s.retention?.max_bytes && `at most ${bytes(s.retention.max_bytes)}`].filter(Boolean).join(', ');
      row.cells.stored.title = retention ? `retention: ${retention}` : 'retention: the control node default';
      row.watch.setAttribute('aria-label', `Watch ${s.name} live`);
      row.stream.textContent = streaming ? 'Stop streaming' : 'Start streaming';
      row.stream.className = streaming ? 'secondary' : '';
      row.stream.setAttribute('aria-label', `${streaming ? 'Stop' : 'Start'} streaming ${s.name}`);
      row.record.textContent = row.active ? 'Stop recording' : 'Start recording';
      row.record.className = row.active ? 'danger' : '';
      row.record.setAttribute('aria-label', `${row.active ? 'Stop' : 'Start'} recording ${s.name}`);
      row.recorded.setAttribute('aria-label', `Timeline of ${s.name}`);
      tbody.append(row.tr); // in the API's order (by name); moving a row keeps its focus
    });
    for (const [id, row] of sourceRows) {
      if (!seen.has(id)) {
        row.tr.remove();
        sourceRows.delete(id);
      }
    }
    const plural = (n) => `${n} source${n === 1 ? '' : 's'}`;
    const count = sources.length === total ? plural(total) : `${sources.length} of ${plural(total)} shown`;
    $('sources-status').textContent = total ?
      `${count}, updated ${clockFmt.format(new Date())}.` :
      'No sources yet: register one with POST /v1/source.';
  }

  /** A source's recordings on a time axis ending now: bars from start to end (active ones up to now). */
  function timeline(source, recordings) {
    const now = Date.now();
    // From a little before the oldest recording (at least the last minute, at most a day) to now.
    const earliest = Math.min(now - 60e3, ...recordings.map((r) => Date.parse(r.start_ts)));
    const from = Math.max(now - (now - earliest) * 1.1, now - 24 * 3600e3);
    const span = now - from;
    const width = 240;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'timeline');
    svg.setAttribute('viewBox', `0 0 ${width} 29`);
    svg.setAttribute('role', 'img');
    const shown = recordings.filter((r) => !r.end_ts || Date.parse(r.end_ts) >= from);
    svg.setAttribute('aria-label', `${source.name}: ${shown.length} recording${shown.length === 1 ? '' : 's'} ` +
      `between ${timeFmt.format(new Date(from))} and now`);
    const node = (tag, attrs, text) => {
      const n = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      svg.append(n);
      return n;
    };
    node('rect', { class: 'track', x: 0, y: 2, width, height: 12 });
    const x = (t) => ((Math.min(Math.max(t, from), now) - from) / span) * width;
    for (const r of shown) {
      const active = r.active === 1 || r.active === true;
      const start = Date.parse(r.start_ts);
      const end = active || !r.end_ts ? now : Date.parse(r.end_ts);
      const bar = node('rect', {
        class: active ? 'active' : 'done', x: x(start), y: 2, height: 12, width: Math.max(1.5, x(end) - x(start)),
      });
      const title = document.createElementNS(SVG, 'title');
      title.textContent = `${recordingLabel(r)}: ${when(r.start_ts)} – ${active ? 'recording' : when(r.end_ts)}`;
      bar.append(title);
    }
    const sameDay = new Date(from).toDateString() === new Date(now).toDateString();
    node('text', { x: 0, y: 26 }, (sameDay ? clockFmt : timeFmt).format(new Date(from)));
    node('text', { x: width, y: 26, 'text-anchor': 'end' }, 'now');
    return svg;
  }

  // ---- a source's recorded time ----

  /** The source whose recorded time is on display ({id, name}), or null. */
  let view = null;
  /** Counts coverage requests, so an older reply never replaces a newer one. */
  let coverageRequests = 0;
  /** A drag on the bar is under way: the bar is not redrawn under the pointer. */
  let dragging = false;
  const GAP_CAUSES = {
    encoder_restart: 'the encoder restarted',
    not_recorded: 'not recorded',
    no_recording: 'nothing recorded',
  };
  const rangeLinks = {};

  function openSourceView(source) {
    const changed = view?.id !== source.id;
    view = { id: source.id, name: source.name, coverage: null };
    $('source-section').hidden = false;
    if (changed) {
      $('range-start').value = '';
      $('range-end').value = '';
      $('coverage').replaceChildren();
      $('coverage-status').textContent = 'Loading…';
    }
    renderSourceView();
    rangeChanged();
    loadCoverage();
    $('source-section').scrollIntoView({ block: 'nearest' });
    $('source-title').focus();
  }

  function closeSourceView() {
    view = null;
    coverageRequests += 1;
    $('source-section').hidden = true;
    clearError('coverage');
  }

  /** The source's name and recording mode, from the last refresh. */
  function renderSourceView() {
    if (!view || !last) return;
    const source = last.sources.find((s) => s.id === view.id);
    if (!source) {
      closeSourceView(); // Deleted meanwhile.
      return;
    }
    view.name = source.name;
    $('source-title').textContent = `Recorded time of ${source.name}`;
    const box = $('continuous');
    if (!box.disabled) box.checked = source.recording === 'continuous';
  }

  /** Asks what was recorded in the chosen window (the last hour, 6 h, a day) up to now. */
  async function loadCoverage() {
    if (!view) return;
    const request = ++coverageRequests;
    const { id, name } = view;
    const to = Date.now();
    const from = to - Number($('coverage-window').value) * 3600e3;
    const query = new URLSearchParams({ start: new Date(from).toISOString(), end: new Date(to).toISOString() });
    try {
      const { coverage } = await api('GET', `/v1/source/${id}/coverage?${query}`);
      if (request !== coverageRequests || view?.id !== id) return;
      view.coverage = { ...coverage, from, to };
      renderCoverage();
      clearError('coverage');
    } catch (err) {
      if (request !== coverageRequests) return;
      showError(`Loading the recorded time of ${name}`, err, 'coverage');
    }
  }

  const plural = (n, what) => `${n} ${what}${n === 1 ? '' : 's'}`;

  /** The window as a bar: recorded spans, gaps by cause (in their tooltips), and the chosen range. */
  function renderCoverage() {
    const c = view?.coverage;
    if (!c || dragging) return;
    const { from, to } = c;
    const width = Math.max(200, Math.round($('coverage').clientWidth) || 600);
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'coverage');
    svg.setAttribute('viewBox', `0 0 ${width} 46`);
    svg.setAttribute('width', width);
    svg.setAttribute('height', 46);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', `${view.name}: ${plural(c.spans.length, 'recorded span')} and ` +
      `${plural(c.gaps.length, 'gap')} between ${timeFmt.format(new Date(from))} and now`);
    const node = (tag, attrs, text) => {
      const n = document.createElementNS(SVG, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) {
        const title = document.createElementNS(SVG, 'title');
        title.textContent = text;
        n.append(title);
      }
      svg.append(n);
      return n;
    };
    const x = (t) => ((Math.min(Math.max(t, from), to) - from) / (to - from)) * width;
    node('rect', { class: 'track', x: 0, y: 2, width, height: 24 });
    for (const g of c.gaps) {
      const start = Date.parse(g.start);
      const end = Date.parse(g.end);
      const w = x(end) - x(start);
      const cause = GAP_CAUSES[g.cause] ?? g.cause;
      node('rect', {
        class: `gap gap-${g.cause}`, x: Math.max(0, w < 2 ? x(start) - 1 : x(start)), y: 2, height: 24,
        width: Math.max(2, w), 'data-cause': g.cause,
      }, `Gap, ${cause}: ${when(g.start)} – ${when(g.end)} (${duration(g.secs * 1000)})`);
    }
    for (const s of c.spans) {
      const start = Date.parse(s.start);
      const end = Date.parse(s.end);
      node('rect', {
        class: 'span', x: x(start), y: 2, height: 24, width: Math.max(3, x(end) - x(start)),
        'data-start': s.start, 'data-end': s.end,
      }, `Recorded: ${when(s.start)} – ${when(s.end)} (${duration(end - start)}, ${plural(s.segments, 'segment')})`);
    }
    const selection = node('rect', { class: 'selection', y: 0, height: 28, x: 0, width: 0 });
    selection.style.display = 'none';
    const sameDay = new Date(from).toDateString() === new Date(to).toDateString();
    const label = (t, attrs) => {
      const text = document.createElementNS(SVG, 'text');
      for (const [k, v] of Object.entries(attrs)) text.setAttribute(k, v);
      text.textContent = t;
      svg.append(text);
    };
    label((sameDay ? clockFmt : timeFmt).format(new Date(from)), { x: 0, y: 42 });
    label(clockFmt.format(new Date((from + to) / 2)), { x: width / 2, y: 42, 'text-anchor': 'middle' });
    label('now', { x: width, y: 42, 'text-anchor': 'end' });
    dragToPick(svg, selection, width, from, to, c.spans);
    $('coverage').replaceChildren(svg);
    view.drawSelection = (start, end) => {
      if (!start || !end || end <= from || start >= to) {
        selection.style.display = 'none';
        return;
      }
      selection.style.display = '';
      selection.setAttribute('x', x(start));
      selection.setAttribute('width', Math.max(2, x(end) - x(start)));
    };
    const range = readRange();
    view.drawSelection(range.start, range.end);
    $('coverage-status').textContent = c.spans.length ?
      `${duration(c.recorded_secs * 1000)} recorded in ${plural(c.spans.length, 'span')} ` +
      `(${plural(c.segments, 'segment')}), ${plural(c.gaps.length, 'gap')}; updated ${clockFmt.format(new Date())}.` :
      `Nothing recorded in the last ${$('coverage-window').selectedOptions[0].textContent}.`;
    // The first time something is recorded, the newest span is the range until one is picked.
    if (!$('range-start').value && !$('range-end').value && c.spans.length) {
      const s = c.spans[c.spans.length - 1];
      setRange(Date.parse(s.start), Date.parse(s.end));
    }
  }

  /** Dragging across the bar picks the range under it; a click on a recorded span picks that span. */
  function dragToPick(svg, selection, width, from, to, spans) {
    const timeAt = (event) => {
      const box = svg.getBoundingClientRect();
      const px = Math.min(Math.max(event.clientX - box.left, 0), box.width);
      return from + (px / box.width) * (to - from);
    };
    let down = null;
    svg.addEventListener('pointerdown', (event) => {
      if (event.button !== 0) return;
      down = { t: timeAt(event), x: event.clientX };
      dragging = true;
      svg.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    svg.addEventListener('pointermove', (event) => {
      if (!down) return;
      const t = timeAt(event);
      const x = (v) => ((v - from) / (to - from)) * width;
      selection.style.display = '';
      selection.setAttribute('x', x(Math.min(down.t, t)));
      selection.setAttribute('width', Math.max(2, Math.abs(x(t) - x(down.t))));
    });
    const up = (event) => {
      if (!down) return;
      const start = down;
      down = null;
      dragging = false;
      if (event.type === 'pointercancel') {
        rangeChanged();
        return;
      }
      const t = timeAt(event);
      if (Math.abs(event.clientX - start.x) >= 4) {
        setRange(Math.min(start.t, t), Math.max(start.t, t));
        return;
      }
      // A click: the span under it (a span narrower than a pixel or two is found within a few pixels).
      const slack = ((to - from) / width) * 3;
      const span = spans.find((s) => Date.parse(s.start) - slack <= t && t <= Date.parse(s.end) + slack);
      if (span) setRange(Math.max(from, Date.parse(span.start)), Math.min(to, Date.parse(span.end)));
      else rangeChanged();
    };
    svg.addEventListener('pointerup', up);
    svg.addEventListener('pointercancel', up);
  }

  /** A time as a datetime-local input's value (local time, to the second). */
  function localInput(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:` +
      p(d.getSeconds());
  }

  /** Puts a range in the inputs, to whole seconds that contain it. */
  function setRange(start, end) {
    $('range-start').value = localInput(Math.floor(start / 1000) * 1000);
    $('range-end').value = localInput(Math.ceil(end / 1000) * 1000);
    rangeChanged();
  }

  /** The range in the inputs: {start, end} in ms, or {error}. */
  function readRange() {
    const start = Date.parse($('range-start').value); // A datetime-local value is local time.
    const end = Date.parse($('range-end').value);
    if (Number.isNaN(start) || Number.isNaN(end)) return { error: 'Pick a range: drag on the timeline, or give its start and end.' };
    if (start >= end) return { error: 'The range must start before it ends.' };
    if (end - start > MAX_RANGE_MS) return { error: `A range lasts at most ${duration(MAX_RANGE_MS)}.` };
    if (start > Date.now()) return { error: 'The range starts in the future: nothing is recorded there yet.' };
    return { start, end };
  }

  /** Checks the range, draws it on the bar, and points the export links at it. */
  function rangeChanged() {
    if (!view) return;
    const range = readRange();
    $('range-status').textContent = range.error ?? `${duration(range.end - range.start)} from ${when(range.start)}.`;
    $('play-range').disabled = Boolean(range.error);
    view.drawSelection?.(range.start, range.end);
    const query = range.error ? '' :
      new URLSearchParams({ start: new Date(range.start).toISOString(), end: new Date(range.end).toISOString() }).toString();
    for (const [ext, link] of Object.entries(rangeLinks)) {
      link.set(range.error ? null : `/v1/vod/source/${view.id}/export.${ext}`, query, true);
    }
  }

  function playRange(event) {
    event.preventDefault();
    const range = readRange();
    if (!view || range.error) return;
    const query = new URLSearchParams({ start: new Date(range.start).toISOString(), end: new Date(range.end).toISOString() });
    play(`/v1/vod/source/${view.id}/vid.m3u8`, `Range of ${view.name}: ${when(range.start)} – ${when(range.end)}`,
      'range', query.toString());
  }

  function setRecordingMode() {
    const box = $('continuous');
    if (!view) return;
    const recording = box.checked ? 'continuous' : 'on_demand';
    const { id, name } = view;
    act(box, `Switching ${name} to ${box.checked ? 'continuous' : 'on-demand'} recording`, () =>
      api('PUT', `/v1/source/${id}/recording-mode`, { recording }));
  }

  // ---- recordings ----

  function recordingRow(id) {
    let row = recordingRows.get(id);
    if (row) return row;
    const tr = el('tr', { 'data-recording-id': id });
    const cells = {};
    for (const [key, label] of [
      ['name', 'Recording'], ['source', 'Source'], ['start', 'Start'], ['end', 'End'], ['length', 'Length'],
      ['stored', 'Stored'], ['verified', 'Verified'], ['actions', 'Actions'],
    ]) {
      cells[key] = el('td', { 'data-label': label });
      tr.append(cells[key]);
    }
    const name = el('span');
    const badge = el('span', { class: 'badge' }, 'continuous');
    cells.name.append(name, badge);
    const playButton = el('button', { type: 'button', class: 'secondary' }, 'Play');
    const stop = el('button', { type: 'button', class: 'danger' }, 'Stop');
    const hold = el('button', { type: 'button', class: 'secondary' });
    const verify = el('button', { type: 'button', class: 'secondary' }, 'Verify');
    const what = () => `recording ${recordingLabel(row.recording)}`;
    const mp4 = vodLink('Export MP4', what);
    const ts = vodLink('Export TS', what);
    mp4.set(`/v1/vod/recording/${id}/export.mp4`);
    ts.set(`/v1/vod/recording/${id}/export.ts`);
    cells.actions.append(playButton, stop, hold, verify, mp4.a, ts.a);
    row = { tr, cells, name, badge, play: playButton, stop, hold, verify, mp4, ts, recording: null };
    verify.addEventListener('click', () => {
      const r = row.recording;
      act(verify, `Verifying recording ${recordingLabel(r)}`, async () => {
        const { verification } = await api('POST', `/v1/recording/${r.id}/verify`);
        verifications.set(r.id, verification);
      });
    });
    hold.addEventListener('click', () => {
      const r = row.recording;
      act(hold, `${r.hold ? 'Lifting the hold on' : 'Holding'} recording ${recordingLabel(r)}`, () =>
        api('PUT', `/v1/recording/${r.id}/hold`, { hold: !r.hold }));
    });
    playButton.addEventListener('click', () => {
      const r = row.recording;
      play(`/v1/vod/recording/${r.id}/vid.m3u8`, `Recording: ${recordingLabel(r)}`, 'recording');
    });
    stop.addEventListener('click', () => {
      const r = row.recording;
      act(stop, `Stopping recording ${recordingLabel(r)}`, () => api('POST', `/v1/recording/${r.id}/stop`));
    });
    recordingRows.set(id, row);
    return row;
  }

  /** The last verification of each recording verified from this page: its details, beyond the kept summary. */
  const verifications = new Map();

  /** What a recording's last verification found: the recording's summary, and the details when verified here. */
  function renderVerification(cell, r, details) {
    const summary = r.verification ?? (details && {
      at: details.at, segments: details.checked, mismatched: details.mismatched.length, missing: details.missing.length,
    });
    if (!summary) {
      setState(cell, 'not verified', 'state-off');
      cell.title = 'Verify reads every segment back from the store and checks it against its recorded hash';
      return;
    }
    const n = (count, what) => `${count} ${what}${count === 1 ? '' : 's'}`;
    const passed = summary.mismatched === 0 && summary.missing === 0;
    setState(cell, passed ? `verified: ${n(summary.segments, 'segment')} intact` :
      `failed: ${summary.mismatched} mismatched, ${summary.missing} missing of ${n(summary.segments, 'segment')}`,
    passed ? 'state-on' : 'state-bad');
    const lines = [`verified ${when(summary.at)}`];
    // The details are of the run made here; a later one (elsewhere) has only its summary.
    if (details && details.at === summary.at) {
      lines.push(`${details.ok} of ${details.checked} match${details.unhashed ? `, ${details.unhashed} checked by size only` : ''}`);
      for (const p of details.mismatched) lines.push(`mismatched: ${p.name}`);
      for (const p of details.missing) lines.push(`missing: ${p.name}`);
    }
    cell.title = lines.join('\n');
  }

  function renderRecordings(recordings, stored, sources) {
    const names = new Map(sources.map((s) => [s.id, s.name]));
    const tbody = $('recordings').tBodies[0];
    const seen = new Set();
    const newestFirst = [...recordings].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const storedOf = new Map(recordings.map((r, i) => [r.id, stored[i]]));
    for (const r of newestFirst) {
      seen.add(r.id);
      const row = recordingRow(r.id);
      const active = r.active === 1 || r.active === true;
      const label = recordingLabel(r);
      row.recording = r;
      row.name.textContent = label;
      row.badge.hidden = !r.continuous;
      if (r.description) row.cells.name.title = r.description;
      renderVerification(row.cells.verified, r, verifications.get(r.id));
      row.verify.setAttribute('aria-label', `Verify recording ${label}`);
      row.mp4.a.setAttribute('aria-label', `Export recording ${label} as MP4`);
      row.ts.a.setAttribute('aria-label', `Export recording ${label} as TS`);
      row.cells.source.textContent = names.get(r.source) ?? `${r.source_name ?? r.source} (source deleted)`;
      const storage = storedOf.get(r.id);
      row.cells.stored.textContent = storedText(storage) + (r.hold ? ' · on hold' : '');
      row.cells.stored.title = storage?.expires_at ? `expires ${when(storage.expires_at)}` : 'kept until deleted';
      row.hold.textContent = r.hold ? 'Lift hold' : 'Hold';
      row.hold.setAttribute('aria-label', `${r.hold ? 'Lift the hold on' : 'Hold'} recording ${label}`);
      row.cells.start.textContent = when(r.start_ts);
      setState(row.cells.end, active ? 'recording…' : when(r.end_ts), active ? 'state-bad' : '');
      const end = active || !r.end_ts ? Date.now() : Date.parse(r.end_ts);
      row.cells.length.textContent = duration(end - Date.parse(r.start_ts));
      row.play.setAttribute('aria-label', `Play recording ${label}`);
      row.stop.setAttribute('aria-label', `Stop recording ${label}`);
      // A continuous recording goes with its source's mode, not by itself.
      row.stop.hidden = !active || r.continuous;
      tbody.append(row.tr);
    }
    for (const [id, row] of recordingRows) {
      if (!seen.has(id)) {
        row.tr.remove();
        recordingRows.delete(id);
      }
    }
    const total = last?.recordingsTotal ?? recordings.length;
    $('recordings-status').textContent = !recordings.length ? 'No recordings yet.'
      : total > MAX_RECORDINGS ? `The newest ${MAX_RECORDINGS} of ${total} recordings.` : '';
  }

  // ---- player ----

  function stopPlayer() {
    const video = $('video');
    if (hls) {
      hls.destroy();
      hls = null;
    }
    video.removeAttribute('src');
    video.load();
    $('player-section').hidden = true;
  }

  /** What went wrong in hls.js, with the VOD API's own message when it sent one. */
  function describeHlsError(data) {
    let message = `${data.type}: ${data.details}`;
    const status = data.response?.code;
    const body = data.networkDetails?.responseText ?? data.response?.text;
    if (typeof body === 'string') {
      try {
        const apiMessage = JSON.parse(body)?.error?.message;
        if (apiMessage) message = apiMessage;
      } catch {
        // Not the API's JSON.
      }
    }
    return new ApiError(status || 0, message, null);
  }

  /**
   * The URL a player may fetch a VOD path from: minted by the management API, so it carries a signature and an
   * expiry when the control node signs playback URLs (LIVEMIX_PLAYBACK_SIGNING_KEY), and is the plain path otherwise.
   */
  async function playbackUrl(path, query = '') {
    const minted = await api('GET', `/v1/playback-url?path=${encodeURIComponent(path)}&ttl_secs=${PLAYBACK_TTL_SECS}`);
    const url = `${vodUrl}${minted.url}`;
    // The signature covers the path (its directory), not the query: a time range goes after it.
    return query ? `${url}${url.includes('?') ? '&' : '?'}${query}` : url;
  }

  /**
   * A link that downloads a VOD path (an export) through a minted URL. Minting waits until a pointer or the focus
   * comes to the link (or its click), so a list of many recordings asks for nothing until one is used; `eager`
   * mints as soon as the path is set. A download opens in a new tab, so an error page never replaces the console.
   */
  function vodLink(text, what) {
    const a = el('a', { class: 'button secondary', target: '_blank', rel: 'noopener' }, text);
    const link = { a, path: null, query: '', url: null, at: 0, minting: null };
    const key = () => `${link.path}?${link.query}`;
    const fresh = () => link.url !== null && Date.now() - link.at < MINTED_FRESH_MS;
    link.set = (path, query = '', eager = false) => {
      if (path === link.path && query === link.query) {
        if (eager && path) link.mint().catch(() => {});
        return;
      }
      link.path = path;
      link.query = query;
      link.url = null;
      link.minting = null;
      if (!path) {
        a.removeAttribute('href');
        a.setAttribute('aria-disabled', 'true');
        return;
      }
      a.removeAttribute('aria-disabled');
      // Plays as it is when the control node does not sign playback URLs; the click mints one otherwise.
      a.href = `${vodUrl}${path}${query ? `?${query}` : ''}`;
      if (eager) link.mint().catch(() => {});
    };
    link.mint = () => {
      if (fresh()) return Promise.resolve(link.url);
      const wanted = key();
      if (link.minting?.key !== wanted) {
        const promise = playbackUrl(link.path, link.query).then((url) => {
          if (key() === wanted) {
            link.url = url;
            link.at = Date.now();
            a.href = url;
          }
          return url;
        });
        link.minting = { key: wanted, promise };
        promise.finally(() => {
          if (link.minting?.promise === promise) link.minting = null;
        }).catch(() => {});
      }
      return link.minting.promise;
    };
    const ahead = () => {
      if (link.path) link.mint().catch(() => {});
    };
    a.addEventListener('pointerenter', ahead);
    a.addEventListener('focus', ahead);
    a.addEventListener('click', async (event) => {
      if (!link.path) {
        event.preventDefault();
        return;
      }
      if (fresh()) return; // The browser follows the minted href.
      event.preventDefault();
      clearError();
      try {
        window.open(await link.mint(), '_blank', 'noopener');
      } catch (err) {
        showError(`Downloading ${what()}`, err);
      }
    });
    return link;
  }

  /** Counts play requests, so that of two quick clicks the later one plays whichever URL is minted first. */
  let playRequests = 0;

  /** Plays a VOD path (`/v1/vod/...`, with `query` after its signature) in the page's player. */
  async function play(path, label, kind, query = '') {
    const request = ++playRequests;
    clearError();
    let url;
    try {
      url = await playbackUrl(path, query);
    } catch (err) {
      if (request === playRequests) showError(`Playing ${label}`, err);
      return;
    }
    if (request !== playRequests) return; // A later click superseded this one.
    stopPlayer(); // After the await, so no player is left behind.
    const video = $('video');
    $('player-section').hidden = false;
    $('now-playing').textContent = label;
    video.dataset.kind = kind;
    video.dataset.url = url;
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ enableWorker: true });
      hls.on(window.Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) showError(`Playing ${label}`, describeHlsError(data));
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = url; // Safari and iOS play HLS themselves.
    } else {
      showError(`Playing ${label}`, new ApiError(0, 'this browser cannot play HLS', null));
      return;
    }
    video.play().catch(() => {
      // Autoplay refused: the controls are there to start it.
    });
    $('player-section').scrollIntoView({ block: 'nearest' });
  }

  // ---- start ----

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', signIn);
    $('logout').addEventListener('click', () => signOut());
    $('close-player').addEventListener('click', stopPlayer);
    $('close-source').addEventListener('click', closeSourceView);
    $('continuous').addEventListener('change', setRecordingMode);
    $('coverage-window').addEventListener('change', () => {
      $('coverage-status').textContent = 'Loading…';
      loadCoverage();
    });
    $('range-form').addEventListener('submit', playRange);
    for (const id of ['range-start', 'range-end']) $(id).addEventListener('change', rangeChanged);
    for (const [ext, text] of [['mp4', 'Export MP4'], ['ts', 'Export TS']]) {
      rangeLinks[ext] = vodLink(text, () => `the range of ${view?.name ?? 'the source'}`);
      rangeLinks[ext].a.id = `export-${ext}`;
      $('range-actions').append(rangeLinks[ext].a);
    }
    window.addEventListener('resize', () => renderCoverage());
    // Sources newly shown by the filter get their live state and storage with a refresh soon after typing stops.
    let typing;
    $('filter').addEventListener('input', () => {
      render();
      clearTimeout(typing);
      typing = setTimeout(refresh, 300);
    });
    $('video').addEventListener('error', () => {
      const err = $('video').error;
      if (err && !hls) showError('Playing', new ApiError(0, err.message || `media error ${err.code}`, null));
    });
    if (token !== null) start();
    else showApp(false);
  });
})();
