// The web console in Debian's headless Chromium against a running control node and edge fed by ffmpeg
// (console-test/run.sh starts them): a wrong token is refused on screen, the page lists the source, live video
// plays (its currentTime advances), and a recording started and stopped from the page plays to its end.
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
