// The web console in Debian's headless Chromium against a running control node and edge fed by ffmpeg
// (console-test/run.sh starts them): a wrong token is refused on screen, the page lists the source, live video
// plays (its currentTime advances), a recording started and stopped from the page plays to its end, and a source
// switched to continuous recording shows its recorded time, plays and exports a range of it; the API reference
// renders the generated OpenAPI documents.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} must be set (console-test/run.sh sets it)`);
  return value;
};
const consoleUrl = env('CONSOLE_URL');
const token = env('MANAGEMENT_TOKEN');
const sourceName = env('SOURCE_NAME');
const screenshot = env('SCREENSHOT');
const api = new URL('/', consoleUrl).href.replace(/\/$/, '');

let browser;
let page;
let recordingId;

/** The management API, as the test's own view of the truth. */
async function mgmt(path) {
  const resp = await fetch(`${api}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  const body = await resp.json();
  assert.equal(resp.status, 200, JSON.stringify(body));
  return body;
}

/** Waits until `check` returns a truthy value (polling, no fixed sleeps), or fails with `what`. */
async function eventually(what, check, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const sourceRow = () => page.locator('#sources tbody tr', { hasText: sourceName });
const video = () => page.locator('#video');
const videoState = () => video().evaluate((v) => ({
  currentTime: v.currentTime, duration: v.duration, ended: v.ended, paused: v.paused, error: v.error?.message,
}));

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.log(`[browser] ${msg.text()}`);
  });
  page.on('pageerror', (err) => console.log(`[browser] page error: ${err.message}`));
});

after(async () => {
  await browser?.close();
});

test('a wrong token shows the API error and keeps the console closed', async () => {
  await page.goto(consoleUrl);
  await page.getByLabel('Management API token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const error = page.getByRole('alert');
  await error.waitFor({ state: 'visible' });
  const text = await error.textContent();
  assert.match(text, /token was refused/);
  assert.match(text, /invalid bearer token/);
  assert.match(text, /HTTP 401/);
  assert.equal(await page.locator('#app').isVisible(), false);
  assert.equal(page.url(), consoleUrl, 'the token never goes into the URL');
});

test('with the right token the page lists the source', async () => {
  // By keyboard: Enter in the token field signs in.
  await page.getByLabel('Management API token').fill(token);
  await page.getByLabel('Management API token').press('Enter');
  // Other tests' sources may share the database (more than the page lists at once): show this one only.
  await page.getByLabel('Filter by source name').fill(sourceName);
  await sourceRow().waitFor({ state: 'visible' });
  await eventually('the filter applied', async () => (await page.locator('#sources tbody tr').count()) === 1);
  assert.equal(await page.getByRole('alert').isVisible(), false, 'the sign-in error is gone');
  assert.equal(page.url(), consoleUrl);
  assert.ok(!(await page.content()).includes(token), 'the token is not in the page');
  const cells = await sourceRow().locator('td').allTextContents();
  assert.match(cells[0], new RegExp(sourceName));
  assert.equal(cells[1], 'off');
});

test('streaming started from the page plays live, and the video advances', async () => {
  await page.getByRole('button', { name: `Start streaming ${sourceName}` }).click();
  await eventually('streaming on', async () => (await sourceRow().locator('td').nth(1).textContent()) === 'on');
  await eventually('live segments listed', async () => {
    const live = Number(await sourceRow().locator('td[data-label="Live segments"]').textContent());
    return live > 0;
  });
  assert.match(await sourceRow().locator('td[data-label="Edge"]').textContent(), /^reachable/);
  assert.doesNotMatch(await sourceRow().locator('td[data-label="Last segment"]').textContent(), /none yet/);

  await page.getByRole('button', { name: `Watch ${sourceName} live` }).click();
  await eventually('the player to open', async () =>
    (await page.locator('#now-playing').textContent()) === `Live: ${sourceName}`);
  // The control node signs playback URLs in this test: the page plays a minted, signed one.
  assert.match(await page.locator('#video').getAttribute('data-url'), /\/v1\/vod\/live\/.+[?&]sig=/);
  const first = await eventually('live playback to start', async () => {
    const state = await videoState();
    assert.equal(state.error, undefined);
    return state.currentTime > 0 && state;
  });
  await eventually('live playback to advance by 2 s', async () => (await videoState()).currentTime > first.currentTime + 2);
  assert.equal(await page.getByRole('alert').isVisible(), false);
});

test('a recording made from the page plays to its end', async () => {
  await page.getByRole('button', { name: `Start recording ${sourceName}` }).click();
  // Other tests' sources may share the database: ask about this source only.
  const { sources } = await mgmt(`/v1/source?source_name=${encodeURIComponent(sourceName)}`);
  const { recordings } = await eventually('the active recording', async () => {
    const body = await mgmt(`/v1/source/${sources[0].id}/recording?only_active=true`);
    return body.recordings.length === 1 && body;
  });
  recordingId = recordings[0].id;
  const row = page.locator(`#recordings tr[data-recording-id="${recordingId}"]`);
  await row.waitFor({ state: 'visible' });
  assert.equal(await row.locator('td[data-label="End"]').textContent(), 'recording…');
  // Let a few segments reach the object store.
  await eventually('recorded segments', async () => (await mgmt(`/v1/recording/${recordingId}/segment`)).segments.length >= 4);

  await page.getByRole('button', { name: `Stop recording ${sourceName}` }).click();
  await eventually('the stop on screen', async () =>
    (await row.locator('td[data-label="End"]').textContent()) !== 'recording…');
  assert.equal((await mgmt(`/v1/recording/${recordingId}`)).recording.active, -1);
  // Segments uploaded just before the stop may still be on their way; wait until the count holds.
  let count = 0;
  await eventually('the recording to settle', async () => {
    const now = (await mgmt(`/v1/recording/${recordingId}/segment`)).segments.length;
    const settled = now === count;
    count = now;
    if (!settled) await new Promise((resolve) => setTimeout(resolve, 1500));
    return settled;
  });
  // The timeline shows it as a finished bar.
  assert.ok(await sourceRow().locator('svg.timeline rect.done').count() >= 1);

  await row.getByRole('button', { name: /^Play recording/ }).click();
  await eventually('the player to open', async () =>
    /^Recording: /.test(await page.locator('#now-playing').textContent()));
  const end = await eventually('the recording to play to its end', async () => {
    const state = await videoState();
    assert.equal(state.error, undefined);
    return state.ended && state;
  }, 90_000);
  assert.ok(end.duration >= 3, `a recording of ${count} segments lasts ${end.duration} s`);
  assert.ok(Math.abs(end.currentTime - end.duration) < 0.5, `ended at ${end.currentTime} of ${end.duration} s`);
  assert.equal(await page.getByRole('alert').isVisible(), false);

  // What it stores, as the management API accounts for it, and a legal hold set and lifted from the page.
  const { storage } = await mgmt(`/v1/recording/${recordingId}/storage`);
  assert.equal(storage.segments, count);
  await eventually('the stored size in the row', async () =>
    (await row.locator('td[data-label="Stored"]').textContent()).includes(`in ${count} segment`));
  await row.getByRole('button', { name: /^Hold recording/ }).click();
  await eventually('the hold', async () => (await mgmt(`/v1/recording/${recordingId}`)).recording.hold === true);
  await eventually('the hold in the row', async () =>
    (await row.locator('td[data-label="Stored"]').textContent()).includes('on hold'));
  await row.getByRole('button', { name: /^Lift the hold on recording/ }).click();
  await eventually('the hold lifted', async () => (await mgmt(`/v1/recording/${recordingId}`)).recording.hold === false);
});

