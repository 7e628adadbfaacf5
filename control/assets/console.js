// LiveMix console: lists sources and recordings from the management API, plays them from the VOD API with hls.js
// (or the browser's own HLS, as in Safari), and starts and stops streaming and recordings.
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
    cells.actions.append(watch, stream, record);
    row = { tr, cells, name, watch, stream, record, source: null, active: null };
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
      row.active = own.find((r) => r.active === 1 || r.active === true) ?? null;
      row.name.textContent = s.name;
      if (s.description) row.name.title = s.description;
      const streaming = row.source.streaming;
      setState(row.cells.streaming, streaming ? 'on' : 'off', streaming ? 'state-on' : 'state-off');
      setState(row.cells.edge, s.reachable ? `reachable, seen ${ago(s.last_seen)}` :
        `unreachable, seen ${ago(s.last_seen)}`, s.reachable ? 'state-on' : 'state-bad');
      row.cells.live.textContent = live ? String(live.segments) : '?';
      row.cells.last.textContent = live?.last_segment_at ? `${when(live.last_segment_at)} (${ago(live.last_segment_at)})` : 'none yet';
      row.cells.timeline.replaceChildren(timeline(s, own));
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

  // ---- recordings ----

  function recordingRow(id) {
    let row = recordingRows.get(id);
    if (row) return row;
    const tr = el('tr', { 'data-recording-id': id });
    const cells = {};
    for (const [key, label] of [
      ['name', 'Recording'], ['source', 'Source'], ['start', 'Start'], ['end', 'End'], ['length', 'Length'],
      ['stored', 'Stored'], ['actions', 'Actions'],
    ]) {
      cells[key] = el('td', { 'data-label': label });
      tr.append(cells[key]);
    }
    const playButton = el('button', { type: 'button', class: 'secondary' }, 'Play');
    const stop = el('button', { type: 'button', class: 'danger' }, 'Stop');
    const hold = el('button', { type: 'button', class: 'secondary' });
    cells.actions.append(playButton, stop, hold);
    row = { tr, cells, play: playButton, stop, hold, recording: null };
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
      row.cells.name.textContent = label;
      if (r.description) row.cells.name.title = r.description;
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
      row.stop.hidden = !active;
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
  async function playbackUrl(path) {
    const minted = await api('GET', `/v1/playback-url?path=${encodeURIComponent(path)}&ttl_secs=${PLAYBACK_TTL_SECS}`);
    return `${vodUrl}${minted.url}`;
  }

  /** Counts play requests, so that of two quick clicks the later one plays whichever URL is minted first. */
  let playRequests = 0;

  /** Plays a VOD path (`/v1/vod/...`) in the page's player. */
  async function play(path, label, kind) {
    const request = ++playRequests;
    clearError();
    let url;
    try {
      url = await playbackUrl(path);
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