test('continuous recording: the timeline draws it, a range of it plays and exports, a recording verifies', async () => {
  const { sources } = await mgmt(`/v1/source?source_name=${encodeURIComponent(sourceName)}`);
  const sourceId = sources[0].id;
  await page.getByRole('button', { name: `Timeline of ${sourceName}` }).click();
  const section = page.locator('#source-section');
  await section.waitFor({ state: 'visible' });
  assert.equal(await page.locator('#source-title').textContent(), `Recorded time of ${sourceName}`);
  const toggle = page.getByLabel('Record continuously');
  assert.equal(await toggle.isChecked(), false);

  // Switched to continuous from the page: the control node keeps a continuous recording of it.
  await toggle.check();
  await eventually('the source recording continuously', async () =>
    (await mgmt(`/v1/source/${sourceId}`)).source.recording === 'continuous');
  const continuous = await eventually('the continuous recording', async () => {
    const { recordings } = await mgmt(`/v1/source/${sourceId}/recording?only_active=true`);
    return recordings.find((r) => r.continuous);
  });
  await eventually('the mode in the source row', async () =>
    (await sourceRow().locator('td[data-label="Recordings"]').textContent()).includes('recording continuously'));
  const continuousRow = page.locator(`#recordings tr[data-recording-id="${continuous.id}"]`);
  await continuousRow.waitFor({ state: 'visible' });
  assert.match(await continuousRow.locator('td[data-label="Recording"]').textContent(), /continuous/);
  assert.equal(await continuousRow.getByRole('button', { name: /^Stop recording/ }).isVisible(), false,
    'a continuous recording stops with its mode only');

  // About 20 s of it reach the store; the page's bar draws them as a span.
  await eventually('20 s recorded continuously', async () =>
    (await mgmt(`/v1/recording/${continuous.id}/segment`)).segments.length >= 20, 90_000);
  await eventually('a span of at least 20 s on the bar', async () => {
    const titles = await section.locator('svg.coverage rect.span title').allTextContents();
    return titles.some((t) => Number(/(\d+) segments\)$/.exec(t)?.[1] ?? 0) >= 20);
  }, 30_000);
  assert.match(await page.locator('#coverage-status').textContent(), /recorded in \d+ spans?/);
  // The earlier on-demand recording and the continuous one leave a gap between them, its cause in its tooltip.
  const gaps = await section.locator('svg.coverage rect.gap title').allTextContents();
  assert.ok(gaps.some((t) => /^Gap, (not recorded|the encoder restarted|nothing recorded): /.test(t)), gaps.join(' | '));

  // Picked by a click on the newest span: its start and end, to the second, go into the inputs.
  const spans = section.locator('svg.coverage rect.span');
  const newest = spans.nth((await spans.count()) - 1);
  const spanStart = Date.parse(await newest.getAttribute('data-start'));
  const spanEnd = Date.parse(await newest.getAttribute('data-end'));
  await newest.click();
  const picked = await page.evaluate(() => ({
    start: Date.parse(document.getElementById('range-start').value),
    end: Date.parse(document.getElementById('range-end').value),
  }));
  assert.equal(picked.start, Math.floor(spanStart / 1000) * 1000);
  // The span grows while it records: a refresh may have drawn it longer before the click.
  assert.ok(picked.end >= Math.ceil(spanEnd / 1000) * 1000 && picked.end <= spanEnd + 15_000, JSON.stringify(picked));
  assert.ok(picked.end - picked.start >= 19_000, JSON.stringify(picked));
  assert.equal(await section.locator('svg.coverage rect.selection').isVisible(), true);

  // A drag across the bar picks the range under it.
  const box = await section.locator('svg.coverage').boundingBox();
  await page.mouse.move(box.x + box.width * 0.2, box.y + 10);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.4, box.y + 10, { steps: 4 });
  await page.mouse.up();
  const dragged = await page.evaluate(() => ({
    start: Date.parse(document.getElementById('range-start').value),
    end: Date.parse(document.getElementById('range-end').value),
  }));
  assert.ok(dragged.end - dragged.start > 0.15 * 3600e3 && dragged.end - dragged.start < 0.25 * 3600e3,
    `a fifth of an hour: ${JSON.stringify(dragged)}`);

  // Typed into the inputs: 16 s of the continuous span.
  const local = (ms) => {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  };
  const start = Math.ceil(spanStart / 1000) * 1000 + 1000;
  const end = start + 16_000;
  await page.getByLabel('From', { exact: true }).fill(local(start));
  await page.getByLabel('To', { exact: true }).fill(local(end));
  await eventually('the range checked', async () =>
    /^16 s from /.test(await page.locator('#range-status').textContent()));

  await page.getByRole('button', { name: 'Play range' }).click();
  await eventually('the player to open', async () =>
    (await page.locator('#now-playing').textContent()).startsWith(`Range of ${sourceName}: `));
  const url = new URL(await video().getAttribute('data-url'));
  assert.equal(url.pathname, `/v1/vod/source/${sourceId}/vid.m3u8`);
  assert.ok(url.searchParams.get('sig'), 'a signed URL');
  assert.equal(Date.parse(url.searchParams.get('start')), start);
  assert.equal(Date.parse(url.searchParams.get('end')), end);
  const first = await eventually('range playback to start', async () => {
    const state = await videoState();
    assert.equal(state.error, undefined);
    return state.currentTime > 0 && state;
  });
  await eventually('range playback to advance by 2 s', async () => (await videoState()).currentTime > first.currentTime + 2);
  const state = await videoState();
  assert.ok(state.duration >= 12 && state.duration <= 20, `a 16 s range plays for ${state.duration} s`);
  assert.equal(await page.getByRole('alert').isVisible(), false);

  // The export links download that range.
  const mp4 = page.getByRole('link', { name: 'Export MP4', exact: true });
  const href = await eventually('a signed export link', async () => {
    const h = await mp4.getAttribute('href');
    return /\/export\.mp4\?.*sig=.*&start=/.test(h ?? '') && h;
  });
  const exported = await fetch(href);
  assert.equal(exported.status, 200, await exported.clone().text().catch(() => ''));
  assert.equal(exported.headers.get('content-type'), 'video/mp4');
  assert.match(exported.headers.get('content-disposition') ?? '', /^attachment; filename=".+\.mp4"$/);
  const bytes = Buffer.from(await exported.arrayBuffer());
  assert.ok(bytes.length > 10_000, `an MP4 of ${bytes.length} bytes`);
  assert.equal(bytes.subarray(4, 8).toString('latin1'), 'ftyp', 'an MP4 starts with its ftyp box');
  const tsHref = await page.getByRole('link', { name: 'Export TS', exact: true }).getAttribute('href');
  const ts = await fetch(tsHref);
  assert.equal(ts.status, 200);
  assert.ok((await ts.arrayBuffer()).byteLength > 10_000);

  // The finished on-demand recording, verified from the page, and its own export link (minted when pointed at).
  const row = page.locator(`#recordings tr[data-recording-id="${recordingId}"]`);
  assert.equal(await row.locator('td[data-label="Verified"]').textContent(), 'not verified');
  await row.getByRole('button', { name: /^Verify recording/ }).click();
  const { segments } = await mgmt(`/v1/recording/${recordingId}/segment`);
  await eventually('the verification in the row', async () =>
    (await row.locator('td[data-label="Verified"]').textContent()) === `verified: ${segments.length} segments intact`);
  assert.equal((await mgmt(`/v1/recording/${recordingId}`)).recording.verification.segments, segments.length);
  const recordingLink = row.getByRole('link', { name: /^Export recording .+ as TS$/ });
  await recordingLink.hover();
  const recordingHref = await eventually('a signed recording export link', async () => {
    const h = await recordingLink.getAttribute('href');
    return /\/v1\/vod\/recording\/.+\/export\.ts\?exp=.*sig=/.test(h ?? '') && h;
  });
  const recordingTs = await fetch(recordingHref);
  assert.equal(recordingTs.status, 200);
  assert.equal(Number(recordingTs.headers.get('content-length')), (await recordingTs.arrayBuffer()).byteLength);

  // Back to on demand from the page: the continuous recording ends.
  await toggle.uncheck();
  await eventually('the source back on demand', async () =>
    (await mgmt(`/v1/source/${sourceId}`)).source.recording === 'on_demand');
  await eventually('the continuous recording stopped', async () =>
    (await mgmt(`/v1/recording/${continuous.id}`)).recording.active !== 1);
  assert.equal(await page.getByRole('alert').isVisible(), false);
});

test('screenshot of the console, playing live', async () => {
  await page.getByRole('button', { name: `Watch ${sourceName} live` }).click();
  await eventually('live playback', async () => (await videoState()).currentTime > 1);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: screenshot, fullPage: true });
});

test('on a phone the console fits the screen', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  assert.ok(await page.getByRole('button', { name: `Stop streaming ${sourceName}` }).isVisible());
  const box = await page.getByRole('button', { name: `Watch ${sourceName} live` }).boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 390 && box.height >= 32, JSON.stringify(box));
  if (process.env.PHONE_SCREENSHOT) await page.screenshot({ path: process.env.PHONE_SCREENSHOT, fullPage: true });
});

test('the API reference renders the generated documents and tries a call with the console token', async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${api}/ui/api`);
  await eventually('the management operations', async () => (await page.locator('.opblock').count()) >= 30);
  assert.ok(await page.getByText('/v1/source/{id}/coverage', { exact: true }).first().isVisible());
  // "Try it out" on GET /v1/source, with the token the console kept in this tab.
  const list = page.locator('.opblock-get', { has: page.getByText('/v1/source', { exact: true }) }).first();
  await list.locator('.opblock-summary').click();
  await list.getByRole('button', { name: 'Try it out' }).click();
  await list.getByRole('button', { name: 'Execute' }).click();
  await eventually('a 200 from the management API', async () =>
    (await list.locator('.live-responses-table tbody .response-col_status').first().textContent() ?? '').trim().startsWith('200'));
  // The VOD document, time ranges included.
  await page.getByLabel('VOD (:8081)').check();
  await eventually('the VOD operations', async () =>
    (await page.getByText('/v1/vod/source/{source_id}/{file}', { exact: true }).count()) > 0);
});
